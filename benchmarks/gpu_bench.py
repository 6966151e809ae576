"""`bevkd bench` on a GPU machine lent for minutes: as much of the table as the time allows,
every finished run kept in the archive, so that the next lease goes on where this one stopped.

    python benchmarks/gpu_bench.py --out DIR [--preset small] [--budget 570] [--reserve 90]
        [--archive benchmarks/archive/small] [--data DIR] [--runs DIR] [--commit SHA]
        [--wheels DIR] [-- BENCH ARGS ...]

This project's GPU machine (``.library/device``) is lent 15 minutes a session, at most 10 of
them in one command, and starts bare each time: no runs folder, no dataset, no
nuscenes-devkit. So this script, run as that one command from the repository root:

1. installs the wheels of ``--wheels`` (default ``.gpuwheels``, where present:
   nuscenes-devkit, pyquaternion, cachetools, downloaded beforehand for the GPU machine's
   Python) into a folder of its own and puts it on the bench's ``PYTHONPATH``;
2. runs ``bevkd bench --preset PRESET --archive ARCHIVE`` (plus ``BENCH ARGS``): it generates
   the preset's SynthScenes with every core, restores the runs the archive holds, trains what
   is missing (teachers first, then seed 0 of every row, then seed 1) and archives each run
   as it finishes;
3. at ``--budget`` minus ``--reserve`` seconds stops it (SIGTERM: the bench stops its
   trainings; what finished is archived already), then writes the table of everything the
   archive and the runs folder hold (``--report-only``, latency and step time timed on the
   GPU) into ``benchmarks/`` of this copy (a bench that finished wrote it itself);
4. leaves in ``--out`` at most 5 files (the device machine hands back 8):
   ``<preset>.md``, ``<preset>.json``, ``gpu_bench.log`` (written as it goes, so it comes back
   even from a call cut short), ``gpu_bench.json`` (what ran, how long) and
   ``<preset>_bench.tgz`` (the archive, the plots, the backbone's record and the end of every
   failed training's log).

Back on the development machine, ``python benchmarks/gpu_bench.py --unpack DIR`` (``DIR``: the
folder the files came back to) replaces ``benchmarks/archive/<preset>`` with the one handed
back, puts the table and its plots in ``benchmarks/`` and the logs in ``--logs`` (outside the
repository); commit the first two. The next lease carries the archive in the working tree, so
its bench restores those runs and trains the rest. A student trained in a later lease learned from that lease's teachers (GPU
training is not bit-reproducible across machines): the table marks it, as the bench does
whenever a run learned from another training of a teacher.

``--commit``: the commit this copy was made from (it has no git history), recorded by every
training and the table (``BEVKD_COMMIT``); with uncommitted changes in the tree sent, say so
(``$(git rev-parse --short HEAD)-dirty``).

``gpu_bench.json`` keeps each line of the bench's log with the second it came at
(``events``), so the next lease can be planned on what this one took: data, backbone,
teachers, the first student.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Log:
    """Lines to stdout and to ``path`` (flushed each line: a call cut short keeps them)."""

    def __init__(self, path: str):
        self.f = open(path, "a", buffering=1)
        self.lock = threading.Lock()

    def __call__(self, line: str) -> None:
        self.raw(f"[gpu_bench {time.strftime('%H:%M:%S')}] {line}")

    def raw(self, line: str) -> None:
        with self.lock:
            print(line, flush=True)
            self.f.write(line + "\n")


def install_wheels(wheels: str, site: str, log: Log) -> str | None:
    """The wheels of ``wheels`` installed into ``site`` (no dependencies, no index); ``site``,
    or ``None`` where there are none."""
    found = sorted(glob.glob(os.path.join(wheels, "*.whl")))
    # the machine's torch was built against its own numpy (2.x): a carried numpy 1.26 broke
    # its import in session 31, and the devkit ran on numpy 2 there
    numpy = [w for w in found if os.path.basename(w).startswith("numpy-")]
    if numpy:
        log(f"left out {', '.join(os.path.basename(w) for w in numpy)}: the machine's numpy "
            "stays")
        found = [w for w in found if w not in numpy]
    if not found:
        log(f"no wheels in {wheels}: the machine's own packages only")
        return None
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
           "--no-compile", "--no-cache-dir", "--upgrade", "--target", site, *found]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"pip install of {len(found)} wheels failed:\n{done.stderr[-2000:]}")
    log(f"installed {', '.join(os.path.basename(w).split('-')[0] for w in found)} into {site}")
    return site


def run_until(cmd: list[str], deadline: float, env: dict, log: Log, events: list,
              grace: float = 60.0) -> str:
    """Run ``cmd`` until it ends or ``deadline`` (``time.monotonic()``), each line of its
    output logged and kept in ``events`` as ``[seconds since start, line]``; at the deadline
    SIGTERM it, and SIGKILL its whole process group after ``grace`` seconds. ``"done"``,
    ``"failed (rc)"`` or ``"stopped"``. Its own process group (not a new session: the device
    machine ends a command's leftovers unless they start a session) is killed however this
    ends, so no training outlives the call."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            cwd=ROOT, text=True, errors="replace", bufsize=1,
                            process_group=0)

    def pump() -> None:
        for line in proc.stdout:
            line = line.rstrip("\n")
            log.raw(line)
            events.append([round(time.monotonic() - start, 1), line])

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(1.0)
        if proc.poll() is not None:
            return "done" if proc.returncode == 0 else f"failed ({proc.returncode})"
        log(f"time is up: stopping `{' '.join(cmd[2:5])} ...` (SIGTERM, then SIGKILL after "
            f"{grace:.0f} s)")
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        return "stopped"
    finally:
        try:  # the bench and the trainings it started, whatever is left of them
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        reader.join(5.0)


def has_metrics(run: str) -> bool:
    """Whether the run folder holds a final evaluation (``eval/<split>/metrics.json``): the
    bench's finished run, as ``bevkd.bench.runner.is_finished`` reads it (this script imports
    no bevkd: it runs before the carried wheels are installed)."""
    return bool(glob.glob(os.path.join(run, "eval", "*", "metrics.json")))


def failed_logs(runs: str, tail: int = 4000) -> dict[str, str]:
    """``{run: the end of its train.log}`` for every run folder without a finished
    ``metrics.json`` (failed or stopped trainings), and ``{"backbone": the end of
    backbone.log}`` where the pretraining made no backbone (failed or stopped)."""
    logs = {os.path.basename(os.path.dirname(p)): p
            for p in sorted(glob.glob(os.path.join(runs, "*", "train.log")))
            if not has_metrics(os.path.dirname(p))}
    if not os.path.isfile(os.path.join(runs, "backbone.pth.json")):
        logs["backbone"] = os.path.join(runs, "backbone.log")
    out = {}
    for name, path in logs.items():
        if os.path.isfile(path):
            with open(path, errors="replace") as f:
                out[name] = f.read()[-tail:]
    return out


def fresh(paths: list[str], since: float) -> list[str]:
    """The ``paths`` written at or after ``since`` (``time.time()``): this call's, not the
    committed ones the working tree brought along."""
    return [p for p in paths if os.path.isfile(p) and os.path.getmtime(p) >= since]


def pack(tgz: str, preset: str, archive: str, runs: str, tables: str, since: float) -> list[str]:
    """``tgz``: the archive folder (without copies being made, ``*.tmp``) and the table's
    plots written since ``since`` (from ``tables``), by their paths relative to the repository
    root, and under ``gpu_bench_logs/`` the pretrained backbone's record (or, where there is
    none, the end of the pretraining's log) and the end of each unfinished run's log. Returns
    what went in."""
    members = []
    with tarfile.open(tgz, "w:gz") as tar:
        if os.path.isdir(archive):  # where the next lease's bench reads it
            name = os.path.join("benchmarks", "archive", os.path.basename(archive))
            tar.add(archive, arcname=name,
                    filter=lambda m: None if m.name.endswith(".tmp") or ".tmp/" in m.name
                    else m)
            members.append(name)
        for png in fresh(sorted(glob.glob(os.path.join(tables, f"{preset}_*.png"))), since):
            name = os.path.join("benchmarks", os.path.basename(png))
            tar.add(png, arcname=name)
            members.append(name)
        record = os.path.join(runs, "backbone.pth.json")
        if os.path.isfile(record):
            tar.add(record, arcname="gpu_bench_logs/backbone.pth.json")
            members.append("gpu_bench_logs/backbone.pth.json")
        for run, text in failed_logs(runs).items():
            path = os.path.join(runs, f"{run}.log.tail")
            with open(path, "w") as f:
                f.write(text)
            tar.add(path, arcname=f"gpu_bench_logs/{run}.log.tail")
            members.append(f"gpu_bench_logs/{run}.log.tail")
    return members


def unpack(folder: str, preset: str, logs: str) -> list[str]:
    """What a lease handed back (``folder``) put in place in this checkout: the archive
    replaces ``benchmarks/archive/<preset>`` (a merge would keep runs the bench replaced),
    the table and plots go to ``benchmarks/``, the logs to ``logs``. Returns the paths."""
    tgz = os.path.join(folder, f"{preset}_bench.tgz")
    if not os.path.isfile(tgz):
        raise SystemExit(f"no {tgz}: nothing to unpack")
    done = []
    with tarfile.open(tgz) as tar:
        members = tar.getmembers()
        bad = [m.name for m in members if m.name.startswith("/") or ".." in m.name.split("/")]
        if bad:
            raise SystemExit(f"{tgz} holds paths outside the checkout: {bad[:3]}")
        archive = os.path.join(ROOT, "benchmarks", "archive", preset)
        if any(m.name.startswith(f"benchmarks/archive/{preset}/") for m in members):
            shutil.rmtree(archive, ignore_errors=True)
            done.append(os.path.relpath(archive, ROOT))
        for m in members:
            to_logs = m.name.startswith("gpu_bench_logs/")
            if not to_logs and not m.name.startswith("benchmarks/"):
                continue
            dest_root = logs if to_logs else ROOT
            name = m.name.split("/", 1)[1] if to_logs else m.name
            if m.isfile():
                dest = os.path.join(dest_root, name)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with tar.extractfile(m) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
                if to_logs or not m.name.startswith("benchmarks/archive/"):
                    done.append(dest)
    for ext in ("md", "json"):
        table = os.path.join(folder, f"{preset}.{ext}")
        if os.path.isfile(table):
            shutil.copy(table, os.path.join(ROOT, "benchmarks"))
            done.append(os.path.join("benchmarks", f"{preset}.{ext}"))
    for name in ("gpu_bench.log", "gpu_bench.json"):
        if os.path.isfile(os.path.join(folder, name)):
            os.makedirs(logs, exist_ok=True)
            shutil.copy(os.path.join(folder, name), logs)
            done.append(os.path.join(logs, name))
    return done


def finished_runs(archive: str) -> list[str]:
    """The runs of the archive with their metrics (copies under way, ``.tmp``, left out)."""
    names = os.listdir(archive) if os.path.isdir(archive) else []
    return sorted(n for n in names
                  if not n.endswith(".tmp") and has_metrics(os.path.join(archive, n)))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    called = "python " + " ".join([os.path.relpath(os.path.abspath(__file__), ROOT), *argv])
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="where the files to hand back go")
    ap.add_argument("--unpack", metavar="DIR",
                    help="on the development machine: put what a lease handed back to DIR in "
                         "place in this checkout, and run nothing")
    ap.add_argument("--logs", default=os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                                   "gpu_bench_logs"),
                    help="with --unpack: where the logs go (default: a temp folder)")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--budget", type=float, default=570.0,
                    help="seconds this script may take in all (default 570: a 10-minute "
                         "command with 30 s to spare)")
    ap.add_argument("--reserve", type=float, default=90.0,
                    help="seconds of the budget kept for the report (on the GPU: its imports, "
                         "the restore, latency and step time, tens of seconds) and the packing")
    ap.add_argument("--archive", default=None,
                    help="the bench's archive (default benchmarks/archive/<preset>)")
    ap.add_argument("--data", default=None, help="SynthScenes folder (default: a temp folder)")
    ap.add_argument("--runs", default=None, help="runs folder (default: a temp folder)")
    ap.add_argument("--tables", default=os.path.join(ROOT, "benchmarks"),
                    help="where the bench writes the table and its plots")
    ap.add_argument("--wheels", default=os.path.join(ROOT, ".gpuwheels"))
    ap.add_argument("--commit", default=None,
                    help="the commit this copy was made from (recorded as BEVKD_COMMIT)")
    args = ap.parse_args(argv)
    if args.unpack:
        for path in unpack(args.unpack, args.preset, args.logs):
            print(path)
        return 0
    if not args.out:
        ap.error("--out is required (or --unpack DIR)")
    if args.reserve >= args.budget:
        ap.error(f"--reserve ({args.reserve}) must be less than --budget ({args.budget})")
    start, since = time.monotonic(), time.time()

    def stopped(signum, frame):  # noqa: ARG001 - a SIGTERM ends the call, trainings with it
        raise SystemExit(f"gpu_bench: signal {signum}")

    signal.signal(signal.SIGTERM, stopped)
    os.makedirs(args.out, exist_ok=True)
    log = Log(os.path.join(args.out, "gpu_bench.log"))
    tmp = os.environ.get("TMPDIR", "/tmp")
    archive = os.path.abspath(args.archive or os.path.join(ROOT, "benchmarks", "archive",
                                                           args.preset))
    tables = os.path.abspath(args.tables)
    data = os.path.abspath(args.data or os.path.join(tmp, f"bevkd_synth_{args.preset}"))
    runs = os.path.abspath(args.runs or os.path.join(tmp, f"bevkd_runs_{args.preset}"))
    env = dict(os.environ)
    site = install_wheels(args.wheels, os.path.join(tmp, "bevkd_site"), log)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (ROOT, site, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    if args.commit:
        env["BEVKD_COMMIT"] = args.commit
    bench = [sys.executable, "-m", "bevkd.cli", "bench", "--preset", args.preset,
             "--data", data, "--runs", runs, "--out", tables, "--archive", archive, *extra]
    result: dict = {"preset": args.preset, "budget_s": args.budget, "commit": args.commit,
                    "command": called, "bench": bench[2:], "events": []}

    def save() -> None:
        result["finished_runs"] = finished_runs(archive)
        result["total_s"] = round(time.monotonic() - start, 1)
        with open(os.path.join(args.out, "gpu_bench.json"), "w") as f:
            json.dump(result, f, indent=1)

    try:
        log(f"bench: {' '.join(bench[2:])}")
        result["train"] = run_until(bench, start + args.budget - args.reserve, env, log,
                                    result["events"])
        result["train_s"] = round(time.monotonic() - start, 1)
        log(f"bench {result['train']} after {result['train_s']:.0f} s"
            + ("" if result["train"] == "done" else "; the report"))
        left = args.budget - (time.monotonic() - start) - 20.0  # 20 s to pack
        if result["train"] == "done":  # the bench wrote the table of everything itself
            result["report"] = "done"
        else:
            result["report"] = run_until([*bench, "--report-only"],
                                         time.monotonic() + max(left, 30.0), env, log,
                                         result["events"], grace=10.0)
        result["report_s"] = round(time.monotonic() - start - result["train_s"], 1)
        # this call's table only: a report that failed leaves the committed one in the tree
        tables_now = fresh([os.path.join(tables, f"{args.preset}.{ext}")
                            for ext in ("md", "json")], since)
        for table in tables_now:
            shutil.copy(table, args.out)
        result["table"] = [os.path.basename(t) for t in tables_now]
        result["packed"] = pack(os.path.join(args.out, f"{args.preset}_bench.tgz"),
                                args.preset, archive, runs, tables, since)
    finally:
        save()
    log(f"{len(result['finished_runs'])} runs in the archive; report {result['report']}; "
        f"{result['total_s']:.0f} s in all")
    return 0 if result["report"] == "done" and result["table"] else 1


if __name__ == "__main__":
    sys.exit(main())

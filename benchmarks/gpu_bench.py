"""`bevkd bench` on a GPU machine lent for minutes: as much of the table as the time allows,
every finished run kept in the archive, so that the next lease goes on where this one stopped.

    python benchmarks/gpu_bench.py --out DIR [--preset small] [--budget 540] [--reserve 150]
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
   GPU) into ``benchmarks/`` of this copy;
4. leaves in ``--out`` at most 5 files (the device machine hands back 8):
   ``<preset>.md``, ``<preset>.json``, ``gpu_bench.log`` (written as it goes, so it comes back
   even from a call cut short), ``gpu_bench.json`` (what ran, how long) and
   ``<preset>_bench.tgz`` (the archive, the plots, the backbone's record and the end of every
   failed training's log).

Back on the development machine: ``tar xzf <preset>_bench.tgz`` in the repository root puts
the archive and the plots in place, ``cp <preset>.md <preset>.json benchmarks/``; commit them.
The next lease carries the archive in the working tree, so its bench restores those runs and
trains the rest. A student trained in a later lease learned from that lease's teachers (GPU
training is not bit-reproducible across machines): the table marks it, as the bench does
whenever a run learned from another training of a teacher.

``--commit``: the commit this copy was made from (it has no git history), recorded by every
training and the table (``BEVKD_COMMIT``).
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
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Log:
    """Lines to stdout and to ``path`` (flushed each line: a call cut short keeps them)."""

    def __init__(self, path: str):
        self.f = open(path, "a", buffering=1)

    def __call__(self, line: str) -> None:
        line = f"[gpu_bench {time.strftime('%H:%M:%S')}] {line}"
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


def run_until(cmd: list[str], deadline: float, env: dict, log: Log, out_log: str,
              grace: float = 60.0) -> str:
    """Run ``cmd`` (its output appended to ``out_log``) until it ends or ``deadline``
    (``time.monotonic()``); then SIGTERM it, and SIGKILL its whole process group after
    ``grace`` seconds. ``"done"``, ``"failed (rc)"`` or ``"stopped"``."""
    with open(out_log, "a") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                start_new_session=True)
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(2.0)
        if proc.poll() is not None:
            return "done" if proc.returncode == 0 else f"failed ({proc.returncode})"
        log(f"time is up: stopping `{' '.join(cmd[2:5])} ...` (SIGTERM, then SIGKILL after "
            f"{grace:.0f} s)")
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        try:  # the trainings it started, if any outlived it
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        return "stopped"


def failed_logs(runs: str, tail: int = 4000) -> dict[str, str]:
    """``{run: the end of its train.log}`` for every run folder without a finished
    ``metrics.json`` (failed or stopped trainings)."""
    out = {}
    for log_path in sorted(glob.glob(os.path.join(runs, "*", "train.log"))):
        run = os.path.dirname(log_path)
        if glob.glob(os.path.join(run, "eval", "*", "metrics.json")):
            continue
        with open(log_path, errors="replace") as f:
            out[os.path.basename(run)] = f.read()[-tail:]
    return out


def pack(tgz: str, preset: str, archive: str, runs: str, tables: str) -> list[str]:
    """``tgz``: the archive folder and the table's plots (from ``tables``), by their paths
    relative to the repository root, and under ``gpu_bench_logs/`` the pretrained backbone's
    record and the end of each unfinished run's log. Returns what went in."""
    members = []
    with tarfile.open(tgz, "w:gz") as tar:
        if os.path.isdir(archive):  # where the next lease's bench reads it
            name = os.path.join("benchmarks", "archive", os.path.basename(archive))
            tar.add(archive, arcname=name)
            members.append(name)
        for png in sorted(glob.glob(os.path.join(tables, f"{preset}_*.png"))):
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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    called = "python " + " ".join([os.path.relpath(os.path.abspath(__file__), ROOT), *argv])
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="where the files to hand back go")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--budget", type=float, default=540.0,
                    help="seconds this script may take in all (default 540: a 10-minute "
                         "command with a minute to spare)")
    ap.add_argument("--reserve", type=float, default=150.0,
                    help="seconds of the budget kept for the report and the packing")
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
    start = time.monotonic()
    if args.reserve >= args.budget:
        ap.error(f"--reserve ({args.reserve}) must be less than --budget ({args.budget})")
    os.makedirs(args.out, exist_ok=True)
    log = Log(os.path.join(args.out, "gpu_bench.log"))
    tmp = os.environ.get("TMPDIR", "/tmp")
    archive = os.path.abspath(args.archive or os.path.join(ROOT, "benchmarks", "archive",
                                                           args.preset))
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
             "--data", data, "--runs", runs, "--out", os.path.abspath(args.tables),
             "--archive", archive, *extra]
    bench_log = os.path.join(args.out, "gpu_bench.log")
    result = {"preset": args.preset, "budget_s": args.budget, "commit": args.commit,
              "command": called, "bench": bench[2:]}
    log(f"bench: {' '.join(bench[2:])}")
    result["train"] = run_until(bench, start + args.budget - args.reserve, env, log, bench_log)
    result["train_s"] = round(time.monotonic() - start, 1)
    log(f"bench {result['train']} after {result['train_s']:.0f} s; the report")
    left = args.budget - (time.monotonic() - start) - 20.0  # 20 s to pack
    result["report"] = run_until([*bench, "--report-only"], time.monotonic() + max(left, 30.0),
                                 env, log, bench_log, grace=10.0)
    result["report_s"] = round(time.monotonic() - start - result["train_s"], 1)
    for ext in ("md", "json"):
        table = os.path.join(args.tables, f"{args.preset}.{ext}")
        if os.path.isfile(table):
            shutil.copy(table, args.out)
    result["packed"] = pack(os.path.join(args.out, f"{args.preset}_bench.tgz"), args.preset,
                            archive, runs, os.path.abspath(args.tables))
    result["finished_runs"] = sorted(
        os.path.basename(os.path.dirname(os.path.dirname(os.path.dirname(p))))
        for p in glob.glob(os.path.join(archive, "*", "eval", "*", "metrics.json")))
    result["total_s"] = round(time.monotonic() - start, 1)
    with open(os.path.join(args.out, "gpu_bench.json"), "w") as f:
        json.dump(result, f, indent=1)
    log(f"{len(result['finished_runs'])} runs in the archive; report {result['report']}; "
        f"{result['total_s']:.0f} s in all")
    return 0 if result["report"] == "done" else 1


if __name__ == "__main__":
    sys.exit(main())

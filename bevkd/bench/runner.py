"""Run the benchmark's trainings as `bevkd train` subprocesses, in parallel where cores allow.

Resumable: a job whose run folder already holds its final metrics is not redone; one with a
checkpoint but no metrics is continued with ``--resume``, and such partly trained jobs take the
free slots before the others (:func:`resumed_first`): what a stopped bench had done becomes a
result soonest. A job with no folder of its own is
served by another finished run of the same command, inputs and config (:func:`twin`). A failed
job is reported (its log is ``RUN/train.log``) and the jobs that need it are skipped; the
others go on.

Each run folder records the training command it was started with (``RUN/bench_job.json``)
and the identity (size, modification time) of what it read besides its config: the runs it
needs, files its overrides name (the pretrained backbone) and the dataset's tables. A bench
whose command for that job differs (another preset, dataset, override, teacher), whose inputs
changed since (a teacher retrained, the data regenerated), or which resolves to another config
than the run's ``config.yaml`` (a preset file edited since), does not reuse or resume it but
fails the job with a message, since a table silently mixing two settings would be wrong. A
job's reuse is judged once every job it needs is final.

A run restored from a bench archive (:mod:`bevkd.bench.archive`, marked :data:`RESTORED`)
comes without checkpoints, possibly onto a new machine: its inputs are checked by the dataset
tables' names and sizes alone (:func:`lasting`), its command and config as any run's once the
runs and data folders they name are read as this bench's (:func:`moves`).

``train=False`` (``bevkd bench --report-only``) starts nothing: finished runs are taken as
they are (after the same checks), the others are reported ``missing``; it takes no lock, so
it can tabulate a bench that is still running.

One bench at a time per runs folder (a lock file); when the bench stops (Ctrl-C, SIGTERM, an
error) its trainings are stopped too, each leaving a checkpoint that the next bench resumes.

The camera backbone's pretraining (:class:`Pretraining`) runs beside the first trainings: the
jobs with a camera model wait for it, the LiDAR teacher and the label encoder do not. Stopped
with the bench, it saves its checkpoint (``backbone.pth.ckpt``), which the next bench resumes.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..config import differing_keys, to_dict
from ..errors import BevkdError
from ..fileio import write_json
from .eta import live_progress, pretrain_progress, progress_line, running_line
from .plan import NO_CAMERA, TEACHER_JOBS, Job, teacher_roles

if TYPE_CHECKING:
    from ..engine.config import ExperimentConfig

@dataclass
class JobResult:
    job: Job
    run: str
    status: str          # done | reused | failed | skipped | missing (not trained)
    seconds: float = 0.0
    why: str = ""        # what a failed judgement found (see verdict)


def is_finished(run: str, val_split: str) -> bool:
    return (os.path.isfile(os.path.join(run, "eval", val_split, "metrics.json"))
            and os.path.isfile(os.path.join(run, "timing.json")))


@dataclass(frozen=True)
class Pretraining:
    """The `bevkd pretrain` command that makes the camera backbone ``out``, run by
    :func:`run_jobs` beside the trainings that do not read it (the LiDAR teacher, then the
    label encoder) where it leaves slots free: the jobs with a camera model are judged once
    it has ended (and skipped if it failed). It trains on ``threads`` (the preset's
    ``bench.pretrain_threads``, whatever the slots) and holds ``slots`` of the bench's
    parallel slots while it runs (its threads over a training's, rounded up, at most the
    bench's ``--parallel``: on the tiny preset both of two, so nothing runs beside it); its
    output goes to ``log``."""

    cmd: list[str]
    out: str
    log: str
    slots: int = 1
    threads: int = 1


def command(job: Job, preset: str, data: str, runs: str, threads: int,
            extra: tuple[str, ...] = (), camera_extra: tuple[str, ...] = ()) -> list[str]:
    """The `bevkd train` command line of a job (teacher runs wired in by role;
    ``camera_extra`` goes to models with a camera backbone only)."""
    run = os.path.join(runs, job.name)
    sets = [f"train.threads={threads}", *job.overrides, *extra,
            *(camera_extra if job.model not in NO_CAMERA else ())]
    for role in teacher_roles(job.config):
        sets.append(f"distill.teachers.{role}={os.path.join(runs, TEACHER_JOBS[role])}")
    if job.model == "label_encoder":
        sets.append(f"model.args.teacher={os.path.join(runs, 'teacher')}")
    cmd = [sys.executable, "-m", "bevkd.cli", "train", job.config, "--preset", preset,
           "--data", data, "--out", run]
    for s in sets:
        cmd += ["--set", s]
    if has_checkpoint(run):
        cmd.append("--resume")
    return cmd


def _last_checkpoint(run: str) -> str:
    return os.path.join(run, "checkpoints", "last.ckpt")


def has_checkpoint(run: str) -> bool:
    """Whether ``run`` holds a checkpoint to resume from (finished or not)."""
    return os.path.isfile(_last_checkpoint(run))


def resumed_first(jobs: list[Job], runs: str, val_split: str) -> list[Job]:
    """``jobs`` in plan order, except that those with a partly trained run (a checkpoint, no
    final metrics) come first: after a stop, what was half done finishes before anything new
    starts, rather than waiting behind the plan's earlier jobs with its hours sunk."""
    def fresh(job: Job) -> bool:
        run = os.path.join(runs, job.name)
        return not has_checkpoint(run) or is_finished(run, val_split)
    return sorted(jobs, key=fresh)  # stable: plan order within each group


JOB_FILE = "bench_job.json"
RESTORED = "restored.json"  # marks a run copied back from a bench archive (bench/archive.py)


def is_restored(run: str) -> bool:
    return os.path.isfile(os.path.join(run, RESTORED))


def weightless(run: str) -> bool:
    """A run restored from an archive that has no checkpoint (it never has one, unless it was
    trained on since)."""
    return is_restored(run) and not has_checkpoint(run)


def lasting(inputs: dict[str, object]) -> dict[str, object]:
    """What of a job's recorded :func:`inputs` a restored run is checked against: the dataset
    tables' names and sizes. A restored run comes without checkpoints and onto a new machine,
    where the teachers it learned from and the pretrained backbone (not archived) may be
    trained again and the data generated again (other modification times); the table names
    such runs."""
    data = inputs.get("data")
    return {"data": [row[:2] for row in data] if isinstance(data, list) else data}


def portable(sig: Any) -> Any:
    """A recorded signature with its config named ``configs/<kind>/<file>`` wherever the
    checkout it was read from sits (``/a/bevkd/configs/student/bevdepth.yaml`` and
    ``/b/bevkd/configs/...`` are the same job; what the file says is compared through the
    resolved config). Anything that is not a signature comes back as it is."""
    if not (isinstance(sig, list) and len(sig) > 1 and sig[0] == "train"
            and isinstance(sig[1], str) and os.path.isabs(sig[1])):
        return sig
    parts = sig[1].replace(os.sep, "/").split("/")
    if len(parts) < 4 or parts[-3] != "configs":
        return sig
    return [sig[0], "/".join(parts[-3:]), *sig[2:]]


def roots(sig: Any) -> tuple[str, str] | None:
    """``(runs folder, data folder)`` a signature names: its ``--out`` folder's parent and its
    ``--data``; None when it names them not."""
    try:
        out, data = sig[sig.index("--out") + 1], sig[sig.index("--data") + 1]
    except (ValueError, IndexError, AttributeError, TypeError):
        return None
    if not (isinstance(out, str) and isinstance(data, str)):
        return None
    return os.path.dirname(os.path.normpath(out)), os.path.normpath(data)


def rebased(obj: Any, moves: list[tuple[str, str]]) -> Any:
    """``obj`` (strings, in lists and dicts at any depth) with each path under an ``old``
    folder of ``moves`` (``[(old, new), ...]``) moved under its ``new`` one, also as the value
    of a ``key=value`` string (a ``--set``)."""
    if isinstance(obj, list):
        return [rebased(v, moves) for v in obj]
    if isinstance(obj, dict):
        return {k: rebased(v, moves) for k, v in obj.items()}
    if not isinstance(obj, str):
        return obj
    # the whole string (a path), else the value of a ``--set`` (after its first "="); the
    # deepest folder first (the bench's default data folder lies in its runs folder)
    for key, value in (("", obj), (obj.split("=", 1)[0] + "=", obj.split("=", 1)[-1])):
        for old, new in sorted(moves, key=lambda m: -len(m[0])):
            if os.path.isabs(value) and os.path.isabs(old) and _under(value, old):
                rest = os.path.relpath(value, old)
                return key + (new if rest == "." else os.path.join(new, rest))
        if "=" not in obj:
            break
    return obj


def _under(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or lies in it (by whole path components)."""
    path, folder = os.path.normpath(path), os.path.normpath(folder)
    return os.path.commonpath([path, folder]) == folder


def moves(run: str, saved: Any, now: Any) -> list[tuple[str, str]]:
    """The folders a run restored from an archive (:data:`RESTORED`) moved between: its
    recorded signature's runs and data folders to the ones ``now`` names (empty for a run that
    was not restored, or did not move). A restored run may land on a machine whose paths
    differ; a run trained in place must have the paths it records."""
    if not is_restored(run):
        return []
    was, new = roots(saved), roots(now)
    if was is None or new is None:
        return []
    return [(a, b) for a, b in zip(was, new) if a != b]


def signature(cmd: list[str]) -> list[str]:
    """What makes a job's result: its train command without the interpreter, ``--resume``
    and the thread count (recorded as it is; compared through :func:`portable`, so that
    older checkouts still read what a newer one records)."""
    out, args = [], cmd[cmd.index("train"):]
    i = 0
    while i < len(args):
        if args[i] == "--resume":
            i += 1
            continue
        if args[i] == "--set" and args[i + 1].startswith("train.threads="):
            i += 2
            continue
        out.append(args[i])
        i += 1
    return out


def set_values(cmd: list[str]) -> list[str]:
    """The ``--set`` values of a `bevkd train` command line, in order."""
    return [cmd[i + 1] for i, a in enumerate(cmd[:-1]) if a == "--set"]


def file_stamp(path: str) -> list[int] | None:
    """``[size, mtime_ns]`` of a file (None where there is none): which making of it."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def checkpoint_stamp(run: str) -> list[int] | None:
    """``[size, mtime_ns]`` of a run's final checkpoint (None without one): which training of
    that run another run read, as :func:`inputs` records it."""
    return file_stamp(_last_checkpoint(run))


def made(record: dict[str, Any] | None, run: str) -> list[int] | None:
    """Which training of ``run`` this is, as the runs that read it record it in ``inputs``:
    its job ``record``'s ``made`` (:func:`record_made`), else (a run finished before the bench
    recorded it) its checkpoint's stamp; None for a restored run without the record."""
    kept = (record or {}).get("made")
    return kept if isinstance(kept, list) else checkpoint_stamp(run)


def read_record(run: str) -> dict[str, Any]:
    """A run's job record (:data:`JOB_FILE`: signature, inputs, made); empty when it has none
    or it does not read."""
    try:
        with open(os.path.join(run, JOB_FILE)) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def record_made(run: str) -> None:
    """Adds ``"made"``, the run's :func:`checkpoint_stamp`, to a finished run's job record:
    the training of it that the runs reading it name in their ``inputs``, kept where the
    checkpoint is not (an archive), so a report can tell which runs learned from this one."""
    path = os.path.join(run, JOB_FILE)
    made = checkpoint_stamp(run)
    if made is None or not os.path.isfile(path):
        return
    with open(path) as f:
        saved = json.load(f)
    write_json(path, {**saved, "made": made})


def record_outside(run: str, cmd: list[str], stamps: dict[str, object]) -> str | None:
    """Give a finished run that the bench did not start (no :data:`JOB_FILE`: trained by hand
    with the job's command, e.g. a teacher trained again to check that it reproduces) the
    record the bench writes: its signature, ``stamps`` (:func:`inputs` now) and ``made``.
    Without it the run is reused all the same, but its archived copy would replace one that
    names what it learned from with one that names nothing, and no note could say the two
    are one training (:mod:`~bevkd.bench.reproduced`). Only where its ``meta.json`` command is
    the job's (:func:`signature`) and every input it reads now was made before its first
    attempt started (else it may have read an earlier making of it): ``first_started_unix``;
    a run whose meta predates that field is judged by its local-time ``started``, which is
    the last attempt's, so a resumed one is refused. Returns why it was not recorded, or
    None (recorded, or it had a record)."""
    if os.path.isfile(os.path.join(run, JOB_FILE)):
        return None
    try:
        with open(os.path.join(run, "meta.json")) as f:
            meta = json.load(f)
        ran = meta["command"].split()
        if "first_started_unix" in meta:
            started = float(meta["first_started_unix"])
        elif "--resume" in ran or "started_unix" in meta:
            return ("it was resumed, and its meta.json does not say when its first attempt "
                    "started")
        else:
            started = time.mktime(time.strptime(meta["started"], "%Y-%m-%d %H:%M:%S"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "its meta.json does not say the command and start it ran with"
    if "train" not in ran or portable(signature(ran)) != portable(signature(cmd)):
        return "it ran another command than this job's"
    started += 1.0  # (recorded to the second: made within it is not after)
    later = sorted(k for k, v in stamps.items() if k != "data" and isinstance(v, list)
                   and len(v) == 2 and v[1] / 1e9 > started)
    later += ["data"] if any(len(t) == 3 and t[2] / 1e9 > started
                             for t in stamps.get("data") or []) else []
    if later:
        return f"{', '.join(later)} was made after it started"
    write_json(os.path.join(run, JOB_FILE), {"signature": signature(cmd), "inputs": stamps})
    record_made(run)
    return None


def inputs(job: Job, cmd: list[str], runs: str, data: str) -> dict[str, object]:
    """What a job reads besides its config, as ``{name: [size, mtime_ns]}``: the final
    checkpoint of each run it needs, each file an override names, the dataset's tables."""
    out: dict[str, object] = {n: checkpoint_stamp(os.path.join(runs, n)) for n in job.needs}
    for key, value in (s.split("=", 1) for s in set_values(cmd) if "=" in s):
        if os.path.isfile(value):
            out[key] = file_stamp(value)
    out["data"] = data_stamps(data)
    return out


def data_stamps(data: str) -> list[list]:
    """``[[table path in data, size, mtime_ns], ...]`` of the dataset's tables: which making
    of the dataset a run read (:func:`inputs`' ``"data"``)."""
    tables = sorted(glob.glob(os.path.join(data, "v1.0-*", "*.json")))
    return [[os.path.relpath(t, data), *(file_stamp(t) or [])] for t in tables]


ADVICE = "; use another --runs folder or delete that run"  # ends each mismatch


def mismatch(run: str, cmd: list[str], now_inputs: dict[str, object] | None = None,
             config: "ExperimentConfig | None" = None) -> str | None:
    """Why ``run`` cannot serve ``cmd`` (None when it can or records nothing): another
    command line or other inputs (when the run records the bench's; ``now_inputs`` from
    :func:`inputs`), or a config other than the one ``cmd`` resolves to now (a preset or
    config file edited since; checked for any run with a ``config.yaml``, also one trained
    before the bench recorded commands, or by hand). ``config``: :func:`resolved_config` of
    ``cmd`` where the caller has it already."""
    path = os.path.join(run, JOB_FILE)
    moved: list[tuple[str, str]] = []  # a restored run's folders on this machine
    if os.path.isfile(path):
        try:
            with open(path) as f:
                saved = json.load(f)
            before = portable(saved["signature"])  # also one recorded with the full path
        except (OSError, ValueError, KeyError) as err:
            return f"{path} is unreadable ({err}); delete that run"
        now = portable(signature(cmd))
        moved = moves(run, before, now)
        before = rebased(before, moved)
        if before != now:
            gone = [a for a in before if a not in now]
            new = [a for a in now if a not in before]
            what = f"{gone} -> {new}" if gone or new else "the order of its arguments"
            return f"{run} was trained by another command (differs in {what})" + ADVICE
        if now_inputs is not None and "inputs" in saved:
            was, now_in = saved["inputs"], now_inputs
            if is_restored(run):
                was, now_in = lasting(was), lasting(now_in)
            changed = sorted(k for k in set(was) | set(now_in) if was.get(k) != now_in.get(k))
            if changed:
                return (f"{run} was trained from other inputs: {changed} changed since (a "
                        "teacher retrained, the data or backbone made again)" + ADVICE)
    if os.path.isfile(os.path.join(run, "config.yaml")):
        from ..engine.run import load_run_config

        keys = differing_keys(rebased(_plain(load_run_config(run)), moved),
                              _plain(config if config is not None else resolved_config(cmd)))
        if keys:
            return (f"{run} was trained with another config (differs in {keys[:6]}: the "
                    "preset or config file changed since)" + ADVICE)
    return None


def resolved_config(cmd: list[str]) -> "ExperimentConfig":
    """The config a `bevkd train` command line resolves to now (paths made absolute)."""
    from ..engine.config import load_experiment
    from ..engine.run import absolute_paths

    args = cmd[cmd.index("train") + 1:]
    return absolute_paths(load_experiment(args[0], args[args.index("--preset") + 1],
                                          set_values(args)))


def _plain(cfg: "ExperimentConfig") -> dict:
    d = to_dict(cfg)
    d.get("train", {}).pop("threads", None)  # how fast, not what is trained
    return d


def _with_out(cmd: list[str], run: str | None) -> list[str]:
    """``cmd`` with its ``--out`` folder replaced (``None``: blanked, to compare commands)."""
    i = cmd.index("--out") + 1
    return [*cmd[:i], run, *cmd[i + 1:]]


def twin(job: Job, cmd: list[str], stamps: dict[str, object], runs: str,
         val_split: str) -> str | None:
    """A finished run in ``runs`` made by ``cmd`` but for its ``--out`` folder, from the same
    inputs and to the same config: e.g. an ablation's run once the preset adopts its setting
    for the method's row. Its result is the one ``job`` would train on that run's machine (a
    CPU run reproduces to the digit there; the table names its runs' machines when they
    differ), so the bench reads it instead of training it again. Only runs that recorded
    their bench command qualify; a candidate whose records do not read is passed over. A job
    with a folder of its own (finished or not) keeps it: no twin."""
    if "--out" not in cmd or os.path.exists(os.path.join(runs, job.name)):
        return None
    now = portable(signature(cmd))
    want = _with_out(now, None)
    for name in sorted(os.listdir(runs)) if os.path.isdir(runs) else ():
        other = os.path.join(runs, name)
        if name == job.name or not is_finished(other, val_split):
            continue
        try:
            with open(os.path.join(other, JOB_FILE)) as f:
                saved = portable(json.load(f)["signature"])
            saved = rebased(saved, moves(other, saved, now))
            if not (isinstance(saved, list) and all(isinstance(a, str) for a in saved)
                    and "--out" in saved[:-1] and _with_out(saved, None) == want):
                continue
            if mismatch(other, _with_out(cmd, other), stamps) is None:
                return other
        except (OSError, ValueError, KeyError, TypeError, AttributeError, BevkdError):
            continue
    return None


@contextmanager
def runs_lock(runs: str, wait: bool = True):
    """The runs folder's lock for a ``with`` block (:func:`_lock`), the runs folder made first.
    ``wait=False``: ``None`` when another bench holds it, instead of the error."""
    os.makedirs(runs, exist_ok=True)
    try:
        lock = _lock(runs)
    except BevkdError:
        if wait:
            raise
        yield None
        return
    with lock:
        yield lock


def _lock(runs: str):
    """An exclusive lock on ``RUNS/.bench.lock`` (released when the returned file closes)."""
    import fcntl

    f = open(os.path.join(runs, ".bench.lock"), "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "?"
        f.close()
        raise BevkdError(f"another bevkd bench (pid {holder}) is using {runs}; wait for it or "
                         "use another --runs folder") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    return f


PRETRAIN = "backbone pretraining"  # its name in the bench's log


def _stop(running: dict, log, grace: float = 120.0) -> None:
    """SIGTERM to every running process, then wait (``grace`` seconds, then SIGKILL): a
    training (and the backbone pretraining) saves a checkpoint after its step and exits."""
    for proc, _, _ in running.values():
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace
    for name, (proc, _, logf) in running.items():
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        logf.close()
        log(f"[bench] stopped {name} (resumable)")


def _epochs(jobs: list[Job], preset: str, extra: tuple[str, ...],
            configs: "Mapping[str, ExperimentConfig] | None" = None) -> dict[str, int]:
    """Job -> epochs it trains (its resolved config: from ``configs`` where it is there), for
    the time estimate; a job whose config does not resolve here is left out (it fails with
    its own message when it runs)."""
    from ..engine.config import load_experiment

    out = {}
    for job in jobs:
        if configs is not None and job.name in configs:
            out[job.name] = configs[job.name].train.epochs
            continue
        try:
            out[job.name] = load_experiment(job.config, preset,
                                            [*job.overrides, *extra]).train.epochs
        except (BevkdError, OSError, ValueError, TypeError, KeyError):
            continue
    return out


def run_jobs(jobs: list[Job], preset: str, data: str, runs: str, parallel: int,
             threads: int = 1, val_split: str = "synth_val", extra: tuple[str, ...] = (),
             camera_extra: tuple[str, ...] = (), log=print, poll: float = 1.0,
             train: bool = True, status_every: float = 600.0, first_status: float = 120.0,
             on_final: Callable[[JobResult], None] | None = None,
             lock_held: bool = False,
             pretraining: Pretraining | None = None,
             configs: "Mapping[str, ExperimentConfig] | None" = None) -> dict[str, JobResult]:
    """Run ``jobs`` (at most ``parallel`` at once) and return their results by name; with
    ``train=False`` only judge them (finished runs ``reused``, the rest ``missing``). Once the
    first trainings start and whenever a job ends, the log says how many jobs are final and
    how long the bench may still take; every ``status_every`` seconds also where each running
    training stands (:mod:`bevkd.bench.eta`), the first time after ``first_status`` seconds
    (if sooner): the trainings' progress lines price the jobs before any has finished. ``on_final`` is called with each finished
    result (trained or reused) as soon as it is known: the bench archives it there
    (:mod:`bevkd.bench.archive`), so a bench stopped for good keeps what it finished.
    ``pretraining``: started first, beside the jobs that need no camera backbone
    (:class:`Pretraining`); ``train=False`` ignores it. ``configs``: job -> its resolved
    config, where the caller has them (the estimate's epochs; resolved here otherwise)."""
    if parallel < 1:
        raise BevkdError(f"parallel must be at least 1, got {parallel}")
    if not train:
        judged = {job.name: _judge(job, preset, data, runs, threads, val_split, extra,
                                   camera_extra, log) for job in jobs}
        for res in judged.values():
            if on_final and res.status == "reused":
                on_final(res)
        return judged
    os.makedirs(runs, exist_ok=True)
    lock = None if lock_held else _lock(runs)  # lock_held: the caller holds runs_lock
    results: dict[str, JobResult] = {}
    pending = resumed_first(jobs, runs, val_split)
    # checked (neither to reuse nor refused) and waiting for a slot: the inputs it was
    # checked against, which its bench_job.json then records
    ready: dict[str, dict[str, object]] = {}
    running: dict[str, tuple[subprocess.Popen, float, object]] = {}
    # where each running training's log stood at its start: its progress lines are past it
    # (the lines before are an earlier attempt's, ahead of the checkpoint it resumes from)
    log_start: dict[str, int] = {}
    said_progress = False
    # the backbone's pretraining while it runs: {name: (process, start, log file)} as running
    # (the camera jobs wait while it is there)
    pretrain: dict[str, tuple[subprocess.Popen, float, object]] = {}
    pretrain_failed = False
    epochs = _epochs(jobs, preset, extra, configs)
    last_status, status_due = time.perf_counter(), min(first_status, status_every)

    def status(with_running: bool) -> None:
        now = time.perf_counter()
        try:
            live = {n: live_progress(os.path.join(runs, n), log_start.get(n, 0))
                    for n in running}
            pre = (pretrain_progress(pretraining.log, log_start.get(PRETRAIN, 0))
                   if pretrain else None)
            lines = ([running_line({**({PRETRAIN: pre} if pretrain else {}), **live})]
                     if with_running and (running or pretrain) else [])
            lines.append(progress_line(
                jobs, results, {n: now - t for n, (_, t, _) in running.items()}, parallel,
                epochs, {n: p for n, p in live.items() if p is not None},
                (pre.left if pre is not None else None, pretraining.slots) if pretrain
                else None))
        except Exception as e:  # noqa: BLE001 - a report must never stop the trainings
            lines = [f"[bench] {len(results)} of {len(jobs)} jobs final (no estimate: {e!r})"]
        for line in lines:
            log(line)

    def terminated(signum, frame):  # noqa: ARG001 - signal handler signature
        raise KeyboardInterrupt  # SIGTERM stops the bench as Ctrl-C does

    def judge(job: Job) -> bool:
        """Decide what ``job`` is once what it needs is final: skipped, failed, reused (then
        True: it leaves ``pending``) or ready to train (``ready``, False); False while a job
        it needs is not final yet."""
        run = os.path.join(runs, job.name)
        if job.model not in NO_CAMERA and pretrain:
            return False  # judged once the backbone it reads is made
        needs = [results.get(n) for n in job.needs]
        if any(r is not None and r.status in ("failed", "skipped") for r in needs):
            results[job.name] = JobResult(job, run, "skipped")
            log(f"[bench] skip {job.name}: a job it needs failed")
            return True
        if any(r is None for r in needs):
            return False  # judged once what it reads is final
        cmd = command(job, preset, data, runs, threads, extra, camera_extra)
        stamps = inputs(job, cmd, runs, data)
        found = verdict(job, cmd, stamps, runs, val_split, strict=True)
        if found.status == "failed":
            results[job.name] = found
            log(f"[bench] FAILED {job.name}: {found.why}")
            return True
        if found.status == "reused":
            results[job.name] = found
            log(f"[bench] reuse {job.name} (finished earlier)" if found.run == run else
                f"[bench] reuse {os.path.basename(found.run)} for {job.name} (the same training)")
            if found.run == run and not os.path.isfile(os.path.join(run, JOB_FILE)):
                why = record_outside(run, cmd, stamps)
                log(f"[bench] {job.name} was trained outside the bench with its command: "
                    "recorded what it read" if why is None else
                    f"[bench] {job.name} has no job record and none can be written ({why}): "
                    "an archive keeps its earlier copy")
            if on_final:
                on_final(found)
            return True
        bare = [n for n in job.needs if weightless(os.path.join(runs, n))]
        if bare:  # e.g. a twin that served it at restore and does not now
            results[job.name] = JobResult(job, run, "failed")
            log(f"[bench] FAILED {job.name}: it trains from {', '.join(bare)}, restored from "
                "an archive without the checkpoint it needs; run the bench again with "
                "--archive (it trains such runs again first) or delete "
                f"{', '.join(os.path.join(runs, n) for n in bare)}")
            return True
        if job.model not in NO_CAMERA and pretrain_failed:  # to train, with no backbone
            results[job.name] = JobResult(job, run, "skipped")
            log(f"[bench] skip {job.name}: the backbone pretraining failed")
            return True
        ready[job.name] = stamps
        return False

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, terminated) if main else None
    try:
        if pretraining is not None:
            logf = open(pretraining.log, "a")
            log_start[PRETRAIN] = logf.tell()  # (an earlier bench's lines are before it)
            pretrain[PRETRAIN] = (subprocess.Popen(
                pretraining.cmd, stdout=logf, stderr=subprocess.STDOUT,
                env={**os.environ, "OMP_NUM_THREADS": str(pretraining.threads)}),
                time.perf_counter(), logf)
        while pending or running or pretrain:
            for name, (proc, start, logf) in list(pretrain.items()):
                if proc.poll() is None:
                    continue
                logf.close()
                del pretrain[name]
                pretrain_failed = proc.returncode != 0 or not os.path.isfile(pretraining.out)
                log(f"[bench] {'FAILED' if pretrain_failed else 'done'} {name} "
                    f"({(time.perf_counter() - start) / 60:.1f} min)"
                    + (f"; see {pretraining.log}" if pretrain_failed else ""))
            # judge every job whose needs are final, again after each pass that made one
            # final (a reuse can make its dependents judgeable), before any slot is filled:
            # a partly trained job first in ``pending`` must not lose its slot to a fresh one
            # while what it needs is still being judged
            judged_one = True
            while judged_one:
                judged_one = False
                for job in list(pending):
                    if job.name not in ready and judge(job):
                        pending.remove(job)
                        judged_one = True
            for job in [j for j in pending if j.name in ready]:
                if len(running) + (pretraining.slots if pretrain else 0) >= parallel:
                    break
                run = os.path.join(runs, job.name)
                # built now: --resume depends on the checkpoint there at start
                cmd = command(job, preset, data, runs, threads, extra, camera_extra)
                write_json(os.path.join(run, JOB_FILE),
                           {"signature": signature(cmd), "inputs": ready.pop(job.name)})
                logf = open(os.path.join(run, "train.log"), "a")
                log_start[job.name] = logf.tell()
                proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                                        env={**os.environ, "OMP_NUM_THREADS": str(threads)})
                running[job.name] = (proc, time.perf_counter(), logf)
                pending.remove(job)
                log(f"[bench] start {job.name}"
                    + (" (resumes its checkpoint)" if "--resume" in cmd else ""))
            if running and not said_progress:
                # where a resumed bench stands, once this pass has judged every job it could
                # reuse (a finished ablation after the first start counts as final, not to do)
                status(False)
                said_progress = True
            for name, (proc, start, logf) in list(running.items()):
                if proc.poll() is None:
                    continue
                logf.close()
                job = next(j for j in jobs if j.name == name)
                run = os.path.join(runs, name)
                ok = proc.returncode == 0 and is_finished(run, val_split)
                if ok:  # before on_final archives it
                    record_made(run)
                results[name] = JobResult(job, run, "done" if ok else "failed",
                                          time.perf_counter() - start)
                del running[name]
                log(f"[bench] {'done' if ok else 'FAILED'} {name} "
                    f"({results[name].seconds / 60:.1f} min)"
                    f"{'' if ok else f'; see {run}/train.log'}")
                if ok and on_final:
                    on_final(results[name])
                status(False)
                last_status = time.perf_counter()
            if (running or pretrain) and time.perf_counter() - last_status >= status_due:
                status(True)
                last_status, status_due = time.perf_counter(), status_every
            if pending or running or pretrain:
                time.sleep(poll)
    finally:
        if main:  # first: a second SIGTERM while stopping ends the bench at once
            signal.signal(signal.SIGTERM, previous)
        # SIGTERM to every process before waiting for any: each saves its checkpoint
        _stop({**pretrain, **running}, log)
        if lock is not None:
            lock.close()
    return {j.name: results[j.name] for j in jobs if j.name in results}  # plan order


def verdict(job: Job, cmd: list[str], stamps: dict[str, object], runs: str, val_split: str,
            strict: bool) -> JobResult:
    """What a job's run folder makes of it, before any training: ``failed`` (``why`` says: its
    recorded command or inputs differ from ``cmd`` / ``stamps``), ``reused`` (its own finished
    run, or a :func:`twin`'s) or ``missing`` (to train). ``strict`` (a bench about to train)
    refuses a mismatched run finished or not, since training would resume or overwrite it; a
    report (``strict=False``) only refuses a finished one and looks for a twin of the rest."""
    run = os.path.join(runs, job.name)
    finished = is_finished(run, val_split)
    why = mismatch(run, cmd, stamps) if finished or strict else None
    if why:
        return JobResult(job, run, "failed", why=why)
    if finished:
        return JobResult(job, run, "reused")
    same = twin(job, cmd, stamps, runs, val_split)
    return JobResult(job, same, "reused") if same else JobResult(job, run, "missing")


def refused_runs(jobs: list[Job], preset: str, data: str, runs: str, threads: int,
                 extra: tuple[str, ...] = (), camera_extra: tuple[str, ...] = (),
                 configs: "dict[str, ExperimentConfig] | None" = None,
                 data_made: bool = True) -> list[str]:
    """Why the run folders ``runs`` already holds for ``jobs`` cannot serve them (one line
    each; empty where every one can): another recorded command (e.g. another ``--data``,
    preset or override), a config other than the one the job resolves to now
    (:func:`mismatch` without the inputs; ``configs``: job -> its resolved config, where the
    caller has them), or other dataset tables than the run read (:func:`_other_tables`;
    ``data_made`` False: the bench is about to generate ``data``, which no run trained here
    read; by name and size alone for a run restored from an archive, whose folders are read
    as this bench's, so that its command cannot tell the data apart). A training
    bench checks this before it generates data, pretrains or trains anything: the job would
    be failed when its turn came, and the jobs that need it skipped, hours into a bench that
    then cannot give its table. The other inputs (teachers' checkpoints, the backbone) are
    judged at each job's turn, once what it reads is final. A job without a folder of its
    own (a :func:`twin` may serve it) is not judged here."""
    tables = data_stamps(data) if data_made else None
    out = []
    for job in jobs:
        run = os.path.join(runs, job.name)
        if not os.path.isdir(run):
            continue
        why = mismatch(run, command(job, preset, data, runs, threads, extra, camera_extra),
                       config=(configs or {}).get(job.name))
        if why is None:
            why = _other_tables(run, data, tables)
        if why:
            out.append(why)
    return out


def _other_tables(run: str, data: str, tables: list[list] | None) -> str | None:
    """Why ``run`` did not read the dataset ``data`` whose tables are ``tables``
    (:func:`data_stamps`; None: a dataset still to be generated), as its job record tells
    (None: it did, or records no inputs). A run trained here recorded when each table was
    made, which a dataset generated now cannot match; a restored run, the tables' names and
    sizes, which it may."""
    was = read_record(run).get("inputs")
    if not isinstance(was, dict) or not was.get("data"):
        return None
    if tables is None:
        if is_restored(run):
            return None
        return (f"{run} was trained on the dataset {data} held before; it is gone or was cut "
                "short, and one generated now is another making" + ADVICE)
    was, now = {"data": was["data"]}, {"data": tables}
    if is_restored(run):
        was, now = lasting(was), lasting(now)
    if was == now:
        return None
    return (f"{run} was trained on other data than {data} holds (its tables differ in name, "
            "size or time of making: another dataset, or this one made again)" + ADVICE)


def _judge(job: Job, preset: str, data: str, runs: str, threads: int, val_split: str,
           extra: tuple[str, ...], camera_extra: tuple[str, ...], log) -> JobResult:
    """A job's finished run (or twin) taken as it is, after the checks a reuse passes; else
    missing (``--report-only``)."""
    cmd = command(job, preset, data, runs, threads, extra, camera_extra)
    found = verdict(job, cmd, inputs(job, cmd, runs, data), runs, val_split, strict=False)
    if found.status == "failed":
        log(f"[bench] FAILED {job.name}: {found.why}")
    return found

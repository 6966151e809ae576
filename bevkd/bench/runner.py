"""Run the benchmark's trainings as `bevkd train` subprocesses, in parallel where cores allow.

Resumable: a job whose run folder already holds its final metrics is not redone; one with a
checkpoint but no metrics is continued with ``--resume``. A failed job is reported (its log
is ``RUN/train.log``) and the jobs that need it are skipped; the others go on.

Each run folder records the training command it was started with (``RUN/bench_job.json``);
a bench whose command for that job differs (another preset, dataset, override, teacher), or
resolves to another config than the run's ``config.yaml`` (a preset file edited since), does
not reuse or resume it but fails the job with a message, since a table silently mixing two
settings would be wrong.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import differing_keys, to_dict
from .plan import TEACHER_JOBS, Job, teacher_roles

if TYPE_CHECKING:
    from ..engine.config import ExperimentConfig

@dataclass
class JobResult:
    job: Job
    run: str
    status: str          # done | reused | failed | skipped
    seconds: float = 0.0


def is_finished(run: str, val_split: str) -> bool:
    return (os.path.isfile(os.path.join(run, "eval", val_split, "metrics.json"))
            and os.path.isfile(os.path.join(run, "timing.json")))


# jobs whose model has no camera backbone (the rest take the benchmark's backbone weights)
NO_CAMERA = ("teacher", "label_encoder")


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
    if os.path.isfile(os.path.join(run, "checkpoints", "last.ckpt")):
        cmd.append("--resume")
    return cmd


JOB_FILE = "bench_job.json"


def signature(cmd: list[str]) -> list[str]:
    """What makes a job's result: its train command without the interpreter, ``--resume``
    and the thread count."""
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


def mismatch(run: str, cmd: list[str]) -> str | None:
    """Why ``run`` cannot serve ``cmd`` (None when it can or records nothing): another
    command line (when the run records the bench's), or a config other than the one ``cmd``
    resolves to now (a preset or config file edited since; checked for any run with a
    ``config.yaml``, also one trained before the bench recorded commands or by hand)."""
    path = os.path.join(run, JOB_FILE)
    if os.path.isfile(path):
        with open(path) as f:
            before = json.load(f)["signature"]
        now = signature(cmd)
        if before != now:
            diff = sorted(set(before) ^ set(now))
            return (f"{run} was trained by another command (differs in {diff}); use another "
                    "--runs folder or delete that run")
    if os.path.isfile(os.path.join(run, "config.yaml")):
        from ..engine.run import load_run_config

        keys = differing_keys(_plain(load_run_config(run)), _plain(resolved_config(cmd)))
        if keys:
            return (f"{run} was trained with another config (differs in {keys[:6]}: the "
                    "preset or config file changed since); use another --runs folder or "
                    "delete that run")
    return None


def resolved_config(cmd: list[str]) -> "ExperimentConfig":
    """The config a `bevkd train` command line resolves to now (paths made absolute)."""
    from ..engine.config import load_experiment
    from ..engine.run import absolute_paths

    args = cmd[cmd.index("train") + 1:]
    sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    return absolute_paths(load_experiment(args[0], args[args.index("--preset") + 1], sets))


def _plain(cfg: "ExperimentConfig") -> dict:
    d = to_dict(cfg)
    d.get("train", {}).pop("threads", None)  # how fast, not what is trained
    return d


def run_jobs(jobs: list[Job], preset: str, data: str, runs: str, parallel: int,
             threads: int = 1, val_split: str = "synth_val", extra: tuple[str, ...] = (),
             camera_extra: tuple[str, ...] = (), log=print) -> dict[str, JobResult]:
    """Run ``jobs`` (at most ``parallel`` at once) and return their results by name."""
    os.makedirs(runs, exist_ok=True)
    results: dict[str, JobResult] = {}
    pending = list(jobs)
    running: dict[str, tuple[subprocess.Popen, float, object]] = {}
    while pending or running:
        for job in list(pending):
            run = os.path.join(runs, job.name)
            if any(results.get(n) and results[n].status in ("failed", "skipped")
                   for n in job.needs):
                results[job.name] = JobResult(job, run, "skipped")
                pending.remove(job)
                log(f"[bench] skip {job.name}: a job it needs failed")
                continue
            cmd = command(job, preset, data, runs, threads, extra, camera_extra)
            why = mismatch(run, cmd)
            if why:
                results[job.name] = JobResult(job, run, "failed")
                pending.remove(job)
                log(f"[bench] FAILED {job.name}: {why}")
            elif is_finished(run, val_split):
                results[job.name] = JobResult(job, run, "reused")
                pending.remove(job)
                log(f"[bench] reuse {job.name} (finished earlier)")
            elif len(running) < parallel and all(
                    n in results and results[n].status in ("done", "reused") for n in job.needs):
                os.makedirs(run, exist_ok=True)
                with open(os.path.join(run, JOB_FILE), "w") as f:
                    json.dump({"signature": signature(cmd)}, f, indent=1)
                logf = open(os.path.join(run, "train.log"), "a")
                proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                                        env={**os.environ, "OMP_NUM_THREADS": str(threads)})
                running[job.name] = (proc, time.perf_counter(), logf)
                pending.remove(job)
                log(f"[bench] start {job.name}")
        for name, (proc, start, logf) in list(running.items()):
            if proc.poll() is None:
                continue
            logf.close()
            job = next(j for j in jobs if j.name == name)
            run = os.path.join(runs, name)
            ok = proc.returncode == 0 and is_finished(run, val_split)
            results[name] = JobResult(job, run, "done" if ok else "failed",
                                      time.perf_counter() - start)
            del running[name]
            log(f"[bench] {'done' if ok else 'FAILED'} {name} "
                f"({results[name].seconds / 60:.1f} min){'' if ok else f'; see {run}/train.log'}")
        time.sleep(0.5)
    return results

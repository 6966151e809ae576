"""A bench's finished runs kept without their checkpoints, so that its table outlives the
machine that trained it (``bevkd bench --archive DIR``).

A tiny bench trains for most of a day on two cores, longer than a CPU machine or its scratch
disk may last: the runs folder can be lost with every checkpoint in it. The archive keeps of
each finished run what its row of the table is made of and what says how it was made: its
config, command and inputs (``bench_job.json``), provenance (``meta.json``), timing, training
logs (the loss curves, as CSV) and evaluations' metrics, about 100 KB per run, small enough
to commit beside the table. It leaves out the checkpoints, the detections (``results.json``)
and the console log.

A later bench given the same archive **restores** each planned job that its runs folder does
not hold but the archive holds finished: the folder is copied back, marked by
:data:`~bevkd.bench.runner.RESTORED`, and the job counts as finished. A job whose checkpoint a
training still to do needs (a teacher, the label encoder) is not restored but trained again,
and students restored beside it then learned from an earlier training of it: a restored run's
inputs are compared by what survives a new machine (the dataset tables' names and sizes), not
by the checkpoints' identities, and the table names the restored runs. Its step time and
latency, which depend on the network and not on its weights, are timed on the network its
config builds (:func:`timing_model`); the BEV picture draws only models with a checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import TYPE_CHECKING

from .runner import RESTORED, is_finished

if TYPE_CHECKING:
    import torch

    from ..engine.config import ExperimentConfig
    from .plan import Job

# what a run folder holds that the archive leaves out: the weights (tens of MB each), the
# detections of every evaluation (their metrics are kept), the console log and the
# TensorBoard event files (the CSV logs beside them hold the same scalars at half the size)
LEFT_OUT = ("checkpoints", "results.json", "train.log", "events.out.tfevents.*")


def archive_run(run: str, archive: str) -> str:
    """Copy ``run`` (without :data:`LEFT_OUT`) to ``ARCHIVE/<run's folder name>``, replacing
    an older copy as one step (never half a copy under the final name). Returns the copy."""
    dest = os.path.join(archive, os.path.basename(os.path.normpath(run)))
    tmp, old = f"{dest}.tmp", f"{dest}.old"
    for path in (tmp, old):
        shutil.rmtree(path, ignore_errors=True)
    os.makedirs(archive, exist_ok=True)
    shutil.copytree(run, tmp, ignore=shutil.ignore_patterns(*LEFT_OUT, RESTORED))
    if os.path.isdir(dest):
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


def restorable(jobs: list[Job], runs: str, archive: str, val_split: str,
               training: bool = True) -> list[Job]:
    """The jobs of ``jobs`` that :func:`restore` copies back: no folder in ``runs``, a finished
    run in ``archive``, and (when ``training``) no job still to train needs its checkpoint.
    Leaving a job out may make it one to train, whose own needs then stay out too."""
    held = {j.name for j in jobs if not os.path.exists(os.path.join(runs, j.name))
            and is_finished(os.path.join(archive, j.name), val_split)}
    while training:
        to_train = [j for j in jobs if j.name not in held
                    and not is_finished(os.path.join(runs, j.name), val_split)]
        needed = {n for j in to_train for n in j.needs} & held
        if not needed:
            break
        held -= needed
    return [j for j in jobs if j.name in held]


def restore(jobs: list[Job], runs: str, archive: str, val_split: str = "synth_val",
            training: bool = True, log=print) -> list[str]:
    """Copy the :func:`restorable` jobs' runs from ``archive`` into ``runs``, each marked as
    restored; returns their names."""
    names = []
    for job in restorable(jobs, runs, archive, val_split, training):
        src, dest = os.path.join(archive, job.name), os.path.join(runs, job.name)
        tmp = f"{dest}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(runs, exist_ok=True)
        shutil.copytree(src, tmp)
        with open(os.path.join(tmp, RESTORED), "w") as f:
            json.dump({"from": os.path.abspath(src), "at": time.strftime("%Y-%m-%d %H:%M:%S")}, f)
        os.replace(tmp, dest)
        names.append(job.name)
    if names:
        log(f"[bench] restored from {archive} (finished, no checkpoints): {', '.join(names)}")
    return names


def is_restored(run: str) -> bool:
    return os.path.isfile(os.path.join(run, RESTORED))


def timing_model(run: str) -> tuple[ExperimentConfig, torch.nn.Module, bool]:
    """``(config, model, trained)``: the run's trained model, or where its checkpoint is gone
    (a restored run) the network its config builds, with initial weights and no teacher
    weights loaded, in its training layout. What one forward pass or training step costs
    depends on the network, not on its weights; what decoding costs does not (NMS takes the
    longer the more boxes score high), so ``trained`` says which the caller has."""
    import torch

    from ..builder import build_model, without_init_weights
    from ..engine.run import CKPT_DIR, load_run_config, load_trained

    if os.path.isfile(os.path.join(run, CKPT_DIR, "last.ckpt")):
        cfg, model = load_trained(run)
        return cfg, model, True
    cfg = load_run_config(run)
    model = build_model(without_init_weights(cfg), load_teachers=False)
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    return cfg, model, False

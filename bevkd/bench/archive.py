"""A bench's finished runs kept without their checkpoints, so that its table outlives the
machine that trained it (``bevkd bench --archive DIR``).

A tiny bench trains for most of a day on two cores, longer than a CPU machine or its scratch
disk may last: the runs folder can be lost with every checkpoint in it. The archive keeps of
each finished run what its row of the table is made of and what says how it was made: its
config, command and inputs (``bench_job.json``), provenance (``meta.json``), timing, training
logs (the loss curves, as CSV) and evaluations' metrics, about 100 KB per run, small enough
to commit beside the table. It leaves out the checkpoints, the detections (``results.json``)
but for those of the BEV picture's sample, and the console log.

A later bench given the same archive **restores** each planned job that its runs folder does
not hold but the archive holds finished: the folder is copied back, marked by
:data:`~bevkd.bench.runner.RESTORED`, and the job counts as finished. A job whose checkpoint a
training still to do needs (a teacher, the label encoder) is not restored but trained again,
and students restored beside it then learned from an earlier training of it: a restored run's
inputs are compared by what survives a new machine (the dataset tables' names and sizes), not
by the checkpoints' identities, and the table names the restored runs, unless the teacher
trained again reproduced the archived training: then :func:`archive_run` notes that the two
are one training (:mod:`~bevkd.bench.reproduced`; on a machine of the same kind a CPU training
repeats to the bit) and the restored runs learned from what the runs folder holds. Its latency,
which depends on the network and not on its weights, is timed on the network its config
builds, and its step time on that network with its teachers' trained weights
(:func:`timing_model`; a later seed trained here is timed instead where there is one); the
BEV picture draws the copy the archive keeps of the run's detections on the picture's sample
(:mod:`~bevkd.bench.picture`).

A job that another finished run of the same command served (a twin,
:func:`~bevkd.bench.runner.twin`) has no run of its own: the archive keeps the twin under its
own name and, under the job's, a note naming it (:data:`SERVED_BY`). Restoring such a job
restores its twin, which serves it again.

A run's command and config record absolute paths (``--data``, ``--out``, the teachers' runs,
the pretrained backbone). A restored run is read as moved: the runs and data folders its
command names are taken as the ``--runs`` and ``--data`` of the bench that restored it
(:func:`~bevkd.bench.runner.moves`), so a machine with other paths restores it too.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import TYPE_CHECKING, Callable, NamedTuple

from ..errors import BevkdError
from ..fileio import write_json
from .picture import keep_sample
from .reproduced import FILE as REPRODUCED, Reproduced, note_if_reproduced
from .runner import (JOB_FILE, RESTORED, file_stamp, has_checkpoint, is_finished,
                     is_restored, made, read_record, rebased, roots, set_values, weightless)

if TYPE_CHECKING:
    import torch

    from ..engine.config import ExperimentConfig
    from .plan import Job

# what a run folder holds that the archive leaves out: the weights (tens of MB each), the
# detections of every evaluation (their metrics are kept), the console log and the
# TensorBoard event files (the CSV logs beside them hold the same scalars at half the size)
LEFT_OUT = ("checkpoints", "results.json", "train.log", "events.out.tfevents.*")

# ARCHIVE/<job>/served_by.json: {"run": "<twin's folder name>"}, for a job a twin run served
SERVED_BY = "served_by.json"


def archive_run(run: str, archive: str, picture: str | None = None) -> str:
    """Copy ``run`` (without :data:`LEFT_OUT`) to ``ARCHIVE/<run's folder name>``, replacing
    an older copy as one step (never half a copy under the final name; a copy stopped between
    its two renames is found again as ``.old``). Where the older copy is the same training
    made before (:func:`~bevkd.bench.reproduced.note_if_reproduced`), the runs folder and the
    archive note that its stamps and the new ones name one training. ``picture``: the token of
    the BEV picture's sample, whose detections the copy keeps of the results it leaves out
    (:func:`~bevkd.bench.picture.keep_sample`). Returns the copy. A run without a job record
    (one :func:`~bevkd.bench.runner.record_outside` could not give one) never replaces a copy
    that names what it learned from: that copy is kept."""
    dest = os.path.join(archive, os.path.basename(os.path.normpath(run)))
    tmp, old = f"{dest}.tmp", f"{dest}.old"
    if not os.path.isdir(dest) and os.path.isdir(old):
        os.replace(old, dest)
    if not os.path.isfile(os.path.join(run, JOB_FILE)) and os.path.isfile(
            os.path.join(dest, JOB_FILE)):
        return dest
    notes = note_if_reproduced(run, dest) if os.path.isdir(dest) else None
    if notes is not None:
        notes.save(os.path.dirname(os.path.abspath(run)))
        notes.save(archive)
    for path in (tmp, old):
        shutil.rmtree(path, ignore_errors=True)
    os.makedirs(archive, exist_ok=True)
    shutil.copytree(run, tmp, ignore=shutil.ignore_patterns(*LEFT_OUT, RESTORED))
    if picture is not None:
        _keep_picture(run, tmp, picture)
    if os.path.isdir(dest):
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


def _keep_picture(run: str, tmp: str, token: str) -> None:
    """The picture's sample into the copy being made (``tmp``), from the run's results. A
    results file that cannot be read costs the picture, said, never the copy. (A run without
    results gets none: an older copy's sample may be of another training of the job.)"""
    try:
        keep_sample(run, tmp, token)
    except BevkdError as e:
        print(f"[bench] {run}: the archive keeps no BEV picture sample: {e}", flush=True)


def archive_served(name: str, run: str, archive: str) -> str | None:
    """Note under ``ARCHIVE/<name>`` that the job ``name`` was served by the finished run
    ``run`` (its twin, archived under its own name), unless the archive holds a run of the
    job's own there. Returns the note's path, or None."""
    twin = os.path.basename(os.path.normpath(run))
    dest = os.path.join(archive, name)
    if twin == name or (os.path.isdir(dest) and set(os.listdir(dest)) - {SERVED_BY}):
        return None
    os.makedirs(dest, exist_ok=True)
    path = os.path.join(dest, SERVED_BY)
    write_json(path, {"run": twin})
    return path


def served_by(archive: str, name: str, val_split: str) -> str | None:
    """The folder name of the twin that served the job ``name``, when the archive notes one
    and holds it finished (a note that does not read names nothing)."""
    try:
        with open(os.path.join(archive, name, SERVED_BY)) as f:
            twin = json.load(f)["run"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (isinstance(twin, str) and twin not in ("", ".", "..", name)
            and twin == os.path.basename(twin)):
        return None
    return twin if is_finished(os.path.join(archive, twin), val_split) else None


def _source(job: Job, runs: str, archive: str, val_split: str) -> str | None:
    """The archived folder name that restores ``job``: its own finished run, else the twin
    that served it, when ``runs`` lacks that twin or holds it finished (else it cannot
    serve)."""
    if is_finished(os.path.join(archive, job.name), val_split):
        return job.name
    twin = served_by(archive, job.name, val_split)
    if twin is None:
        return None
    there = os.path.join(runs, twin)
    return twin if not os.path.exists(there) or is_finished(there, val_split) else None


class RestorePlan(NamedTuple):
    """What :func:`restore` does (:func:`plan_restore`)."""

    restore: list[Job]       # copied back from the archive
    retrain: list[Job]       # restored runs in the runs folder to delete (they train again)
    apart: dict[str, list[str]]  # job -> what it learned from another training of (not kept)
    stale_twins: list[str]  # restored twin folders in the runs folder to delete (apart)


def learned_apart(folder: str, job: Job, runs: str,
                  made_now: Callable[[str], list[int] | None],
                  notes: Reproduced | None = None) -> list[str]:
    """What the finished run ``folder`` (``job``'s, or the twin that served it) read that is
    not what it would read in ``runs``: each run of ``job.needs`` whose training it learned
    from (its recorded ``inputs`` stamp) is not ``made_now(need)``, and each file an override
    names (the pretrained backbone, read at its place under ``runs``) whose stamp differs.
    The dataset is not among them (a restored run's tables are checked by name and size,
    :func:`~bevkd.bench.runner.lasting`). Two stamps that ``notes`` name one training (a
    teacher trained again here that reproduced the archived training,
    :mod:`~bevkd.bench.reproduced`) are the same. A run that recorded no inputs cannot show it
    learned from these trainings: ``["inputs"]``."""
    record = read_record(folder)
    recorded = record.get("inputs")
    if not isinstance(recorded, dict):
        return ["inputs"]
    sig = record.get("signature")
    sig = sig if isinstance(sig, list) and all(isinstance(a, str) for a in sig) else []
    old = roots(sig)
    files = dict(a.split("=", 1) for a in rebased(set_values(sig), [(old[0], runs)] if old else [])
                 if "=" in a)
    out = []
    for key, stamp in recorded.items():
        if key == "data":
            continue
        now = made_now(key) if key in job.needs else (
            file_stamp(files[key]) if key in files else None)
        if not (notes or Reproduced()).same(key, now, stamp):  # None (read none) is no match
            out.append(key)
    return out


def plan_restore(jobs: list[Job], runs: str, archive: str, val_split: str,
                 training: bool = True, optional: list[Job] = (),
                 same_trainings: bool = False) -> RestorePlan:
    """``restore``: the jobs :func:`restore` copies back, those of ``jobs`` and ``optional``
    (finished runs read if present, never trained: extra seeds of an ablation) with no folder
    in ``runs`` and a finished run in ``archive`` (or a twin there that served them,
    :func:`served_by`). ``retrain``: runs in ``runs`` restored earlier without a checkpoint (by
    a report, or by a bench of fewer jobs) that must train again. When ``training``, no job
    still to train may need a run without a checkpoint: such a job is neither restored nor
    kept, and training it in turn keeps its own needs from being restored (down the chain: a
    label encoder to train needs the LiDAR teacher's checkpoint).

    ``same_trainings`` (``bevkd bench --retrain-apart``): neither is a run restored, nor kept
    if restored earlier, that learned from another training of a run it needs or of the
    pretrained backbone than the one it would read here (:func:`learned_apart`, named in
    ``apart``): it trains again (an optional one is left out), and so do the runs that read
    it, down the chain. The table then holds one set of trainings, e.g. one machine's, where
    a restored run would have learned from teachers trained on a machine since lost. Such a
    run's archived copy stays until its new training finishes and replaces it (the copy in
    version control keeps the old one). A twin restored earlier that served only such jobs
    is deleted too (``stale_twins``). On a new machine the pretrained backbone is made again
    after this plan, so every camera run is apart, and the teachers they need train again:
    the whole bench, unless the runs folder or the archive notes that the teachers trained
    again reproduced the archived trainings (:mod:`~bevkd.bench.reproduced`)."""
    notes = Reproduced.load(runs, archive)
    every = [*jobs, *(j for j in optional if j.name not in {k.name for k in jobs})]
    def run(j):
        return os.path.join(runs, j.name)

    kept = {j.name for j in every if weightless(run(j))}
    held = kept | {j.name for j in every if not os.path.exists(run(j))
                   and _source(j, runs, archive, val_split)}
    by_name = {j.name: j for j in every}

    def source(j: Job) -> str:  # the folder name a held job's finished run is read from
        return j.name if j.name in kept else _source(j, runs, archive, val_split)

    def folder(j: Job) -> str:  # where: in ``runs`` (a twin restored earlier, or its own)
        here = os.path.join(runs, source(j))
        return here if os.path.exists(here) else os.path.join(archive, source(j))

    def made_now(name: str) -> list[int] | None:  # the training of ``name`` read here
        if name in held:
            there = folder(by_name[name])
        else:
            there = os.path.join(runs, name)  # its own training, else one still to do
            if weightless(there) or not is_finished(there, val_split):
                return None
        return made(read_record(there), there)

    apart: dict[str, list[str]] = {}
    changed = True
    while changed:
        changed = False
        if same_trainings:
            now = {n: learned_apart(folder(by_name[n]), by_name[n], runs, made_now, notes)
                   for n in sorted(held)}
            now = {n: keys for n, keys in now.items() if keys}
            apart.update(now)
            held -= set(now)
            changed = bool(now)
        if training:
            to_train = [j for j in jobs if j.name not in held and (
                j.name in kept or not is_finished(run(j), val_split))]
            needed = {n for j in to_train for n in j.needs} & held
            held -= needed
            changed = changed or bool(needed)
    # each named by what it read apart from the final plan (a need found apart later, too)
    apart = {n: learned_apart(folder(by_name[n]), by_name[n], runs, made_now, notes) or keys
             for n, keys in apart.items()}
    retrain = [j for j in every if j.name in kept and j.name not in held]
    # a twin restored earlier that served a job now apart, and serves no job kept: else the
    # runner would find it again (:func:`~bevkd.bench.runner.twin`) and reuse it
    stale = {source(by_name[n]) for n in apart} - {source(by_name[n]) for n in held}
    stale = sorted(t for t in stale - {j.name for j in retrain}
                   if weightless(os.path.join(runs, t)))
    return RestorePlan([j for j in every if j.name in held and j.name not in kept], retrain,
                       apart, stale)


def restore(jobs: list[Job], runs: str, archive: str, val_split: str = "synth_val",
            training: bool = True, log=print, optional: list[Job] = (),
            same_trainings: bool = False) -> list[str]:
    """Copy the jobs :func:`plan_restore` names from ``archive`` into ``runs``, each marked as
    restored, and delete the restored runs without a checkpoint that a training needs, or
    (``same_trainings``) that learned from other trainings (they train again; their copy
    stays in ``archive`` until the new run replaces it). Returns the restored jobs' names.
    The caller holds the runs folder's lock."""
    back, again, apart, stale = plan_restore(jobs, runs, archive, val_split, training,
                                             optional, same_trainings)
    if os.path.isfile(os.path.join(archive, REPRODUCED)):  # the archive's notes, for the report
        Reproduced.load(archive).save(runs)
    for name in [*(j.name for j in again), *stale]:
        shutil.rmtree(os.path.join(runs, name))
    needed = [j.name for j in again if j.name not in apart]
    if needed:
        log(f"[bench] to train again (restored earlier without the checkpoint a training "
            f"needs): {', '.join(needed)}")
    if apart:
        planned = {j.name for j in jobs}
        said_apart = [f"{n} ({', '.join(k)})" for n, k in apart.items()]
        left = sorted(set(apart) - planned)
        log(f"[bench] not restored from {archive}, trained again: learned from another "
            f"training of what is named than {runs} holds: {'; '.join(said_apart)}"
            + (f" (never trained here, left out: {', '.join(left)})" if left else "")
            + (f"; deleted the restored twin runs that served them: {', '.join(stale)}"
               if stale else ""))
    names, said = [], []
    for job in back:
        folder = _source(job, runs, archive, val_split)
        names.append(job.name)
        said.append(job.name if folder == job.name else f"{folder} (serving {job.name})")
        src, dest = os.path.join(archive, folder), os.path.join(runs, folder)
        if os.path.exists(dest):  # the twin of another job, or one that is a job itself
            continue
        tmp = f"{dest}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(runs, exist_ok=True)
        shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(SERVED_BY))
        with open(os.path.join(tmp, RESTORED), "w") as f:
            json.dump({"from": os.path.abspath(src), "at": time.strftime("%Y-%m-%d %H:%M:%S")}, f)
        os.replace(tmp, dest)
    if names:
        log(f"[bench] restored from {archive} (finished, no checkpoints): {', '.join(said)}")
    return names


def timing_model(run: str, teacher_weights: bool = True
                 ) -> tuple[ExperimentConfig, torch.nn.Module, bool]:
    """``(config, model, trained)``: the run's trained model, or where its checkpoint is gone
    (a restored run) the network its config builds, in its training layout, with the student's
    initial weights and (``teacher_weights``) its teachers' trained ones where their runs hold
    checkpoints here; without, the teachers' initial weights (enough to time the student alone).

    A forward pass of the student costs what its network does, whatever the weights. A
    distillation step does not: DualDistill's CRD, for one, decodes the teacher's detections
    above a score and builds a target for each, and an untrained teacher detects a number of
    boxes of its own. Measured on the tiny preset's runs on an idle machine
    (benchmarks/step_time_weights_tiny.md): DualDistill's network at the CRD temperature 1.0
    read 2.06x the baseline's step with initial teachers and 1.89x with the trained ones, at
    0.1 and 0.5 1.52-1.68x either way; loading the trained teachers moved the methods' steps
    by 0.92-1.12x, inside what two measurements of one model differ by. A teacher without a
    checkpoint here keeps its initial weights, said. Decoding the student's own detections
    also depends on its weights (NMS takes the longer the more boxes score high), so
    ``trained`` says which the caller has."""
    import torch

    from ..builder import build_model, teacher_run, without_init_weights
    from ..config import from_dict, to_dict
    from ..engine.config import ExperimentConfig
    from ..engine.run import load_run_config, load_trained

    if has_checkpoint(run):
        cfg, model = load_trained(run)
        return cfg, model, True
    cfg = load_run_config(run)
    saved, job_file = None, os.path.join(run, JOB_FILE)
    if is_restored(run) and os.path.isfile(job_file):
        with open(job_file) as f:
            saved = json.load(f).get("signature")
    old = roots(saved)
    here = os.path.dirname(os.path.abspath(run))
    if old is not None and old[0] != here:  # restored under another runs folder
        cfg = from_dict(ExperimentConfig, rebased(to_dict(cfg), [(old[0], here)]))
    model = build_model(without_init_weights(cfg), load_teachers=False)
    for role, path in (cfg.distill.teachers.items() if teacher_weights else ()):
        folder, ckpt = teacher_run(path)
        if ckpt is None and not has_checkpoint(folder):
            print(f"[bench] timing {os.path.basename(run)}: its {role} teacher has no "
                  f"checkpoint in {folder}; timed with that teacher's initial weights (a step "
                  "that decodes its detections may cost otherwise)", flush=True)
            continue
        model.teachers[role].load_state_dict(load_trained(folder, ckpt)[1].state_dict())
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    return cfg, model, False

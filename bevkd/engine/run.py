"""Run folders: ``bevkd train`` / ``bevkd eval`` / ``bevkd export`` on top of Lightning.

A run folder holds everything needed to understand and continue a training::

    RUN/config.yaml          the resolved config (what was trained, after --set overrides)
    RUN/meta.json            git commit, command line, versions
    RUN/checkpoints/last.ckpt, epoch-XX.ckpt
    RUN/logs/                CSV (and TensorBoard when installed) logs
    RUN/eval/<split>/        metrics.json (devkit layout) of the final checkpoint on the
                             data it trained on (what `bevkd bench` reads) and the
                             detections it scored, results.json; `bevkd eval` rewrites both
    RUN/eval/<split>@<tag>/  any other `bevkd eval`: another dataset (its folder's name) or
                             checkpoint (its file's stem), e.g. synth_val@epoch-03
"""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import json
import logging
import os
import pickle
import re
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import lightning as L
import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader

from ..builder import build_model, without_init_weights
from ..config import differing_keys, from_dict, to_dict
from ..data.nuscenes import NuScenesDataset
from ..data.sampler import EpochSampler
from ..errors import BevkdError
from ..eval.confusion import CONFUSION_FILE
from ..fileio import write_json
from ..models.backbones.resnet import random_frozen_stages
from ..progress import progress_bar
from ..provenance import git_commit, machine
from ..structures.batch import collate
from .callbacks import Interrupted, ResumableData, StepCheckpoint, StopOnInterrupt, Timing
from .config import DistillConfig, ExperimentConfig
from .ema import EMA
from .module import DetectionModule
from .progress import progress_callback

CKPT_DIR = "checkpoints"


def load_run_config(run: str) -> ExperimentConfig:
    path = os.path.join(run, "config.yaml")
    if not os.path.isfile(path):
        raise BevkdError(f"{run} is not a run folder (no config.yaml)")
    with open(path) as f:
        return from_dict(ExperimentConfig, yaml.safe_load(f))


def epoch_loader(ds: NuScenesDataset, cfg: ExperimentConfig, shuffle: bool) -> DataLoader:
    """Batches of ``ds`` keyed by an :class:`EpochSampler` (this rank's share under DDP)."""
    workers = cfg.train.num_workers
    sampler = EpochSampler(len(ds), seed=cfg.train.seed, shuffle=shuffle)
    # its own generator: creating worker iterators must not draw from the global RNG, which
    # the model's dropout uses and a checkpoint restores (bit-exact --resume)
    return DataLoader(ds, batch_size=cfg.train.batch_size, sampler=sampler, num_workers=workers,
                      collate_fn=collate, persistent_workers=workers > 0, drop_last=False,
                      generator=torch.Generator().manual_seed(cfg.train.seed))


def _on_gpu(accelerator: str) -> bool:
    """Whether Lightning's ``accelerator`` trains on a CUDA device here."""
    return accelerator in ("gpu", "cuda") or (accelerator == "auto"
                                              and torch.cuda.is_available())


def check_accelerator(accelerator: str) -> None:
    """Refuse an ``--accelerator`` other than auto, cpu and gpu, and gpu where torch sees no
    CUDA device (Lightning would stop in a traceback of its own)."""
    if accelerator not in ("auto", "cpu", "gpu", "cuda"):
        raise BevkdError(f"accelerator must be auto, cpu or gpu, got {accelerator!r}")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise BevkdError(f"--accelerator {accelerator}: torch sees no CUDA device here (torch "
                         f"{torch.__version__}); use --accelerator cpu or auto")


def device_count(devices: int | str, accelerator: str) -> int:
    """The processes per node Lightning starts for ``--devices`` (an int, ``auto``, ``-1``:
    every GPU, or a list of GPU indices ``0,1``) on ``accelerator``."""
    if isinstance(devices, str) and "," in devices:
        return len([d for d in devices.split(",") if d.strip()])
    if devices in ("auto", -1, "-1"):
        return max(torch.cuda.device_count(), 1) if _on_gpu(accelerator) else 1
    return int(devices)


def _precision(cfg: ExperimentConfig, accelerator: str) -> str:
    if cfg.train.precision != "auto":
        return cfg.train.precision
    return "16-mixed" if _on_gpu(accelerator) else "32-true"


def _loggers(run: str, resume: bool) -> list:
    from lightning.pytorch.loggers import CSVLogger

    csv_path = os.path.join(run, "logs", "metrics.csv")
    if resume and os.path.isfile(csv_path):
        # Lightning's CSVLogger deletes an existing metrics.csv; keep each attempt's log
        part = 1
        while os.path.exists(os.path.join(run, "logs", f"metrics.part{part}.csv")):
            part += 1
        os.replace(csv_path, os.path.join(run, "logs", f"metrics.part{part}.csv"))
    loggers = [CSVLogger(run, name="logs", version="")]
    if importlib.util.find_spec("tensorboard") is not None:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(run, name="logs", version="tb"))
    return loggers


# What Lightning says on every --resume, and why none of it is true of a bevkd run folder.
RESUME_NOTES_SILENCED = (
    # _loggers has moved the earlier attempt's metrics.csv to metrics.part<N>.csv first, so
    # nothing is deleted (Lightning warns because the logs folder is not empty)
    r"Experiment logs directory .* exists and is not empty",
    # resuming means continuing into the run's own checkpoints folder
    r"Checkpoint directory .* exists and is not empty",
    # ResumableData points the sampler at the first unconsumed item and restores the RNGs,
    # so a mid-epoch checkpoint resumes exactly (Lightning only sees a plain DataLoader)
    r"You're resuming from a checkpoint that ended before the epoch ended",
)


# What Lightning and torch say on every fit and no bevkd user can act on (warnings).
FIT_NOTES_SILENCED = (
    # a model with frozen parts: train() calls module.train() first, so the modules in eval
    # mode are the ones meant to be (teachers, BatchNorm of a norm_eval backbone, the label
    # encoder's LiDAR-teacher parts)
    r"Found \d+ module\(s\) in eval mode at the start of training",
    # Lightning 2.6's own use of a class torch 2.13 deprecates (a FutureWarning)
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)
# ... and under 16-bit precision (GPU): the gradient scaler skips the optimiser's first steps
# while their gradients overflow its initial scale, and Lightning steps the per-step schedule
# all the same, so torch warns once that the scheduler stepped first. Lightning calls both in
# the right order; the schedule runs those few steps ahead, nothing else. (Shown in any other
# precision, where a skipped first step would be a fault.)
FIT_NOTES_SILENCED_16 = (
    r"Detected call of `lr_scheduler.step\(\)` before `optimizer.step\(\)`",
)
# ... and what Lightning logs on every Trainer: an advertisement for its cloud logger
LOG_NOTES_SILENCED = (r"Tip: For seamless cloud logging",)
_LIGHTNING_LOGGERS = ("lightning.pytorch.utilities.rank_zero",
                      "lightning.fabric.utilities.rank_zero")


class _DropNotes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(re.search(p, record.getMessage()) for p in LOG_NOTES_SILENCED)


@contextmanager
def _notes_silenced(resume: bool, precision: str = "32-true"):
    """Hides :data:`FIT_NOTES_SILENCED` and :data:`LOG_NOTES_SILENCED`,
    :data:`RESUME_NOTES_SILENCED` when resuming and :data:`FIT_NOTES_SILENCED_16` in a 16-bit
    ``precision``, while a Trainer is built, fits or validates; every other warning and log
    line is shown."""
    drop = _DropNotes()
    loggers = {logging.getLogger(name) for name in _LIGHTNING_LOGGERS}
    try:  # the logger rank_zero_info writes to, whatever name the last import gave it
        from lightning_utilities.core import rank_zero

        loggers.add(rank_zero.log)
    except (ImportError, AttributeError):
        pass
    with warnings.catch_warnings():
        for message in (FIT_NOTES_SILENCED + (RESUME_NOTES_SILENCED if resume else ())
                        + (FIT_NOTES_SILENCED_16 if precision.startswith("16") else ())):
            warnings.filterwarnings("ignore", message=message)
        for logger in loggers:
            logger.addFilter(drop)
        try:
            yield
        finally:
            for logger in loggers:
                logger.removeFilter(drop)


def run_meta(run: str) -> dict[str, Any]:
    """``RUN/meta.json`` as recorded; ``{}`` when there is none or it does not read as one."""
    try:
        with open(os.path.join(run, "meta.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


# what meta.json's "samples" digests (samples_digest); a run recorded with another format
# is checked by its dataset's folder, as one that recorded none
SAMPLES_FORMAT = 2


def samples_digest(ds: NuScenesDataset) -> str:
    """A digest of a split as the loader reads it: each sample's token, cameras (file, size,
    intrinsics), LiDAR sweeps and GT boxes, in order. Two datasets (or copies of one moved
    elsewhere) hold the same split where it matches; SynthScenes made again from the same seed
    at another image size or sweep count does not (its tokens alone would)."""
    h = hashlib.sha1()
    for i in ds.infos:
        h.update(i.token.encode())
        for c in i.cams:
            h.update(f"{c.path}:{c.width}x{c.height}".encode())
            h.update(np.round(np.asarray(c.pix_T_cam, np.float64), 6).tobytes())
        h.update(" ".join(w.path for w in i.sweeps).encode())
        h.update(np.round(np.nan_to_num(np.asarray(i.gt_boxes, np.float64)), 4).tobytes())
    return h.hexdigest()[:16]


def check_resumed_data(run: str, data_root: str, samples: dict[str, str]) -> None:
    """Refuse to resume ``run`` on a dataset whose splits (``samples``: split -> digest) are
    not the ones it trained on; a dataset moved to another folder resumes. A run from before
    bevkd recorded its samples is checked by the dataset's folder, with a warning."""
    earlier = run_meta(run)
    recorded, where = earlier.get("samples"), earlier.get("data")
    if isinstance(recorded, dict) and earlier.get("samples_format") == SAMPLES_FORMAT:
        differ = [split for split, digest in samples.items()
                  if recorded.get(split) not in (None, digest)]
        if differ:
            here = ("the data there has changed since (made again, edited)"
                    if isinstance(where, str) and os.path.realpath(where)
                    == os.path.realpath(data_root) else f"{run} trained on {where}")
            raise BevkdError(f"--resume: the {' and '.join(differ)} samples in {data_root} are "
                             f"not those {run} trained on ({here}); resume on the data it "
                             "trained on, or train into a new folder")
    elif isinstance(where, str) and os.path.realpath(where) != os.path.realpath(data_root):
        print(f"warning: {run} trained on {where} and resumes on {data_root}; it recorded no "
              "samples this version can check that both hold the same dataset", file=sys.stderr)


def _write_meta(run: str, data_root: str, resume: bool, gpu: bool = False,
                samples: dict[str, str] | None = None) -> None:
    """``RUN/meta.json`` of this attempt. A resumed run keeps what its earlier attempts
    recorded: their machines (one begun on one CPU and finished on another reproduces on
    neither; None: an attempt that recorded none; ``gpu``: this attempt trains on the GPU,
    whose name the machine record then holds), their commits, any ``migrations`` a script
    made to its records, and when the first attempt started (``first_started_unix``, seconds
    since the epoch, where every attempt recorded it: what the run read may be as old as
    that; ``started`` is this attempt's local time, ``started_unix`` the same instant)."""
    earlier = run_meta(run) if resume else {}
    here, commit = machine(gpu), git_commit()
    machines = list(earlier.get("machines") or [earlier.get("machine")]) if earlier else []
    commits = list(earlier.get("commits") or [earlier.get("commit")]) if earlier else []
    now = time.time()
    first = earlier.get("first_started_unix") if earlier else now  # (None: an attempt before
    # it was recorded)
    meta = {"commit": commit, "command": " ".join(sys.argv),
            "data": os.path.abspath(data_root), "samples": samples or {},
            "samples_format": SAMPLES_FORMAT,
            "torch": torch.__version__, "lightning": L.__version__, "machine": here,
            "machines": machines + ([] if here in machines else [here]),
            "commits": commits + ([] if commits[-1:] == [commit] else [commit]),
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)),
            "started_unix": now}
    if first is not None:
        meta["first_started_unix"] = first
    if earlier.get("migrations"):
        meta["migrations"] = earlier["migrations"]
    write_json(os.path.join(run, "meta.json"), meta, indent=1)


def train(cfg: ExperimentConfig, data_root: str, run: str, resume: bool = False,
          devices: int | str = 1, accelerator: str = "auto", progress: bool = True,
          max_steps: int = -1, num_nodes: int = 1) -> DetectionModule | None:
    """Train ``cfg`` on ``data_root`` into run folder ``run``; returns the trained module, or
    None where ``resume`` finds the run finished (trained to its last step and evaluated)."""
    check_accelerator(accelerator)
    cfg = absolute_paths(cfg)
    ckpt_dir = os.path.join(run, CKPT_DIR)
    last = os.path.join(ckpt_dir, "last.ckpt")
    if resume:
        resume_from = resume_checkpoint(ckpt_dir)
        changed = differing_keys(to_dict(load_run_config(run)), to_dict(cfg))
        if changed:
            raise BevkdError(f"--resume: the config differs from {run}/config.yaml (in "
                             f"{', '.join(changed[:6])}); resume with the same config (or "
                             "train into a new folder)")
    elif os.path.isfile(last):
        raise BevkdError(f"{run} already holds a training; pass --resume to continue it or "
                         "choose another --out")
    tcfg = cfg.train
    train_set = NuScenesDataset(data_root, tcfg.version, tcfg.train_split, cfg.data, train=True,
                                seed=tcfg.seed)
    val_set = NuScenesDataset(data_root, tcfg.version, tcfg.val_split, cfg.data, train=False)
    samples = {tcfg.train_split: samples_digest(train_set), tcfg.val_split: samples_digest(val_set)}
    world = device_count(devices, accelerator) * num_nodes
    steps_per_epoch = -(-(-(-len(train_set) // world)) // tcfg.batch_size)  # EpochSampler share
    planned = max_steps if max_steps > 0 else steps_per_epoch * tcfg.epochs
    if resume:
        check_resumed_data(run, data_root, samples)
        done = trained_steps(resume_from)
        if done >= planned and os.path.isfile(os.path.join(run, "eval", tcfg.val_split,
                                                           "metrics.json")):
            # nothing to train or score: Lightning would validate again and log empty files
            print(f"{run} has finished: {done} of {planned} steps trained and evaluated; nothing "
                  f"to do (`bevkd eval --ckpt {run}` evaluates it again)", file=sys.stderr)
            return None
    os.makedirs(run, exist_ok=True)
    with open(os.path.join(run, "config.yaml"), "w") as f:
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False)
    _write_meta(run, data_root, resume, gpu=_on_gpu(accelerator), samples=samples)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    from ..eval.evaluator import DetectionEvaluator

    evaluator = DetectionEvaluator(data_root, tcfg.version, tcfg.val_split)
    model = build_model(cfg)
    frozen_random = random_frozen_stages(getattr(model, "student", model))
    if frozen_random:
        print(f"warning: {', '.join(frozen_random)}: frozen ResNet stages that start from random "
              "weights stay random; give them pretrained ones (--set "
              "model.args.backbone_weights=FILE, e.g. from `bevkd pretrain`)", file=sys.stderr)
    module = DetectionModule(model, cfg.optim, evaluator, total_steps=planned)
    if tcfg.channels_last:  # kept by Lightning's move to the device (it preserves layouts)
        module.to(memory_format=torch.channels_last)
    from lightning.pytorch.callbacks import ModelCheckpoint

    train_loader = epoch_loader(train_set, cfg, shuffle=True)
    val_loader = epoch_loader(val_set, cfg, False)
    callbacks: list[L.Callback] = [
        # timing before the Ctrl-C stop: the step it saves at is counted in that checkpoint
        Timing(os.path.join(run, "timing.json")),
        ResumableData(train_loader.sampler, tcfg.batch_size), StopOnInterrupt(last),
        # at every epoch's end, validated or not (Lightning's default waits for validation,
        # so with train.eval_every > 1 a killed run would lose up to that many epochs)
        # no version counter: both callbacks write the one last.ckpt (with it, Lightning adds
        # last-v1.ckpt, last-v2.ckpt ... beside the other callback's file, 180 MB each)
        ModelCheckpoint(dirpath=ckpt_dir, filename="epoch-{epoch:02d}", save_last=True,
                        save_top_k=-1, every_n_epochs=1, auto_insert_metric_name=False,
                        save_on_train_epoch_end=True, enable_version_counter=False),
    ]
    step_ckpt = None
    if tcfg.checkpoint_every > 0:  # bounds the work a killed run loses; last.ckpt follows it
        step_ckpt = StepCheckpoint(dirpath=ckpt_dir, filename="step-{step}", save_last=True,
                                   save_top_k=1, every_n_train_steps=tcfg.checkpoint_every,
                                   enable_version_counter=False, auto_insert_metric_name=False)
        callbacks.append(step_ckpt)
    if progress:
        callbacks.append(progress_callback())
    if tcfg.ema_decay > 0:  # first: a step's average is updated before anything saves it
        callbacks.insert(0, EMA(tcfg.ema_decay, tcfg.ema_ramp))
    # one filter over the Trainer's build (it says some of the notes), fit and validate
    precision = _precision(cfg, accelerator)
    with _notes_silenced(resume, precision):
        trainer = L.Trainer(
            default_root_dir=run, max_epochs=tcfg.epochs, max_steps=max_steps,
            accelerator=accelerator, devices=devices, num_nodes=num_nodes,
            sync_batchnorm=tcfg.sync_batchnorm and world > 1,
            precision=precision,
            gradient_clip_val=cfg.optim.grad_clip or None, callbacks=callbacks,
            logger=_loggers(run, resume), log_every_n_steps=1, enable_progress_bar=progress,
            check_val_every_n_epoch=(max(1, tcfg.eval_every) if tcfg.eval_every
                                     else tcfg.epochs),
            num_sanity_val_steps=0, deterministic=tcfg.deterministic,
            enable_model_summary=False,
            use_distributed_sampler=False)  # EpochSampler shards by rank itself
        _fit(trainer, module, train_loader, val_loader, resume_from if resume else None)
        if step_ckpt is not None and trainer.is_global_zero:
            _prune_step_checkpoints(ckpt_dir, step_ckpt.best_model_path)
        if module.last_metrics_step != trainer.global_step:
            # the weights the training ended with were not validated: Lightning validates
            # only epochs that are multiples of check_val_every_n_epoch (train.epochs=5 with
            # eval_every=2 scored epoch 4's weights as the run's; epochs=1 scored none), not
            # a max_steps stop within an epoch, and a resumed run that had finished training
            # but was stopped before its final metrics were written returns from fit at once
            trainer.validate(module, val_loader, verbose=False)
    if module.last_metrics is not None and trainer.is_global_zero:
        from ..eval.export import write_results

        folder = os.path.join(run, "eval", tcfg.val_split)
        # the detections first: metrics.json, last, marks the run finished. Failing to write
        # them (a full disk; memory, at nuScenes scale) must not keep the run from finishing:
        # `bevkd eval` writes them again from the checkpoint
        try:
            write_results(evaluator.export(module.last_detections, results_meta(cfg)),
                          os.path.join(folder, "results.json"))
        except (OSError, MemoryError) as e:
            print(f"warning: {run}: results.json not written ({e}); `bevkd eval --ckpt {run}` "
                  "writes it", file=sys.stderr)
        _write_metrics(folder, module.last_metrics, module.last_sources)
    return module


def _fit(trainer: L.Trainer, module: DetectionModule, train_loader, val_loader,
         ckpt_path: str | None) -> None:
    """``trainer.fit`` from ``ckpt_path`` (None: from the start); a Ctrl-C, after its step's
    ``last.ckpt`` is saved, leaves as KeyboardInterrupt."""
    # Lightning leaves the modules' modes as it finds them; the model's own train() sets the
    # parts that train in eval mode (frozen BatchNorm of a norm_eval backbone, teachers)
    module.train()
    try:
        trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path)
    except Interrupted:  # Ctrl-C: last.ckpt of the step is saved
        raise KeyboardInterrupt from None
    except SystemExit:  # Lightning exits 1 after a graceful Ctrl-C; say "interrupted" (130)
        if trainer.interrupted:
            import signal

            signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignored it
            raise KeyboardInterrupt from None
        raise
    if trainer.interrupted:  # Ctrl-C: checkpoint saved, not finished
        raise KeyboardInterrupt


def _prune_step_checkpoints(ckpt_dir: str, keep: str) -> None:
    """Removes every ``step-*.ckpt`` but ``keep`` (the newest) from a finished run. Lightning
    never deletes the checkpoint a run resumed from, so a resume from ``step-N.ckpt`` (when
    ``last.ckpt`` was damaged or not yet written) would leave it beside the newer one."""
    for path in glob.glob(os.path.join(ckpt_dir, "step-*.ckpt")):
        if keep and os.path.abspath(path) != os.path.abspath(keep):
            os.remove(path)


def trained_steps(path: str) -> int:
    """The optimiser steps a Lightning checkpoint was saved after (read without loading its
    tensors)."""
    state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    return int(state.get("global_step", 0))


def checkpoint_is_whole(path: str) -> bool:
    """Whether ``path`` is a complete ``torch.save`` zip archive (every member's CRC checks).
    Lightning writes checkpoints through a temporary file and a rename, so a kill cannot leave
    a half-written one under its final name; a disk that filled or a copy that was cut can."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip() is None
    except (OSError, zipfile.BadZipFile):
        return False


def resume_checkpoint(ckpt_dir: str) -> str:
    """The checkpoint ``--resume`` continues from: ``last.ckpt``, or, when that one is damaged,
    the newest whole checkpoint in ``ckpt_dir`` (with a warning naming both)."""
    last = os.path.join(ckpt_dir, "last.ckpt")
    names = os.listdir(ckpt_dir) if os.path.isdir(ckpt_dir) else []
    others = sorted((os.path.join(ckpt_dir, n) for n in names
                     if n.endswith(".ckpt") and n != "last.ckpt"),
                    key=os.path.getmtime, reverse=True)
    if not os.path.isfile(last) and not others:
        raise BevkdError(f"--resume: no checkpoint in {ckpt_dir} to resume from")
    for path in ([last] if os.path.isfile(last) else []) + others:
        if checkpoint_is_whole(path):
            if path != last:
                print(f"warning: {last} is missing or damaged; resuming from {path}",
                      file=sys.stderr)
            return path
        print(f"warning: skipping damaged checkpoint {path}", file=sys.stderr)
    raise BevkdError(f"--resume: every checkpoint in {ckpt_dir} is damaged (truncated or "
                     "corrupt); start a new run")


def absolute_paths(cfg: ExperimentConfig) -> ExperimentConfig:
    """Teacher run folders as absolute paths: the saved config must not depend on the working
    directory of the command that wrote it."""
    teachers = {r: os.path.abspath(p) for r, p in cfg.distill.teachers.items()}
    args = dict(cfg.model.args)
    if isinstance(args.get("teacher"), str) and args["teacher"]:
        args["teacher"] = os.path.abspath(args["teacher"])
    return replace(cfg, distill=replace(cfg.distill, teachers=teachers),
                   model=replace(cfg.model, args=args))


def _write_metrics(folder: str, metrics: dict[str, Any],
                   sources: dict[str, dict[str, int]] | None = None) -> str:
    """``metrics.json`` (the devkit's summary layout) and, first, ``confusion.json``: where
    each class's top detections land (:mod:`bevkd.eval.confusion`), which the bench report
    tabulates."""
    if sources is not None:
        write_json(os.path.join(folder, CONFUSION_FILE), sources, indent=1)
    # last and atomic: `bevkd bench` takes a run with metrics.json for finished
    return write_json(os.path.join(folder, "metrics.json"), metrics, indent=2)


def load_trained(run: str, ckpt: str | None = None, use_ema: bool = True,
                 student_only: bool = False) -> tuple[ExperimentConfig, torch.nn.Module]:
    """The config and trained model of a run (EMA weights when the run kept an average), in
    the memory layout it trained in (``train.channels_last``), so that an evaluation of the
    checkpoint repeats the one made in training to the last digit.

    ``student_only``: of a distilled run, its student detector alone, which detects exactly
    as the whole model in eval mode does; its teachers are neither built nor read, so a run
    whose teacher folders are gone still evaluates and exports. The config returned is the
    run's, distillation included."""
    cfg = load_run_config(run)
    path = ckpt or os.path.join(run, CKPT_DIR, "last.ckpt")
    if not os.path.isfile(path):
        raise BevkdError(f"no checkpoint {path}")
    state = read_checkpoint(path)
    # the part of the model to build, and the prefix of its tensors' names in the checkpoint
    part, prefix = cfg, "model."
    if student_only and cfg.distill.methods:
        part, prefix = replace(cfg, distill=DistillConfig()), "model.student."
    # teacher weights are in the checkpoint, and so is the backbone's (no init file needed)
    model = build_model(without_init_weights(part), load_teachers=False)
    weights = {k[len(prefix):]: v for k, v in state["state_dict"].items() if k.startswith(prefix)}
    load_strict(model, weights, path)
    ema = next((v for k, v in state.get("callbacks", {}).items() if k.startswith("EMA")), None)
    if use_ema and ema and ema.get("shadow"):
        inner = prefix[len("model."):]  # the shadow is keyed as the whole model's tensors
        model.load_state_dict({k[len(inner):]: v for k, v in ema["shadow"].items()
                               if k.startswith(inner)}, strict=False)
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    return cfg, model


def read_checkpoint(path: str) -> dict[str, Any]:
    """``torch.load`` of a checkpoint on the CPU; a damaged file (cut short, corrupt) is a
    :class:`BevkdError` naming it and the whole checkpoints beside it."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:
        folder = os.path.dirname(os.path.abspath(path))
        others = sorted((os.path.join(folder, n) for n in os.listdir(folder)
                         if n.endswith(".ckpt") and n != os.path.basename(path)),
                        key=os.path.getmtime, reverse=True)
        newest = next((o for o in others if checkpoint_is_whole(o)), None)
        hint = f"; the newest whole one beside it is {newest} (pass it as --ckpt)" if newest else ""
        raise BevkdError(f"checkpoint {path} is damaged and cannot be read "
                         f"({str(e).splitlines()[0].split('. ')[0]}){hint}") from None
    if not isinstance(state, dict) or "state_dict" not in state:
        raise BevkdError(f"{path} is not a bevkd checkpoint (no state_dict)")
    return state


def load_strict(model: torch.nn.Module, weights: dict[str, torch.Tensor], source: str) -> None:
    """Load ``weights`` or fail naming the tensors that do not fit (wrong architecture)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    shapes = [f"{k}: checkpoint {tuple(weights[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(weights)) if own[k].shape != weights[k].shape]
    if missing or unexpected or shapes:
        parts = shapes[:4] + [f"missing {k}" for k in missing[:3]] + [f"unexpected {k}" for k in unexpected[:3]]
        n = len(missing) + len(unexpected) + len(shapes)
        raise BevkdError(f"checkpoint {source} does not fit the config's model ({n} tensors): "
                         + "; ".join(parts))
    model.load_state_dict(weights)


def trained_on(run: str) -> str | None:
    """The dataset root ``run`` trained on: ``meta.json``'s ``data``, or the ``--data`` of its
    recorded command (runs from before bevkd recorded it); None when neither reads."""
    import shlex

    meta = run_meta(run)
    if isinstance(meta.get("data"), str):
        return meta["data"]
    try:
        argv = shlex.split(meta["command"])
        return argv[argv.index("--data") + 1]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None


def eval_dir(run: str, data_root: str, split: str, ckpt: str | None = None) -> str:
    """Where an evaluation of ``run`` goes. ``RUN/eval/SPLIT`` holds the run's own result, the
    final checkpoint on the data it trained on: training writes it and `bevkd bench` reads it
    as the run's row. Any other evaluation (another dataset, e.g. a held-out SynthScenes; an
    earlier checkpoint) goes to ``RUN/eval/SPLIT@TAG`` (the dataset folder's name, the
    checkpoint file's stem, or both) so that it never replaces that result."""
    tags = []
    own = trained_on(run)
    if own is not None and os.path.realpath(data_root) != os.path.realpath(own):
        tags.append(os.path.basename(os.path.abspath(data_root)))  # abspath drops a final /
    if ckpt is not None and (os.path.realpath(ckpt)
                             != os.path.realpath(os.path.join(run, CKPT_DIR, "last.ckpt"))):
        tags.append(os.path.splitext(os.path.basename(ckpt))[0])
    return os.path.join(run, "eval", "@".join([split, *tags]))


def evaluate_run(run: str, data_root: str, split: str | None = None, ckpt: str | None = None,
                 batch_size: int | None = None, progress: bool = True,
                 out: str | None = None) -> tuple[dict[str, Any], str]:
    """Detect on a split with a trained run (of a distilled run, its student alone:
    :func:`load_trained`); writes results.json, metrics.json and confusion.json (where each
    class's top detections land) to ``out`` (default: :func:`eval_dir`). Returns the metrics
    and that folder."""
    cfg, model = load_trained(run, ckpt, student_only=True)
    split = split or cfg.train.val_split
    return _evaluate(cfg, model, data_root, split, batch_size, progress,
                     out or eval_dir(run, data_root, split, ckpt))


def evaluate_exported(path: str, data_root: str, split: str | None = None,
                      batch_size: int | None = None, progress: bool = True,
                      out: str | None = None) -> tuple[dict[str, Any], str]:
    """:func:`evaluate_run` of a student exported by :func:`export_student` (no run folder
    needed); ``out`` defaults to ``<file stem>_eval/<dataset folder>/SPLIT`` beside the file
    (one folder per dataset: two datasets' splits of one name do not overwrite each other)."""
    cfg, model = load_exported(path)
    split = split or cfg.train.val_split
    stem = os.path.splitext(os.path.abspath(path))[0]
    dataset = os.path.basename(os.path.abspath(data_root))
    return _evaluate(cfg, model, data_root, split, batch_size, progress,
                     out or os.path.join(f"{stem}_eval", dataset, split))


@torch.no_grad()
def _evaluate(cfg: ExperimentConfig, model: torch.nn.Module, data_root: str, split: str,
              batch_size: int | None, progress: bool, out: str) -> tuple[dict[str, Any], str]:
    from ..eval.evaluator import DetectionEvaluator
    from ..eval.export import write_results

    model.eval()
    ds = NuScenesDataset(data_root, cfg.train.version, split, cfg.data, train=False)
    loader = epoch_loader(ds, replace_batch(cfg, batch_size), shuffle=False)
    dets = []
    for batch in progress_bar(loader, desc=f"eval {split}", disable=not progress):
        dets.extend(d.numpy() for d in model.decode(model(batch), batch))
    evaluator = DetectionEvaluator(data_root, cfg.train.version, split)
    metrics, sources = evaluator.evaluate_with_sources(dets)
    _write_metrics(out, metrics, sources)
    write_results(evaluator.export(dets, results_meta(cfg)),
                  os.path.join(out, "results.json"))
    return metrics, out


def results_meta(cfg: ExperimentConfig) -> dict[str, bool]:
    """The results file's ``meta``: the sensors the evaluated model reads at inference (the
    LiDAR teacher's results are no camera submission; a distilled student's teachers read the
    LiDAR in training only, so its results are the cameras')."""
    from ..eval.export import DEFAULT_META

    distilled = bool(cfg.distill.methods)
    return {**DEFAULT_META, "use_camera": bool(cfg.data.use_camera),
            "use_lidar": bool(cfg.data.use_lidar) and not distilled}


def replace_batch(cfg: ExperimentConfig, batch_size: int | None) -> ExperimentConfig:
    if batch_size is None:
        return cfg
    try:
        return replace(cfg, train=replace(cfg.train, batch_size=batch_size))
    except ValueError as e:
        raise BevkdError(f"batch size: {e}") from None


def export_student(run: str, out: str, ckpt: str | None = None, overwrite: bool = False
                   ) -> str:
    """A student-only checkpoint: the detector's weights (EMA if kept) and its run's config
    (:func:`load_exported` reads it). An existing ``out`` is kept unless ``overwrite``."""
    if os.path.isdir(out):
        raise BevkdError(f"--out {out} is a folder; give the file to write, e.g. "
                         f"{os.path.join(out, 'student.pt')}")
    if os.path.exists(out) and not overwrite:
        raise BevkdError(f"--out {out} exists; choose another file or pass --overwrite")
    cfg, model = load_trained(run, ckpt, student_only=True)
    tmp = f"{out}.tmp"
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    try:
        torch.save({"config": to_dict(cfg), "model": cfg.model.type,
                    "state_dict": model.state_dict()}, tmp)
        os.replace(tmp, out)  # atomic: never a half-written file under the final name
    finally:
        if os.path.exists(tmp):  # a full disk: no 50 MB of half a file left behind
            os.remove(tmp)
    return out


def is_exported(path: str) -> bool:
    """Whether the file ``path`` is a student :func:`export_student` wrote (its config and the
    detector's tensors), not a training checkpoint (Lightning's, tensors named ``model.*``);
    read without loading its tensors. A file that does not read is neither."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception:  # noqa: BLE001 - damaged or not torch's: read_checkpoint says which
        return False
    return (isinstance(state, dict) and "config" in state
            and isinstance(state.get("state_dict"), dict)
            and not any(str(k).startswith("model.") for k in state["state_dict"]))


def load_exported(path: str) -> tuple[ExperimentConfig, torch.nn.Module]:
    """The config (the run's, distillation included) and detector of an exported student."""
    state = read_checkpoint(path)
    if "config" not in state:
        raise BevkdError(f"{path} is no exported student (no config)")
    cfg = from_dict(ExperimentConfig, state["config"])
    model = build_model(without_init_weights(replace(cfg, distill=DistillConfig())))
    load_strict(model, state["state_dict"], path)
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    return cfg, model

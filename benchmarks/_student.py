"""The tiny camera baseline and one training batch, as the step-time scripts under
benchmarks/ measure them (``step_profile.py``, ``step_speedups.py``): the bench's student
config at a preset, optionally with the bench's pretrained backbone, one thread, seed 0.
Imported as ``from _student import ...`` by scripts run as ``python benchmarks/<script>.py``."""

from __future__ import annotations

import _pinned  # noqa: F401  (first: numpy's BLAS kernels pinned before numpy loads)
import argparse
import os

import torch

from bevkd.builder import build_model
from bevkd.data.nuscenes import NuScenesDataset
from bevkd.config import CONFIGS_DIR
from bevkd.engine.config import ExperimentConfig, load_experiment
from bevkd.structures.batch import Batch, collate

CONFIG = os.path.join(CONFIGS_DIR, "student", "bevdepth.yaml")


def student_arguments(ap: argparse.ArgumentParser, rounds: int, rounds_help: str) -> None:
    """``--data``, ``--backbone``, ``--preset`` and ``--rounds`` (default ``rounds``)."""
    ap.add_argument("--data", required=True)
    ap.add_argument("--backbone", default=None, help="pretrained camera backbone (the bench's)")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--rounds", type=int, default=rounds, help=rounds_help)


def student_and_batch(args: argparse.Namespace
                      ) -> tuple[ExperimentConfig, torch.nn.Module, Batch]:
    """One thread, seed 0; the baseline student (training mode) built from ``args`` and the
    first ``train.batch_size`` samples of the training split, augmented, as one batch."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    sets = [f"model.args.backbone_weights={args.backbone}"] if args.backbone else []
    cfg = load_experiment(CONFIG, args.preset, sets)
    model = build_model(cfg).train()
    ds = NuScenesDataset(args.data, cfg.train.version, cfg.train.train_split, cfg.data,
                         train=True)
    return cfg, model, collate([ds[i] for i in range(cfg.train.batch_size)])

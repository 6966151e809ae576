"""The experiment config: one typed tree loaded from YAML (see bevkd.config)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from ..config import (CONFIGS_DIR, _merge, _suggest, apply_overrides, from_dict, read_yaml,
                      shipped_config)
from ..data.nuscenes import DataConfig
from ..errors import BevkdError
from ..models.grid import BevGrid

PRESETS_DIR = os.path.join(CONFIGS_DIR, "presets")


SCHEDULES = ("step", "cosine", "constant")
# Lightning's precision names; "auto": 16-mixed on a GPU, 32-true on the CPU
PRECISIONS = ("auto", "32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16", "16-true",
              "bf16-true", "64-true", "64")


def _check(rules: list[tuple[str, bool, str]], section: Any) -> None:
    """Raise ValueError for the first broken rule ``(field, holds, what it must be)``."""
    for name, holds, must in rules:
        if not holds:
            raise ValueError(f"{name} must be {must}, got {getattr(section, name)!r}")


@dataclass(frozen=True)
class ModelSpec:
    """Which detector (a key of ``bevkd.builder.DETECTORS``) and its constructor arguments.

    ``args`` are checked against the constructor's typed signature when the model is built:
    an unknown argument is an error naming it and the closest valid one.
    """

    type: str = "bevdepth"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with a step or cosine schedule (BEVDepth: lr 2e-4 at batch 64, step decay)."""

    lr: float = 2e-4
    weight_decay: float = 1e-2
    grad_clip: float = 5.0
    schedule: str = "step"                  # "step" | "cosine" | "constant"
    step_at: tuple[float, ...] = (0.8, 0.95)  # fractions of training where lr *= 0.1
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        # ValueError: bevkd.config.from_dict names the section ("optim: lr must be ...")
        _check([("lr", self.lr > 0 and math.isfinite(self.lr), "a positive number"),
                ("weight_decay", self.weight_decay >= 0, "at least 0"),
                ("grad_clip", self.grad_clip >= 0, "at least 0 (0: no clipping)"),
                ("schedule", self.schedule in SCHEDULES, f"one of {', '.join(SCHEDULES)}"),
                ("step_at", all(0 < f <= 1 for f in self.step_at),
                 "fractions of the training in (0, 1]"),
                ("warmup_steps", self.warmup_steps >= 0, "at least 0")], self)


@dataclass(frozen=True)
class TrainConfig:
    version: str = "v1.0-synth"
    train_split: str = "synth_train"
    val_split: str = "synth_val"
    epochs: int = 24
    batch_size: int = 8                      # per device
    num_workers: int = 2
    seed: int = 0
    ema_decay: float = 0.0                   # 0: off; e.g. 0.999
    # EMA warm-up: step n averages with ema_decay * (1 - exp(-n / ema_ramp)) (BEVDepth's
    # ModelEMA, 2000 steps of its ~84k); a short schedule needs a shorter ramp
    ema_ramp: float = 2000.0
    precision: str = "auto"                  # "auto": 16-mixed on GPU, 32 on CPU
    eval_every: int = 1                      # epochs between validations (0: only at the end)
    deterministic: bool = False
    threads: int = 0                         # torch CPU threads per process (0: torch's default)
    sync_batchnorm: bool = False             # DDP on GPU: batch statistics over all ranks
    checkpoint_every: int = 0                # also checkpoint every N optimiser steps (0: epochs only)
    # the model's 4-D weights and buffers (convolutions, so their activations too) in
    # channels-last memory layout: the same network, other float rounding and other dropout
    # masks (drawn in memory order); 0.89x the CPU time of a tiny baseline step
    # (benchmarks/step_speedups_tiny.md). Off in the presets, whose runs all trained without.
    channels_last: bool = False

    def __post_init__(self) -> None:
        _check([("epochs", self.epochs >= 1, "at least 1"),
                ("batch_size", self.batch_size >= 1, "at least 1"),
                ("num_workers", self.num_workers >= 0, "at least 0"),
                ("ema_decay", 0 <= self.ema_decay < 1, "in [0, 1) (0: no EMA)"),
                ("ema_ramp", self.ema_ramp > 0, "a positive number of steps"),
                ("precision", self.precision in PRECISIONS, f"one of {', '.join(PRECISIONS)}"),
                ("eval_every", self.eval_every >= 0, "at least 0 (0: only at the end)"),
                ("threads", self.threads >= 0, "at least 0 (0: torch's default)"),
                ("checkpoint_every", self.checkpoint_every >= 0, "at least 0 (0: epochs only)")],
               self)


@dataclass(frozen=True)
class MethodSpec:
    """One distillation method: a key of ``bevkd.builder.DISTILLERS``, its loss weight and its
    hyper-parameters (checked against the method's typed constructor)."""

    type: str
    weight: float = 1.0
    name: str = ""                           # log name (default: the type)
    args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a negative weight would maximise the method's loss
        _check([("weight", self.weight >= 0 and math.isfinite(self.weight), "at least 0")],
               self)


@dataclass(frozen=True)
class DistillConfig:
    """Teachers by role (``lidar``, ``fusion``, ``label``) -> trained run folders, and methods.
    No methods: the model trains alone (a baseline or a teacher)."""

    teachers: dict[str, str] = field(default_factory=dict)
    methods: tuple[MethodSpec, ...] = ()


@dataclass(frozen=True)
class ExperimentConfig:
    model: ModelSpec = field(default_factory=ModelSpec)
    distill: DistillConfig = field(default_factory=DistillConfig)
    grid: BevGrid = field(default_factory=BevGrid)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def shipped_preset(preset: str) -> str:
    """The name of the shipped preset that ``preset`` spells as a file (``configs/presets/
    tiny.yaml`` in a checkout, or anywhere: :func:`~bevkd.config.shipped_config`), else
    ``preset`` as it is: one preset, one name in tables and recorded commands."""
    path = shipped_config(preset)
    if os.path.isfile(path) and os.path.realpath(os.path.dirname(path)) == os.path.realpath(
            PRESETS_DIR):
        return os.path.splitext(os.path.basename(path))[0]
    return preset


def resolve_preset(preset: str) -> str:
    """A shipped preset's name (demo, tiny, small, full: ``configs/presets``) or a path to a
    preset YAML."""
    preset = shipped_preset(preset)
    if os.path.isfile(preset):
        return preset
    meant_as_file = os.sep in preset or preset.endswith((".yaml", ".yml"))
    path = os.path.join(PRESETS_DIR, f"{preset}.yaml")
    if not meant_as_file and os.path.isfile(path):
        return path
    # the shipped names, for the error
    names = (sorted(f[:-5] for f in os.listdir(PRESETS_DIR) if f.endswith(".yaml"))
             if os.path.isdir(PRESETS_DIR) else [])
    if meant_as_file:
        stem = os.path.splitext(os.path.basename(preset))[0]
        hint = f"; did you mean {stem!r}?" if stem in names and os.sep not in preset else ""
        raise BevkdError(f"preset file {preset!r} does not exist (a preset is one of "
                         f"{', '.join(names)} or a YAML file of one's own){hint}")
    raise BevkdError(f"unknown preset {preset!r}{_suggest(preset, names)}")


def preset_name(preset: str) -> str:
    """What a preset's tables and folders are named by: its name, or a preset file's stem
    (``--preset my/wide.yaml``: ``wide``)."""
    preset = shipped_preset(preset)
    return os.path.splitext(os.path.basename(preset))[0] if os.path.isfile(preset) else preset


def load_experiment(path: str, preset: str | None = None,
                    overrides: list[str] | None = None) -> ExperimentConfig:
    """A model config (+ its ``base:`` chain), then a preset's sizes, then ``--set`` overrides.

    A preset holds shared sections (grid, data, optim, train), under ``models`` the constructor
    arguments per model type (merged into ``model.args`` of the config's type) and under
    ``methods`` arguments per distillation method (merged into each such method's ``args``).
    """
    data = read_yaml(shipped_config(path))
    if preset is not None:
        pre = read_yaml(resolve_preset(preset))
        per_model = pre.pop("models", {}) or {}
        per_method = pre.pop("methods", {}) or {}
        pre.pop("bench", None)
        data = _merge(data, pre)
        kind = data.get("model", {}).get("type", ModelSpec.type)
        if kind in per_model:
            data = _merge(data, {"model": {"args": per_model[kind]}})
        methods = (data.get("distill") or {}).get("methods") or []
        for m in methods:  # a preset may size a method too (e.g. DualDistill's attention grid)
            if m.get("type") in per_method:
                m["args"] = _merge(m.get("args") or {}, per_method[m["type"]])
    for key in ("models", "methods", "bench"):  # preset-only sections
        data.pop(key, None)  # the preset's benchmark settings (bevkd.bench)
    return from_dict(ExperimentConfig, apply_overrides(data, overrides or []))

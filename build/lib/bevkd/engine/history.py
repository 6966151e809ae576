"""A run's training history, read back from its CSV logs across every attempt.

Lightning's CSVLogger starts ``RUN/logs/metrics.csv`` afresh in each process, so a resumed
run keeps each earlier attempt's log as ``metrics.part<N>.csv`` (see ``run._loggers``). These
helpers put the attempts back together: the bench's diagnostics and the scripts under
``benchmarks/`` read loss curves and validation results through them, so a run that was
interrupted and resumed reads like one that was not.
"""

from __future__ import annotations

import csv
import glob
import os
import re

import numpy as np


def log_files(run: str) -> list[str]:
    """The run's CSV logs, oldest attempt first: ``metrics.part1.csv``, ``part2`` … then
    ``metrics.csv`` (the latest attempt). Missing files are left out."""
    logs = os.path.join(run, "logs")
    parts = glob.glob(os.path.join(logs, "metrics.part*.csv"))

    def number(path: str) -> int:
        match = re.search(r"metrics\.part(\d+)\.csv$", path)
        return int(match.group(1)) if match else -1

    ordered = sorted((p for p in parts if number(p) >= 0), key=number)
    current = os.path.join(logs, "metrics.csv")
    return ordered + ([current] if os.path.isfile(current) else [])


def training_log(run: str) -> list[dict[str, float]]:
    """Every logged row of every attempt, oldest first, with its non-empty cells as floats
    (``step`` and ``epoch`` included)."""
    rows = []
    for path in log_files(run):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                rows.append({k: float(v) for k, v in row.items() if k and v not in (None, "")})
    return rows


def step_series(rows: list[dict[str, float]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of one logged quantity (e.g. ``train/heatmap_step``), sorted by
    step. A step logged by two attempts (a resumed run replays the steps after its
    checkpoint) keeps the later attempt's value: that is the one the final weights saw."""
    by_step: dict[int, float] = {}
    for row in rows:
        if key in row and "step" in row:
            by_step[int(row["step"])] = row[key]
    steps = np.array(sorted(by_step), dtype=np.int64)
    return steps, np.array([by_step[s] for s in steps], dtype=np.float64)


def validations(rows: list[dict[str, float]]) -> list[tuple[int, dict[str, float]]]:
    """``[(epoch, {"val/mAP": …, "val/NDS": …, …}), …]``, one entry per validated epoch (the
    latest attempt's when an epoch was validated twice), in epoch order."""
    by_epoch: dict[int, dict[str, float]] = {}
    for row in rows:
        val = {k: v for k, v in row.items() if k.startswith("val/")}
        if val and "epoch" in row:
            by_epoch.setdefault(int(row["epoch"]), {}).update(val)
    return sorted(by_epoch.items())


def loss_terms(rows: list[dict[str, float]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every per-step loss term, already weighted (what the optimiser saw), by short name:
    ``heatmap``, ``bbox``, ``depth``, ``loss`` (the total) from ``train/<term>_step`` and the
    methods' ``distill/<method>/<term>`` as logged. Values are ``step_series`` pairs."""
    names = {k for row in rows for k in row
             if k.endswith("_step") and k.startswith(("train/", "distill/"))}
    out = {}
    for key in sorted(names):
        name = key[:-len("_step")]
        out[name.removeprefix("train/")] = step_series(rows, key)
    return out

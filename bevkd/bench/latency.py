"""Inference latency of the trained students, measured in one process, interleaved.

Every student is timed on the same validation batches (batch size 1, one thread), round-robin
over models so that machine noise hits all of them alike; the ratio to the baseline is what
the table reports (distillation must add nothing: the ratio is 1.00 up to noise).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..data.nuscenes import NuScenesDataset
from ..engine.run import load_trained
from ..structures.batch import collate


@torch.no_grad()
def measure(runs: dict[str, str], data: str, samples: int = 8, rounds: int = 5,
            threads: int = 1) -> dict[str, float]:
    """Seconds per sample (forward + decode) of each run's student, by row name: for each
    batch the fastest of ``rounds`` interleaved passes, averaged over the batches."""
    torch.set_num_threads(threads)
    students, cfg = {}, None
    for name, run in runs.items():
        cfg, model = load_trained(run)
        students[name] = getattr(model, "student", model).eval()
    ds = NuScenesDataset(data, cfg.train.version, cfg.train.val_split, cfg.data, train=False)
    batches = [collate([ds[i]]) for i in range(min(samples, len(ds)))]
    times = {n: np.full((rounds, len(batches)), np.inf) for n in students}
    for name, model in students.items():  # warm-up
        model.decode(model(batches[0]), batches[0])
    for r in range(rounds):
        for name, model in students.items():
            for i, b in enumerate(batches):
                t0 = time.perf_counter()
                model.decode(model(b), b)
                times[name][r, i] = time.perf_counter() - t0
    # per batch the fastest round (other processes only ever add time), then the mean
    return {n: float(t.min(0).mean()) for n, t in times.items()}

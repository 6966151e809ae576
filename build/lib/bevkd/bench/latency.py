"""Inference latency of the trained students, measured in one process, interleaved.

Every student is timed on the same validation batches (batch size 1, one thread), round-robin
over models so that machine noise hits all of them alike. Two times per student: the network's
forward pass, which depends on the architecture only (distillation must add nothing: its ratio
to the baseline is 1.00 up to noise, the table's "latency ratio"), and forward + decoding,
whose circle NMS costs more the more boxes the weights score above the threshold (so trained
weights alone move it by several percent; reported as ``latency_ratio_with_decode``).
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from ..data.nuscenes import NuScenesDataset
from ..engine.run import load_trained
from ..structures.batch import collate


@torch.no_grad()
def measure(runs: dict[str, str], data: str, samples: int = 8, rounds: int = 5,
            threads: int = 1) -> dict[str, dict[str, float]]:
    """``{row: {"forward": s, "total": s}}`` per sample for each run's student (see
    :func:`time_students`) on the first ``samples`` validation samples."""
    torch.set_num_threads(threads)
    students, cfg = {}, None
    for name, run in runs.items():
        cfg, model = load_trained(run)
        students[name] = getattr(model, "student", model).eval()
    ds = NuScenesDataset(data, cfg.train.version, cfg.train.val_split, cfg.data, train=False)
    batches = [collate([ds[i]]) for i in range(min(samples, len(ds)))]
    return time_students(students, batches, rounds)


@torch.no_grad()
def time_students(students: dict[str, torch.nn.Module], batches: list,
                  rounds: int = 5) -> dict[str, dict[str, float]]:
    """Seconds per batch of the forward pass and of forward + decode, per student: for each
    batch the fastest of ``rounds`` interleaved passes (other processes only ever add time),
    then the mean over batches."""
    names = list(students)
    fwd = {n: np.full((rounds, len(batches)), np.inf) for n in names}
    total = {n: np.full((rounds, len(batches)), np.inf) for n in names}
    for name in names:  # warm-up
        model = students[name]
        model.decode(model(batches[0]), batches[0])
    for r in range(rounds):
        for name in names:
            model = students[name]
            for i, b in enumerate(batches):
                t0 = time.perf_counter()
                out = model(b)
                t1 = time.perf_counter()
                model.decode(out, b)
                t2 = time.perf_counter()
                fwd[name][r, i], total[name][r, i] = t1 - t0, t2 - t0
    return {n: {"forward": float(fwd[n].min(0).mean()), "total": float(total[n].min(0).mean())}
            for n in names}


def load_note(load: float | None = None, threads: int = 1) -> str | None:
    """A table note when other processes shared the CPUs while latency and then step time
    (:mod:`bevkd.bench.steptime`) were measured, else ``None``. ``load``: the 1-minute load
    average just after measuring (read from the system when ``None``); the measuring
    process itself accounts for ``threads`` of it. Taking the fastest of interleaved passes
    absorbs short bursts, not a machine busy with trainings: there the ratio of two models
    moved to 0.55 (bench of session 6)."""
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:  # not available on this platform: nothing to report
            return None
    others = load - threads
    if others < 0.5:
        return None
    return (f"Latency and step time were measured while other processes used the CPUs "
            f"(1-minute load {load:.1f} on {os.cpu_count()} cores, {threads} of it the "
            "measurement): their ratios are unreliable; rerun `bevkd bench ... --report-only` "
            "on an idle machine.")

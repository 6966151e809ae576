"""Training-step time of several models on one batch, interleaved (the bench's step-time
ratio and the speed benches).

Each model takes one AdamW step per round, round-robin, so that machine noise hits all of
them alike; the median per model is what the benches compare (as ratios). A run's own mean
step time (``timing.json``) is no substitute: two trainings share the cores in the bench, so
it depends on which run trained beside it (ASD's whole training gave 2.15x the baseline's
step, its ablation without the 3x3 smoothing, an average pool, 1.60x).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Hashable

import numpy as np
import torch

from ..data.nuscenes import NuScenesDataset
from ..structures.batch import Batch, collate
from .archive import timing_model


def measure(runs: dict[str, str], data: str, rounds: int = 5, threads: int = 1
            ) -> dict[str, float]:
    """``{row: seconds}``: the median training step of each run's model as it trained (the
    student with its frozen teachers and distillation terms) on one training batch of
    ``data``, interleaved (:func:`median_step_seconds`).

    The batch is the runs' training batch (their batch size, augmented as in training; the
    loader keys augmentations by dataset seed, epoch and index, so it is the same batch every
    time) and reads every sensor any of the runs reads, so that each model finds its inputs.
    """
    torch.set_num_threads(threads)
    models, cfgs = {}, []
    for name, run in runs.items():
        cfg, model, _ = timing_model(run)  # a step costs what the network does, whatever weights
        models[name] = model.train()
        cfgs.append(cfg)
    cfg = cfgs[0]
    data_cfg = replace(cfg.data, use_lidar=any(c.data.use_lidar for c in cfgs),
                       use_camera=any(c.data.use_camera for c in cfgs))
    ds = NuScenesDataset(data, cfg.train.version, cfg.train.train_split, data_cfg, train=True)
    batch = collate([ds[i] for i in range(min(cfg.train.batch_size, len(ds)))])
    return median_step_seconds(models, batch, rounds)


def median_step_seconds(models: dict[Hashable, torch.nn.Module], batch: Batch,
                        rounds: int) -> dict[Hashable, float]:
    """Median seconds of one optimiser step (forward, losses, backward, AdamW) per model,
    after one warm-up step each."""
    opts = {k: torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4)
            for k, m in models.items()}

    def step(key: Hashable) -> float:
        t0 = time.perf_counter()
        model = models[key]
        loss = sum(model.loss(model(batch), batch).values())
        opts[key].zero_grad()
        loss.backward()
        opts[key].step()
        return time.perf_counter() - t0

    for key in models:  # warm-up
        step(key)
    times: dict[Hashable, list[float]] = {key: [] for key in models}
    for _ in range(rounds):
        for key in models:
            times[key].append(step(key))
    return {key: float(np.median(t)) for key, t in times.items()}

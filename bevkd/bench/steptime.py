"""Training-step time of several models on one batch, interleaved (for the speed benches).

Each model takes one AdamW step per round, round-robin, so that machine noise hits all of
them alike; the median per model is what the benches compare (as ratios).
"""

from __future__ import annotations

import time
from typing import Hashable

import numpy as np
import torch

from ..structures.batch import Batch


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

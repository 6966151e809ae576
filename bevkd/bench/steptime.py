"""Training-step time of several models on one batch, interleaved (the bench's step-time
ratio and the speed benches).

Each model takes one AdamW step per round, round-robin, so that machine noise hits all of
them alike; the median per model is what the benches compare (as ratios). On the CPU with one
thread a step is timed in the thread's CPU time, as the latency is
(:mod:`~bevkd.bench.latency`): time the thread waits while other processes run is not the
step's (on the 2-core machine with two trainings beside it, a step's wall time was 1.4-1.6x its
CPU time). A run's own mean
step time (``timing.json``) is no substitute: two trainings share the cores in the bench, so
it depends on which run trained beside it (ASD's whole training gave 2.15x the baseline's
step, its ablation without the 3x3 smoothing, an average pool, 1.60x).

On a GPU (:func:`~bevkd.bench.latency.timing_device`: where one is) the models and the batch
move there, each step runs in the precision its run trained in (``16-mixed`` with a gradient
scaler, as Lightning does it; ``bf16-mixed``; ``32-true``) and is timed between two
``torch.cuda.synchronize()``.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import replace
from typing import Callable, ContextManager, Hashable

import numpy as np
import torch

from ..data.nuscenes import NuScenesDataset
from ..structures.batch import Batch, collate
from .archive import timing_model
from .latency import timing_device

AUTOCAST = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}
"""The autocast dtype of each mixed precision a run can train in (``32-true``: none)."""

ALIASES = {"16": "16-mixed", "bf16": "bf16-mixed", "32": "32-true"}
"""Lightning's short names of those precisions."""


def measure(runs: dict[str, str], data: str, rounds: int = 5, threads: int = 1,
            device: str | torch.device | None = None) -> dict[str, float]:
    """``{row: seconds}``: the median training step of each run's model as it trained (the
    student with its frozen teachers and distillation terms) on one training batch of
    ``data``, interleaved (:func:`median_step_seconds`), on ``device``
    (:func:`~bevkd.bench.latency.timing_device`: the GPU where there is one), there in the
    precision each run trained in, on the runs' training batch (:func:`training_batch`)."""
    from ..engine.run import _precision

    device = timing_device(device)
    torch.set_num_threads(threads)
    models, cfgs, precisions = {}, [], {}
    for name, run in runs.items():
        # trained weights where there are any: a distillation step's cost depends on them
        cfg, model, _ = timing_model(run)
        models[name] = model.train().to(device)
        cfgs.append(cfg)
        if device.type == "cuda":
            precision = str(_precision(cfg, "gpu"))
            precision = ALIASES.get(precision, precision)
            if precision not in AUTOCAST and precision != "32-true":
                # e.g. 16-true: timed in float32 rather than losing the table over it
                print(f"[bench] step time of {name}: precision {precision} is timed as 32-true",
                      flush=True)
                precision = "32-true"
            precisions[name] = precision
    batch = training_batch(cfgs, data).to(device)
    return median_step_seconds(models, batch, rounds, device, precisions)


def training_batch(cfgs: list, data: str) -> Batch:
    """The first training batch of ``data`` as the first of ``cfgs`` (experiment configs)
    loads it (its batch size, augmented as in training: the loader keys augmentations by
    dataset seed, epoch and index, so it is the same batch every time), reading every sensor
    any of ``cfgs`` reads, so that each of their models finds its inputs."""
    cfg = cfgs[0]
    data_cfg = replace(cfg.data, use_lidar=any(c.data.use_lidar for c in cfgs),
                       use_camera=any(c.data.use_camera for c in cfgs))
    ds = NuScenesDataset(data, cfg.train.version, cfg.train.train_split, data_cfg, train=True)
    return collate([ds[i] for i in range(min(cfg.train.batch_size, len(ds)))])


def median_step_seconds(models: dict[Hashable, torch.nn.Module], batch: Batch,
                        rounds: int, device: str | torch.device = "cpu",
                        precisions: dict[Hashable, str] | None = None
                        ) -> dict[Hashable, float]:
    """Median seconds of one optimiser step (forward, losses, backward, AdamW) per model,
    after one warm-up step each (three in float16): on the CPU with one torch thread the
    thread's CPU time (``time.thread_time``: it counts the calling thread only, so with more
    threads wall time). On a CUDA ``device`` (models and batch
    already there) a step is timed between synchronisations, in the model's ``precisions``
    entry (default ``32-true``): under autocast, and for ``16-mixed`` with a gradient
    scaler."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    precisions = {k: ALIASES.get(str(p), str(p)) for k, p in (precisions or {}).items()}
    unknown = {p for p in precisions.values() if p not in AUTOCAST and p != "32-true"}
    if unknown:
        raise ValueError(f"unknown precision(s) {sorted(unknown)}: expected one of "
                         f"{[*AUTOCAST, '32-true']}")
    opts = {k: torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4)
            for k, m in models.items()}
    # a low first scale: at Lightning's 2**16 the first float16 steps overflow and skip the
    # optimiser (a cheaper step), so few timed steps would be whole ones
    scalers = {k: torch.amp.GradScaler(device.type, init_scale=2.0 ** 10) for k in models
               if precisions.get(k) == "16-mixed"}

    def autocast(key: Hashable) -> ContextManager:
        dtype = AUTOCAST.get(precisions.get(key, "32-true"))
        return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()

    sync: Callable[[], None] = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    clock = time.thread_time if not cuda and torch.get_num_threads() == 1 else time.perf_counter

    def step(key: Hashable) -> float:
        sync()
        t0 = clock()
        model = models[key]
        with autocast(key):
            loss = sum(model.loss(model(batch), batch).values())
        opts[key].zero_grad()
        scaler = scalers.get(key)
        if scaler is None:
            loss.backward()
            opts[key].step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opts[key])
            scaler.update()
        sync()
        return clock() - t0

    for key in models:  # warm-up (float16: until its scaler has found its scale)
        for _ in range(3 if key in scalers else 1):
            step(key)
    times: dict[Hashable, list[float]] = {key: [] for key in models}
    for _ in range(rounds):
        for key in models:
            times[key].append(step(key))
    return {key: float(np.median(t)) for key, t in times.items()}

"""Where one training step of the camera baseline spends its time: the forward pass of each
module (forward hooks, two levels deep), the loss, the backward pass and the optimiser step.

    .venv/bin/python benchmarks/step_profile.py --data DIR [--backbone FILE] [--preset tiny] \
        [--rounds 4]

One thread, one fixed training batch, the first round a warm-up; shares are of the mean step,
so a machine busy with other work moves them less than the seconds (the note says how busy it
was). What it answers: how much a step would save if a part were computed once (e.g. the frozen
image backbone's features cached). Writes benchmarks/step_profile_<preset>.md and .json.
"""

from __future__ import annotations

import _pinned  # noqa: F401  (first: numpy's BLAS kernels pinned before numpy loads)
import argparse
import collections
import os
import time

import torch

from _results import save
from _student import student_and_batch, student_arguments
from bevkd.provenance import git_commit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    student_arguments(ap, 4, "steps timed after one warm-up step")
    args = ap.parse_args()
    _, model, batch = student_and_batch(args)
    parts = _hooked(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    total: dict[str, float] = collections.defaultdict(float)
    load0 = os.getloadavg()[0]
    for r in range(args.rounds + 1):
        parts.clear()
        t0 = time.perf_counter()
        losses = model.loss(model(batch), batch)
        t1 = time.perf_counter()
        sum(losses.values()).backward()
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad()
        t3 = time.perf_counter()
        if r == 0:  # warm-up
            continue
        total["step"] += t3 - t0
        total["forward + loss"] += t1 - t0
        total["backward"] += t2 - t1
        total["optimiser"] += t3 - t2
        for k, v in parts.items():
            total[f"forward: {k}"] += v
    mean = {k: v / args.rounds for k, v in total.items()}
    load = max(load0, os.getloadavg()[0])
    result = {"commit": git_commit(),
              "command": f"python benchmarks/step_profile.py --data DIR --preset {args.preset} "
                         f"--rounds {args.rounds}" + (" --backbone FILE" if args.backbone else ""),
              "batch_size": batch.size, "threads": 1, "load_average": load,
              "seconds": mean, "share": {k: v / mean["step"] for k, v in mean.items()}}
    lines = [f"# Where a {args.preset} baseline training step spends its time", "",
             f"`{result['command']}` at commit `{result['commit']}`: batch {batch.size}, one "
             f"thread, mean of {args.rounds} steps on one batch after a warm-up step; 1-minute "
             f"load {load:.1f} on {os.cpu_count()} cores while it ran (other processes slow "
             "every part, so read the shares, not the seconds).", "",
             "| part | s | share of the step |", "|---|---|---|"]
    lines += [f"| {k} | {v:.3f} | {100 * result['share'][k]:.1f} % |"
              for k, v in sorted(mean.items(), key=lambda kv: -kv[1])]
    save(f"step_profile_{args.preset}", result, lines)


def _hooked(model: torch.nn.Module) -> dict[str, float]:
    """Forward hooks on the modules one and two levels deep; returns the dict they add their
    seconds to (the caller clears it each step)."""
    seconds: dict[str, float] = collections.defaultdict(float)
    for name, module in model.named_modules():
        if name and name.count(".") <= 1:
            module.register_forward_pre_hook(_start)
            module.register_forward_hook(_stop(name, seconds))
    return seconds


def _start(module: torch.nn.Module, _inputs) -> None:
    module._profile_t0 = time.perf_counter()


def _stop(name: str, seconds: dict[str, float]):
    def hook(module: torch.nn.Module, _inputs, _output) -> None:
        seconds[name] += time.perf_counter() - module._profile_t0
    return hook


if __name__ == "__main__":
    main()

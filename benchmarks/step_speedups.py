"""What two general CPU speed-ups give a tiny baseline training step: channels-last memory
format and ``torch.compile`` (inductor) of the convolutional parts, alone and together.

    .venv/bin/python benchmarks/step_speedups.py --data DIR [--backbone FILE] [--preset tiny] \
        [--rounds 6]

One process, one thread, one fixed training batch; four copies of the same student (same
weights): as built (NCHW), converted to channels-last, with its image backbone, image neck,
depth net, BEV trunk and head each wrapped in ``torch.compile``, and both. After a first step
per copy (timed apart: it holds the compilation), the rounds take one step of each copy in
turn, so machine noise hits all alike; the ratios are of the thread's CPU time, the median
over rounds of each copy's step over the eager copy's step in the same round. The first
step's loss of each copy is compared with the eager one's: the speed-ups reorder floating
point arithmetic. The depth net's dropout is set to 0 (a few milliseconds of a step) so that
the copies compute the same function. What it answers: whether either would bring the tiny
bench (a day on 2 cores) near DESIGN §7's 90 minutes. Writes
benchmarks/step_speedups_<preset>.md and .json.
"""

from __future__ import annotations

import _pinned  # noqa: F401  (first: numpy's BLAS kernels pinned before numpy loads)
import argparse
import copy
import os
import time

import numpy as np
import torch

from _results import save
from _student import student_and_batch, student_arguments
from bevkd.provenance import git_commit, machine, machine_label

COMPILED = ("encoder.backbone", "encoder.image_neck", "encoder.depth_net", "trunk", "head")


def _compiled(model: torch.nn.Module) -> torch.nn.Module:
    for name in COMPILED:
        parent, _, child = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, child, torch.compile(getattr(owner, child)))
    return model


def _step(model: torch.nn.Module, batch) -> tuple[float, float, float]:
    """(CPU seconds, wall seconds, loss) of one forward + backward (gradients dropped)."""
    c0, w0 = time.thread_time(), time.perf_counter()
    loss = sum(model.loss(model(batch), batch).values())
    loss.backward()
    c1, w1 = time.thread_time(), time.perf_counter()
    model.zero_grad(set_to_none=True)
    return c1 - c0, w1 - w0, float(loss.detach())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    student_arguments(ap, 6, "rounds of one step per copy, after a first step each")
    args = ap.parse_args()
    _, eager, batch = student_and_batch(args)
    for m in eager.modules():
        # off, so that the copies compute one function: with it on, each draws its masks its
        # own way (in memory order for channels-last, inductor's own generator when compiled),
        # and the losses would differ by the masks, not by the arithmetic
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    models = {"eager (NCHW)": eager,
              "channels-last": copy.deepcopy(eager).to(memory_format=torch.channels_last),
              "torch.compile": _compiled(copy.deepcopy(eager)),
              "channels-last + torch.compile": _compiled(
                  copy.deepcopy(eager).to(memory_format=torch.channels_last))}
    first, losses = {}, {}
    for name, model in models.items():
        _, first[name], losses[name] = _step(model, batch)
        print(f"{name}: first step {first[name]:.1f} s", flush=True)
    cpu = {name: [] for name in models}
    load0 = os.getloadavg()[0]
    for _ in range(args.rounds):
        for name, model in models.items():
            cpu[name].append(_step(model, batch)[0])
    load = max(load0, os.getloadavg()[0])
    ref = np.array(cpu["eager (NCHW)"])
    rows = {name: {"first_step_s": first[name], "step_cpu_s": float(np.median(t)),
                   "ratio": float(np.median(np.array(t) / ref)),
                   "loss_diff": abs(losses[name] - losses["eager (NCHW)"])}
            for name, t in cpu.items()}
    result = {"commit": git_commit(), "machine": machine_label(machine()),
              "command": f"python benchmarks/step_speedups.py --data DIR --preset {args.preset} "
                         f"--rounds {args.rounds}" + (" --backbone FILE" if args.backbone else ""),
              "batch_size": batch.size, "threads": 1, "load_average": load,
              "compiled_modules": list(COMPILED), "rows": rows}
    lines = [f"# Two CPU speed-ups on a {args.preset} baseline training step", "",
             f"`{result['command']}` at commit `{result['commit']}` on {result['machine']}: "
             f"batch {batch.size}, forward + backward, one thread, {args.rounds} rounds "
             f"interleaved after a first step per copy; 1-minute load {load:.1f} on "
             f"{os.cpu_count()} cores while it ran. Ratio: median over rounds of the copy's "
             "CPU time over the eager copy's in the same round. `torch.compile` wraps "
             f"{', '.join(f'`{m}`' for m in COMPILED)}.", "",
             "| copy | first step (s, wall) | step (s, CPU) | ratio to eager | "
             "first loss vs eager |",
             "|---|---|---|---|---|"]
    lines += [f"| {n} | {r['first_step_s']:.1f} | {r['step_cpu_s']:.3f} | {r['ratio']:.3f} | "
              f"{r['loss_diff']:.1e} of {losses['eager (NCHW)']:.2f} |" for n, r in rows.items()]
    save(f"step_speedups_{args.preset}", result, lines)


if __name__ == "__main__":
    main()

"""How much other processes move the bench's latency ratio: wall time vs the thread's CPU time.

    .venv/bin/python benchmarks/latency_noise.py --runs RUNS_DIR --data DIR [--reps 3]

Loads the baseline's seed-0 student twice (the same network and weights: its true ratio is
1.00) and the distilled seed-0 students of a bench's run folder, then measures their forward
pass ``--reps`` times, alternating the schemes in one process, one thread:

- ``by model``: each model takes all samples in turn, model after model, forward then
  decode, the forward pass in wall time (the bench's measurement before session 15);
- ``by sample``: :func:`bevkd.bench.latency.time_passes` (every sample through every model,
  the first model rotating each round), in wall time and in the thread's CPU time, each
  model's fastest pass per sample over the baseline's (the bench's ``latency_ratio`` of
  session 15);
- ``by sample, paired``: the same passes in CPU time, the median over (round, sample) of a
  model's pass over the baseline's in the same round and sample
  (:func:`bevkd.bench.latency.paired_ratios`).

Run it beside trainings to see the noise a busy machine adds, on an idle machine for the
floor. Writes benchmarks/latency_noise.md and .json.
"""

from __future__ import annotations

import _pinned  # noqa: F401  (first: numpy's BLAS kernels pinned before numpy loads)
import argparse
import os
import sys
import time

import numpy as np
import torch

from _results import save
from bevkd.bench.latency import fastest_mean, paired_ratios, time_passes
from bevkd.data.nuscenes import NuScenesDataset
from bevkd.engine.run import load_trained
from bevkd.provenance import git_commit
from bevkd.structures.batch import collate

ROWS = ("baseline", "baseline (loaded again)", "bevdistill", "labeldistill", "dualdistill",
        "asd", "composite")


@torch.no_grad()
def by_model(students: dict[str, torch.nn.Module], batches: list, rounds: int
             ) -> dict[str, float]:
    """Forward seconds per batch, each model through all batches (forward, then decode, not
    timed) before the next model; the fastest of ``rounds`` per batch, then the mean over
    batches."""
    fwd = {n: np.full((rounds, len(batches)), np.inf) for n in students}
    for r in range(rounds):
        for name, model in students.items():
            for i, b in enumerate(batches):
                t0 = time.perf_counter()
                out = model(b)
                fwd[name][r, i] = time.perf_counter() - t0
                model.decode(out, b)
    return {n: float(f.min(0).mean()) for n, f in fwd.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", required=True, help="a bench's --runs folder (seed-0 runs)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    students, cfg = {}, None
    for row in ROWS:
        run = os.path.join(args.runs, f"{row.split(' ')[0]}-s0")
        if not os.path.isdir(run):
            sys.exit(f"latency_noise: no run {run} (the bench's seed-0 runs of "
                     f"{', '.join(dict.fromkeys(r.split(' ')[0] for r in ROWS))} are needed)")
        cfg, model = load_trained(run)
        students[row] = getattr(model, "student", model).eval()
    ds = NuScenesDataset(args.data, cfg.train.version, cfg.train.val_split, cfg.data, train=False)
    batches = [collate([ds[i]]) for i in range(min(args.samples, len(ds)))]
    time_passes(students, batches[:1], 1)  # warm-up
    schemes: dict[str, list] = {"by model, wall": [], "by sample, wall": [],
                                "by sample, CPU time": [], "by sample, CPU time, paired": []}
    loads = []
    for _ in range(args.reps):
        old = by_model(students, batches, args.rounds)
        passes = time_passes(students, batches, args.rounds)
        new = fastest_mean(passes)
        paired = paired_ratios(passes)["forward_cpu"]
        for scheme, seconds in (("by model, wall", old),
                                ("by sample, wall", {n: t["forward"] for n, t in new.items()}),
                                ("by sample, CPU time",
                                 {n: t["forward_cpu"] for n, t in new.items()})):
            schemes[scheme].append({n: seconds[n] / seconds["baseline"] for n in ROWS[1:]})
        schemes["by sample, CPU time, paired"].append({n: paired[n] for n in ROWS[1:]})
        loads.append(os.getloadavg()[0])
    result = {"commit": git_commit(), "command": "python " + " ".join(sys.argv),
              "cpus": os.cpu_count(), "load_1min": loads, "ratios": schemes}
    lines = ["# Latency ratio under load: wall time vs CPU time", "",
             f"`{result['command']}` at commit `{result['commit']}`; {args.reps} repetitions, "
             f"1-minute load {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores (the "
             "measurement itself is 1 of it). Forward-pass time of each seed-0 student over "
             "the baseline's (batch 1, one thread, the fastest of "
             f"{args.rounds} passes per sample, {len(batches)} samples); one cell per "
             "repetition. The baseline loaded again is the same network and weights: its "
             "true ratio is 1.00.", "",
             "| scheme | " + " | ".join(ROWS[1:]) + " | largest \\|ratio − 1\\| |",
             "|---|" + "---|" * len(ROWS)]
    for scheme, reps in schemes.items():
        cells = [" / ".join(f"{r[n]:.3f}" for r in reps) for n in ROWS[1:]]
        worst = max(abs(r[n] - 1) for r in reps for n in ROWS[1:])
        lines.append(f"| {scheme} | " + " | ".join(cells) + f" | {worst:.3f} |")
    save("latency_noise", result, lines)


if __name__ == "__main__":
    main()

"""Whether a distillation training step costs the same whatever the weights: the bench's
restored runs (no checkpoint) timed with initial and with trained teacher weights, against
runs trained here.

    .venv/bin/python benchmarks/step_time_weights.py --runs RUNS --data DIR [--seed 2]
        [--rounds 5]

``RUNS`` is a tiny bench's runs folder whose seed-0 runs were restored from the archive (no
checkpoint) and whose ``--seed`` runs were trained here (checkpoints). Each model takes one
training step per round on the bench's training batch, round-robin, one thread, timed in the
thread's CPU time (:func:`bevkd.bench.steptime.median_step_seconds`, as the bench's step-time
column is): the baseline and each method's seed-0 network with its teachers' initial weights
(what the bench timed before session 39), the same with the teachers' trained weights (what it
times now for a restored run), and the method's trained run. DualDistill at the CRD
temperatures 0.1 and 1.0 (the temperature ablations) is one network with three settings.
Ratios are over the baseline's trained run. Writes benchmarks/step_time_weights_tiny.md and
.json.
"""

from __future__ import annotations

import _pinned  # noqa: F401  (first: numpy's BLAS kernels pinned before numpy loads)
import argparse
import os
import sys

import torch

from _results import save
from bevkd.bench.archive import timing_model
from bevkd.bench.runner import has_checkpoint
from bevkd.bench.steptime import median_step_seconds, training_batch
from bevkd.provenance import git_commit, machine, machine_label

METHODS = ("bevdistill", "labeldistill", "dualdistill", "asd", "composite")
TEMPERATURES = ("dualdistill_T0.1", "dualdistill_T1.0")  # seed-0 ablations only
KINDS = ("initial teachers", "trained teachers", "trained run")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--seed", type=int, default=2, help="the seed trained here (checkpoints)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    runs = {"baseline": {"initial teachers": "baseline-s0",
                         "trained run": f"baseline-s{args.seed}"}}
    for model in (*METHODS, *TEMPERATURES):
        runs[model] = {"initial teachers": f"{model}-s0", "trained teachers": f"{model}-s0"}
        if model in METHODS:
            runs[model]["trained run"] = f"{model}-s{args.seed}"
    models, cfgs = {}, []
    for model, kinds in runs.items():
        for kind, name in kinds.items():
            run = os.path.join(args.runs, name)
            trained = has_checkpoint(run)
            if trained != (kind == "trained run"):
                sys.exit(f"{run}: expected {'a' if kind == 'trained run' else 'no'} checkpoint")
            cfg, net, _ = timing_model(run, teacher_weights=kind != "initial teachers")
            models[(model, kind)] = net.train()
            cfgs.append(cfg)
            print(f"built {model}: {kind} ({name})", flush=True)
    seconds = median_step_seconds(models, training_batch(cfgs, args.data), args.rounds)
    base = seconds[("baseline", "trained run")]
    ratio = {k: v / base for k, v in seconds.items()}
    lines = ["# A distillation step's cost and the weights (tiny bench runs)", "",
             f"`python benchmarks/step_time_weights.py --runs {args.runs} --data {args.data} "
             f"--seed {args.seed} --rounds {args.rounds}` at commit `{git_commit()}` on "
             f"{machine_label(machine())}. One training step per model and round "
             f"({args.rounds} rounds, round-robin, one thread, the thread's CPU time), the "
             "median over the baseline's "
             f"trained run's (baseline-s{args.seed}: {base:.2f} s). *Initial teachers*: the "
             "restored seed-0 run's network with every weight initial, as the bench timed a "
             "restored run before session 39; *trained teachers*: the same with its teachers' "
             "checkpoints loaded, as it times one now; *trained run*: the seed trained here.",
             "", "| model | " + " | ".join(KINDS) + " | trained / initial teachers |",
             "|---|---|---|---|---|"]
    for model, kinds in runs.items():
        cells = [f"{ratio[(model, k)]:.2f}" if k in kinds else "" for k in KINDS]
        moved = (f"{ratio[(model, 'trained teachers')] / ratio[(model, 'initial teachers')]:.2f}"
                 if "trained teachers" in kinds else "")
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {moved} |")
    result = {"commit": git_commit(), "machine": machine_label(machine()), "rounds": args.rounds,
              "command": " ".join(["python", *sys.argv]), "baseline_seconds": base,
              "rows": [{"model": m, "kind": k, "run": runs[m][k], "seconds": seconds[(m, k)],
                        "ratio": ratio[(m, k)]} for m, k in seconds]}
    save("step_time_weights_tiny", result, lines)


if __name__ == "__main__":
    main()

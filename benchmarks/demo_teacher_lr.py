"""The demo's LiDAR teacher at several learning rates: what `configs/presets/demo.yaml`'s
``optim.lr`` was chosen by (its 12 epochs of 15 steps run beside the backbone's pretraining
in `make demo`, so a better teacher costs the demo no time).

    .venv/bin/python benchmarks/demo_teacher_lr.py DATA RUNS [--lrs 2e-3,4e-3,6e-3,8e-3]

DATA is the demo's SynthScenes (`make demo` writes it to demo_out/synth: 8 scenes of 10
samples, seed 0). Each learning rate trains ``bevkd train configs/teacher/pillars.yaml
--preset demo --set optim.lr=LR`` into ``RUNS/lr_<LR>`` on one thread, two at a time as the
demo trains (a finished run there is read, not trained again); mAP / NDS are its final
validation on the demo's 20 val samples. One training per rate: a trend, not a verdict.
"""

from __future__ import annotations

import _pinned  # noqa: F401  (first: numpy's BLAS kernels pinned before numpy loads)
import argparse
import json
import os
import subprocess
import sys

from _results import save
from bevkd.provenance import git_commit


def train(data: str, run: str, lr: str) -> subprocess.Popen | None:
    """The training of ``run`` at ``lr``, started; None where it has finished already."""
    if os.path.isfile(os.path.join(run, "eval", "synth_val", "metrics.json")):
        return None
    cmd = [sys.executable, "-m", "bevkd.cli", "train", "configs/teacher/pillars.yaml",
           "--preset", "demo", "--data", data, "--out", run, "--set", "train.threads=1",
           "--set", f"optim.lr={lr}"]
    os.makedirs(run, exist_ok=True)
    log = open(os.path.join(run, "train.log"), "a")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("runs")
    ap.add_argument("--lrs", default="2e-3,4e-3,6e-3,8e-3")
    args = ap.parse_args()
    lrs = [x for x in args.lrs.split(",") if x]
    runs = {lr: os.path.join(args.runs, f"lr_{lr}") for lr in lrs}
    for i in range(0, len(lrs), 2):  # two at a time, as the demo's two trainings share 2 cores
        procs = [p for p in (train(args.data, runs[lr], lr) for lr in lrs[i:i + 2]) if p]
        if any(p.wait() != 0 for p in procs):
            sys.exit(f"a training failed; see {args.runs}/lr_*/train.log")
    rows = []
    for lr, run in runs.items():
        with open(os.path.join(run, "eval", "synth_val", "metrics.json")) as f:
            m = json.load(f)
        with open(os.path.join(run, "meta.json")) as f:
            commit = json.load(f).get("commit")
        rows.append({"lr": float(lr), "mAP": m["mean_ap"], "NDS": m["nd_score"],
                     "run_commit": commit})
    command = "python benchmarks/demo_teacher_lr.py " + " ".join(sys.argv[1:])
    lines = ["# The demo's LiDAR teacher by learning rate", "",
             f"`{command}` at commit `{git_commit()}`: `bevkd train "
             "configs/teacher/pillars.yaml --preset demo --set optim.lr=LR` (12 epochs of 15 "
             "steps), one training per rate, two at a time on one thread each; mAP / NDS in "
             "percent on the demo's 20 val samples. The preset takes the best mAP.", "",
             "| lr | mAP | NDS | trained at |", "|---|---|---|---|"]
    lines += [f"| {r['lr']:g} | {100 * r['mAP']:.1f} | {100 * r['NDS']:.1f} | "
              f"`{(r['run_commit'] or '?')[:8]}` |" for r in rows]
    save("demo_teacher_lr", {"commit": git_commit(), "command": command, "rows": rows}, lines)


if __name__ == "__main__":
    main()

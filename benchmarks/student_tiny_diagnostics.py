"""Why the tiny camera student barely learns: a table of diagnostic trainings.

    .venv/bin/python benchmarks/student_tiny_diagnostics.py RUN_ROOT

Each row is a `bevkd train configs/student/bevdepth.yaml --preset tiny --data DATA --out
RUN_ROOT/<name> <overrides>` run on the same SynthScenes (24 scenes x 20 samples, seed 0;
380 training samples, 95 steps per epoch at batch 4). The table reads each run's logs (every
attempt of a resumed run, through ``bevkd.engine.history``): the training heatmap loss (mean
of 21 steps around the step) and the validation mAP / NDS after each evaluated epoch.
Writes benchmarks/student_tiny_diagnostics.md.
"""

from __future__ import annotations

import _pinned  # noqa: F401  (first: numpy's BLAS kernels pinned before numpy loads)
import argparse
import os

import numpy as np

from bevkd.engine.history import step_series, training_log, validations

HERE = os.path.dirname(os.path.abspath(__file__))

# name -> what differs from the tiny preset as it was before commit 9a01464 (BEV
# augmentation, stride 16, 32-channel head branches, no pretrained backbone, 8 epochs)
OLD_RUNS = {
    "baseline_3ep": "preset as is (BEV + image augmentation), 3 epochs",
    "A_nobda": "no BEV augmentation (rot 0, scale 1, no flips), 3 epochs",
    "B_noaug": "no BEV and no image augmentation, 3 epochs",
    "C_oracle": "no BEV aug; the LiDAR depth bin forced into the lift in training and "
                "validation (benchmarks/oracle_depth_train.py), 2 epochs",
    "D_s8": "no BEV aug; image and depth stride 8 (8x22 cells per camera), 2 epochs",
    "F_pt_nobda": "no BEV aug; backbone from `bevkd pretrain` (600 steps), 3 epochs (stopped "
                  "after 2)",
    "G_pt_bda": "preset augmentation; backbone from `bevkd pretrain`, 3 epochs (stopped after 2)",
    "H_pt_s8_4ep": "no BEV aug; pretrained backbone; image and depth stride 8; 4 epochs, "
                   "evaluated after epochs 2 and 4 (2 threads)",
}
# name (relative to RUN_ROOT) -> what differs from the current tiny preset (no BEV
# augmentation, stride 8, 16-channel head branches, pretrained backbone, 4 epochs, lr 2e-3)
RUNS = {
    "../bench_tiny/baseline-s0": "none (the bench's baseline-s0)",
    "J_lr1e-3": "lr 1e-3",
    "J_lr5e-4": "lr 5e-4",
}
STEPS = (90, 180, 270, 370)


def summarise(run: str) -> dict:
    rows = training_log(run)  # every attempt of a resumed run
    steps, heatmap = step_series(rows, "train/heatmap_step")
    out = {"last_step": int(steps.max()) if len(steps) else 0, "heatmap": {}}
    for s in STEPS:
        near = heatmap[np.abs(steps - s) <= 10]
        if near.size and s <= out["last_step"]:
            out["heatmap"][s] = float(near.mean())
    out["val"] = [(e, v["val/mAP"], v["val/NDS"]) for e, v in validations(rows)
                  if "val/mAP" in v]
    return out


def _rows(root: str, runs: dict[str, str]) -> list[str]:
    lines = []
    for name, what in runs.items():
        run = os.path.normpath(os.path.join(root, name))
        if not os.path.isdir(run):
            continue
        s = summarise(run)
        hm = [f"{s['heatmap'][k]:.1f}" if k in s["heatmap"] else "—" for k in STEPS[:4]]
        val = ", ".join(f"e{e}: {100 * m:.2f} / {100 * n:.1f}" for e, m, n in s["val"]) or "—"
        lines.append(f"| {os.path.basename(name)} | {what} | {' | '.join(hm)} | {val} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", help="folder holding the diagnostic runs")
    args = ap.parse_args()
    lines = ["# Tiny camera student: what limits learning (diagnostic runs)", "",
             f"`python benchmarks/student_tiny_diagnostics.py {args.root}`. Runs of "
             "`bevkd train configs/student/bevdepth.yaml --preset tiny` on SynthScenes "
             "(24 scenes x 20 samples, 800x450, seed 0; 95 steps per epoch), two at a time on "
             "2 shared cores. Heatmap loss: training, mean of the steps within +-10 of the step "
             "(the all-background plateau is ~14-15; the LiDAR teacher reaches 8.7 by step 228). "
             "mAP / NDS in percent on synth_val after the epoch (0-based).", "",
             "| run | change vs the tiny preset before commit 9a01464 | heatmap @90 | @180 | "
             "@270 | @370 | val mAP / NDS by epoch |", "|---|---|---|---|---|---|---|"]
    lines += _rows(args.root, OLD_RUNS)
    lines += ["", "After commit 9a01464 the preset takes the best of these (no BEV augmentation, "
              "stride 8, pretrained backbone) and 16-channel head branches (cheaper, see "
              "tiny_head_cost.md). Learning rates below 2e-3 do not help within 4 epochs.", "",
              "| run | change vs the current tiny preset | heatmap @90 | @180 | @270 | @370 | "
              "val mAP / NDS by epoch |", "|---|---|---|---|---|---|---|"]
    lines += _rows(args.root, RUNS)
    with open(os.path.join(HERE, "student_tiny_diagnostics.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

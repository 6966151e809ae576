"""What CenterHead's branch width costs on the tiny preset: training-step time of the camera
student and the LiDAR teacher with 32- and 16-channel head branches.

    .venv/bin/python benchmarks/tiny_head_cost.py --data DIR [--rounds 5]

CenterHead has one branch per (task group, regression target): 6 groups x 6 targets = 36
3x3 convolutions on the full BEV grid, which at 32 channels cost about as much as the
ResNet-18 image backbone on a 64x176 image. All four models train on one fixed batch in one
process, one thread, round-robin (one step of each per round), so machine noise hits all
alike. Writes benchmarks/tiny_head_cost.md and .json (the reason for the tiny preset's
``head_channels: 16``).
"""

from __future__ import annotations

import _pinned  # noqa: F401  (first: numpy's BLAS kernels pinned before numpy loads)
import argparse
import os

import torch

from _results import save
from bevkd.bench.steptime import median_step_seconds
from bevkd.builder import build_model
from bevkd.config import CONFIGS_DIR
from bevkd.data.nuscenes import NuScenesDataset
from bevkd.engine.config import load_experiment
from bevkd.provenance import git_commit
from bevkd.structures.batch import collate

CONFIGS = CONFIGS_DIR
MODELS = {"student": "student/bevdepth.yaml", "teacher": "teacher/pillars.yaml"}
WIDTHS = (32, 16)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    models, batch = {}, None
    for name, config in MODELS.items():
        for width in WIDTHS:
            cfg = load_experiment(os.path.join(CONFIGS, config), "tiny",
                                  ["data.use_lidar=true", f"model.args.head_channels={width}"])
            key = (name, width)
            models[key] = build_model(cfg).train()
            if batch is None:
                ds = NuScenesDataset(args.data, cfg.train.version, cfg.train.train_split,
                                     cfg.data, train=True)
                batch = collate([ds[i] for i in range(cfg.train.batch_size)])
    med = median_step_seconds(models, batch, args.rounds)
    rows = [{"model": name, "head_channels": w, "step_seconds": med[(name, w)],
             "ratio_vs_32": med[(name, w)] / med[(name, 32)],
             "parameters": sum(p.numel() for p in models[(name, w)].parameters())}
            for name in MODELS for w in WIDTHS]
    result = {"commit": git_commit(),
              "command": f"python benchmarks/tiny_head_cost.py --rounds {args.rounds}",
              "batch_size": batch.size, "threads": 1, "rows": rows}
    lines = ["# CenterHead branch width on the tiny preset: training-step cost", "",
             f"`{result['command']}` at commit `{result['commit']}`: tiny preset, batch "
             f"{batch.size}, one thread, median of {args.rounds} interleaved steps.", "",
             "| model | head channels | parameters | step s | ratio vs 32 channels |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['head_channels']} | {r['parameters']:,} | "
              f"{r['step_seconds']:.2f} | {r['ratio_vs_32']:.2f} |" for r in rows]
    save("tiny_head_cost", result, lines)


if __name__ == "__main__":
    main()

"""Diagnostic: can a model fit a few samples when the training augmentation is redrawn each step?

    .venv/bin/python benchmarks/overfit_augmentation.py CONFIG --data DIR [--aug]
        [--steps 120] [--lr 2e-3] [--set key=value ...]

Trains on the first 3 samples of ``synth_train`` (fresh augmentation every step with --aug,
none without) and reports mAP/NDS on those samples through the eval pipeline. Comparing
``--aug`` with and without ``--set data.bev.*`` / ``data.image.*`` switched off isolates which
augmentation a model cannot learn through (see the #4 note of session 1).
"""

from __future__ import annotations

import _pinned  # noqa: F401  (first: numpy's BLAS kernels pinned before numpy loads)
import argparse

import torch

from bevkd.builder import build_model
from bevkd.data.nuscenes import NuScenesDataset
from bevkd.engine.config import load_experiment
from bevkd.eval.evaluator import DetectionEvaluator
from bevkd.structures.batch import collate

SMALL = ["grid.cell=3.2", "data.lidar_sweeps=1", "model.args.head_channels=16",
         "model.args.trunk_channels=[24, 48]"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--data", required=True)
    ap.add_argument("--aug", action="store_true", help="redraw training augmentation each step")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = load_experiment(args.config, "tiny", SMALL + args.overrides)
    train = NuScenesDataset(args.data, "v1.0-synth", "synth_train", cfg.data, train=args.aug)
    plain = NuScenesDataset(args.data, "v1.0-synth", "synth_train", cfg.data, train=False)
    model = build_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps,
                                                pct_start=0.2)
    loss = torch.zeros(())
    for step in range(args.steps):
        train.set_epoch(step)
        batch = collate([train[i] for i in range(3)])
        model.train()
        loss = sum(model.loss(model(batch), batch).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    batch = collate([plain[i] for i in range(3)])
    with torch.no_grad():
        dets = [d.numpy() for d in model.decode(model(batch), batch)]
    m = DetectionEvaluator(args.data, "v1.0-synth", "synth_train").evaluate(dets)
    print(f"aug={args.aug} mAP {m['mean_ap']:.3f} NDS {m['nd_score']:.3f} "
          f"final loss {loss.item():.2f}")


if __name__ == "__main__":
    main()

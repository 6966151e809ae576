"""Training-step time of each distillation method relative to the baseline student.

    .venv/bin/python benchmarks/distill_step_time.py --data DIR --lidar RUN --fusion RUN \
        --label RUN [--preset tiny] [--rounds 6]

Every model trains on the same fixed batch in one process, one thread, round-robin (one step
of each model per round), so machine noise hits all alike; the table gives the median step
time and its ratio to the baseline's. Teacher weights do not matter for timing. Writes
benchmarks/distill_step_time.md and .json.
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
ROWS = ("baseline", "bevdistill", "labeldistill", "dualdistill", "asd", "asd_shared_lift",
        "composite")
# rows that are a method's config with other settings: row -> (config, --set strings)
VARIANTS = {"asd_shared_lift": ("asd", ("distill.methods.0.args.sim_lift=shared",))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--lidar", required=True, help="LiDAR teacher run")
    ap.add_argument("--fusion", required=True, help="fusion teacher run")
    ap.add_argument("--label", required=True, help="label encoder run")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    teachers = [f"distill.teachers.lidar={args.lidar}", f"distill.teachers.fusion={args.fusion}",
                f"distill.teachers.label={args.label}"]
    models, batch = {}, None
    for row in ROWS:
        name, sets = VARIANTS.get(row, (row, ()))
        config = os.path.join(CONFIGS, "student" if row == "baseline" else "distill",
                              "bevdepth.yaml" if row == "baseline" else f"{name}.yaml")
        cfg = load_experiment(config, args.preset, ["data.use_lidar=true"]
                              + ([] if row == "baseline" else [*teachers, *sets]))
        if row != "baseline":  # only the roles the methods use
            roles = {r for m in cfg.distill.methods for r in _roles(m.type)}
            cfg = _keep_roles(cfg, roles)
        models[row] = build_model(cfg).train()
        if batch is None:
            ds = NuScenesDataset(args.data, cfg.train.version, cfg.train.train_split, cfg.data,
                                 train=True)
            batch = collate([ds[i] for i in range(cfg.train.batch_size)])
    med = median_step_seconds(models, batch, args.rounds)
    result = {"commit": git_commit(),
              "command": f"python benchmarks/distill_step_time.py --preset {args.preset} "
                         f"--rounds {args.rounds}",
              "batch_size": batch.size, "threads": 1,
              "rows": [{"model": r, "step_seconds": med[r],
                        "step_time_ratio": med[r] / med["baseline"]} for r in ROWS]}
    lines = ["# Distillation training-step time vs the baseline", "",
             f"`{result['command']}` at commit `{result['commit']}`: {args.preset} preset, batch "
             f"{batch.size}, one thread, median of {args.rounds} interleaved steps (teacher "
             "forward passes included).", "",
             "| model | step s | ratio vs baseline |", "|---|---|---|"]
    lines += [f"| {r['model']} | {r['step_seconds']:.2f} | {r['step_time_ratio']:.2f} |"
              for r in result["rows"]]
    save("distill_step_time", result, lines)


def _roles(method: str) -> tuple[str, ...]:
    from bevkd.distill.methods import DISTILLERS

    return DISTILLERS[method].roles


def _keep_roles(cfg, roles):
    from dataclasses import replace

    teachers = {r: p for r, p in cfg.distill.teachers.items() if r in roles}
    return replace(cfg, distill=replace(cfg.distill, teachers=teachers))


if __name__ == "__main__":
    main()

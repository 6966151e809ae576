"""How much of the tiny table the decoder's circle NMS leaves on the floor: the same trained
runs decoded with CenterPoint's published radii and two alternatives.

    .venv/bin/python benchmarks/nms_radius_tiny.py DATA RUN [RUN ...] [--name nms_radius_tiny]

CenterHead keeps CenterPoint's per-task ``min_radius`` (compared with the *squared* centre
distance, so the radii are sqrt(r): 2.0 m cars, 3.5 m trucks, 3.2 m buses, 1.0 m barriers,
0.92 m bikes, 0.42 m pedestrians and cones). BEVDepth uses them on a 0.8 m output grid; the
tiny preset's cells are 1.6 m, so for bikes, pedestrians, cones and barriers two neighbouring
cells of one peak both survive (nothing suppresses neighbours; there is no max-pool peak
step, as in BEVDepth's `nms_type="circle"`). Each run is run over its validation split once;
its head outputs are decoded three ways and scored with the nuScenes metrics:
``published``; ``floor_cell`` (every radius at least one grid cell); ``x4`` (each
``min_radius`` x4: every radius doubled, BEVDepth's radii in cells). Decoding only: nothing
is retrained, and the bench keeps the published radii.
"""

from __future__ import annotations

import _pinned  # noqa: F401  (first: numpy's BLAS kernels pinned before numpy loads)
import argparse

import torch

from _results import save
from bevkd.data.nuscenes import NuScenesDataset
from bevkd.engine.run import epoch_loader, load_trained
from bevkd.eval.evaluator import DetectionEvaluator
from bevkd.provenance import git_commit



def settings(published: tuple[float, ...], cell: float) -> dict[str, tuple[float, ...]]:
    """The three ways of decoding: the head's own ``min_radius`` values, each at least one
    ``cell`` (squared, as ``min_radius`` is compared with squared distances), each x4."""
    return {"published": tuple(published),
            "floor_cell": tuple(max(r, cell ** 2) for r in published),
            "x4": tuple(4 * r for r in published)}


def decode_three_ways(run: str, data: str) -> dict[str, dict]:
    """``{setting: metrics}`` for one run (head outputs computed once)."""
    cfg, model = load_trained(run)
    model.eval()
    head = getattr(model, "head", None) or model.student.head
    ds = NuScenesDataset(data, cfg.train.version, cfg.train.val_split, cfg.data, train=False)
    with torch.no_grad():
        cache = [(model(b), b) for b in epoch_loader(ds, cfg, shuffle=False)]
    evaluator = DetectionEvaluator(data, cfg.train.version, cfg.train.val_split)
    out = {}
    ways = settings(head.nms_radius, cfg.grid.cell)
    for name, radii in ways.items():
        head.nms_radius = radii
        with torch.no_grad():
            dets = [d.numpy() for o, b in cache for d in model.decode(o, b)]
        m = evaluator.evaluate(dets)
        out[name] = {"radii": radii, "mAP": m["mean_ap"], "NDS": m["nd_score"],
                     "class_ap": m["mean_dist_aps"], "boxes": sum(len(d) for d in dets)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--name", default="nms_radius_tiny")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = {run: decode_three_ways(run, args.data) for run in args.runs}
    command = f"python benchmarks/nms_radius_tiny.py {args.data} {' '.join(args.runs)}"
    result = {"commit": git_commit(), "command": command, "runs": rows}
    small = ("pedestrian", "traffic_cone", "barrier", "bicycle", "motorcycle")
    lines = ["# Circle-NMS radii on the tiny preset's grid (decoding only)", "",
             f"`{command}` at commit `{result['commit']}`.", "", __doc__.split("\n\n", 2)[2], "",
             "| run | radii | mAP | NDS | boxes | " + " | ".join(f"AP {c}" for c in small) + " |",
             "|---|---|---|---|---|" + "---|" * len(small)]
    for run, by in rows.items():
        for name, r in by.items():
            aps = " | ".join(f"{100 * r['class_ap'][c]:.1f}" for c in small)
            lines.append(f"| {run.rstrip('/').split('/')[-1]} | {name} | {100 * r['mAP']:.2f} | "
                         f"{100 * r['NDS']:.2f} | {r['boxes']} | {aps} |")
    save(args.name, result, lines)


if __name__ == "__main__":
    main()

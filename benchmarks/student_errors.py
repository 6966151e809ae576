"""Where the camera students lose AP: score separation, box placement or depth.

    .venv/bin/python benchmarks/student_errors.py RUNS DATA [--name student_errors_tiny]

Every finished bench run ``RUNS/<name>`` (teacher and seed-0 students) detects on the whole
``synth_val`` split (no augmentation, one thread). For the car class, predictions are matched
to the GT cars within 40 m of the ego (all of them: the loader's targets do not carry the
LiDAR point counts the devkit filters on) as the devkit matches (descending score, nearest
free GT centre), at 2 m and at 4 m:
- **score separation**: median score of the predictions matched at 2 m and of the unmatched
  ones; the fraction of the top-scored predictions (as many as there are GT cars) that match.
  A model whose scores do not separate objects from background has low AP however well it
  places the boxes it does score highly;
- **placement**: median |radial| and |lateral| centre error (m) of the 4 m matches, radial
  along the ego-to-object ray, where a camera's depth error goes;
- **depth** (camera models): of the feature cells with a LiDAR depth target, the share whose
  arg-max depth bin is the target's, and the softmax mass within one bin of it;
- **localisation by range**: per sample, the top-k car predictions (k = its GT cars) matched at
  2 m, as the recall of the GT cars at 0-10, 10-20, 20-30 and 30-40 m; and the same for those
  predictions mirrored front-to-back (x -> -x), a null that keeps what a model knows without
  looking (the road runs along x: lanes, where cars park) and loses what it sees. A model that
  localises what it sees beats its null; one that has learnt the layout prior only does not.
"""

from __future__ import annotations

import _pinned  # noqa: F401  (first: numpy's BLAS kernels pinned before numpy loads)
import argparse
import os

import numpy as np
import torch

from _results import save
from bevkd.data.nuscenes import NuScenesDataset
from bevkd.engine.run import load_trained
from bevkd.models.camera.lss import depth_bin_index
from bevkd.provenance import git_commit
from bevkd.structures.batch import collate
from bevkd.structures.classes import CLASS_INDEX

CAR = CLASS_INDEX["car"]
RUNS = ("teacher", "baseline-s0", "bevdistill-s0", "labeldistill-s0", "dualdistill-s0",
        "asd-s0", "composite-s0")
MAX_RANGE = 40.0
RANGES = (0.0, 10.0, 20.0, 30.0, 40.0)


def match(pred_xy: np.ndarray, scores: np.ndarray, gt_xy: np.ndarray, thr: float) -> np.ndarray:
    """Devkit-style greedy matching: predictions in descending score take the nearest free GT
    centre within ``thr`` m. Returns the matched GT index per prediction (-1: none)."""
    out = np.full(len(pred_xy), -1)
    free = np.ones(len(gt_xy), bool)
    for i in np.argsort(-scores, kind="stable"):
        if not free.any():
            break
        d = np.linalg.norm(gt_xy - pred_xy[i], axis=1)
        d[~free] = np.inf
        j = int(np.argmin(d))
        if d[j] < thr:
            out[i], free[j] = j, False
    return out


def measure(run: str, data: str, batch_size: int = 4) -> dict[str, float]:
    cfg, model = load_trained(run)
    model = getattr(model, "student", model).eval()
    ds = NuScenesDataset(data, cfg.train.version, cfg.train.val_split, cfg.data, train=False)
    tp_scores, fp_scores, rad, lat, top_hits = [], [], [], [], []
    n_gt = n_top = 0
    by_range = np.zeros((3, len(RANGES) - 1))  # GT cars, top-k hits, mirrored top-k hits
    depth = {"cells": 0, "exact": 0.0, "within1": 0.0}
    with torch.no_grad():
        for start in range(0, len(ds), batch_size):
            batch = collate([ds[i] for i in range(start, min(start + batch_size, len(ds)))])
            out = model(batch)
            logits = out.feats.get("depth_logits")
            if logits is not None and batch.targets.depth is not None:
                idx = depth_bin_index(batch.targets.depth, model.encoder.view.depth_bins)
                ok = idx >= 0
                prob = logits.float().softmax(2).permute(0, 1, 3, 4, 2)[ok]  # (K, D)
                tgt = idx[ok]
                off = (torch.arange(prob.shape[1])[None] - tgt[:, None]).abs()
                depth["cells"] += len(tgt)
                depth["exact"] += float((prob.argmax(1) == tgt).sum())
                depth["within1"] += float((prob * (off <= 1)).sum())
            for det, boxes, labels in zip(model.decode(out, batch), batch.targets.boxes,
                                          batch.targets.labels):
                g = boxes.tensor.numpy()[labels.numpy() == CAR][:, :2]
                g = g[np.linalg.norm(g, axis=1) <= MAX_RANGE]
                car = np.asarray(det.labels) == CAR
                p = np.asarray(det.boxes.tensor)[car][:, :2]
                s = np.asarray(det.scores)[car]
                keep = np.linalg.norm(p, axis=1) <= MAX_RANGE
                p, s = p[keep], s[keep]
                n_gt += len(g)
                m2, m4 = match(p, s, g, 2.0), match(p, s, g, 4.0)
                tp_scores += s[m2 >= 0].tolist()
                fp_scores += s[m2 < 0].tolist()
                top = np.argsort(-s, kind="stable")[:len(g)]
                top_hits += (m2[top] >= 0).tolist()
                n_top += len(top)
                bucket = np.digitize(np.linalg.norm(g, axis=1), RANGES[1:-1])
                for row, pts in ((1, p[top]), (2, p[top] * np.array([-1.0, 1.0]))):
                    m = match(pts, s[top], g, 2.0)
                    np.add.at(by_range[row], bucket[m[m >= 0]], 1)
                np.add.at(by_range[0], bucket, 1)
                for i in np.flatnonzero(m4 >= 0):
                    gt = g[m4[i]]
                    u = gt / max(np.linalg.norm(gt), 1e-6)
                    d = p[i] - gt
                    rad.append(abs(d @ u))
                    lat.append(abs(d @ np.array([-u[1], u[0]])))
    med = lambda v: float(np.median(v)) if len(v) else float("nan")  # noqa: E731
    row = {"gt_cars": n_gt, "tp_score_median": med(tp_scores), "fp_score_median": med(fp_scores),
           "top_k_precision": float(np.mean(top_hits)) if top_hits else float("nan"),
           "matched_4m": len(rad), "radial_median_m": med(rad), "lateral_median_m": med(lat)}
    with np.errstate(invalid="ignore"):
        row["recall_top_k_by_range"] = (by_range[1] / by_range[0]).tolist()
        row["mirrored_recall_by_range"] = (by_range[2] / by_range[0]).tolist()
    row["gt_cars_by_range"] = by_range[0].astype(int).tolist()
    if depth["cells"]:
        row["depth_exact"] = depth["exact"] / depth["cells"]
        row["depth_within_1_bin"] = depth["within1"] / depth["cells"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs")
    ap.add_argument("data")
    ap.add_argument("--name", default="student_errors_tiny")
    ap.add_argument("--only", nargs="+", default=list(RUNS),
                    help=f"run folders under RUNS to measure (default: {' '.join(RUNS)})")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name in args.only:
        run = os.path.join(args.runs, name)
        if os.path.isfile(os.path.join(run, "eval", "synth_val", "metrics.json")):
            rows.append({"run": name, **measure(run, args.data)})
            print(rows[-1], flush=True)
    command = f"python benchmarks/student_errors.py {args.runs} {args.data} --name {args.name}"
    if args.only != list(RUNS):
        command += " --only " + " ".join(args.only)
    result = {"commit": git_commit(), "command": command, "rows": rows}
    fmt = lambda v, p=2: "—" if v is None or v != v else f"{v:.{p}f}"  # noqa: E731
    lines = ["# Where the camera students lose AP (car class, synth_val)", "",
             f"`{command}` at commit `{result['commit']}`. {__doc__.split(chr(10), 3)[3].strip()}",
             "", "| run | GT cars | score of 2 m matches / of the rest (median) | top-k precision "
             "| 4 m matches | radial / lateral error (median m) | depth: arg-max exact / mass "
             "within 1 bin | top-k recall at 0-10 / 10-20 / 20-30 / 30-40 m | mirrored "
             "(null) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['gt_cars']} | {fmt(r['tp_score_median'])} / "
                     f"{fmt(r['fp_score_median'])} | {fmt(r['top_k_precision'])} | "
                     f"{r['matched_4m']} | {fmt(r['radial_median_m'])} / "
                     f"{fmt(r['lateral_median_m'])} | {fmt(r.get('depth_exact'))} / "
                     f"{fmt(r.get('depth_within_1_bin'))} | "
                     f"{' / '.join(fmt(v) for v in r['recall_top_k_by_range'])} | "
                     f"{' / '.join(fmt(v) for v in r['mirrored_recall_by_range'])} |")
    save(args.name, result, lines)


if __name__ == "__main__":
    main()

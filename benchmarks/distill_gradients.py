"""How hard each loss term pushes the camera student's lifted BEV feature, next to the
detection loss: the measured half of "why does this method not help".

    .venv/bin/python benchmarks/distill_gradients.py RUNS DATA [--seed 0] [--batches 4]
                                                     [--name distill_gradients_tiny]

Every method's signal reaches the deployed camera path through ``bev_in`` (the LSS output
that feeds the BEV trunk): feature terms directly or through their training-only adapters,
response terms back through the head and the trunk. For each trained bench run
``RUNS/<model>-s<seed>`` (its final weights, training mode, training augmentation) and a
few fixed training batches, this takes the gradient of every weighted loss term with
respect to ``bev_in`` and reports its norm (mean over batches), its ratio to the detection
loss's (``heatmap + bbox``), and its cosine with the detection gradient (> 0: the term pulls
the feature the way detection does; ~0: an unrelated direction; < 0: against it). The
depth loss acts before the lift (its gradient here is 0). Writes benchmarks/<name>.md/.json.
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
from bevkd.provenance import git_commit
from bevkd.structures.batch import collate

MODELS = ("baseline", "bevdistill", "labeldistill", "dualdistill", "asd", "composite")
BATCH = 4


def term_gradients(run: str, data: str, batches: int) -> dict[str, dict[str, float]]:
    """``{term: {"norm": mean |dL/d bev_in|, "cos": mean cosine with the detection
    gradient}}`` over ``batches`` fixed training batches; ``detection`` = heatmap + bbox."""
    cfg, model = load_trained(run, use_ema=False)
    model.train()  # teachers stay in eval (DistillModel's contract)
    ds = NuScenesDataset(data, cfg.train.version, cfg.train.train_split, cfg.data, train=True,
                         seed=0)
    picks = np.linspace(0, len(ds) - 1, batches * BATCH).astype(int)
    sums: dict[str, dict[str, float]] = {}
    for k in range(batches):
        batch = collate([ds[int(i)] for i in picks[k * BATCH:(k + 1) * BATCH]])
        out = model(batch)
        losses = model.loss(out, batch)
        student = getattr(out, "student", out)
        feat = student.feats["bev_in"]
        terms = {"detection": losses["heatmap"] + losses["bbox"], **losses}
        grads = {}
        for name, value in terms.items():
            g = torch.autograd.grad(value, feat, retain_graph=True, allow_unused=True)[0]
            grads[name] = torch.zeros_like(feat) if g is None else g
        ref = grads["detection"].flatten()
        for name, g in grads.items():
            flat = g.flatten()
            norm = float(flat.norm())
            cos = float(flat @ ref / (norm * ref.norm())) if norm > 0 and ref.norm() > 0 else 0.0
            acc = sums.setdefault(name, {"norm": 0.0, "cos": 0.0})
            acc["norm"] += norm / batches
            acc["cos"] += cos / batches
    return sums


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", help="the bench's --runs folder")
    ap.add_argument("data")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--name", default="distill_gradients_tiny")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    rows = []
    for model in MODELS:
        run = os.path.join(args.runs, f"{model}-s{args.seed}")
        if not os.path.isdir(run):
            continue
        grads = term_gradients(run, args.data, args.batches)
        det = grads["detection"]["norm"]
        for term, g in grads.items():
            rows.append({"model": model, "term": term, "grad_norm": g["norm"],
                         "ratio_to_detection": g["norm"] / det if det else None,
                         "cos_with_detection": g["cos"]})
        print(f"[gradients] {model} done", flush=True)
    command = (f"python benchmarks/distill_gradients.py {args.runs} {args.data} --seed "
               f"{args.seed} --batches {args.batches}")
    result = {"commit": git_commit(), "command": command, "batch_size": BATCH, "rows": rows}
    lines = [f"# Gradient of each loss term on the student's bev_in (seed-{args.seed} runs)", "",
             f"`{command}` at commit `{result['commit']}`.", "",
             __doc__.split("\n\n", 2)[2].strip(), "",
             "| model | term | gradient norm | ÷ detection | cosine with detection |",
             "|---|---|---|---|---|"]
    for r in rows:
        if r["term"] == "loss":
            continue
        ratio = "—" if r["ratio_to_detection"] is None else f"{r['ratio_to_detection']:.3f}"
        lines.append(f"| {r['model']} | {r['term']} | {r['grad_norm']:.4g} | {ratio} | "
                     f"{r['cos_with_detection']:+.2f} |")
    save(args.name, result, lines)


if __name__ == "__main__":
    main()

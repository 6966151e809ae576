"""Loss terms of the bench's runs: how large each distillation term is next to the detection
loss, early and late in training (the first thing to look at when a method does not help).

    .venv/bin/python benchmarks/distill_terms.py RUNS [--seed 0] [--name distill_terms_tiny]

Reads ``RUNS/<model>-s<seed>/logs/metrics*.csv`` (the step-level training logs of `bevkd
bench`) and writes benchmarks/<name>.md and .json: per run and term, the mean of the first
and the last 20 logged steps, and the term's share of the total loss at the end. Terms are
already weighted (what the optimiser sees). ``heatmap`` + ``bbox`` are the detection loss,
``depth`` BEVDepth's depth loss, ``distill/<method>/<term>`` the methods'.
"""

from __future__ import annotations

import argparse
import csv
import glob
import os

import numpy as np

from _results import save
from bevkd.provenance import git_commit

MODELS = ("baseline", "bevdistill", "labeldistill", "dualdistill", "asd", "composite")
WINDOW = 20


def terms(run: str) -> dict[str, tuple[float, float]]:
    """``{term: (mean of the first WINDOW logged steps, mean of the last WINDOW)}``."""
    parts = sorted(glob.glob(os.path.join(run, "logs", "metrics.part*.csv")))
    parts.append(os.path.join(run, "logs", "metrics.csv"))
    series: dict[str, list[tuple[int, float]]] = {}
    for path in parts:
        if not os.path.isfile(path):
            continue
        for row in csv.DictReader(open(path)):
            for key, value in row.items():
                if not value or not key.endswith("_step"):
                    continue
                name = key[:-len("_step")]
                if name.startswith("train/"):
                    name = name[len("train/"):]
                elif not name.startswith("distill/"):
                    continue
                series.setdefault(name, []).append((int(row["step"]), float(value)))
    out = {}
    for name, points in series.items():
        values = [v for _, v in sorted(dict(points).items())]  # one value per step
        out[name] = (float(np.mean(values[:WINDOW])), float(np.mean(values[-WINDOW:])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", help="the bench's --runs folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="distill_terms_tiny")
    args = ap.parse_args()
    rows = []
    for model in MODELS:
        run = os.path.join(args.runs, f"{model}-s{args.seed}")
        if not os.path.isdir(run):
            continue
        t = terms(run)
        total_end = t.get("loss", (np.nan, np.nan))[1]
        for name, (first, last) in sorted(t.items(), key=lambda kv: (kv[0] == "loss", kv[0])):
            rows.append({"model": model, "term": name, "first": first, "last": last,
                         "share_last": last / total_end if total_end else None})
    result = {"commit": git_commit(),
              "command": f"python benchmarks/distill_terms.py RUNS --seed {args.seed}",
              "window": WINDOW, "rows": rows}
    lines = [f"# Loss terms of the bench's seed-{args.seed} runs", "",
             f"`{result['command']}` at commit `{result['commit']}`. Weighted terms (what the "
             f"optimiser sees): mean of the first and of the last {WINDOW} logged training "
             "steps, and the term's share of the total loss over the last steps.", "",
             "| model | term | first steps | last steps | share of total (last) |",
             "|---|---|---|---|---|"]
    for r in rows:
        share = "—" if r["share_last"] is None else f"{100 * r['share_last']:.0f}%"
        lines.append(f"| {r['model']} | {r['term']} | {r['first']:.3f} | {r['last']:.3f} | "
                     f"{share} |")
    save(args.name, result, lines)


if __name__ == "__main__":
    main()

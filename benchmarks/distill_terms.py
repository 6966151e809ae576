"""Loss terms of the bench's runs: how large each distillation term is next to the detection
loss, early and late in training (the first thing to look at when a method does not help).

    .venv/bin/python benchmarks/distill_terms.py RUNS [--seed 0] [--name distill_terms_tiny]

Reads ``RUNS/<model>-s<seed>/logs/`` (the step-level training logs of `bevkd bench`, every
attempt of a resumed run) and writes benchmarks/<name>.md, .json and .png: per run and term,
the mean of the first and the last 20 logged steps, the term's share of the total loss at the
end, and the curves. Terms are already weighted (what the optimiser sees). ``heatmap`` +
``bbox`` are the detection loss, ``depth`` BEVDepth's depth loss, ``distill/<method>/<term>``
the methods'.
"""

from __future__ import annotations

import _pinned  # noqa: F401  (first: numpy's BLAS kernels pinned before numpy loads)
import argparse
import os

import numpy as np

from _results import HERE, save
from bevkd.provenance import git_commit
from bevkd.viz.curves import loss_curves, run_panel

MODELS = ("baseline", "bevdistill", "labeldistill", "dualdistill", "asd", "composite")
WINDOW = 20


def first_last(series: dict[str, tuple[np.ndarray, np.ndarray]]
               ) -> dict[str, tuple[float, float]]:
    """``{term: (mean of the first WINDOW logged steps, mean of the last WINDOW)}`` of
    ``loss_terms`` series."""
    return {name: (float(np.mean(values[:WINDOW])), float(np.mean(values[-WINDOW:])))
            for name, (_, values) in series.items() if values.size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", help="the bench's --runs folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="distill_terms_tiny")
    args = ap.parse_args()
    rows, curves, subtitles = [], {}, {}
    for model in MODELS:
        run = os.path.join(args.runs, f"{model}-s{args.seed}")
        if not os.path.isdir(run):
            continue
        curves[model], subtitle = run_panel(run)
        if subtitle:
            subtitles[model] = subtitle
        t = first_last(curves[model])
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
    lines += ["", f"![loss curves]({args.name}.png)"]
    if curves:
        loss_curves(curves, os.path.join(HERE, f"{args.name}.png"),
                    f"training losses, seed {args.seed} (weighted, 20-step means)", subtitles)
    save(args.name, result, lines)


if __name__ == "__main__":
    main()

"""PR curves per class and per-class AP / TP-error bar charts (matplotlib, Agg backend)."""

from __future__ import annotations

import math
import os

import numpy as np

from .config import TP_METRICS, TP_SHORT_NAMES
from .metrics import EvalResult


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def draw_plots(result: EvalResult, out_dir: str) -> list[str]:
    """Write ``pr_<class>.png``, ``ap_per_class.png`` and ``tp_errors_per_class.png``.

    Returns the written paths.
    """
    plt = _pyplot()
    os.makedirs(out_dir, exist_ok=True)
    summary = result.summary
    classes = list(summary["mean_dist_aps"])
    ths = summary["cfg"]["dist_ths"]
    paths = []
    for name in classes:
        fig, ax = plt.subplots(figsize=(5, 4))
        for th in ths:
            md = result.details[(name, th)]
            ap = summary["label_aps"][name][str(float(th))]
            ax.plot(md.recall, md.precision, label=f"{th} m: AP {ap:.3f}")
        ax.axvline(summary["cfg"]["min_recall"], color="0.6", ls="--", lw=0.8)
        ax.axhline(summary["cfg"]["min_precision"], color="0.6", ls="--", lw=0.8)
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
               title=f"{name}: mean AP {summary['mean_dist_aps'][name]:.3f}")
        ax.legend(loc="upper right", fontsize=8)
        paths.append(_save(fig, os.path.join(out_dir, f"pr_{name}.png"), plt))

    x = np.arange(len(classes))
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(ths)
    for k, th in enumerate(ths):
        aps = [summary["label_aps"][c][str(float(th))] for c in classes]
        ax.bar(x + (k - (len(ths) - 1) / 2) * width, aps, width, label=f"{th} m")
    ax.plot(x, [summary["mean_dist_aps"][c] for c in classes], "k_", ms=20, mew=2, label="mean")
    ax.set(xticks=x, ylim=(0, 1), ylabel="AP", title=f"AP per class (mAP {summary['mean_ap']:.3f},"
           f" NDS {summary['nd_score']:.3f})")
    ax.set_xticklabels(classes, rotation=30, ha="right")
    ax.legend(fontsize=8, ncol=len(ths) + 1)
    paths.append(_save(fig, os.path.join(out_dir, "ap_per_class.png"), plt))

    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(TP_METRICS)
    for k, m in enumerate(TP_METRICS):
        vals = [summary["label_tp_errors"][c][m] for c in classes]
        vals = [v if not math.isnan(v) else 0.0 for v in vals]  # excluded metrics: no bar
        ax.bar(x + (k - (len(TP_METRICS) - 1) / 2) * width, vals, width,
               label=f"{TP_SHORT_NAMES[m][1:]} (mean {summary['tp_errors'][m]:.3f})")
    ax.set(xticks=x, ylabel="error (m, 1-IoU, rad, m/s, 1-acc)", title="TP errors per class "
           "at 2 m (missing bars: excluded by the benchmark)")
    ax.set_xticklabels(classes, rotation=30, ha="right")
    ax.legend(fontsize=8, ncol=len(TP_METRICS))
    paths.append(_save(fig, os.path.join(out_dir, "tp_errors_per_class.png"), plt))
    return paths


def _save(fig, path: str, plt) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

"""Benchmark pictures: mAP/NDS bars with seed spread, per-class AP heatmap, validation mAP over
the epochs (convergence), and a BEV view of teacher vs baseline vs distilled predictions on one
validation sample."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402

from ..structures.classes import DETECTION_CLASSES  # noqa: E402
from ..structures.detections import Detections  # noqa: E402
from ..bench.plan import TEACHER_ROWS  # noqa: E402
from .sample import CLASS_COLORS  # noqa: E402


def bars(rows: list[dict[str, Any]], out: str, title: str) -> str:
    """Left: mAP and NDS of every model (mean over seeds, error bars = seed range). Right:
    the camera students on their own scale, mAP and NDS apart, each seed a dot, the
    baseline's seed range shaded: whether a method clears the seed noise is read off there.
    Returns ``out``."""
    students = [r for r in rows if r["model"] not in TEACHER_ROWS]
    fig, axes = plt.subplots(1, 3 if students else 1, dpi=110, squeeze=False,
                             figsize=(max(8, 0.9 * len(rows) + 2) + (8 if students else 0), 4.5),
                             gridspec_kw={"width_ratios": [1.4, 1, 1] if students else [1]})
    ax = axes[0, 0]
    names = [r["model"] for r in rows]
    x = np.arange(len(names))
    for k, (key, color) in enumerate((("mAP", "#1f77b4"), ("NDS", "#ff7f0e"))):
        vals = [100 * np.asarray(r[key]) for r in rows]
        mean = np.array([v.mean() for v in vals])
        lo = mean - np.array([v.min() for v in vals])
        hi = np.array([v.max() for v in vals]) - mean
        # plain lists: with one bar, matplotlib's error-bar check would turn a 1-element
        # array into a scalar, which NumPy deprecates
        ax.bar(x + (k - 0.5) * 0.38, mean, 0.38, yerr=[lo.tolist(), hi.tolist()], capsize=3,
               label=key, color=color)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("percent")
    ax.set_title(title)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    base = next((r for r in students if r["model"] == "baseline"), None)
    for ax, (key, color) in zip(axes[0, 1:], (("mAP", "#1f77b4"), ("NDS", "#ff7f0e"))):
        xs = np.arange(len(students))
        if base is not None:
            v = 100 * np.asarray(base[key])
            ax.axhspan(v.min(), v.max(), color="0.85", zorder=0, label="baseline seed range")
        for i, r in enumerate(students):
            v = 100 * np.asarray(r[key])
            ax.bar(i, v.mean(), 0.6, color=color, alpha=0.45)
            ax.scatter(np.full(len(v), i), v, color=color, edgecolor="black", zorder=3, s=22)
        top = max(100 * max(r[key]) for r in students)
        ax.set_ylim(0, 1.2 * top if top > 0 else 1.0)  # room for the legend above the dots
        ax.set_xticks(xs, [r["model"] for r in students], rotation=30, ha="right")
        ax.set_title(f"camera students: {key} (dots = seeds)")
        ax.grid(axis="y", alpha=0.3)
        if base is not None:
            ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def convergence(rows: list[dict[str, Any]], out: str, title: str) -> str:
    """Validation mAP after each validated epoch (the rows' ``val_curve``), teachers left and
    camera students right (their scales differ by ten): one colour per model, one line style
    per seed (solid, dashed, dotted, ...): whether a model still climbs at its last epoch.
    Returns ``out``."""
    styles = ("-", "--", ":", "-.")
    groups = [[r for r in rows if r["model"] in TEACHER_ROWS],
              [r for r in rows if r["model"] not in TEACHER_ROWS]]
    groups = [g for g in groups if any(c for r in g for c in r.get("val_curve") or [])]
    if not groups:
        raise ValueError("convergence: no row has validations to draw")
    fig, axes = plt.subplots(1, len(groups), figsize=(6.5 * len(groups), 4.6), dpi=110,
                             squeeze=False)
    palette = plt.get_cmap("tab10")
    for ax, group, name in zip(axes[0], groups, ("teachers", "camera students")
                               if len(groups) == 2 else ("models",)):
        for k, r in enumerate(group):
            for s, curve in zip(r["seeds"], r.get("val_curve") or []):
                if not curve:
                    continue
                e, m = np.asarray(curve)[:, 0], 100 * np.asarray(curve)[:, 1]
                ax.plot(e, m, styles[s % len(styles)], marker="o", ms=3.5, lw=1.4,
                        color=palette(k % 10), label=f"{r['model']} (seed {s})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation mAP (%)")
        ax.set_title(f"{title}: {name}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2 if len(group) > 4 else 1)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def per_class(rows: list[dict[str, Any]], out: str, title: str) -> str:
    """Per-class AP of every model as an annotated heatmap."""
    ap = np.array([[100 * r["AP_per_class"][c] for c in DETECTION_CLASSES] for r in rows])
    fig, ax = plt.subplots(figsize=(12, 0.45 * len(rows) + 2), dpi=110)
    im = ax.imshow(ap, cmap="viridis", vmin=0, vmax=max(1.0, ap.max()), aspect="auto")
    ax.set_xticks(range(len(DETECTION_CLASSES)), DETECTION_CLASSES, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), [r["model"] for r in rows])
    for i in range(ap.shape[0]):
        for j in range(ap.shape[1]):
            ax.text(j, i, f"{ap[i, j]:.0f}", ha="center", va="center", fontsize=8,
                    color="white" if ap[i, j] < 0.6 * ap.max() else "black")
    fig.colorbar(im, ax=ax, label="AP (%)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def bev_predictions(detections: dict[str, Detections], gt_boxes: np.ndarray,
                    gt_labels: np.ndarray, out: str, score: float = 0.3, extent: float = 51.2,
                    top: int = 20) -> str:
    """One panel per model (``detections``: panel title -> its detections of the sample, ego
    frame): GT footprints (``gt_boxes (G, 9)``, filled grey) and the detections above ``score``
    (class colours) in the BEV of one sample (x up, y left). A model with no detection that
    confident (an early, short training) shows its ``top`` best instead, dashed, so the panel
    still shows where it looks."""
    from ..structures.boxes import Boxes3D

    fig, axes = plt.subplots(1, len(detections), figsize=(5.2 * len(detections), 5.6), dpi=110)
    axes = np.atleast_1d(axes)
    gt = Boxes3D(gt_boxes).bev_corners()
    shown: set[int] = set()
    for ax, (name, found) in zip(axes, detections.items()):
        det = found.numpy()
        order = np.argsort(-np.asarray(det.scores), kind="stable")  # best first
        det = Detections(det.sample_token, det.boxes[order], det.scores[order], det.labels[order])
        for poly in gt:  # filled, so that outlines of any class colour stand out on it
            ax.fill(-poly[:, 1], poly[:, 0], color="0.82", lw=0)
        keep = det.scores >= score
        title = f"{name}: {int(keep.sum())} boxes ≥ {score}"
        style = "-"
        if not keep.any() and len(det.scores):  # sorted best first above
            keep = np.arange(len(det.scores)) < top
            title = (f"{name}: none ≥ {score}; best {int(keep.sum())} "
                     f"(≥ {det.scores[keep].min():.2f}) dashed")
            style = "--"
        for poly, lab in zip(det.boxes[keep].bev_corners(), det.labels[keep]):
            shown.add(int(lab))
            ring = np.vstack([poly, poly[:1]])
            ax.plot(-ring[:, 1], ring[:, 0], style,
                    color=CLASS_COLORS[DETECTION_CLASSES[int(lab)]], lw=1)
        ax.plot([0], [0], marker="^", color="k")
        ax.set_xlim(-extent, extent)
        ax.set_ylim(-extent, extent)
        ax.set_aspect("equal")
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("BEV of one val sample: GT (filled grey) and predictions (class colours); ego ▲ "
                 "facing up")
    handles = [plt.Rectangle((0, 0), 1, 1, color="0.82", label="GT")]
    handles += [plt.Line2D([], [], color=CLASS_COLORS[DETECTION_CLASSES[i]], lw=1.5,
                           label=DETECTION_CLASSES[i]) for i in sorted(shown)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    # room for the title above and the class legend below the panels
    fig.tight_layout(rect=(0, 0.06, 1, 0.93))
    fig.savefig(out)
    plt.close(fig)
    return out

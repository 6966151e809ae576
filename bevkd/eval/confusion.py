"""Where a class's top detections land: its own boxes, other classes' boxes, or nothing.

nuScenes AP scores each class alone, so it cannot say *why* a class's precision drops. This
table does: for each class it takes the class's best-scored predictions (by default as many
as the class has ground-truth boxes, the part of the ranking that decides most of the AP),
matches them to the class's boxes as the benchmark does (greedy by score, centre distance
``dist_th``, the TP-error threshold 2 m), and sorts every unmatched one by the nearest kept
ground-truth box of its sample within ``dist_th``: a box of its own class already taken is a
**duplicate**, a box of another class is a **confusion** with that class, and none is
**background**. Boxes and predictions are filtered exactly as the metrics filter them
(class range, no points, bikes in racks).

Example: the tiny bench found that every distilled student puts about a third of its top
barrier detections on traffic cones, where the camera-only baseline puts a tenth
(``benchmarks/student_tiny_diagnostics.md``).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .config import CVPR_2019, EVAL_CLASSES, DetectionConfig
from .groundtruth import GroundTruth
from .matching import greedy_match, norm2
from .metrics import _rack_frames, keep_mask
from .results import Predictions

TP, DUPLICATE, BACKGROUND = "tp", "duplicate", "background"
# what training and `bevkd eval` write beside an evaluation's metrics.json
CONFUSION_FILE = "confusion.json"


def top_detection_sources(gt: GroundTruth, preds: Predictions, cfg: DetectionConfig = CVPR_2019,
                          dist_th: Optional[float] = None, top: Optional[int] = None
                          ) -> dict[str, dict[str, int]]:
    """Per class: ``{"window": W, "tp": n, "duplicate": n, "background": n, <class>: n, ...}``.

    Args:
        gt, preds: a split's ground truth and predictions (``preds.sample`` indexes
            ``gt.sample_tokens``), as :func:`bevkd.eval.metrics.evaluate` takes them.
        dist_th: match distance in metres (default ``cfg.dist_th_tp``, 2 m).
        top: how many of each class's best predictions to sort (default: as many as the class
            has kept ground-truth boxes; fewer when it has fewer predictions). ``W`` is the
            number sorted; the counts add up to it. Other classes appear only when counted.
    """
    dist_th = float(cfg.dist_th_tp if dist_th is None else dist_th)
    if top is not None and top < 0:
        raise ValueError(f"top must be at least 0, got {top}")
    frames = _rack_frames(gt)
    g_keep = np.flatnonzero(keep_mask(gt.translation, gt.sample, gt.label, gt.num_pts, gt,
                                      frames, cfg))
    p_keep = keep_mask(preds.translation, preds.sample, preds.label, preds.num_pts, gt, frames,
                       cfg)
    # kept GT rows stay grouped by sample: one slice of them per sample
    ptr = np.searchsorted(gt.sample[g_keep], np.arange(len(gt.sample_tokens) + 1))
    out: dict[str, dict[str, int]] = {}
    for name in cfg.class_names:
        c = EVAL_CLASSES.index(name)
        g_rows = g_keep[gt.label[g_keep] == c]
        p_rows = np.flatnonzero(p_keep & (preds.label == c))
        window = min(len(p_rows), len(g_rows) if top is None else int(top))
        counts = {"window": window, TP: 0, DUPLICATE: 0, BACKGROUND: 0}
        out[name] = counts
        if window == 0:
            continue
        order, match, _ = greedy_match(
            preds.score[p_rows], preds.sample[p_rows], preds.translation[p_rows, :2],
            gt.sample[g_rows], gt.translation[g_rows, :2], len(gt.sample_tokens),
            np.array([dist_th]))
        for k in range(window):
            if match[0, k] >= 0:
                counts[TP] += 1
                continue
            p = p_rows[order[k]]
            near = g_keep[ptr[preds.sample[p]]:ptr[preds.sample[p] + 1]]
            d = norm2(gt.translation[near, :2] - preds.translation[p, :2])
            if len(d) == 0 or d.min() >= dist_th:  # the benchmark matches at d < dist_th
                counts[BACKGROUND] += 1
                continue
            hit = EVAL_CLASSES[gt.label[near[np.argmin(d)]]]
            key = DUPLICATE if hit == name else hit
            counts[key] = counts.get(key, 0) + 1
    return out


def other_classes(counts: dict[str, int]) -> dict[str, int]:
    """The confusions of one class's :func:`top_detection_sources` counts: ``{class: n}``."""
    return {k: v for k, v in counts.items() if k not in ("window", TP, DUPLICATE, BACKGROUND)}


def sources_table(sources: dict[str, dict[str, int]], first: str = "class",
                  columns: Optional[dict[str, dict[str, str]]] = None) -> str:
    """A markdown table of :func:`top_detection_sources` counts, one row per key of ``sources``
    (classes, or runs for one class; ``first`` heads that column): the window, the share of
    TPs, duplicates, background, all confusions, and the two classes confused with most.
    ``columns``: more columns after the first, ``{header: {row key: text}}``."""
    columns = columns or {}
    head = [first, *columns, "top W", "TP", "duplicate", "background", "on other classes",
            "mostly on"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, c in sources.items():
        cells = [key, *(col.get(key, "") for col in columns.values()), str(c["window"])]
        w = c["window"]
        if w == 0:
            cells += [""] * 5
        else:
            others = sorted(((v, k) for k, v in other_classes(c).items()), reverse=True)
            pct = lambda n: f"{100 * n / w:.0f} %"  # noqa: E731 - one-line formatter
            cells += [pct(c[TP]), pct(c[DUPLICATE]), pct(c[BACKGROUND]),
                      pct(sum(v for v, _ in others)),
                      ", ".join(f"{k} {pct(v)}" for v, k in others[:2])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

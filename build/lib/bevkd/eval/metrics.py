"""nuScenes detection metrics (``detection_cvpr_2019``), vectorised, equal to the devkit.

Reproduces nuscenes-devkit 1.2.0 ``DetectionEval.evaluate`` step by step (file/function
names refer to the devkit):

1. ``filter_eval_boxes`` on GT and predictions alike: class range from the LIDAR_TOP ego
   position (xy distance, strict ``<``), then boxes with ``num_pts == 0`` (GT: lidar + radar
   points; predictions have -1 unless the file gives ``num_pts``), then bicycles and
   motorcycles whose centre lies in a ``static_object.bicycle_rack`` box of the sample.
2. ``accumulate`` per class and distance threshold: greedy matching (``matching.py``), cumulative
   precision/recall interpolated at 101 recall points, TP errors of the matches (translation,
   ``1 - scale IoU``, yaw difference with period pi for barriers, velocity L2, ``1 - attribute
   accuracy``) as NaN-aware cumulative means, resampled at the interpolated confidences.
3. ``calc_ap`` (min recall/precision 0.1) and ``calc_tp`` (at 2 m), NaN TP errors for the
   class exclusions, then mAP, mean TP errors (``nanmean``), TP scores and NDS.

Every float operation that feeds a comparison is the devkit's, so results agree to the bit
except orientation errors (the devkit goes through pyquaternion matrices; ~1e-16 apart). Where
the devkit crashes -- no prediction (or no GT box) at all -- this returns the values its own
formulas give for "no predictions": AP 0, TP errors 1, NDS 0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import CVPR_2019, EVAL_CLASSES, EXCLUDED_TP, RACK_FILTERED_CLASSES, TP_METRICS, \
    DetectionConfig
from .matching import greedy_match, norm2
from .results import Predictions
from .groundtruth import GroundTruth

NELEM = 101  # DetectionMetricData.nelem: recall sampled at 0, 0.01, ..., 1
_ERRORS = ("trans_err", "vel_err", "scale_err", "orient_err", "attr_err")


@dataclass
class MetricData:
    """The devkit's ``DetectionMetricData``: ``(101,)`` arrays over the recall grid."""

    recall: np.ndarray
    precision: np.ndarray
    confidence: np.ndarray
    trans_err: np.ndarray
    vel_err: np.ndarray
    scale_err: np.ndarray
    orient_err: np.ndarray
    attr_err: np.ndarray

    @classmethod
    def no_predictions(cls) -> MetricData:
        ones = np.ones(NELEM)
        return cls(np.linspace(0, 1, NELEM), np.zeros(NELEM), np.zeros(NELEM), ones, ones.copy(),
                   ones.copy(), ones.copy(), ones.copy())

    @property
    def max_recall_ind(self) -> int:
        """Index of the last non-zero confidence (0 without matches)."""
        nz = np.nonzero(self.confidence)[0]
        return int(nz[-1]) if len(nz) else 0

    def serialize(self) -> dict[str, list[float]]:
        return {k: getattr(self, k).tolist() for k in ("recall", "precision", "confidence",
                                                        *_ERRORS)}


@dataclass
class EvalResult:
    """``summary``: the ``metrics_summary.json`` dict; ``details``: per ``(class, dist_th)``."""

    summary: dict[str, Any]
    details: dict[tuple[str, float], MetricData]

    def details_json(self) -> dict[str, Any]:
        """The devkit's ``metrics_details.json`` layout (``"car:0.5"`` -> arrays)."""
        return {f"{name}:{th}": md.serialize() for (name, th), md in self.details.items()}


# ------------------------------------------------------------------------------------------
# Filtering
# ------------------------------------------------------------------------------------------


def ego_distance(translation: np.ndarray, sample: np.ndarray,
                 ego_translation: np.ndarray) -> np.ndarray:
    """xy distance to the LIDAR_TOP ego position, ``(N,)`` (``EvalBox.ego_dist``)."""
    d = translation[:, :2] - ego_translation[sample, :2]
    return np.sqrt(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1])


def _rack_frames(gt: GroundTruth) -> tuple[np.ndarray, np.ndarray]:
    """Origin corner and the three edge vectors of each bike rack, as ``points_in_box``.

    Built with the devkit's own operations (pyquaternion matrix, ``np.dot``), one rack at a
    time: there are few racks, and the box test must round the same way at its faces.
    """
    from pyquaternion import Quaternion

    signs = np.array([[1, 1, 1, 1, -1, -1, -1, -1], [1, -1, -1, 1, 1, -1, -1, 1],
                      [1, 1, -1, -1, 1, 1, -1, -1]])
    origin = np.empty((len(gt.rack_sample), 3))
    edges = np.empty((len(gt.rack_sample), 3, 3))
    for r in range(len(gt.rack_sample)):
        w, l, h = gt.rack_size[r]
        local = np.vstack((l / 2 * signs[0], w / 2 * signs[1], h / 2 * signs[2]))
        corners = np.dot(Quaternion(gt.rack_rotation[r]).rotation_matrix, local)
        corners = corners + gt.rack_translation[r][:, None]
        origin[r] = corners[:, 0]
        edges[r] = corners[:, [4, 1, 3]].T - corners[:, 0]
    return origin, edges


def in_bike_rack(translation: np.ndarray, sample: np.ndarray, label: np.ndarray,
                 gt: GroundTruth, frames: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Which boxes are bicycles/motorcycles with their centre in a rack of their sample."""
    out = np.zeros(len(label), bool)
    if len(gt.rack_sample) == 0:
        return out
    rack_cls = [EVAL_CLASSES.index(c) for c in RACK_FILTERED_CLASSES]
    has_rack = np.zeros(len(gt.sample_tokens), bool)
    has_rack[gt.rack_sample] = True
    cand = np.flatnonzero(np.isin(label, rack_cls) & has_rack[sample])
    if len(cand) == 0:
        return out
    cand = cand[np.argsort(sample[cand], kind="stable")]
    cand_sample = sample[cand]
    origin, edges = frames
    for r in range(len(gt.rack_sample)):
        lo, hi = np.searchsorted(cand_sample, [gt.rack_sample[r], gt.rack_sample[r] + 1])
        if lo == hi:
            continue
        idx = cand[lo:hi]
        v = translation[idx].T - origin[r][:, None]
        inside = np.ones(len(idx), bool)
        for e in edges[r]:
            ev = np.dot(e, v)
            inside &= (0 <= ev) & (ev <= np.dot(e, e))
        out[idx] |= inside
    return out


def keep_mask(translation: np.ndarray, sample: np.ndarray, label: np.ndarray,
              num_pts: np.ndarray, gt: GroundTruth, frames: tuple[np.ndarray, np.ndarray],
              cfg: DetectionConfig) -> np.ndarray:
    """``filter_eval_boxes``: in class range, not zero points, not a bike in a rack."""
    max_dist = np.array([cfg.class_range[c] for c in EVAL_CLASSES], np.float64)
    keep = ego_distance(translation, sample, gt.ego_translation) < max_dist[label]
    keep &= num_pts != 0
    keep[keep] &= ~in_bike_rack(translation[keep], sample[keep], label[keep], gt, frames)
    return keep


# ------------------------------------------------------------------------------------------
# Accumulation
# ------------------------------------------------------------------------------------------


def quat_yaw(q: np.ndarray) -> np.ndarray:
    """``quaternion_yaw``: heading of the rotated x axis, ``(N, 4)`` wxyz -> ``(N,)``."""
    q = q / np.sqrt((q * q).sum(1))[:, None]
    w, x, y, z = q.T
    return np.arctan2(2 * (x * y + w * z), w * w + x * x - y * y - z * z)


def angle_diff(x: np.ndarray, y: np.ndarray, period: float) -> np.ndarray:
    """Signed smallest difference from ``y`` to ``x`` modulo ``period`` (devkit formula)."""
    diff = (x - y + period / 2) % period - period / 2
    return np.where(diff > np.pi, diff - 2 * np.pi, diff)


def cummean(x: np.ndarray) -> np.ndarray:
    """NaN-aware cumulative mean; all NaN -> ones (the devkit's ``cummean``)."""
    nan = np.isnan(x)
    if nan.all():
        return np.ones(len(x))
    sum_vals = np.nancumsum(x.astype(float))
    count_vals = np.cumsum(~nan)
    return np.divide(sum_vals, count_vals, out=np.zeros_like(sum_vals), where=count_vals != 0)


def _match_errors(gt: GroundTruth, g: np.ndarray, preds: Predictions, p: np.ndarray,
                  dist: np.ndarray, barrier: bool) -> dict[str, np.ndarray]:
    """TP errors of the matches ``g[i] <-> p[i]`` (GT / prediction rows), in match order."""
    sa, sr = gt.size[g], preds.size[p]
    inter = np.prod(np.minimum(sa, sr), axis=1)
    union = np.prod(sa, axis=1) + np.prod(sr, axis=1) - inter
    period = np.pi if barrier else 2 * np.pi
    yaw = np.abs(angle_diff(quat_yaw(gt.rotation[g]), quat_yaw(preds.rotation[p]), period))
    gt_attr = gt.attribute[g]
    attr_acc = np.where(gt_attr < 0, np.nan, (gt_attr == preds.attribute[p]).astype(float))
    return {"trans_err": dist, "vel_err": norm2(preds.velocity[p] - gt.velocity[g]),
            "scale_err": 1 - inter / union, "orient_err": yaw, "attr_err": 1 - attr_acc}


def accumulate(gt: GroundTruth, g_rows: np.ndarray, preds: Predictions, p_rows: np.ndarray,
               class_name: str, cfg: DetectionConfig) -> dict[float, MetricData]:
    """The devkit's ``accumulate`` for one class at every threshold.

    ``g_rows``: the class's kept GT rows (grouped by sample); ``p_rows``: its kept
    predictions in ``EvalBoxes.all`` order.
    """
    npos = len(g_rows)
    if npos == 0 or len(p_rows) == 0:
        return {th: MetricData.no_predictions() for th in cfg.dist_ths}
    scores = preds.score[p_rows]
    order, match, dist = greedy_match(
        scores, preds.sample[p_rows], preds.translation[p_rows, :2], gt.sample[g_rows],
        gt.translation[g_rows, :2], len(gt.sample_tokens), np.array(cfg.dist_ths))
    conf_all = scores[order]
    rec_interp = np.linspace(0, 1, NELEM)
    out = {}
    for t, th in enumerate(cfg.dist_ths):
        is_tp = match[t] >= 0
        if not is_tp.any():
            out[th] = MetricData.no_predictions()
            continue
        tp = np.cumsum(is_tp.astype(np.int64)).astype(float)
        fp = np.cumsum((~is_tp).astype(np.int64)).astype(float)
        prec = tp / (fp + tp)
        rec = tp / float(npos)
        prec = np.interp(rec_interp, rec, prec, right=0)
        conf = np.interp(rec_interp, rec, conf_all, right=0)
        errors = _match_errors(gt, g_rows[match[t][is_tp]], preds, p_rows[order[is_tp]],
                               dist[t][is_tp], class_name == "barrier")
        match_conf = conf_all[is_tp]
        resampled = {k: np.interp(conf[::-1], match_conf[::-1], cummean(v)[::-1])[::-1]
                     for k, v in errors.items()}
        out[th] = MetricData(recall=rec_interp, precision=prec, confidence=conf, **resampled)
    return out


def calc_ap(md: MetricData, min_recall: float, min_precision: float) -> float:
    """Mean precision above the min recall, less the min precision, renormalised."""
    prec = np.copy(md.precision)[round(100 * min_recall) + 1:]
    prec -= min_precision
    prec[prec < 0] = 0
    return float(np.mean(prec)) / (1.0 - min_precision)


def calc_tp(md: MetricData, min_recall: float, metric_name: str) -> float:
    """Mean TP error from just above the min recall to the max recall reached (else 1)."""
    first_ind = round(100 * min_recall) + 1
    last_ind = md.max_recall_ind
    if last_ind < first_ind:
        return 1.0
    return float(np.mean(getattr(md, metric_name)[first_ind:last_ind + 1]))


# ------------------------------------------------------------------------------------------
# The benchmark
# ------------------------------------------------------------------------------------------


def evaluate(gt: GroundTruth, preds: Predictions,
             cfg: DetectionConfig = CVPR_2019) -> EvalResult:
    """All detection metrics of ``preds`` against ``gt``, as the devkit's ``metrics_summary``.

    ``preds.sample`` indexes ``gt.sample_tokens``; see :class:`Predictions` for the order.
    """
    start = time.time()
    frames = _rack_frames(gt)
    g_keep = keep_mask(gt.translation, gt.sample, gt.label, gt.num_pts, gt, frames, cfg)
    p_keep = keep_mask(preds.translation, preds.sample, preds.label, preds.num_pts, gt, frames,
                       cfg)
    label_aps: dict[str, dict[str, float]] = {}
    label_tp: dict[str, dict[str, float]] = {}
    details: dict[tuple[str, float], MetricData] = {}
    for name in cfg.class_names:
        c = EVAL_CLASSES.index(name)
        mds = accumulate(gt, np.flatnonzero(g_keep & (gt.label == c)), preds,
                         np.flatnonzero(p_keep & (preds.label == c)), name, cfg)
        for th, md in mds.items():
            details[(name, th)] = md
        label_aps[name] = {str(float(th)): calc_ap(md, cfg.min_recall, cfg.min_precision)
                           for th, md in mds.items()}
        label_tp[name] = {m: (float("nan") if m in EXCLUDED_TP.get(name, ())
                              else calc_tp(mds[cfg.dist_th_tp], cfg.min_recall, m))
                          for m in TP_METRICS}
    summary = summarize(label_aps, label_tp, cfg)
    summary["eval_time"] = time.time() - start
    summary["cfg"] = cfg.serialize()
    summary["meta"] = dict(preds.meta)
    return EvalResult(summary=summary, details=details)


def summarize(label_aps: dict[str, dict[str, float]], label_tp: dict[str, dict[str, float]],
              cfg: DetectionConfig) -> dict[str, Any]:
    """``DetectionMetrics.serialize()`` without ``eval_time``/``cfg`` (same keys and order)."""
    mean_dist_aps = {n: float(np.mean(list(label_aps[n].values()))) for n in cfg.class_names}
    mean_ap = float(np.mean(list(mean_dist_aps.values())))
    tp_errors = {m: float(np.nanmean([label_tp[n][m] for n in cfg.class_names]))
                 for m in TP_METRICS}
    tp_scores = {m: max(0.0, 1.0 - tp_errors[m]) for m in TP_METRICS}
    nd_score = float(cfg.mean_ap_weight * mean_ap + np.sum(list(tp_scores.values())))
    nd_score = nd_score / float(cfg.mean_ap_weight + len(tp_scores))
    return {"label_aps": label_aps, "mean_dist_aps": mean_dist_aps, "mean_ap": mean_ap,
            "label_tp_errors": label_tp, "tp_errors": tp_errors, "tp_scores": tp_scores,
            "nd_score": nd_score, "eval_time": None, "cfg": None}

"""Ego-frame :class:`Detections` -> the official nuScenes results JSON, and its validator.

Boxes go to the global frame through the LIDAR_TOP ego pose of their sample (the frame
``Detections`` are defined in), sizes become ``[w, l, h]``, yaw a ``[w, x, y, z]`` quaternion,
velocity is rotated (not translated), and the attribute -- which camera detectors do not
predict -- comes from the class and the speed, as mmdet3d/BEVDepth do.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..errors import BevkdError
from ..fileio import write_json
from ..structures.boxes import Boxes3D
from ..structures.classes import DETECTION_CLASSES
from ..structures.detections import Detections
from .config import ATTRIBUTE_NAMES, CVPR_2019, EVAL_CLASSES, DetectionConfig
from .results import Predictions, check_predictions, parse_results
from .tables import load_json

__all__ = ["DEFAULT_META", "attributes_from_speed", "detections_to_predictions",
           "export_results", "validate_results", "write_results", "load_results"]

# A camera-only submission.
DEFAULT_META = {"use_camera": True, "use_lidar": False, "use_radar": False, "use_map": False,
                "use_external": False}

# mmdet3d's NuScenesDataset.DefaultAttribute (also BEVDepth's)
DEFAULT_ATTRIBUTE = {
    "car": "vehicle.parked", "pedestrian": "pedestrian.moving", "trailer": "vehicle.parked",
    "truck": "vehicle.parked", "bus": "vehicle.moving", "motorcycle": "cycle.without_rider",
    "construction_vehicle": "vehicle.parked", "bicycle": "cycle.without_rider", "barrier": "",
    "traffic_cone": "",
}
MOVING_SPEED = 0.2  # m/s; above it a vehicle is moving and a cycle has a rider
_VEHICLES = ("car", "construction_vehicle", "bus", "truck", "trailer")
_CYCLES = ("bicycle", "motorcycle")
# model label (DETECTION_CLASSES order) -> benchmark class index (EVAL_CLASSES order)
_TO_EVAL = np.array([EVAL_CLASSES.index(n) for n in DETECTION_CLASSES], np.int64)


def _attr_id(name: str) -> int:
    return ATTRIBUTE_NAMES.index(name) if name else -1


def _attribute_table() -> np.ndarray:
    """``(10, 2)`` attribute index per benchmark class, for [not moving, moving]."""
    table = np.empty((len(EVAL_CLASSES), 2), np.int64)
    for c, name in enumerate(EVAL_CLASSES):
        moving = ("vehicle.moving" if name in _VEHICLES else
                  "cycle.with_rider" if name in _CYCLES else DEFAULT_ATTRIBUTE[name])
        still = ("pedestrian.standing" if name == "pedestrian" else
                 "vehicle.stopped" if name == "bus" else DEFAULT_ATTRIBUTE[name])
        table[c] = _attr_id(still), _attr_id(moving)
    return table


_ATTRIBUTES = _attribute_table()


def attributes_from_speed(eval_label: np.ndarray, velocity: np.ndarray) -> np.ndarray:
    """Attribute index (or -1 for '') per box from its class and speed, ``(N,)``.

    ``eval_label (N,)`` indexes ``EVAL_CLASSES``; ``velocity (N, 2)`` m/s in any frame.
    """
    speed = np.sqrt(velocity[:, 0] ** 2 + velocity[:, 1] ** 2)
    return _ATTRIBUTES[eval_label, (speed > MOVING_SPEED).astype(np.int64)]


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _to_global(dets: Detections, global_T_ego: np.ndarray) -> dict[str, np.ndarray]:
    """One sample's boxes in the global frame as nuScenes fields."""
    boxes = Boxes3D(_numpy(dets.boxes.tensor).astype(np.float64).reshape(-1, 9))
    labels = _numpy(dets.labels).astype(np.int64).reshape(-1)
    if len(labels) and (labels.min() < 0 or labels.max() >= len(DETECTION_CLASSES)):
        bad = labels[(labels < 0) | (labels >= len(DETECTION_CLASSES))][0]
        raise BevkdError(f"detections of sample {dets.sample_token}: label {bad} is not a class "
                         f"index (0..{len(DETECTION_CLASSES) - 1})")
    translation, size, rotation, velocity = boxes.transform(global_T_ego).to_nuscenes()
    label = _TO_EVAL[labels]
    return {"translation": translation, "size": size, "rotation": rotation,
            "velocity": velocity, "label": label,
            "score": _numpy(dets.scores).astype(np.float64).reshape(-1),
            "attribute": attributes_from_speed(label, velocity)}


def detections_to_predictions(detections: Sequence[Detections], sample_tokens: Sequence[str],
                              global_T_ego: np.ndarray, predefined: bool,
                              meta: Optional[dict] = None, where: str = "detections",
                              cfg: DetectionConfig = CVPR_2019) -> Predictions:
    """Validated :class:`Predictions` of a split straight from detections (no JSON).

    Equal to exporting, writing, reading and parsing the results file. ``sample_tokens``
    ``(S,)`` and ``global_T_ego (S, 4, 4)`` describe the split; detections of other samples
    are ignored, every sample of the split needs one entry (possibly empty).
    """
    index = {t: i for i, t in enumerate(sample_tokens)}
    seen: set[str] = set()
    parts, samples = [], []
    for dets in detections:
        if dets.sample_token in seen:
            raise BevkdError(f"{where}: sample {dets.sample_token} appears more than once")
        seen.add(dets.sample_token)
        s = index.get(dets.sample_token)
        if s is None:
            continue
        parts.append(_to_global(dets, global_T_ego[s]))
        samples.append(np.full(len(dets), s, np.int64))
    missing = [t for t in sample_tokens if t not in seen]
    if missing:
        raise BevkdError(f"{where}: {len(missing)} sample(s) of the split have no Detections, "
                         f"e.g. {missing[0]} (pass an empty Detections for samples without boxes)")
    cat = {k: np.concatenate([p[k] for p in parts]) if parts else np.zeros((0,)) for k in
           ("translation", "size", "rotation", "velocity", "label", "score", "attribute")}
    sample = np.concatenate(samples) if samples else np.zeros(0, np.int64)
    # the devkit's box order: results key order for predefined splits, else split order
    order = (np.arange(len(sample)) if predefined else np.argsort(sample, kind="stable"))
    p = Predictions(
        sample=sample[order], label=cat["label"].astype(np.int64)[order],
        translation=cat["translation"].reshape(-1, 3)[order], size=cat["size"].reshape(-1, 3)[order],
        rotation=cat["rotation"].reshape(-1, 4)[order], velocity=cat["velocity"].reshape(-1, 2)[order],
        score=cat["score"][order], attribute=cat["attribute"].astype(np.int64)[order],
        num_pts=np.full(len(sample), -1, np.int64), meta=dict(DEFAULT_META if meta is None else meta))
    check_predictions(p, sample_tokens, where, cfg)
    return p


def export_results(detections: Sequence[Detections], global_T_ego: Mapping[str, np.ndarray],
                   meta: Optional[dict] = None) -> dict[str, Any]:
    """The official results dict ``{"meta", "results"}`` of ego-frame detections.

    ``global_T_ego`` maps each sample token to its LIDAR_TOP ego pose ``(4, 4)``
    (:func:`bevkd.eval.tables.load_lidar_poses`). Samples keep the order of ``detections``.
    """
    results: dict[str, list[dict]] = {}
    for dets in detections:
        tok = dets.sample_token
        if tok in results:
            raise BevkdError(f"detections: sample {tok} appears more than once")
        if tok not in global_T_ego:
            raise BevkdError(f"detections: no ego pose for sample {tok}")
        f = _to_global(dets, np.asarray(global_T_ego[tok], np.float64))
        names = [EVAL_CLASSES[c] for c in f["label"]]
        attrs = ["" if a < 0 else ATTRIBUTE_NAMES[a] for a in f["attribute"]]
        results[tok] = [
            {"sample_token": tok, "translation": t, "size": s, "rotation": r, "velocity": v,
             "detection_name": n, "detection_score": sc, "attribute_name": a}
            for t, s, r, v, n, sc, a in zip(f["translation"].tolist(), f["size"].tolist(),
                                           f["rotation"].tolist(), f["velocity"].tolist(), names,
                                           f["score"].tolist(), attrs)]
    return {"meta": dict(DEFAULT_META if meta is None else meta), "results": results}


def write_results(results: dict[str, Any], path: str) -> str:
    """Write a results dict as JSON (atomically); returns the path."""
    return write_json(path, results, indent=None)


def validate_results(data: Any, sample_tokens: Sequence[str], predefined: bool = False,
                     where: str = "results", cfg: DetectionConfig = CVPR_2019) -> None:
    """Raise a :class:`BevkdError` naming the first problem of a results dict, if any.

    Checks: ``meta`` and ``results`` present; every sample of the split present; at most 500
    boxes per sample; every box complete, each box's ``sample_token`` its key; translation 3,
    size 3 positive, rotation 4 with unit norm, velocity 2 numbers, all finite; known
    ``detection_name``; known ``attribute_name`` that is valid for the class ('' always is).
    """
    parse_results(data, sample_tokens, predefined, where, cfg)


def load_results(path: str) -> Any:
    """Parse a results JSON file (validate with :func:`validate_results`)."""
    return load_json(path, "results file")

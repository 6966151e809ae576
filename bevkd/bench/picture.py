"""What the bench's BEV picture draws: each model's detections on one val sample, read from
the evaluation that scored it rather than from its weights.

A finished run's evaluation wrote every val sample's detections (``eval/<split>/results.json``,
the official results format, global frame). The picture reads the sample it draws from there,
so it shows what the table's metrics scored and needs no checkpoint. The archive
(:mod:`bevkd.bench.archive`) leaves ``results.json`` out (megabytes per run) but keeps that
one sample's boxes that the picture can show (:data:`SAMPLE_FILE`, a few KB): a run restored
onto a machine without its weights is drawn the same. Like the bench, it reads SynthScenes: the
split defaults to ``synth_val`` and the version to ``v1.0-synth``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from ..errors import BevkdError
from ..fileio import write_json
from ..structures.boxes import Boxes3D
from ..structures.classes import DETECTION_CLASSES
from ..structures.detections import Detections

# the archive's copy of the picture's sample (under eval/<split>/), results format
SAMPLE_FILE = "picture_sample.json"
# a box the picture shows: a score of at least SCORE, or one of the TOP best of a sample that
# has none that confident (viz.bench.bev_predictions draws the same rule)
SCORE, TOP = 0.3, 20


def picture_sample(data: str, split: str = "synth_val", version: str = "v1.0-synth") -> Any:
    """The val sample the picture draws (the split's first, in table order): its
    :class:`~bevkd.data.infos.SampleInfo` (token, ego pose, GT)."""
    from ..data.infos import load_infos

    infos = load_infos(data, version, split, max_sweeps=0)
    if not infos:
        raise BevkdError(f"{data}: split {split} has no sample to draw")
    return infos[0]


def _sources(run: str, split: str) -> list[str]:
    folder = os.path.join(run, "eval", split)
    return [os.path.join(folder, f) for f in ("results.json", SAMPLE_FILE)]


def _read(path: str, token: str) -> tuple[dict, list[dict] | None]:
    """The results file ``path`` (its ``meta``) and the boxes of the sample ``token`` in it
    (None: it holds none of that sample); an unreadable file is a :class:`BevkdError`
    naming it."""
    try:
        with open(path) as f:
            results = json.load(f)
        meta, boxes = results.get("meta", {}), results.get("results", {}).get(token)
    except (OSError, ValueError, AttributeError) as e:
        raise BevkdError(f"{path}: not a readable results file ({e})") from None
    if boxes is not None and not isinstance(boxes, list):
        raise BevkdError(f"{path}: the boxes of sample {token} are not a list")
    return meta, boxes


def _found(run: str, token: str, split: str) -> tuple[str, list[dict]] | None:
    """The first of the run's sources that holds the sample ``token``, and its boxes."""
    for path in _sources(run, split):
        if os.path.isfile(path):
            boxes = _read(path, token)[1]
            if boxes is not None:
                return path, boxes
    return None


def drawable(run: str, token: str | None = None, split: str = "synth_val") -> bool:
    """Whether ``run`` holds detections the picture can read: its evaluation's results, or
    the archive's copy of the picture's sample; with ``token``, of that sample (a file that
    cannot be read counts as none)."""
    if token is None:
        return any(os.path.isfile(p) for p in _sources(run, split))
    try:
        return _found(run, token, split) is not None
    except BevkdError:
        return False


def shown_boxes(boxes: list[dict], score: float = SCORE, top: int = TOP) -> list[dict]:
    """The boxes (results-format dicts) of one sample that the picture can show, best first:
    those scoring at least ``score``, and at least the ``top`` best."""
    best = sorted(boxes, key=lambda b: -b["detection_score"])
    n = max(top, sum(b["detection_score"] >= score for b in best))
    return best[:n]


def keep_sample(run: str, dest: str, token: str, split: str = "synth_val") -> str | None:
    """Write into ``dest`` (the archive's copy of ``run``) the boxes the picture can show of
    the sample ``token`` (:func:`shown_boxes`), read from the run's evaluation results. Returns
    the file, or None where the run's results hold no boxes of that sample (a run evaluated
    on another dataset cannot be drawn, and the report says so)."""
    path = os.path.join(run, "eval", split, "results.json")
    if not os.path.isfile(path):
        return None
    meta, boxes = _read(path, token)
    if boxes is None:
        return None
    out = os.path.join(dest, "eval", split, SAMPLE_FILE)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    try:
        kept = shown_boxes(boxes)
    except (KeyError, TypeError) as e:
        raise BevkdError(f"{path}: a box of sample {token} has no score ({e})") from None
    return write_json(out, {"meta": meta, "results": {token: kept}})


def sample_detections(run: str, info: Any, split: str = "synth_val") -> Detections:
    """``run``'s detections of the sample ``info`` in its ego frame, best first, from its
    evaluation's results, else the archive's copy (:func:`drawable` says whether either holds
    them). Boxes ``(N, 9)``, labels indexing ``DETECTION_CLASSES``."""
    found = _found(run, info.token, split)
    if found is None:
        raise BevkdError(f"{run}: no detections of the picture's sample {info.token} in "
                         f"eval/{split}/ (results.json or {SAMPLE_FILE})")
    path, boxes = found
    try:
        boxes = sorted(boxes, key=lambda b: -b["detection_score"])
        field = lambda k, w: np.asarray([b[k] for b in boxes], np.float64).reshape(-1, w)  # noqa: E731
        world = Boxes3D.from_nuscenes(field("translation", 3), field("size", 3),
                                      field("rotation", 4), field("velocity", 2))
        labels = np.asarray([DETECTION_CLASSES.index(b["detection_name"]) for b in boxes],
                            np.int64)
        scores = np.asarray([b["detection_score"] for b in boxes], np.float64)
    except (KeyError, TypeError, ValueError) as e:
        raise BevkdError(f"{path}: a box of sample {info.token} is not a results-format box "
                         f"({e!r})") from None
    ego = world.transform(np.linalg.inv(np.asarray(info.global_T_ego, np.float64)))
    return Detections(info.token, ego, scores, labels)

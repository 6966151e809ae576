"""Predictions of a split as arrays, parsed and validated from the official results JSON.

A results file is ``{"meta": {...}, "results": {sample_token: [box, ...]}}`` with boxes
``{sample_token, translation [x,y,z], size [w,l,h], rotation [w,x,y,z], velocity [vx,vy],
detection_name, detection_score, attribute_name}`` in the global frame.

Validation is stricter than the devkit (which asserts on some problems, crashes later on
others and accepts the rest): every problem is a :class:`BevkdError` naming the sample and the
box. The common case is checked with whole-array operations; only when something is wrong
does a per-box walk find the culprit for the message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import BevkdError
from .config import ATTRIBUTE_NAMES, CLASS_ATTRIBUTES, CVPR_2019, EVAL_CLASSES, DetectionConfig
from .jsonscan import ScannedResults, scan_results
from .records import ARR, ENUM, KEYEQ, NUM, Field
from .tables import parse_json, read_bytes

_CLASS_ID = {n: i for i, n in enumerate(EVAL_CLASSES)}
_ATTR_ID = {n: i for i, n in enumerate(ATTRIBUTE_NAMES)}
_ATTR_ID[""] = -1
# ALLOWED[label, attribute + 1]: '' (column 0) is accepted for every class, as the devkit does
ALLOWED_ATTRIBUTES = np.zeros((len(EVAL_CLASSES), len(ATTRIBUTE_NAMES) + 1), bool)
ALLOWED_ATTRIBUTES[:, 0] = True
for _c, _attrs in CLASS_ATTRIBUTES.items():
    for _a in _attrs:
        ALLOWED_ATTRIBUTES[_CLASS_ID[_c], _ATTR_ID[_a] + 1] = True
# a unit quaternion within float32 rounding and then some; anything further off is a bug
QUAT_NORM_TOL = 1e-3


@dataclass
class Predictions:
    """``M`` predicted boxes, global frame, in the devkit's evaluation order.

    That order is the one of ``EvalBoxes.all``: samples in ``sample_order`` (the results'
    key order for a predefined split, the split's sample order for a custom one), then the
    boxes of a sample in file order. It decides which of equally scored boxes comes first.

    ``sample (M,)`` index into the ground truth's ``sample_tokens``, ``label (M,)`` index into
    ``EVAL_CLASSES``, ``translation (M, 3)``, ``size (M, 3)`` ``[w, l, h]``, ``rotation (M, 4)``
    wxyz, ``velocity (M, 2)``, ``score (M,)``, ``attribute (M,)`` index into
    ``ATTRIBUTE_NAMES`` or -1 for '', ``num_pts (M,)`` (-1 unless the file gives it).
    """

    sample: np.ndarray
    label: np.ndarray
    translation: np.ndarray
    size: np.ndarray
    rotation: np.ndarray
    velocity: np.ndarray
    score: np.ndarray
    attribute: np.ndarray
    num_pts: np.ndarray
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.label)


def sample_order(results_keys: Sequence[str], sample_tokens: Sequence[str],
                 predefined: bool) -> list[str]:
    """The devkit's order of samples among the predictions (see :class:`Predictions`)."""
    if not predefined:
        return list(sample_tokens)
    wanted = set(sample_tokens)
    return [t for t in results_keys if t in wanted]


def check_predictions(p: Predictions, sample_tokens: Sequence[str], where: str,
                      cfg: DetectionConfig = CVPR_2019) -> None:
    """Array-level checks shared by files and in-memory exports; raises :class:`BevkdError`.

    ``where`` prefixes messages (e.g. the file name). Boxes must be grouped by sample.
    """
    counts = np.bincount(p.sample, minlength=len(sample_tokens))
    if counts.size and counts.max() > cfg.max_boxes_per_sample:
        s = int(np.argmax(counts))
        raise BevkdError(f"{where}: sample {sample_tokens[s]} has {counts[s]} boxes; at most "
                         f"{cfg.max_boxes_per_sample} per sample are allowed")

    def culprit(bad: np.ndarray, what: str, values: np.ndarray) -> None:
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            k = i - int(np.flatnonzero(p.sample == p.sample[i])[0])
            raise BevkdError(f"{where}: sample {sample_tokens[p.sample[i]]}, box {k}: {what} "
                             f"(got {np.asarray(values[i]).tolist()})")

    for name, key in (("translation", "translation"), ("size", "size"), ("rotation", "rotation"),
                      ("velocity", "velocity"), ("score", "detection_score")):
        arr = getattr(p, name)
        finite = np.isfinite(arr).all(1) if arr.ndim == 2 else np.isfinite(arr)
        culprit(~finite, f"{key} must be finite", arr)
    culprit((p.size <= 0).any(1), "size [w, l, h] must be positive", p.size)
    norm = np.sqrt((p.rotation ** 2).sum(1))
    culprit(np.abs(norm - 1) > QUAT_NORM_TOL,
            f"rotation must be a unit quaternion [w, x, y, z] (|q| = 1 +- {QUAT_NORM_TOL})",
            p.rotation)
    bad = ~ALLOWED_ATTRIBUTES[p.label, p.attribute + 1]
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        cls = EVAL_CLASSES[p.label[i]]
        allowed = ", ".join(repr(a) for a in ("",) + CLASS_ATTRIBUTES[cls])
        culprit(bad, f"attribute {ATTRIBUTE_NAMES[p.attribute[i]]!r} is not valid for "
                     f"class {cls!r} (allowed: {allowed})", p.attribute)


def parse_results(data: Any, sample_tokens: Sequence[str], predefined: bool,
                  where: str = "results", cfg: DetectionConfig = CVPR_2019) -> Predictions:
    """Validate a parsed results JSON against a split and convert it to :class:`Predictions`.

    ``sample_tokens``: the split's samples (every one must have an entry, possibly empty;
    entries of other samples are ignored, as the devkit does for custom splits).
    """
    if not isinstance(data, dict):
        raise BevkdError(f"{where}: must be a JSON object with 'meta' and 'results'")
    for key in ("meta", "results"):
        if key not in data:
            raise BevkdError(f"{where}: missing {key!r} (the official format is "
                             "{'meta': {...}, 'results': {sample_token: [boxes]}})")
    if not isinstance(data["meta"], dict):
        raise BevkdError(f"{where}: 'meta' must be an object, got {type(data['meta']).__name__}")
    results = data["results"]
    if not isinstance(results, dict):
        raise BevkdError(f"{where}: 'results' must be an object mapping sample tokens to box "
                         f"lists, got {type(results).__name__}")
    missing = [t for t in sample_tokens if t not in results]
    if missing:
        raise BevkdError(f"{where}: {len(missing)} sample(s) of the split are missing, e.g. "
                         f"{missing[0]} (give every sample an entry, [] when it has no boxes)")
    order = sample_order(list(results), sample_tokens, predefined)
    index = {t: i for i, t in enumerate(sample_tokens)}
    lists = [results[t] for t in order]
    for t, boxes in zip(order, lists):
        if not isinstance(boxes, list):
            raise BevkdError(f"{where}: sample {t}: must map to a list of boxes, got "
                             f"{type(boxes).__name__}")
        if len(boxes) > cfg.max_boxes_per_sample:
            raise BevkdError(f"{where}: sample {t} has {len(boxes)} boxes; at most "
                             f"{cfg.max_boxes_per_sample} per sample are allowed")
    counts = np.array([len(b) for b in lists], np.int64)
    boxes = list(chain.from_iterable(lists))
    try:
        p = _convert(boxes)
    except (KeyError, TypeError, ValueError, _Bad):
        _find_problem(order, lists, where)
        raise  # _find_problem always raises; this is unreachable
    p.sample = np.repeat(np.array([index[t] for t in order], np.int64), counts)
    p.meta = data["meta"]
    expected = np.repeat(np.arange(len(order)), counts)
    # every box names its sample (the devkit reads it, not the key it is listed under)
    tokens = [b.get("sample_token") for b in boxes]
    bad = next((k for k, (tok, s) in enumerate(zip(tokens, expected)) if tok != order[s]), None)
    if bad is not None:
        s = expected[bad]
        at = f"{where}: sample {order[s]}, box {bad - counts[:s].sum()}"
        if "sample_token" not in boxes[bad]:
            raise BevkdError(f"{at}: no 'sample_token' (every box names its sample)")
        raise BevkdError(f"{at}: its sample_token is {tokens[bad]!r}, not the key it is "
                         "listed under")
    check_predictions(p, sample_tokens, where, cfg)
    return p


class _Bad(Exception):
    """Something in the fast path is off; the slow walk finds and reports it."""


def _numbers(rows: list, width: int) -> np.ndarray:
    """``(len(rows), width)`` float64 from lists of JSON numbers, or raise."""
    if any(type(r) is not list or len(r) != width for r in rows):
        raise _Bad
    flat = list(chain.from_iterable(rows))
    # bool is an int subclass and numpy would silently read strings: only real numbers pass
    if not all(type(v) is float or type(v) is int or _is_real(v) for v in flat):
        raise _Bad
    return np.array(flat, np.float64).reshape(len(rows), width)


def _convert(boxes: list[dict]) -> Predictions:
    label = np.array([_CLASS_ID[b["detection_name"]] for b in boxes], np.int64)
    attribute = np.array([_ATTR_ID[b["attribute_name"]] for b in boxes], np.int64)
    scores = [b["detection_score"] for b in boxes]
    if not all(type(v) is float or type(v) is int or _is_real(v) for v in scores):
        raise _Bad
    num_pts = [b.get("num_pts", -1) for b in boxes]
    if not all(type(v) is int for v in num_pts):
        # the devkit applies int() to whatever is there
        num_pts = [int(v) for v in num_pts]
    return Predictions(
        sample=np.zeros(0, np.int64), label=label,
        translation=_numbers([b["translation"] for b in boxes], 3),
        size=_numbers([b["size"] for b in boxes], 3),
        rotation=_numbers([b["rotation"] for b in boxes], 4),
        velocity=_numbers([b["velocity"] for b in boxes], 2),
        score=np.array(scores, np.float64), attribute=attribute,
        num_pts=np.array(num_pts, np.int64))


_FIELDS = {"translation": 3, "size": 3, "rotation": 4, "velocity": 2}
_REQUIRED = ("sample_token", "translation", "size", "rotation", "velocity", "detection_name",
             "detection_score", "attribute_name")


def _is_real(v: Any) -> bool:
    """A real number that is not a bool (numpy scalars of in-memory dicts included)."""
    return isinstance(v, (float, int, np.floating, np.integer)) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return _is_real(v) and math.isfinite(v)


def _find_problem(order: list[str], lists: list[list], where: str) -> None:
    """Walk the boxes one by one and raise a :class:`BevkdError` for the first bad one."""
    for t, boxes in zip(order, lists):
        for k, b in enumerate(boxes):
            at = f"{where}: sample {t}, box {k}"
            if not isinstance(b, dict):
                raise BevkdError(f"{at}: must be an object, got {type(b).__name__}")
            for key in _REQUIRED:
                if key not in b:
                    raise BevkdError(f"{at}: missing {key!r}")
            for key, width in _FIELDS.items():
                v = b[key]
                if not isinstance(v, list) or len(v) != width:
                    n = len(v) if isinstance(v, list) else type(v).__name__
                    raise BevkdError(f"{at}: {key} must be a list of {width} numbers, got {n}"
                                     f"{' elements' if isinstance(v, list) else ''}")
                if not all(_is_number(x) for x in v):
                    raise BevkdError(f"{at}: {key} must be {width} finite numbers, got {v}")
            name = b["detection_name"]
            if not isinstance(name, str) or name not in _CLASS_ID:
                raise BevkdError(f"{at}: unknown detection_name {name!r} (classes: "
                                 f"{', '.join(EVAL_CLASSES)})")
            attr = b["attribute_name"]
            if not isinstance(attr, str) or attr not in _ATTR_ID:
                raise BevkdError(f"{at}: unknown attribute_name {attr!r} (attributes: '', "
                                 f"{', '.join(ATTRIBUTE_NAMES)})")
            if not _is_number(b["detection_score"]):
                raise BevkdError(f"{at}: detection_score must be a finite number, got "
                                 f"{b['detection_score']!r}")
            if "num_pts" in b:
                try:
                    int(b["num_pts"])
                except (TypeError, ValueError, OverflowError):
                    raise BevkdError(f"{at}: num_pts must be an integer, got "
                                     f"{b['num_pts']!r}") from None
    raise BevkdError(f"{where}: malformed boxes")  # pragma: no cover - the walk finds it


_BOX_FIELDS = (Field("sample_token", KEYEQ), Field("translation", ARR, 3), Field("size", ARR, 3),
               Field("rotation", ARR, 4), Field("velocity", ARR, 2),
               Field("detection_name", ENUM, names=EVAL_CLASSES),
               Field("detection_score", NUM),
               Field("attribute_name", ENUM, names=("",) + ATTRIBUTE_NAMES),
               Field("num_pts", NUM))
_REQUIRED_BITS = sum(1 << k for k, f in enumerate(_BOX_FIELDS) if f.name != "num_pts")


def read_results(path: str) -> tuple[Any, Optional[ScannedResults]]:
    """The results file's bytes and, if the scanner accepts it, its boxes as arrays.

    The part of :func:`load_predictions` that does not need the split (it can run while the
    ground truth loads: the scanner releases the GIL).
    """
    raw = read_bytes(path, "results file")
    return raw, scan_results(raw, _BOX_FIELDS)


def load_predictions(path: str, sample_tokens: Sequence[str], predefined: bool,
                     cfg: DetectionConfig = CVPR_2019,
                     read: Optional[tuple[Any, Optional[ScannedResults]]] = None) -> Predictions:
    """Read, validate and convert a results file (same result as ``parse_results``).

    Files are scanned straight into arrays (``jsonscan``); a file the scanner does not
    accept, or one with any problem, goes through ``json`` and :func:`parse_results`, whose
    messages name the culprit. ``read``: what :func:`read_results` returned, if called already.
    """
    raw, scanned = read if read is not None else read_results(path)
    if scanned is not None:
        p = _from_scan(scanned, sample_tokens, predefined, path, cfg)
        if p is not None:
            return p
    data = parse_json(raw, path, "results file")
    del raw, scanned
    return parse_results(data, sample_tokens, predefined, path, cfg)


def _from_scan(s: ScannedResults, sample_tokens: Sequence[str], predefined: bool, where: str,
               cfg: DetectionConfig) -> Optional[Predictions]:
    """Predictions from a scanned file, or None where the slow path must explain a problem."""
    if s.meta_json is None:
        return None
    try:
        meta = parse_json(s.meta_json, where, "results file")
    except BevkdError:
        return None
    key_index = {k: i for i, k in enumerate(s.keys)}
    if not isinstance(meta, dict) or len(key_index) != len(s.keys) \
            or any(t not in key_index for t in sample_tokens):
        return None
    order = sample_order(s.keys, sample_tokens, predefined)
    ks = np.array([key_index[t] for t in order], np.int64)
    starts, counts = s.offsets[ks], s.offsets[ks + 1] - s.offsets[ks]
    if counts.size and counts.max() > cfg.max_boxes_per_sample:
        return None
    total = int(counts.sum())
    # rows of the chosen samples, in sample order then file order
    rows = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) \
        + np.arange(total)
    if total == len(s.records) and (rows == np.arange(total)).all():
        rows = slice(None)  # every box, in file order: views instead of copies
    r = s.records
    label = r.ints("detection_name")[rows]
    attribute = r.ints("attribute_name")[rows] - 1  # names[0] is ''
    has_pts = r.has("num_pts")[rows]
    num_pts = r.numbers("num_pts")[rows]
    if ((r.present[rows] & _REQUIRED_BITS) != _REQUIRED_BITS).any() or (label < 0).any() \
            or (attribute < -1).any() or (r.ints("sample_token")[rows] != 1).any() \
            or not np.isfinite(num_pts[has_pts]).all():
        return None
    index = {t: i for i, t in enumerate(sample_tokens)}
    p = Predictions(
        sample=np.repeat(np.array([index[t] for t in order], np.int64), counts), label=label,
        translation=r.numbers("translation")[rows], size=r.numbers("size")[rows],
        rotation=r.numbers("rotation")[rows], velocity=r.numbers("velocity")[rows],
        score=r.numbers("detection_score")[rows], attribute=attribute,
        # the devkit applies int(): truncation toward zero
        num_pts=np.where(has_pts, np.trunc(np.nan_to_num(num_pts)), -1).astype(np.int64),
        meta=meta)
    check_predictions(p, sample_tokens, where, cfg)
    return p

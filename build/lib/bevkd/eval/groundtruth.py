"""Ground truth of a split as numpy arrays, read straight from the nuScenes tables.

The devkit builds a ``NuScenes`` object (every table plus reverse indexes over millions of
rows) and then walks Python objects per box. Here only the columns the benchmark needs are
read: the split's samples, the LIDAR_TOP ego pose of each, its annotations of the 10 detection
classes (with the devkit's ``box_velocity``) and its bike racks. ``cache_dir`` keeps them.

Semantics of nuscenes-devkit 1.2.0 (``eval/common/loaders.py: load_gt``, ``nuscenes.py``):
annotations of a sample in ``sample_annotation`` table order (``sample['anns']``), category
through the instance, at most one attribute, ``num_pts = num_lidar_pts + num_radar_pts``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, fields
from typing import Optional

import numpy as np

from ..errors import BevkdError
from .config import ATTRIBUTE_NAMES, BIKE_RACK_CATEGORY, CATEGORY_TO_CLASS, EVAL_CLASSES
from .records import ARR, NUM, STR, STRLIST, Field, join, match_rows
from .tables import AnyRecords, is_predefined_split, lidar_poses, pose_matrices, records, \
    split_scene_names, table

_CACHE_FORMAT = 1
# box_velocity: neighbours further apart than this (doubled for a centred difference) give NaN
_MAX_TIME_DIFF = 1.5
_TABLES = ("scene", "sample", "sample_data", "calibrated_sensor", "sensor", "ego_pose",
           "sample_annotation", "instance", "category", "attribute")
_ANNOTATION = (Field("token", STR), Field("sample_token", STR), Field("instance_token", STR),
               Field("attribute_tokens", STRLIST), Field("translation", ARR, 3),
               Field("size", ARR, 3), Field("rotation", ARR, 4), Field("prev", STR),
               Field("next", STR), Field("num_lidar_pts", NUM), Field("num_radar_pts", NUM))


@dataclass
class GroundTruth:
    """The benchmark's view of one split (nothing filtered by range or points yet).

    Samples ``S``: ``sample_tokens`` in split order, ``ego_translation (S, 3)`` and
    ``ego_rotation (S, 4)`` (wxyz) of the LIDAR_TOP key frame. Boxes ``N`` of the detection
    classes, grouped by sample (split order) and in table order within a sample: ``sample (N,)``
    index into ``sample_tokens``, ``label (N,)`` index into ``EVAL_CLASSES``, ``translation
    (N, 3)``, ``size (N, 3)`` ``[w, l, h]``, ``rotation (N, 4)`` wxyz, ``velocity (N, 2)``
    (global, NaN where the devkit has none), ``num_pts (N,)`` lidar + radar points,
    ``attribute (N,)`` index into ``ATTRIBUTE_NAMES`` or -1. Bike racks ``R``: ``rack_sample``,
    ``rack_translation``, ``rack_size``, ``rack_rotation``.
    """

    version: str
    split: str
    sample_tokens: list[str]
    ego_translation: np.ndarray
    ego_rotation: np.ndarray
    sample: np.ndarray
    label: np.ndarray
    translation: np.ndarray
    size: np.ndarray
    rotation: np.ndarray
    velocity: np.ndarray
    num_pts: np.ndarray
    attribute: np.ndarray
    rack_sample: np.ndarray
    rack_translation: np.ndarray
    rack_size: np.ndarray
    rack_rotation: np.ndarray

    @property
    def predefined(self) -> bool:
        return is_predefined_split(self.split)

    def __len__(self) -> int:
        return len(self.label)

    def global_T_ego(self) -> np.ndarray:
        """LIDAR_TOP ego poses of the samples as ``(S, 4, 4)`` transforms."""
        return pose_matrices(self.ego_translation, self.ego_rotation)

    @classmethod
    def load(cls, root: str, version: str, split: str,
             cache_dir: Optional[str] = None) -> GroundTruth:
        """Read the split's ground truth from ``root/version/*.json``.

        With ``cache_dir``, the arrays are stored there after the first read and reused while
        the table files (size and modification time) and the split are unchanged.
        """
        if not os.path.isdir(os.path.join(root, version)):
            raise BevkdError(f"dataset version folder {os.path.join(root, version)} does not exist")
        if cache_dir is None:
            return _read(root, version, split)
        path = os.path.join(cache_dir, f"gt-{version}-{split}-{_cache_key(root, version, split)}.npz")
        if os.path.isfile(path):
            try:
                return cls._from_npz(path)
            except (OSError, ValueError, KeyError):
                pass  # an unreadable cache is rebuilt, not fatal
        gt = _read(root, version, split)
        os.makedirs(cache_dir, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp.npz"
        np.savez(tmp, **gt._to_arrays())
        os.replace(tmp, path)  # atomic: concurrent runs never read a half-written cache
        return gt

    def _to_arrays(self) -> dict[str, np.ndarray]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["sample_tokens"] = np.array(self.sample_tokens, dtype=str)
        out["version"], out["split"] = np.array(self.version), np.array(self.split)
        out["format"] = np.array(_CACHE_FORMAT)
        return out

    @classmethod
    def _from_npz(cls, path: str) -> GroundTruth:
        with np.load(path, allow_pickle=False) as z:
            if int(z["format"]) != _CACHE_FORMAT:
                raise ValueError("old cache format")
            kw = {f.name: z[f.name] for f in fields(cls)}
        kw["sample_tokens"] = [str(t) for t in kw["sample_tokens"]]
        kw["version"], kw["split"] = str(kw["version"]), str(kw["split"])
        return cls(**kw)


def _cache_key(root: str, version: str, split: str) -> str:
    h = hashlib.sha1(f"{_CACHE_FORMAT}|{os.path.abspath(root)}|{version}|{split}".encode())
    for name in (*_TABLES, "splits"):
        path = os.path.join(root, version, f"{name}.json")
        if os.path.exists(path):
            st = os.stat(path)
            h.update(f"|{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _read(root: str, version: str, split: str) -> GroundTruth:
    scene_names = set(split_scene_names(root, version, split))
    scene_ok = {r["token"] for r in table(root, version, "scene") if r.get("name") in scene_names}
    samples = table(root, version, "sample")
    try:
        tokens = [r["token"] for r in samples if r.get("scene_token") in scene_ok]
        timestamp = {r["token"]: r["timestamp"] for r in samples}
    except KeyError as err:
        raise BevkdError(f"nuScenes table sample has a row without {err}") from None
    if not tokens:
        raise BevkdError(f"split {split!r} has no samples in {os.path.join(root, version)}")
    del samples
    ego_t, ego_r = lidar_poses(root, version, tokens)
    boxes = _annotations(root, version, {t: i for i, t in enumerate(tokens)}, timestamp)
    return GroundTruth(version=version, split=split, sample_tokens=tokens, ego_translation=ego_t,
                       ego_rotation=ego_r, **boxes)


def _annotations(root: str, version: str, sample_pos: dict[str, int],
                 timestamp: dict[str, int]) -> dict[str, np.ndarray]:
    """Detection-class boxes and bike racks of the split's samples (see GroundTruth)."""
    categories = {r["token"]: r["name"] for r in table(root, version, "category")}
    instances = table(root, version, "instance")
    class_index = {c: EVAL_CLASSES.index(n) for c, n in CATEGORY_TO_CLASS.items()}
    # per instance: class index, -2 for a bike rack, -1 for other categories
    inst_label = np.array([class_index.get(categories.get(r["category_token"]),
                                           -2 if categories.get(r["category_token"])
                                           == BIKE_RACK_CATEGORY else -1)
                           for r in instances], np.int64)
    attrs = table(root, version, "attribute")
    recs = records(root, version, "sample_annotation", _ANNOTATION)
    rows, sample = match_rows(recs, "sample_token", list(sample_pos))

    def token(k: int) -> str:  # for messages
        return recs.strings("token", rows[k:k + 1])[0]

    inst = join(recs, "instance_token", rows, [r["token"] for r in instances])
    if (inst < 0).any():
        k = int(np.argmax(inst < 0))
        raise BevkdError(f"sample_annotation {token(k)} refers to unknown instance "
                         f"{recs.strings('instance_token', rows[k:k + 1])[0]}")
    label = inst_label[inst]
    translation = recs.numbers("translation")[rows]
    size = recs.numbers("size")[rows]
    rotation = recs.numbers("rotation")[rows]
    num_pts = (recs.numbers("num_lidar_pts")[rows] + recs.numbers("num_radar_pts")[rows])
    num_pts = num_pts.astype(np.int64)

    det = np.flatnonzero(label >= 0)
    n_attr = recs.ints("attribute_tokens")[rows[det]]
    if (n_attr > 1).any():
        k = int(det[np.argmax(n_attr > 1)])
        raise BevkdError(f"sample_annotation {token(k)} has {n_attr.max()} attributes; "
                         "the detection benchmark allows at most one")
    attribute = np.full(len(det), -1, np.int64)
    with_attr = np.flatnonzero(n_attr == 1)
    attr_ids = join(recs, "attribute_tokens", rows[det[with_attr]], [r["token"] for r in attrs])
    attr_index = np.array([ATTRIBUTE_NAMES.index(r["name"]) if r["name"] in ATTRIBUTE_NAMES
                           else -1 for r in attrs] + [-1], np.int64)
    attribute[with_attr] = attr_index[attr_ids]  # -1 (unknown token) reads the extra -1
    if (attribute[with_attr] < 0).any():
        k = int(with_attr[np.argmax(attribute[with_attr] < 0)])
        tok = recs.strings("attribute_tokens", rows[det[k:k + 1]])[0]
        name = next((r["name"] for r in attrs if r["token"] == tok), tok)
        raise BevkdError(f"sample_annotation {token(int(det[k]))} has attribute {name!r}, not a "
                         "nuScenes detection attribute")
    sample_stamp = np.array([timestamp[t] for t in sample_pos], np.float64)
    velocity = _box_velocity(recs, rows, det, translation, sample_stamp[sample], timestamp)

    # group by sample (split order), keeping table order inside a sample: sample['anns']
    order = det[np.argsort(sample[det], kind="stable")]
    inv = np.empty(len(rows), np.int64)
    inv[det] = np.arange(len(det))
    racks = np.flatnonzero(label == -2)
    racks = racks[np.argsort(sample[racks], kind="stable")]
    return dict(sample=sample[order], label=label[order], translation=translation[order],
                size=size[order], rotation=rotation[order], velocity=velocity[inv[order]],
                num_pts=num_pts[order], attribute=attribute[inv[order]],
                rack_sample=sample[racks], rack_translation=translation[racks],
                rack_size=size[racks], rack_rotation=rotation[racks])


def _box_velocity(recs: AnyRecords, rows: np.ndarray, det: np.ndarray,
                  translation: np.ndarray, stamps: np.ndarray,
                  timestamp: dict[str, int]) -> np.ndarray:
    """``NuScenes.box_velocity(token)[:2]`` of the annotations ``rows[det]``, ``(len(det), 2)``.

    Centred difference between the previous and next annotation of the instance, else the
    one-sided difference; NaN without neighbours or when they are more than 1.5 s apart (3 s
    for the centred difference). Same float operations as the devkit, so the same bits.
    """
    pos, t = translation, 1e-6 * stamps
    has_prev = recs.nonempty("prev", rows[det])
    has_next = recs.nonempty("next", rows[det])
    # neighbours within the split's annotations (in nuScenes an instance stays in its scene)
    prev = join(recs, "prev", rows[det], (recs, "token", rows))
    nxt = join(recs, "next", rows[det], (recs, "token", rows))
    lost = (has_prev & (prev < 0)) | (has_next & (nxt < 0))
    if lost.any():
        # neighbours outside the split: look them up in the whole table
        everything = np.arange(len(recs))
        for name, idx, has in (("prev", prev, has_prev), ("next", nxt, has_next)):
            miss = np.flatnonzero(has & (idx < 0))
            found = join(recs, name, rows[det[miss]], (recs, "token", everything))
            if (found < 0).any():
                tok = recs.strings(name, rows[det[miss[found < 0][:1]]])[0]
                raise BevkdError(f"sample_annotation {tok} (prev/next of an annotation) is "
                                 "missing")
            idx[miss] = len(pos) + np.arange(len(miss))
            pos = np.concatenate([pos, recs.numbers("translation")[found]])
            t = np.concatenate([t, 1e-6 * np.array(
                [timestamp[x] for x in recs.strings("sample_token", found)], np.float64)])
    first = np.where(has_prev, prev, det)
    last = np.where(has_next, nxt, det)
    with np.errstate(divide="ignore", invalid="ignore"):
        time_diff = t[last] - t[first]
        vel = (pos[last] - pos[first]) / time_diff[:, None]
    max_diff = np.where(has_prev & has_next, 2 * _MAX_TIME_DIFF, _MAX_TIME_DIFF)
    bad = ~(has_prev | has_next) | (time_diff > max_diff)
    vel[bad] = np.nan
    return vel[:, :2]

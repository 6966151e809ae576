"""Reading the nuScenes JSON tables: files, splits, LIDAR_TOP ego poses.

Big tables (``sample_data``, ``ego_pose``, ``sample_annotation``) go through the numba scanner
(``jsonscan``), which fills only the wanted columns; anything it does not accept is parsed by
``json`` instead, with the same result. Small tables are plain ``json``.

Semantics reproduced from nuscenes-devkit 1.2.0 (``nuscenes.py``, ``utils/splits.py``,
``eval/common/loaders.py``): the samples of a split are those of its scenes, in ``sample``
table order; the pose of a sample is the ego pose of its (last, in table order) key-frame
LIDAR_TOP ``sample_data``.
"""

from __future__ import annotations

import ast
import builtins
import gc
import importlib.util
import json
import mmap
import os
from functools import lru_cache
from typing import Any, Sequence, Union

import numpy as np

from ..errors import BevkdError
from .config import PREDEFINED_SPLITS
from .jsonscan import scan_table
from .records import ARR, BOOL, STR, Field, Records, RowRecords, match_rows

AnyRecords = Union[Records, RowRecords]


def read_bytes(path: str, what: str) -> Union[bytes, mmap.mmap]:
    """A file's bytes, memory-mapped (no copy); a missing file is a :class:`BevkdError`."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return b""
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError:
        raise BevkdError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise BevkdError(f"{what} {path} is a folder, not a file") from None


def parse_json(raw: Union[bytes, mmap.mmap], path: str, what: str) -> Any:
    """``json.loads`` with a :class:`BevkdError` naming the file on invalid JSON."""
    # The cyclic GC would scan the millions of fresh containers of a large file again and
    # again while they are created (none of them can be garbage yet); pausing it roughly
    # halves the parse time.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return json.loads(raw if isinstance(raw, bytes) else raw[:])
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BevkdError(f"{what} {path} is not valid JSON: {err}") from None
    finally:
        if enabled:
            gc.enable()


def load_json(path: str, what: str) -> Any:
    """Parse a JSON file; a missing or corrupt file is a :class:`BevkdError` naming it."""
    return parse_json(read_bytes(path, what), path, what)


def table(root: str, version: str, name: str) -> list[dict]:
    """All rows of a (small) table."""
    path = os.path.join(root, version, f"{name}.json")
    rows = load_json(path, f"nuScenes table {name}")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise BevkdError(f"nuScenes table {path} is not a list of objects")
    return rows


def records(root: str, version: str, name: str, fields: Sequence[Field]) -> AnyRecords:
    """The ``fields`` of every row of a (big) table, without building the rows."""
    path = os.path.join(root, version, f"{name}.json")
    what = f"nuScenes table {name}"
    raw = read_bytes(path, what)
    recs = scan_table(raw, fields)
    if recs is not None and all(recs.has(f.name).all() for f in fields):
        return recs
    rows = parse_json(raw, path, what)
    del raw
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise BevkdError(f"nuScenes table {path} is not a list of objects")
    return RowRecords(rows, fields, f"nuScenes table {path}")


def is_predefined_split(split: str) -> bool:
    """Whether ``split`` is one of the devkit's hard-coded splits (else: ``splits.json``)."""
    return split in PREDEFINED_SPLITS


@lru_cache(maxsize=None)
def predefined_split_scenes() -> dict[str, tuple[str, ...]]:
    """``nuscenes.utils.splits.create_splits_scenes()``, without importing the devkit.

    Importing ``nuscenes`` builds its whole package (matplotlib, cv2, ...) in ~1.2 s, more
    than the rest of ``bevkd metrics`` on a small split. The scene lists are plain top-level
    assignments in ``nuscenes/utils/splits.py`` (``train`` is computed from two others), so
    only those statements are run; anything unexpected falls back to the import.
    """
    spec = importlib.util.find_spec("nuscenes")  # locates the package without running it
    try:
        path = os.path.join(list(spec.submodule_search_locations)[0], "utils", "splits.py")
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        tree.body = [node for node in tree.body if isinstance(node, ast.Assign)]
        lists: dict[str, Any] = {}
        exec(compile(tree, path, "exec"), {"__builtins__": builtins}, lists)  # noqa: S102
        out = {name: tuple(lists[name]) for name in PREDEFINED_SPLITS}
        if len(set(out["train"] + out["val"] + out["test"])) != 1000:
            raise ValueError("unexpected splits.py")
        return out
    except Exception:  # noqa: BLE001 - any surprise: use the devkit itself
        from nuscenes.utils.splits import create_splits_scenes

        return {k: tuple(v) for k, v in create_splits_scenes().items()}


def split_scene_names(root: str, version: str, split: str) -> list[str]:
    """Scene names of ``split``: the devkit's predefined splits or the version's splits.json."""
    if is_predefined_split(split):
        need = PREDEFINED_SPLITS[split]
        if not version.endswith(need):
            raise BevkdError(f"split {split!r} needs a v1.0-{need} dataset, not version {version!r}")
        return list(predefined_split_scenes()[split])
    path = os.path.join(root, version, "splits.json")
    if not os.path.isfile(path):
        raise BevkdError(f"split {split!r} is not a predefined nuScenes split and {path} "
                         "(custom splits) does not exist")
    splits = load_json(path, "splits file")
    if not isinstance(splits, dict) or split not in splits:
        known = sorted(splits) if isinstance(splits, dict) else []
        raise BevkdError(f"split {split!r} not found in {path} (it has: {', '.join(known)})")
    if not isinstance(splits[split], list):
        raise BevkdError(f"split {split!r} in {path} must be a list of scene names")
    return list(splits[split])


_SAMPLE_DATA = (Field("sample_token", STR), Field("ego_pose_token", STR),
                Field("calibrated_sensor_token", STR), Field("is_key_frame", BOOL))
_EGO_POSE = (Field("token", STR), Field("translation", ARR, 3), Field("rotation", ARR, 4))


def lidar_poses(root: str, version: str, tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """LIDAR_TOP ego pose of each sample: translations ``(S, 3)``, wxyz rotations ``(S, 4)``."""
    channel = {r["token"]: r.get("channel") for r in table(root, version, "sensor")}
    lidar_cs = {r["token"] for r in table(root, version, "calibrated_sensor")
                if channel.get(r.get("sensor_token")) == "LIDAR_TOP"}
    sd = records(root, version, "sample_data", _SAMPLE_DATA)
    key_rows = np.flatnonzero(sd.ints("is_key_frame"))
    rows, _ = match_rows(sd, "calibrated_sensor_token", sorted(lidar_cs), key_rows)
    rows, which = match_rows(sd, "sample_token", tokens, rows)
    # later rows win, as in the devkit's sample['data'][channel] reverse index
    last = np.full(len(tokens), -1, np.int64)
    last[which] = rows  # fancy assignment keeps the last of repeated indices
    if (last < 0).any():
        t = tokens[int(np.argmax(last < 0))]
        raise BevkdError(f"sample {t} has no key-frame LIDAR_TOP sample_data in "
                         f"{os.path.join(root, version)}")
    pose_token = sd.strings("ego_pose_token", last)
    del sd
    ep = records(root, version, "ego_pose", _EGO_POSE)
    unique = list(dict.fromkeys(pose_token))
    rows, which = match_rows(ep, "token", unique)
    found = np.full(len(unique), -1, np.int64)
    found[which] = rows  # the last row of a repeated token, as the devkit's token index
    if (found < 0).any():
        missing = unique[int(np.argmax(found < 0))]
        raise BevkdError(f"ego_pose {missing} (LIDAR_TOP pose of a sample) is missing from "
                         f"{os.path.join(root, version, 'ego_pose.json')}")
    where = dict(zip(unique, found.tolist()))
    idx = np.array([where[p] for p in pose_token], np.int64)
    return ep.numbers("translation")[idx], ep.numbers("rotation")[idx]


def pose_matrices(trans: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """``(S, 4, 4)`` transforms from translations and wxyz quaternions."""
    # imported here: bevkd.structures imports torch, which the metrics path does not need
    from ..structures.geometry import make_transform, quat_to_matrix

    return make_transform(quat_to_matrix(rot), trans)


def load_lidar_poses(root: str, version: str, sample_tokens: Sequence[str]) -> np.ndarray:
    """``global_T_ego`` at the LIDAR_TOP key frame of each sample, ``(S, 4, 4)`` float64.

    The frame that ``Detections`` boxes live in and that the devkit measures ranges from.
    """
    return pose_matrices(*lidar_poses(root, version, list(sample_tokens)))

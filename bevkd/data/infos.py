"""Per-sample info records of a nuScenes-format split, built once from the tables and cached.

An info holds everything the loader needs, already expressed in the **ego frame of the key
frame** (the LIDAR_TOP ego pose at the sample timestamp): camera paths and ``ego_T_cam``
(including the ego motion between the camera's and the LiDAR's timestamps, as BEVDepth does),
intrinsics, LiDAR sweeps with ``ego_T_sweep`` and time lags, and the GT boxes with velocities.
Opening a prepared split is a pickle load (well under a second for nuScenes val).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from dataclasses import dataclass, field

import numpy as np

from ..errors import BevkdError
from ..fileio import atomic_write
from ..structures.boxes import Boxes3D
from ..structures.classes import CAMERA_CHANNELS, CLASS_INDEX
from ..structures.geometry import invert_transform, transform_from_record

CACHE_FORMAT = 2  # 2: labels in the devkit class order


@dataclass
class CameraInfo:
    channel: str
    path: str                  # relative to the dataset root
    ego_T_cam: np.ndarray      # (4, 4) camera -> key-frame ego frame
    pix_T_cam: np.ndarray      # (3, 3) intrinsics
    width: int
    height: int
    timestamp: int


@dataclass
class SweepInfo:
    path: str                  # relative to the dataset root
    ego_T_lidar: np.ndarray    # (4, 4) that sweep's LiDAR frame -> key-frame ego frame
    time_lag: float            # seconds before the key frame (0 for the key sweep)


@dataclass
class SampleInfo:
    """One key frame. Boxes are (N, 9) [x, y, z, l, w, h, yaw, vx, vy] in the key ego frame."""

    token: str
    scene_name: str
    timestamp: int
    prev: str                  # previous sample token in the scene ('' for the first)
    global_T_ego: np.ndarray   # (4, 4) key-frame ego pose
    cams: list[CameraInfo]
    sweeps: list[SweepInfo]    # key sweep first, then older sweeps (up to `max_sweeps`)
    gt_boxes: np.ndarray       # (N, 9) float64, velocity nan where the devkit has none
    gt_labels: np.ndarray      # (N,) int64 index into DETECTION_CLASSES
    gt_num_pts: np.ndarray     # (N,) lidar + radar points (the devkit drops GT with 0)
    gt_tokens: list[str] = field(default_factory=list)  # sample_annotation tokens


def _check_root(root: str) -> None:
    if not os.path.isdir(root):
        raise BevkdError(f"dataset root {root} " + ("is a file, not a folder" if
                                                    os.path.exists(root) else "does not exist"))


def _versions(root: str) -> list[str]:
    """The ``v1.0-*`` table folders of the dataset root ``root`` (a folder), sorted."""
    return sorted(d for d in os.listdir(root)
                  if d.startswith("v1.0-") and os.path.isdir(os.path.join(root, d)))


def find_version(root: str, version: str | None) -> str:
    """``version`` (its table folder checked), or the only ``v1.0-*`` table folder of
    ``root``."""
    if version:
        version_dir(root, version)
        return version
    _check_root(root)
    found = _versions(root)
    if not found:
        raise BevkdError(f"{root} holds no v1.0-* table folder: not a nuScenes-format dataset "
                         "root")
    if len(found) > 1:
        raise BevkdError(f"{root} holds several table folders ({', '.join(found)}); pass "
                         "--version")
    return found[0]


def version_dir(root: str, version: str) -> str:
    _check_root(root)
    path = os.path.join(root, version)
    if not os.path.isdir(path):
        found = _versions(root)  # (a root that is no folder is refused above)
        hint = f" (found: {', '.join(found)})" if found else ""
        raise BevkdError(f"nuScenes version folder {path} does not exist{hint}")
    return path


def split_scene_names(root: str, version: str, split: str) -> list[str]:
    """Scene names of a predefined nuScenes split or of a custom one in ``splits.json``."""
    from nuscenes.utils.splits import create_splits_scenes

    predefined = create_splits_scenes()
    if split in predefined:
        return list(predefined[split])
    path = os.path.join(version_dir(root, version), "splits.json")
    if not os.path.isfile(path):
        raise BevkdError(f"unknown split {split!r}: not a nuScenes split and {path} does not exist")
    with open(path) as f:
        custom = json.load(f)
    if split not in custom:
        raise BevkdError(f"unknown split {split!r}; {path} has {', '.join(sorted(custom))}")
    return list(custom[split])


def _tables_fingerprint(vdir: str) -> str:
    h = hashlib.sha1()
    for name in sorted(os.listdir(vdir)):
        if name.endswith(".json"):
            st = os.stat(os.path.join(vdir, name))
            h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _cache_path(root: str, version: str, split: str, max_sweeps: int,
                cache_dir: str | None) -> str:
    vdir = version_dir(root, version)
    key = f"{split}-s{max_sweeps}-{_tables_fingerprint(vdir)}-f{CACHE_FORMAT}.pkl"
    if cache_dir is None:
        cache_dir = os.path.join(root, ".bevkd_cache", version)
        probe = root
        if not os.access(probe, os.W_OK):  # a read-only shared copy of nuScenes
            digest = hashlib.sha1(os.path.abspath(root).encode()).hexdigest()[:12]
            cache_dir = os.path.join(os.path.expanduser("~"), ".cache", "bevkd", digest, version)
    return os.path.join(cache_dir, key)


def load_infos(root: str, version: str, split: str, max_sweeps: int = 10,
               cache_dir: str | None = None, verbose: bool = False) -> list[SampleInfo]:
    """Infos of ``split`` in table order, from the cache when the tables did not change."""
    path = _cache_path(root, version, split, max_sweeps, cache_dir)
    if os.path.isfile(path):
        with open(path, "rb") as f:
            return pickle.load(f)
    infos = build_infos(root, version, split, max_sweeps, verbose)
    # atomic: a half-written cache is never read
    atomic_write(path, pickle.dumps(infos, protocol=pickle.HIGHEST_PROTOCOL))
    return infos


def load_devkit(root: str, version: str, verbose: bool = False):
    """nuscenes-devkit's ``NuScenes`` of ``root``/``version``; tables it cannot read are a
    :class:`BevkdError` naming the file (the devkit's own error names none)."""
    from nuscenes import NuScenes

    vdir = version_dir(root, version)
    try:
        return NuScenes(version=version, dataroot=root, verbose=verbose)
    except KeyError as err:  # the devkit's reverse index fails on dangling tokens
        raise BevkdError(f"{version} tables reference a missing token {err}") from None
    except (ValueError, AssertionError, OSError) as err:  # JSONDecodeError is a ValueError
        from ..eval.tables import load_json

        for name in sorted(os.listdir(vdir)):
            if name.endswith(".json"):  # the first table that does not parse names itself
                load_json(os.path.join(vdir, name), f"nuScenes table {name[:-5]}")
        raise BevkdError(f"cannot load the nuScenes tables of {vdir}: {err}") from None


def build_infos(root: str, version: str, split: str, max_sweeps: int = 10,
                verbose: bool = False) -> list[SampleInfo]:
    """Build the infos of ``split`` from the tables through nuscenes-devkit."""
    from nuscenes.eval.detection.utils import category_to_detection_name

    version_dir(root, version)
    scenes = set(split_scene_names(root, version, split))
    nusc = load_devkit(root, version, verbose)
    scene_of = {s["token"]: s["name"] for s in nusc.scene}
    unknown = scenes - set(scene_of.values())
    if unknown:
        raise BevkdError(f"split {split!r} names scenes missing from {version}: "
                         f"{', '.join(sorted(unknown)[:5])}")
    infos = []
    for sample in nusc.sample:
        scene_name = scene_of[sample["scene_token"]]
        if scene_name not in scenes:
            continue
        infos.append(_sample_info(nusc, sample, scene_name, max_sweeps,
                                  category_to_detection_name))
    if not infos:
        raise BevkdError(f"split {split!r} of {version} has no samples")
    return infos


def _pose(nusc, sd: dict) -> tuple[np.ndarray, np.ndarray]:
    """``global_T_ego`` and ``ego_T_sensor`` of a sample_data record."""
    return (transform_from_record(nusc.get("ego_pose", sd["ego_pose_token"])),
            transform_from_record(nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])))


def _sample_info(nusc, sample: dict, scene_name: str, max_sweeps: int,
                 to_detection_name) -> SampleInfo:
    token = sample["token"]
    if "LIDAR_TOP" not in sample["data"]:
        raise BevkdError(f"sample {token} has no LIDAR_TOP key frame")
    lidar_sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    global_T_ego, ego_T_lidar = _pose(nusc, lidar_sd)
    ego_T_global = invert_transform(global_T_ego)

    cams = []
    for ch in CAMERA_CHANNELS:
        if ch not in sample["data"]:
            raise BevkdError(f"sample {token} has no {ch} key frame")
        sd = nusc.get("sample_data", sample["data"][ch])
        g_T_e, e_T_c = _pose(nusc, sd)
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        cams.append(CameraInfo(ch, sd["filename"], ego_T_global @ g_T_e @ e_T_c,
                               np.asarray(cs["camera_intrinsic"], np.float64), sd["width"],
                               sd["height"], sd["timestamp"]))

    sweeps = [SweepInfo(lidar_sd["filename"], ego_T_lidar, 0.0)]
    sd = lidar_sd
    while len(sweeps) < max_sweeps and sd["prev"]:
        sd = nusc.get("sample_data", sd["prev"])
        g_T_e, e_T_l = _pose(nusc, sd)
        sweeps.append(SweepInfo(sd["filename"], ego_T_global @ g_T_e @ e_T_l,
                                1e-6 * (lidar_sd["timestamp"] - sd["timestamp"])))

    rows, labels, npts, toks = [], [], [], []
    for ann_token in sample["anns"]:
        ann = nusc.get("sample_annotation", ann_token)
        name = to_detection_name(ann["category_name"])
        if name is None:
            continue
        vel = nusc.box_velocity(ann_token)[:2]
        rows.append((ann["translation"], ann["size"], ann["rotation"], vel))
        labels.append(CLASS_INDEX[name])
        npts.append(ann["num_lidar_pts"] + ann["num_radar_pts"])
        toks.append(ann_token)
    if rows:
        t, s, r, v = (np.asarray(x, np.float64) for x in zip(*rows))
        if not (np.isfinite(t).all() and np.isfinite(s).all() and (s > 0).all()):
            bad = [toks[i] for i in np.flatnonzero(~(np.isfinite(s).all(1) & (s > 0).all(1)
                                                     & np.isfinite(t).all(1)))]
            raise BevkdError(f"sample {token}: annotation {bad[0]} has a non-finite or "
                             "non-positive box")
        boxes = Boxes3D.from_nuscenes(t, s, r, v).transform(ego_T_global).tensor
    else:
        boxes = np.zeros((0, 9))
    return SampleInfo(token, scene_name, sample["timestamp"], sample["prev"], global_T_ego, cams,
                      sweeps, boxes, np.asarray(labels, np.int64), np.asarray(npts, np.int64),
                      toks)

"""A tiny SynthScenes dataset, the devkit over it, and prediction makers for the eval tests.

GT-derived predictions are built from the devkit's own view of the data (``NuScenes``), so
that a bug in our table reader cannot hide in both sides of a comparison.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from typing import Any, Optional

import numpy as np
import pytest
from nuscenes import NuScenes
from nuscenes.eval.common.loaders import get_samples_of_custom_split
from nuscenes.eval.detection.config import config_factory
from nuscenes.eval.detection.evaluate import DetectionEval
from nuscenes.eval.detection.utils import category_to_detection_name

from bevkd.data.synth.generator import SynthConfig
from bevkd.data.synth.writer import generate_dataset
from bevkd.eval.config import CLASS_ATTRIBUTES, EVAL_CLASSES

VERSION = "v1.0-synth"
TINY = dict(scenes=2, samples_per_scene=3, seed=0, width=64, height=36, sweeps=1, workers=1)
META = {"use_camera": True, "use_lidar": False, "use_radar": False, "use_map": False,
        "use_external": False}
# mini_train / mini_val scene names of the devkit's predefined splits
MINI_NAMES = {"scene-0000": "scene-0061", "scene-0001": "scene-0103"}


@pytest.fixture(scope="session")
def root(tmp_path_factory) -> str:
    """synth_train = scene-0000 (has bike racks), synth_val = scene-0001."""
    path = tmp_path_factory.mktemp("eval_synth")
    generate_dataset(SynthConfig(out=str(path), **TINY), progress=False)
    return str(path)


@pytest.fixture(scope="session")
def nusc(root: str) -> NuScenes:
    return NuScenes(version=VERSION, dataroot=root, verbose=False)


@pytest.fixture(scope="session")
def mini_root(root: str, tmp_path_factory) -> str:
    """The same tables as a ``v1.0-mini`` dataset whose scenes are mini_train / mini_val."""
    path = tmp_path_factory.mktemp("eval_mini")
    shutil.copytree(os.path.join(root, VERSION), os.path.join(path, "v1.0-mini"))
    shutil.copytree(os.path.join(root, "maps"), os.path.join(path, "maps"))  # NuScenes() wants them
    scene_file = os.path.join(path, "v1.0-mini", "scene.json")
    with open(scene_file) as f:
        scenes = json.load(f)
    for s in scenes:
        s["name"] = MINI_NAMES[s["name"]]
    with open(scene_file, "w") as f:
        json.dump(scenes, f)
    os.remove(os.path.join(path, "v1.0-mini", "splits.json"))
    return str(path)


def split_samples(nusc: NuScenes, split: str) -> list[str]:
    return get_samples_of_custom_split(split, nusc)


def lidar_pose(nusc: NuScenes, sample_token: str) -> dict:
    sd = nusc.get("sample_data", nusc.get("sample", sample_token)["data"]["LIDAR_TOP"])
    return nusc.get("ego_pose", sd["ego_pose_token"])


def _yaw_quat(yaw: float) -> list[float]:
    return [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]


def gt_boxes(nusc: NuScenes, sample_token: str, with_empty: bool = True) -> list[dict]:
    """The sample's detection-class annotations as result boxes (score 0.5)."""
    out = []
    for at in nusc.get("sample", sample_token)["anns"]:
        ann = nusc.get("sample_annotation", at)
        name = category_to_detection_name(ann["category_name"])
        if name is None or (not with_empty and ann["num_lidar_pts"] + ann["num_radar_pts"] == 0):
            continue
        attr = (nusc.get("attribute", ann["attribute_tokens"][0])["name"]
                if ann["attribute_tokens"] else "")
        vel = np.nan_to_num(nusc.box_velocity(at)[:2]).tolist()
        out.append({"sample_token": sample_token, "translation": list(ann["translation"]),
                    "size": list(ann["size"]), "rotation": list(ann["rotation"]),
                    "velocity": vel, "detection_name": name, "detection_score": 0.5,
                    "attribute_name": attr})
    return out


def perturbed_results(nusc: NuScenes, tokens: list[str], seed: int, noise: float = 0.6,
                      equal_scores: bool = True, shuffle: bool = True) -> dict[str, Any]:
    """GT boxes with noise in centre, size, yaw and velocity; some dropped, some duplicated;
    wrong-class and random boxes; many scores exactly equal."""
    rng = np.random.default_rng(seed)
    results = {}
    for st in tokens:
        boxes = []
        for b in gt_boxes(nusc, st):
            for _ in range(rng.choice([0, 1, 1, 2, 3])):  # dropped ... triplicated
                t = np.array(b["translation"]) + rng.normal(0, noise, 3)
                size = np.array(b["size"]) * np.exp(rng.normal(0, 0.2, 3))
                yaw = rng.uniform(-np.pi, np.pi) if rng.random() < 0.3 else \
                    float(np.arctan2(2 * b["rotation"][3] * b["rotation"][0],
                                     1 - 2 * b["rotation"][3] ** 2)) + rng.normal(0, 0.3)
                name = b["detection_name"] if rng.random() < 0.9 else str(rng.choice(EVAL_CLASSES))
                score = (float(rng.choice([0.25, 0.5, 0.75])) if equal_scores and rng.random() < 0.6
                         else float(rng.uniform()))
                boxes.append({**b, "translation": t.tolist(), "size": size.tolist(),
                              "rotation": _yaw_quat(yaw), "detection_name": name,
                              "velocity": (np.array(b["velocity"]) + rng.normal(0, 1, 2)).tolist(),
                              "detection_score": score,
                              "attribute_name": str(rng.choice(("",) + CLASS_ATTRIBUTES[name]))})
        boxes += random_boxes(nusc, st, rng, 15, equal_scores)
        if shuffle:
            rng.shuffle(boxes)
        results[st] = boxes
    return {"meta": dict(META), "results": results}


def random_boxes(nusc: NuScenes, st: str, rng: np.random.Generator, n: int,
                 equal_scores: bool = False) -> list[dict]:
    ego = np.array(lidar_pose(nusc, st)["translation"])
    out = []
    for _ in range(n):
        name = str(rng.choice(EVAL_CLASSES))
        out.append({"sample_token": st, "translation": (ego + rng.uniform(-55, 55, 3)).tolist(),
                    "size": rng.uniform(0.3, 6, 3).tolist(),
                    "rotation": _yaw_quat(rng.uniform(-np.pi, np.pi)),
                    "velocity": rng.normal(0, 3, 2).tolist(), "detection_name": name,
                    "detection_score": float(rng.choice([0.5, 0.3])) if equal_scores
                    else float(rng.uniform()),
                    "attribute_name": str(rng.choice(("",) + CLASS_ATTRIBUTES[name]))})
    return out


def random_results(nusc: NuScenes, tokens: list[str], seed: int, n: int = 60) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {"meta": dict(META),
            "results": {st: random_boxes(nusc, st, rng, n) for st in tokens}}


def write(tmp_path, data: dict, name: str = "results.json") -> str:
    path = os.path.join(str(tmp_path), name)
    with open(path, "w") as f:
        json.dump(data, f)
    return path


def devkit_summary(nusc: NuScenes, path: str, split: str, out_dir: str) -> dict[str, Any]:
    """The devkit's metrics_summary dict for a results file, JSON-normalised."""
    ev = DetectionEval(nusc, config_factory("detection_cvpr_2019"), path, split, out_dir,
                       verbose=False)
    metrics, _ = ev.evaluate()
    summary = metrics.serialize()
    summary["meta"] = ev.meta.copy()
    return json.loads(json.dumps(summary))


def assert_same_metrics(ours: dict, theirs: dict, tol: float = 1e-9,
                        path: str = "", skip: tuple = ("eval_time",)) -> int:
    """Every key equal and every number within ``tol`` (NaN == NaN); returns #numbers."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and list(ours) == list(theirs), \
            f"{path}: keys {list(ours)} != {list(theirs)}"
        return sum(assert_same_metrics(ours[k], theirs[k], tol, f"{path}/{k}", skip)
                   for k in theirs if k not in skip)
    if isinstance(theirs, list):
        assert len(ours) == len(theirs), path
        return sum(assert_same_metrics(a, b, tol, f"{path}/{i}", skip)
                   for i, (a, b) in enumerate(zip(ours, theirs)))
    if isinstance(theirs, float) and math.isnan(theirs):
        assert isinstance(ours, float) and math.isnan(ours), f"{path}: {ours} != nan"
        return 1
    if isinstance(theirs, (int, float)) and not isinstance(theirs, bool):
        assert abs(ours - theirs) <= tol, f"{path}: {ours!r} != {theirs!r}"
        return 1
    assert ours == theirs, f"{path}: {ours!r} != {theirs!r}"
    return 0


def ours_summary(root: str, data: dict, split: str, version: str = VERSION,
                 gt: Optional[Any] = None) -> dict[str, Any]:
    from bevkd.eval.metrics import evaluate
    from bevkd.eval.results import parse_results
    from bevkd.eval.groundtruth import GroundTruth

    gt = gt if gt is not None else GroundTruth.load(root, version, split)
    preds = parse_results(json.loads(json.dumps(data)), gt.sample_tokens, gt.predefined)
    return json.loads(json.dumps(evaluate(gt, preds).summary))

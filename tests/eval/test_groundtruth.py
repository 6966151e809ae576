"""bevkd.eval.groundtruth / tables read the same ground truth as the devkit, without NuScenes()."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from nuscenes.eval.common.loaders import load_gt_of_sample_tokens
from nuscenes.eval.detection import constants as dk_constants
from nuscenes.eval.detection.config import config_factory
from nuscenes.eval.detection.data_classes import DetectionBox
from nuscenes.eval.detection.utils import category_to_detection_name, \
    detection_name_to_rel_attributes

from bevkd.errors import BevkdError
from bevkd.eval import config as cfg
from bevkd.eval.groundtruth import GroundTruth
from bevkd.eval.tables import load_lidar_poses

from .conftest import VERSION, lidar_pose, split_samples


@pytest.mark.parametrize("split", ["synth_train", "synth_val"])
def test_ground_truth_equals_devkit_load_gt(root, nusc, split):
    tokens = split_samples(nusc, split)
    dk = load_gt_of_sample_tokens(nusc, tokens, DetectionBox)
    gt = GroundTruth.load(root, VERSION, split)
    assert gt.sample_tokens == tokens
    boxes = dk.all  # grouped by sample in split order, sample['anns'] order inside
    assert len(gt) == len(boxes) > 50
    assert [tokens[s] for s in gt.sample] == [b.sample_token for b in boxes]
    assert [cfg.EVAL_CLASSES[c] for c in gt.label] == [b.detection_name for b in boxes]
    assert np.array_equal(gt.translation, np.array([b.translation for b in boxes]))
    assert np.array_equal(gt.size, np.array([b.size for b in boxes]))
    assert np.array_equal(gt.rotation, np.array([b.rotation for b in boxes]))
    # box_velocity bit for bit, NaN where it has none
    assert np.array_equal(gt.velocity, np.array([b.velocity for b in boxes]), equal_nan=True)
    assert np.isnan(gt.velocity).any() and np.isfinite(gt.velocity).any()
    assert gt.num_pts.tolist() == [b.num_pts for b in boxes]
    assert ["" if a < 0 else cfg.ATTRIBUTE_NAMES[a] for a in gt.attribute] == \
        [b.attribute_name for b in boxes]
    for i, t in enumerate(tokens):
        pose = lidar_pose(nusc, t)
        assert gt.ego_translation[i].tolist() == pose["translation"]
        assert gt.ego_rotation[i].tolist() == pose["rotation"]


def test_bike_racks_are_read(root, nusc):
    gt = GroundTruth.load(root, VERSION, "synth_train")
    tokens = split_samples(nusc, "synth_train")
    racks = [nusc.get("sample_annotation", a)["translation"] for t in tokens
             for a in nusc.get("sample", t)["anns"]
             if nusc.get("sample_annotation", a)["category_name"] == cfg.BIKE_RACK_CATEGORY]
    assert len(racks) > 0 and gt.rack_translation.tolist() == racks


def test_velocity_rules_match_box_velocity(root, tmp_path, nusc):
    """Gaps above 1.5 s (one-sided) give NaN; a centred difference may span 3 s."""
    data = tmp_path / "ds"
    shutil.copytree(root, data, ignore=shutil.ignore_patterns("samples", "sweeps"))
    path = data / VERSION / "sample.json"
    samples = json.loads(path.read_text())
    for k, s in enumerate(samples):
        s["timestamp"] += k * 700_000  # key frames now 1.2 s apart
    samples[-1]["timestamp"] += 1_000_000  # and the last one 2.2 s after its predecessor
    path.write_text(json.dumps(samples))
    from nuscenes import NuScenes

    nusc2 = NuScenes(VERSION, str(data), verbose=False)
    gt = GroundTruth.load(str(data), VERSION, "synth_val")
    boxes = load_gt_of_sample_tokens(nusc2, split_samples(nusc2, "synth_val"), DetectionBox).all
    expect = np.array([b.velocity for b in boxes])
    assert np.array_equal(gt.velocity, expect, equal_nan=True)
    assert np.isnan(expect).sum() > np.isnan(GroundTruth.load(root, VERSION, "synth_val")
                                            .velocity).sum()


def test_lidar_poses(root, nusc):
    tokens = split_samples(nusc, "synth_val")
    poses = load_lidar_poses(root, VERSION, tokens)
    assert poses.shape == (len(tokens), 4, 4)
    for T, t in zip(poses, tokens):
        assert np.allclose(T[:3, 3], lidar_pose(nusc, t)["translation"])
        assert np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3))


def test_cache_round_trip_and_invalidation(root, tmp_path):
    cache = str(tmp_path / "cache")
    a = GroundTruth.load(root, VERSION, "synth_train", cache_dir=cache)
    files = os.listdir(cache)
    assert len(files) == 1
    b = GroundTruth.load(root, VERSION, "synth_train", cache_dir=cache)
    for f in ("translation", "velocity", "label", "rack_rotation", "ego_rotation"):
        assert np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True)
    assert a.sample_tokens == b.sample_tokens and b.split == "synth_train"
    # a changed table gives a new key (the stale file is simply not used)
    data = tmp_path / "ds"
    shutil.copytree(os.path.join(root, VERSION), data / VERSION)
    GroundTruth.load(str(data), VERSION, "synth_train", cache_dir=cache)
    os.utime(data / VERSION / "sample_annotation.json", ns=(1, 1))
    GroundTruth.load(str(data), VERSION, "synth_train", cache_dir=cache)
    assert len(os.listdir(cache)) == 3


def test_split_errors(root, tmp_path):
    with pytest.raises(BevkdError, match="'nope' not found in .*splits.json"):
        GroundTruth.load(root, VERSION, "nope")
    with pytest.raises(BevkdError, match="split 'val' needs a v1.0-trainval dataset"):
        GroundTruth.load(root, VERSION, "val")
    with pytest.raises(BevkdError, match="does not exist"):
        GroundTruth.load(root, "v1.0-trainval", "val")
    data = tmp_path / "ds"
    shutil.copytree(os.path.join(root, VERSION), data / VERSION)
    os.remove(data / VERSION / "splits.json")
    with pytest.raises(BevkdError, match="not a predefined nuScenes split"):
        GroundTruth.load(str(data), VERSION, "synth_val")
    (data / VERSION / "splits.json").write_text('{"empty": ["scene-9999"]}')
    with pytest.raises(BevkdError, match="split 'empty' has no samples"):
        GroundTruth.load(str(data), VERSION, "empty")
    (data / VERSION / "ego_pose.json").write_text("[")
    (data / VERSION / "splits.json").write_text('{"x": ["scene-0000"]}')
    with pytest.raises(BevkdError, match="ego_pose.json is not valid JSON"):
        GroundTruth.load(str(data), VERSION, "x")


def test_bad_annotation_tables_name_the_row(root, tmp_path):
    data = tmp_path / "ds"
    shutil.copytree(os.path.join(root, VERSION), data / VERSION)
    path = data / VERSION / "sample_annotation.json"
    anns = json.loads(path.read_text())
    attrs = json.loads((data / VERSION / "attribute.json").read_text())
    anns[0]["attribute_tokens"] = [attrs[0]["token"], attrs[1]["token"]]
    path.write_text(json.dumps(anns))
    with pytest.raises(BevkdError, match=f"sample_annotation {anns[0]['token']} has 2 attributes"):
        GroundTruth.load(str(data), VERSION, "synth_train")


def test_constants_equal_the_devkit():
    dk_cfg = config_factory("detection_cvpr_2019")
    assert cfg.CVPR_2019.serialize() == dk_cfg.serialize()
    assert list(cfg.CVPR_2019.class_names) == list(dk_cfg.class_names) == list(cfg.EVAL_CLASSES)
    assert list(cfg.ATTRIBUTE_NAMES) == dk_constants.ATTRIBUTE_NAMES
    assert list(cfg.TP_METRICS) == dk_constants.TP_METRICS
    assert set(cfg.EVAL_CLASSES) == set(dk_constants.DETECTION_NAMES)
    for category, name in cfg.CATEGORY_TO_CLASS.items():
        assert category_to_detection_name(category) == name
    for c in ("static_object.bicycle_rack", "vehicle.emergency.police", "animal"):
        assert category_to_detection_name(c) is None and c not in cfg.CATEGORY_TO_CLASS
    for name in cfg.EVAL_CLASSES:
        assert list(cfg.CLASS_ATTRIBUTES[name]) == detection_name_to_rel_attributes(name)
    from nuscenes.utils.splits import create_splits_scenes

    assert set(cfg.PREDEFINED_SPLITS) == set(create_splits_scenes())

"""SynthScenes as a nuScenes dataset: schema, chains, files, devkit evaluation, sensor/label ties.

Everything here reads the generated files through nuscenes-devkit (and pyquaternion), not
through our own geometry code, so a bug in `bevkd.structures` cannot hide a bug in the data.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from nuscenes.eval.common.loaders import get_samples_of_custom_split
from nuscenes.eval.detection.config import config_factory
from nuscenes.eval.detection.evaluate import DetectionEval
from nuscenes.eval.detection.utils import category_to_detection_name
from nuscenes.utils.data_classes import Box, LidarPointCloud
from nuscenes.utils.geometry_utils import points_in_box, view_points
from pyquaternion import Quaternion

from bevkd.structures.classes import CAMERA_CHANNELS


# Fields of each table in nuScenes v1.0 (schema.md), before the devkit adds its own.
SCHEMA = {
    "attribute": {"token", "name", "description"},
    "calibrated_sensor": {"token", "sensor_token", "translation", "rotation", "camera_intrinsic"},
    "category": {"token", "name", "description"},
    "ego_pose": {"token", "translation", "rotation", "timestamp"},
    "instance": {"token", "category_token", "nbr_annotations", "first_annotation_token",
                 "last_annotation_token"},
    "log": {"token", "logfile", "vehicle", "date_captured", "location"},
    "map": {"token", "log_tokens", "category", "filename"},
    "sample": {"token", "timestamp", "scene_token", "next", "prev"},
    "sample_annotation": {"token", "sample_token", "instance_token", "attribute_tokens",
                          "visibility_token", "translation", "size", "rotation", "num_lidar_pts",
                          "num_radar_pts", "next", "prev"},
    "sample_data": {"token", "sample_token", "ego_pose_token", "calibrated_sensor_token",
                    "filename", "fileformat", "width", "height", "timestamp", "is_key_frame",
                    "next", "prev"},
    "scene": {"token", "name", "description", "log_token", "nbr_samples", "first_sample_token",
              "last_sample_token"},
    "sensor": {"token", "channel", "modality"},
    "visibility": {"token", "level", "description"},
}


def test_all_13_tables_have_the_nuscenes_fields(synth_root):
    for table, fields in SCHEMA.items():
        with open(os.path.join(synth_root, "v1.0-synth", f"{table}.json")) as f:
            rows = json.load(f)
        assert rows, f"{table} is empty"
        for row in rows:
            missing = fields - set(row)
            assert not missing, f"{table} row lacks {missing}"
    with open(os.path.join(synth_root, "v1.0-synth", "splits.json")) as f:
        splits = json.load(f)
    assert splits == {"synth_train": ["scene-0000"], "synth_val": ["scene-0001"]}


def test_every_referenced_file_exists_with_the_right_shape(nusc, synth_settings):
    for sd in nusc.sample_data:
        path = os.path.join(nusc.dataroot, sd["filename"])
        assert os.path.isfile(path), path
        if sd["fileformat"] == "pcd":
            assert os.path.getsize(path) % (5 * 4) == 0  # float32 x 5 per point
            assert sd["filename"].startswith("samples/" if sd["is_key_frame"] else "sweeps/")
        else:
            from PIL import Image
            with Image.open(path) as im:
                assert im.size == (synth_settings["width"], synth_settings["height"]) == (sd["width"], sd["height"])
    for rec in nusc.map:
        assert os.path.isfile(os.path.join(nusc.dataroot, rec["filename"]))


def test_lidar_sweep_chain_has_nine_sweeps_at_20hz_before_each_key_frame(nusc):
    for sample in nusc.sample:
        sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        assert sd["is_key_frame"] and sd["timestamp"] == sample["timestamp"]
        times = [sd["timestamp"]]
        for _ in range(9):
            sd = nusc.get("sample_data", sd["prev"])
            assert not sd["is_key_frame"]
            times.append(sd["timestamp"])
        assert np.allclose(-np.diff(times), 50_000)  # microseconds
        # a sweep belongs to the sample nearest in time
        for tok in (sample["data"]["LIDAR_TOP"],):
            assert nusc.get("sample_data", tok)["sample_token"] == sample["token"]


def test_camera_chains_and_sample_chains_are_consistent(nusc, synth_settings):
    for scene in nusc.scene:
        tokens, tok = [], scene["first_sample_token"]
        while tok:
            tokens.append(tok)
            tok = nusc.get("sample", tok)["next"]
        assert len(tokens) == scene["nbr_samples"] == synth_settings["samples_per_scene"]
        assert tokens[-1] == scene["last_sample_token"]
        for ch in CAMERA_CHANNELS:
            first = nusc.get("sample_data", nusc.get("sample", tokens[0])["data"][ch])
            assert first["prev"] == ""
            chain, sd = [first["token"]], first
            while sd["next"]:
                sd = nusc.get("sample_data", sd["next"])
                chain.append(sd["token"])
            assert chain == [nusc.get("sample", t)["data"][ch] for t in tokens]


def test_instance_chains_match_their_annotations(nusc):
    for inst in nusc.instance:
        tok, n, last = inst["first_annotation_token"], 0, None
        while tok:
            ann = nusc.get("sample_annotation", tok)
            assert ann["instance_token"] == inst["token"]
            assert ann["prev"] == (last or "")
            last, tok, n = tok, ann["next"], n + 1
        assert n == inst["nbr_annotations"] and last == inst["last_annotation_token"]


def _gt_as_results(nusc, split: str) -> dict:
    results = {}
    for st in get_samples_of_custom_split(split, nusc):
        boxes = []
        for at in nusc.get("sample", st)["anns"]:
            ann = nusc.get("sample_annotation", at)
            name = category_to_detection_name(ann["category_name"])
            # the devkit drops GT without points but keeps predictions: predict what it keeps
            if name is None or ann["num_lidar_pts"] == 0:
                continue
            attr = (nusc.get("attribute", ann["attribute_tokens"][0])["name"]
                    if ann["attribute_tokens"] else "")
            boxes.append({"sample_token": st, "translation": ann["translation"],
                          "size": ann["size"], "rotation": ann["rotation"],
                          "velocity": list(nusc.box_velocity(at)[:2]), "detection_name": name,
                          "detection_score": 0.9, "attribute_name": attr})
        results[st] = boxes
    return results


def test_devkit_scores_ground_truth_as_perfect(nusc, tmp_path):
    meta = {"use_camera": False, "use_lidar": True, "use_radar": False, "use_map": False,
            "use_external": False}
    path = tmp_path / "gt_results.json"
    path.write_text(json.dumps({"meta": meta, "results": _gt_as_results(nusc, "synth_val")}))
    ev = DetectionEval(nusc, config_factory("detection_cvpr_2019"), str(path), "synth_val",
                       str(tmp_path / "eval"), verbose=False)
    metrics, _ = ev.evaluate()
    summary = metrics.serialize()
    # every class must be present in the val split for this to be 1.0
    assert all(ap == pytest.approx(1.0) for ap in summary["mean_dist_aps"].values()), \
        summary["mean_dist_aps"]
    assert summary["mean_ap"] == pytest.approx(1.0, abs=1e-9)
    assert summary["nd_score"] >= 0.99


def _global_T(rec) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Quaternion(rec["rotation"]).rotation_matrix
    T[:3, 3] = rec["translation"]
    return T


def _debug(nusc, sample_token: str) -> dict:
    data = np.load(os.path.join(nusc.dataroot, "synth_debug", f"{sample_token}.npz"))
    return {k: data[k] for k in data.files}


def test_num_lidar_pts_counts_the_key_sweep_points_inside_each_box(nusc):
    checked = hit_total = 0
    for sample in nusc.sample:
        sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        pc = LidarPointCloud.from_file(os.path.join(nusc.dataroot, sd["filename"]))
        T = _global_T(nusc.get("ego_pose", sd["ego_pose_token"])) @ _global_T(
            nusc.get("calibrated_sensor", sd["calibrated_sensor_token"]))
        pts = T[:3, :3] @ pc.points[:3] + T[:3, 3:4]
        dbg = _debug(nusc, sample["token"])
        obj_of = dict(zip(dbg["instance_token"].tolist(), dbg["object_index"].tolist()))
        for at in sample["anns"]:
            ann = nusc.get("sample_annotation", at)
            box = Box(ann["translation"], ann["size"], Quaternion(ann["rotation"]))
            inside = points_in_box(box, pts)
            assert inside.sum() == ann["num_lidar_pts"]
            # every return the ray caster attributes to this object lies inside its label
            hits = dbg["point_obj"] == obj_of[ann["instance_token"]]
            assert inside[hits].all(), f"{hits.sum() - inside[hits].sum()} hits outside {at}"
            checked += 1
            hit_total += int(hits.sum())
    assert checked > 100 and hit_total > 1000


def test_visible_box_centres_project_onto_pixels_drawn_for_their_object(nusc):
    """At the pixel where a box centre projects, the image shows that object (surface in front
    of the centre) or something nearer that occludes it, never something behind it."""
    drawn = looked = 0
    for sample in nusc.sample:
        dbg = _debug(nusc, sample["token"])
        obj_of = dict(zip(dbg["instance_token"].tolist(), dbg["object_index"].tolist()))
        for ci, ch in enumerate(CAMERA_CHANNELS):
            sd = nusc.get("sample_data", sample["data"][ch])
            cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
            cam_T_global = np.linalg.inv(_global_T(nusc.get("ego_pose", sd["ego_pose_token"]))
                                         @ _global_T(cs))
            K = np.array(cs["camera_intrinsic"])
            for at in sample["anns"]:
                ann = nusc.get("sample_annotation", at)
                if category_to_detection_name(ann["category_name"]) is None:
                    continue
                c = cam_T_global[:3, :3] @ np.array(ann["translation"]) + cam_T_global[:3, 3]
                if c[2] < 1.0:
                    continue
                u, v = view_points(c[:, None], K, normalize=True)[:2, 0]
                iu, iv = int(np.floor(u)), int(np.floor(v))
                if not (0 <= iu < sd["width"] and 0 <= iv < sd["height"]):
                    continue
                looked += 1
                depth = dbg["depth"][ci, iv, iu]
                assert depth <= c[2] + 1e-3, f"{ch}: background drawn in front of box centre {at}"
                if dbg["obj_id"][ci, iv, iu] == obj_of[ann["instance_token"]]:
                    drawn += 1
    assert looked > 100
    assert drawn / looked > 0.3  # the rest is occluded by nearer objects

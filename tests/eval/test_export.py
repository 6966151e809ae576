"""Detections (ego frame) -> official results JSON -> metrics, and the training-time evaluator."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from bevkd.errors import BevkdError
from bevkd.eval.config import EVAL_CLASSES
from bevkd.eval.evaluator import DetectionEvaluator
from bevkd.eval.export import attributes_from_speed, export_results, load_results, \
    validate_results, write_results
from bevkd.structures.boxes import Boxes3D
from bevkd.structures.classes import CLASS_INDEX
from bevkd.structures.detections import Detections
from bevkd.structures.geometry import invert_transform

from .conftest import VERSION, assert_same_metrics, devkit_summary, gt_boxes, ours_summary, \
    perturbed_results


@pytest.fixture(scope="module")
def evaluator(root):
    return DetectionEvaluator(root, VERSION, "synth_val")


def _detections(nusc, evaluator, results: dict, torch_backed: bool = False) -> list[Detections]:
    """Global result boxes -> ego-frame Detections (the inverse of export)."""
    out = []
    for st in evaluator.sample_tokens:
        boxes = results[st]
        if boxes:
            b = Boxes3D.from_nuscenes(np.array([x["translation"] for x in boxes]),
                                      np.array([x["size"] for x in boxes]),
                                      np.array([x["rotation"] for x in boxes]),
                                      np.array([x["velocity"] for x in boxes]))
        else:
            b = Boxes3D.empty()
        b = b.transform(invert_transform(evaluator.global_T_ego(st)))
        scores = np.array([x["detection_score"] for x in boxes])
        labels = np.array([CLASS_INDEX[x["detection_name"]] for x in boxes], np.int64)
        if torch_backed:
            b, scores, labels = b.torch(), torch.from_numpy(scores), torch.from_numpy(labels)
        out.append(Detections(st, b, scores, labels))
    return out


def test_ground_truth_round_trip_scores_map_one(nusc, evaluator, tmp_path):
    tokens = evaluator.sample_tokens
    results = {st: gt_boxes(nusc, st, with_empty=False) for st in tokens}
    dets = _detections(nusc, evaluator, results)
    summary = evaluator.evaluate(dets)
    assert summary["mean_ap"] == pytest.approx(1.0, abs=1e-12)
    assert summary["tp_errors"]["trans_err"] < 1e-9 and summary["tp_errors"]["scale_err"] < 1e-9
    assert summary["tp_errors"]["orient_err"] < 1e-9 and summary["tp_errors"]["vel_err"] < 1e-9
    # the exported file says the same to the devkit and to bevkd metrics
    exported = evaluator.export(dets)
    validate_results(exported, tokens)
    path = write_results(exported, str(tmp_path / "res.json"))
    theirs = devkit_summary(nusc, path, "synth_val", str(tmp_path / "dk"))
    assert_same_metrics(summary, theirs)
    assert theirs["mean_ap"] == pytest.approx(1.0)


def test_exported_boxes_are_the_global_boxes(nusc, evaluator):
    tokens = evaluator.sample_tokens
    results = {st: gt_boxes(nusc, st) for st in tokens}
    exported = evaluator.export(_detections(nusc, evaluator, results, torch_backed=True))
    assert list(exported["results"]) == tokens
    assert sum(len(boxes) for boxes in results.values()) > 0
    for st in tokens:
        assert len(exported["results"][st]) == len(results[st]), st
        for a, b in zip(results[st], exported["results"][st]):
            assert np.allclose(a["translation"], b["translation"], atol=1e-3)  # float32 torch
            assert np.allclose(a["size"], b["size"], atol=1e-5)
            qa, qb = np.array(a["rotation"]), np.array(b["rotation"])
            assert abs(abs(qa @ qb) - 1) < 1e-5  # same rotation up to sign
            assert np.allclose(a["velocity"], b["velocity"], atol=1e-4)
            assert a["detection_name"] == b["detection_name"]
            assert b["sample_token"] == st and isinstance(b["detection_score"], float)
    assert json.loads(json.dumps(exported)) == exported


def test_evaluator_equals_file_path_and_devkit(root, nusc, evaluator, tmp_path):
    tokens = evaluator.sample_tokens
    data = perturbed_results(nusc, tokens, 2)
    dets = _detections(nusc, evaluator, data["results"])
    ours = evaluator.evaluate(dets)
    path = write_results(evaluator.export(dets), str(tmp_path / "res.json"))
    with open(path) as f:
        via_file = ours_summary(root, json.load(f), "synth_val")
    assert_same_metrics(json.loads(json.dumps(ours)), via_file, tol=0.0)
    assert_same_metrics(ours, devkit_summary(nusc, path, "synth_val", str(tmp_path / "dk")))


def test_written_results_read_back_equal(nusc, evaluator, tmp_path):
    """load_results reads what write_results wrote (floats to the last bit, sample order
    kept), ready for validate_results; a missing or truncated file is an error naming it."""
    tokens = evaluator.sample_tokens
    data = perturbed_results(nusc, tokens, 1)
    exported = evaluator.export(_detections(nusc, evaluator, data["results"]))
    path = write_results(exported, str(tmp_path / "res.json"))
    back = load_results(path)
    assert back == exported and list(back["results"]) == tokens
    first = next(b for boxes in exported["results"].values() for b in boxes)
    assert back["results"][first["sample_token"]][0]["translation"] == first["translation"]
    validate_results(back, tokens)
    none, cut = str(tmp_path / "none.json"), str(tmp_path / "cut.json")
    with pytest.raises(BevkdError, match=re.escape(f"results file not found: {none}")):
        load_results(none)
    with open(path, "rb") as f:
        head = f.read(100)
    with open(cut, "wb") as f:
        f.write(head)
    with pytest.raises(BevkdError, match=re.escape(f"results file {cut} is not valid JSON")):
        load_results(cut)


def test_attribute_heuristic():
    names = ["car", "car", "bus", "bus", "pedestrian", "pedestrian", "bicycle", "motorcycle",
             "barrier", "traffic_cone", "trailer", "truck", "construction_vehicle"]
    vel = np.array([[0.3, 0], [0.1, 0.1], [0, 0.25], [0, 0], [1, 0], [0, 0], [0.2, 0.2],
                    [0, 0.1], [3, 0], [3, 0], [0, 0], [0, 5], [0, 0]])
    got = attributes_from_speed(np.array([EVAL_CLASSES.index(n) for n in names]), vel)
    from bevkd.eval.config import ATTRIBUTE_NAMES

    assert ["" if a < 0 else ATTRIBUTE_NAMES[a] for a in got] == [
        "vehicle.moving", "vehicle.parked", "vehicle.moving", "vehicle.stopped",
        "pedestrian.moving", "pedestrian.standing", "cycle.with_rider", "cycle.without_rider",
        "", "", "vehicle.parked", "vehicle.moving", "vehicle.parked"]


def _one(evaluator, st, n=1, value=0.0):
    box = np.array([[5.0, 1.0, 0.5, 4.0, 2.0, 1.5, 0.3, 1.0, 0.0]] * n)
    box[:, 1] = value
    return Detections(st, Boxes3D(box), np.full(n, 0.5), np.zeros(n, np.int64))


def test_evaluator_errors(evaluator):
    tokens = evaluator.sample_tokens
    ok = [_one(evaluator, st) for st in tokens]
    evaluator.evaluate(ok)
    with pytest.raises(BevkdError, match=f"1 sample\\(s\\) of the split have no Detections, "
                                         f"e.g. {tokens[1]}"):
        evaluator.evaluate(ok[:1] + ok[2:])
    with pytest.raises(BevkdError, match=f"sample {tokens[0]} appears more than once"):
        evaluator.evaluate(ok + ok[:1])
    with pytest.raises(BevkdError, match=f"sample {tokens[2]}, box 0: translation must be finite"):
        evaluator.evaluate(ok[:2] + [_one(evaluator, tokens[2], value=float("nan"))])
    with pytest.raises(BevkdError, match=f"sample {tokens[0]} has 501 boxes"):
        evaluator.evaluate([_one(evaluator, tokens[0], 501)] + ok[1:])
    bad = Detections(tokens[0], Boxes3D(np.zeros((1, 9)) + 1), np.ones(1), np.array([10]))
    with pytest.raises(BevkdError, match="label 10 is not a class index"):
        evaluator.evaluate([bad] + ok[1:])
    # detections of samples outside the split are ignored
    evaluator.evaluate(ok + [_one(evaluator, "not-in-split")])


def test_empty_detections_give_zeros(evaluator):
    dets = [Detections(st, Boxes3D.empty(), np.zeros(0), np.zeros(0, np.int64))
            for st in evaluator.sample_tokens]
    summary = evaluator.evaluate(dets)
    assert summary["mean_ap"] == 0.0 and summary["nd_score"] == 0.0
    assert export_results(dets, dict(zip(evaluator.sample_tokens,
                                         evaluator.gt.global_T_ego())))["results"] == {
        st: [] for st in evaluator.sample_tokens}

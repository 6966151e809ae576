"""bevkd.eval.metrics equals nuscenes-devkit's DetectionEval on every metric_summary value."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from nuscenes.eval.common.loaders import add_center_dist, filter_eval_boxes, \
    load_gt_of_sample_tokens, load_prediction_of_sample_tokens
from nuscenes.eval.detection.config import config_factory
from nuscenes.eval.detection.data_classes import DetectionBox

from bevkd.eval import matching
from bevkd.eval.config import EVAL_CLASSES
from bevkd.eval.metrics import _rack_frames, evaluate, keep_mask
from bevkd.eval.results import parse_results
from bevkd.eval.groundtruth import GroundTruth

from .conftest import META, VERSION, assert_same_metrics, devkit_summary, gt_boxes, ours_summary, \
    perturbed_results, random_results, split_samples, write


@pytest.fixture(scope="module")
def gts(root):
    return {s: GroundTruth.load(root, VERSION, s) for s in ("synth_train", "synth_val")}


@pytest.mark.parametrize("split", ["synth_train", "synth_val"])
@pytest.mark.parametrize("seed", [0, 1])
def test_perturbed_gt_with_equal_scores_equals_devkit(root, nusc, gts, tmp_path, split, seed):
    data = perturbed_results(nusc, split_samples(nusc, split), seed)
    theirs = devkit_summary(nusc, write(tmp_path, data), split, str(tmp_path / "dk"))
    ours = ours_summary(root, data, split, gt=gts[split])
    n = assert_same_metrics(ours, theirs)
    assert n >= 40 + 50 + 10 + 1 + 5 + 5 + 1  # label_aps, label_tp_errors, means, NDS
    # the comparison is not vacuous: detections matched in several classes at every threshold
    assert 0.05 < theirs["mean_ap"] < 0.95
    assert sum(ap > 0 for ap in theirs["mean_dist_aps"].values()) >= 6


@pytest.mark.parametrize("seed", [0, 1])
def test_random_predictions_equal_devkit(root, nusc, gts, tmp_path, seed):
    data = random_results(nusc, split_samples(nusc, "synth_val"), seed)
    theirs = devkit_summary(nusc, write(tmp_path, data), "synth_val", str(tmp_path / "dk"))
    assert_same_metrics(ours_summary(root, data, "synth_val", gt=gts["synth_val"]), theirs)


def test_exact_gt_and_low_noise_equal_devkit(root, nusc, gts, tmp_path):
    """Near-perfect predictions exercise max recall 1, TP errors ~0 and all thresholds."""
    rng = np.random.default_rng(5)
    results = {}
    for st in split_samples(nusc, "synth_val"):
        boxes = gt_boxes(nusc, st, with_empty=False)
        for b in boxes:
            b["translation"] = (np.array(b["translation"]) + rng.normal(0, 0.05, 3)).tolist()
            b["detection_score"] = float(rng.choice([0.5, 0.7, rng.uniform()]))
        results[st] = boxes + [dict(b, detection_score=0.5) for b in boxes[::4]]
    data = {"meta": dict(META), "results": results}
    theirs = devkit_summary(nusc, write(tmp_path, data), "synth_val", str(tmp_path / "dk"))
    assert_same_metrics(ours_summary(root, data, "synth_val", gt=gts["synth_val"]), theirs)
    assert theirs["mean_ap"] > 0.8


def test_ties_follow_the_devkit_order_and_the_test_notices_a_different_one(
        root, nusc, gts, tmp_path, monkeypatch):
    """All scores equal: which duplicate takes a GT box and the PR order are pure tie-breaks."""
    tokens = split_samples(nusc, "synth_val")
    data = perturbed_results(nusc, tokens, 3, noise=0.3)
    for boxes in data["results"].values():
        for b in boxes:
            b["detection_score"] = 0.5
    theirs = devkit_summary(nusc, write(tmp_path, data), "synth_val", str(tmp_path / "dk"))
    assert_same_metrics(ours_summary(root, data, "synth_val", gt=gts["synth_val"]), theirs)
    # ascending index among ties (np.argsort(-score, kind="stable")) is NOT the devkit's order
    monkeypatch.setattr(matching, "score_order", lambda s: np.argsort(-s, kind="stable"))
    wrong = ours_summary(root, data, "synth_val", gt=gts["synth_val"])
    with pytest.raises(AssertionError):
        assert_same_metrics(wrong, theirs)


def test_score_order_is_sorted_pairs_reversed():
    rng = np.random.default_rng(0)
    scores = rng.choice([0.1, 0.5, 0.5, 0.9, -0.0, 0.0], size=500)
    devkit = [i for (v, i) in sorted((v, i) for (i, v) in enumerate(scores.tolist()))][::-1]
    assert matching.score_order(scores).tolist() == devkit


def test_distance_formula_is_numpys_norm_bit_for_bit():
    rng = np.random.default_rng(1)
    d = rng.normal(size=(5000, 2)) * rng.choice([1e-3, 1, 40], size=(5000, 1))
    ref = np.array([np.linalg.norm(np.array(p) - np.array([0.0, 0.0])) for p in d.tolist()])
    assert np.array_equal(matching.norm2(d), ref)


def test_greedy_match_equals_a_plain_loop_on_ties():
    """Equal scores and GT boxes at equal distances: first-index wins, as the devkit."""
    rng = np.random.default_rng(2)
    n_s, n_g, n_p = 5, 40, 200
    gt_sample = np.sort(rng.integers(0, n_s, n_g))
    gt_xy = rng.integers(0, 4, (n_g, 2)).astype(float)  # many coincident GT boxes
    p_sample = rng.integers(0, n_s, n_p)
    p_xy = rng.integers(0, 4, (n_p, 2)) + rng.choice([0.0, 0.5], (n_p, 2))
    scores = rng.choice([0.2, 0.4], n_p)
    ths = np.array([0.5, 1.0, 2.0, 4.0])
    order, match, _ = matching.greedy_match(scores, p_sample, p_xy, gt_sample, gt_xy, n_s, ths)
    for t, th in enumerate(ths):
        taken, expect = set(), []
        for i in order:
            best, bg = np.inf, None
            for g in range(n_g):
                if gt_sample[g] == p_sample[i] and g not in taken:
                    d = np.linalg.norm(np.array(p_xy[i]) - np.array(gt_xy[g]))
                    if d < best:
                        best, bg = d, g
            if best < th:
                taken.add(bg)
                expect.append(bg)
            else:
                expect.append(-1)
        assert match[t].tolist() == expect


def test_filters_keep_what_the_devkit_keeps(root, nusc, gts, tmp_path):
    """Range, zero points and bike racks, on GT and on predictions (which keep num_pts -1)."""
    split = "synth_train"  # its scene has the bike racks
    tokens = split_samples(nusc, split)
    gt = gts[split]
    assert len(gt.rack_sample) > 0
    data = perturbed_results(nusc, tokens, 7)
    # predictions exactly at every GT centre, racked bicycles included
    for st in tokens:
        data["results"][st] += [dict(b, detection_score=0.1) for b in gt_boxes(nusc, st)]
    path = write(tmp_path, data)
    cfg = config_factory("detection_cvpr_2019")
    dk_gt = filter_eval_boxes(nusc, add_center_dist(nusc, load_gt_of_sample_tokens(
        nusc, tokens, DetectionBox)), cfg.class_range)
    dk_pred, _ = load_prediction_of_sample_tokens(path, 500, DetectionBox, tokens)
    dk_pred = filter_eval_boxes(nusc, add_center_dist(nusc, dk_pred), cfg.class_range)

    frames = _rack_frames(gt)
    g_keep = keep_mask(gt.translation, gt.sample, gt.label, gt.num_pts, gt, frames, config())
    assert [tuple(t) for t in gt.translation[g_keep]] == [tuple(b.translation) for b in dk_gt.all]
    preds = parse_results(json.loads(json.dumps(data)), gt.sample_tokens, False)
    p_keep = keep_mask(preds.translation, preds.sample, preds.label, preds.num_pts, gt, frames,
                       config())
    assert [tuple(t) for t in preds.translation[p_keep]] == [tuple(b.translation) for b in dk_pred.all]
    # each filter removed something here, so each was compared
    racked = [b for st in tokens for b in gt_boxes(nusc, st)
              if b["detection_name"] in ("bicycle", "motorcycle")]
    assert len(dk_pred.all) < sum(len(v) for v in data["results"].values())
    assert len(racked) > 0 and (~p_keep).sum() > 0 and (~g_keep).sum() > 0


def config():
    from bevkd.eval.config import CVPR_2019

    return CVPR_2019


def test_predictions_in_racks_are_dropped(root, nusc, gts):
    gt = gts["synth_train"]
    frames = _rack_frames(gt)
    bikes = np.isin(gt.label, [EVAL_CLASSES.index("bicycle"), EVAL_CLASSES.index("motorcycle")])
    from bevkd.eval.metrics import in_bike_rack

    racked = in_bike_rack(gt.translation, gt.sample, gt.label, gt, frames)
    assert racked.sum() > 0 and (bikes & ~racked).sum() > 0
    # a car at a racked bicycle's centre is kept: the filter is for cycles only
    cars = np.full(len(gt.label), EVAL_CLASSES.index("car"))
    assert not in_bike_rack(gt.translation, gt.sample, cars, gt, frames).any()


def test_num_pts_in_a_results_file_filters_predictions_as_in_the_devkit(root, nusc, gts, tmp_path):
    tokens = split_samples(nusc, "synth_val")
    data = perturbed_results(nusc, tokens, 11)
    for boxes in data["results"].values():
        for k, b in enumerate(boxes):
            if k % 3 == 0:
                b["num_pts"] = 0
    theirs = devkit_summary(nusc, write(tmp_path, data), "synth_val", str(tmp_path / "dk"))
    assert_same_metrics(ours_summary(root, data, "synth_val", gt=gts["synth_val"]), theirs)


def test_all_empty_predictions_give_zeros_where_the_devkit_crashes(root, nusc, gts, tmp_path):
    tokens = split_samples(nusc, "synth_val")
    data = {"meta": dict(META), "results": {t: [] for t in tokens}}
    with pytest.raises(Exception, match="Invalid box type"):
        devkit_summary(nusc, write(tmp_path, data), "synth_val", str(tmp_path / "dk"))
    ours = ours_summary(root, data, "synth_val", gt=gts["synth_val"])
    assert ours["mean_ap"] == 0.0 and ours["nd_score"] == 0.0
    assert all(ap == 0.0 for aps in ours["label_aps"].values() for ap in aps.values())
    assert all(s == 0.0 for s in ours["tp_scores"].values())
    assert all(e == 1.0 for e in ours["tp_errors"].values())


def test_one_class_predicted_equals_devkit_and_others_are_zero(root, nusc, gts, tmp_path):
    tokens = split_samples(nusc, "synth_val")
    data = perturbed_results(nusc, tokens, 4)
    for st in tokens:
        data["results"][st] = [b for b in data["results"][st] if b["detection_name"] == "car"]
    theirs = devkit_summary(nusc, write(tmp_path, data), "synth_val", str(tmp_path / "dk"))
    ours = ours_summary(root, data, "synth_val", gt=gts["synth_val"])
    assert_same_metrics(ours, theirs)
    assert ours["mean_dist_aps"]["truck"] == 0.0 and ours["mean_dist_aps"]["car"] > 0


def test_predefined_split_uses_the_results_key_order_like_the_devkit(mini_root, tmp_path):
    """mini_val via create_splits_scenes; equal scores across samples make key order matter."""
    from nuscenes import NuScenes

    nusc = NuScenes(version="v1.0-mini", dataroot=mini_root, verbose=False)
    tokens = [s["token"] for s in nusc.sample
              if nusc.get("scene", s["scene_token"])["name"] == "scene-0103"]
    data = perturbed_results(nusc, tokens, 9, noise=0.4)
    for boxes in data["results"].values():
        for b in boxes:
            b["detection_score"] = 0.5
    results = []
    for order in (tokens, tokens[::-1]):
        d = copy.deepcopy(data)
        d["results"] = {t: data["results"][t] for t in order}
        theirs = devkit_summary(nusc, write(tmp_path, d), "mini_val", str(tmp_path / "dk"))
        assert_same_metrics(ours_summary(mini_root, d, "mini_val", version="v1.0-mini"), theirs)
        results.append(theirs)
    # the key order changed the devkit's numbers, so following it was tested
    with pytest.raises(AssertionError):
        assert_same_metrics(results[0], results[1])


def test_summary_layout_is_the_devkits(root, nusc, gts, tmp_path):
    data = perturbed_results(nusc, split_samples(nusc, "synth_val"), 0)
    theirs = devkit_summary(nusc, write(tmp_path, data), "synth_val", str(tmp_path / "dk"))
    ours = ours_summary(root, data, "synth_val", gt=gts["synth_val"])

    def keys(d):
        return {k: keys(v) for k, v in d.items()} if isinstance(d, dict) else None

    assert keys(ours) == keys(theirs)
    assert list(ours) == list(theirs)


def test_evaluate_does_not_modify_its_inputs(root, nusc, gts):
    gt = gts["synth_val"]
    data = perturbed_results(nusc, split_samples(nusc, "synth_val"), 0)
    preds = parse_results(data, gt.sample_tokens, False)
    before = copy.deepcopy((gt.translation, preds.translation, preds.score))
    evaluate(gt, preds)
    evaluate(gt, preds)
    assert all(np.array_equal(a, b) for a, b in zip(before, (gt.translation, preds.translation,
                                                             preds.score)))

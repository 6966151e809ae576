"""bevkd.eval.confusion: where a class's top detections land, on hand-placed boxes."""

from __future__ import annotations

import numpy as np
import pytest

from bevkd.eval.config import EVAL_CLASSES
from bevkd.eval.confusion import sources_table, top_detection_sources
from bevkd.eval.groundtruth import GroundTruth
from bevkd.eval.results import Predictions

IDENTITY = [1.0, 0.0, 0.0, 0.0]


def ground_truth(boxes: list[tuple[int, str, float, float]], samples: int = 2,
                 points: int = 10) -> GroundTruth:
    """``boxes``: (sample, class, x, y); both egos at the origin; no bike racks."""
    n = len(boxes)
    return GroundTruth(
        version="v1.0-test", split="test_split", sample_tokens=[f"s{i}" for i in range(samples)],
        ego_translation=np.zeros((samples, 3)), ego_rotation=np.tile(IDENTITY, (samples, 1)),
        sample=np.array([b[0] for b in boxes], np.int64),
        label=np.array([EVAL_CLASSES.index(b[1]) for b in boxes], np.int64),
        translation=np.array([[b[2], b[3], 0.5] for b in boxes]),
        size=np.ones((n, 3)), rotation=np.tile(IDENTITY, (n, 1)), velocity=np.zeros((n, 2)),
        num_pts=np.full(n, points, np.int64), attribute=np.full(n, -1, np.int64),
        rack_sample=np.zeros(0, np.int64), rack_translation=np.zeros((0, 3)),
        rack_size=np.zeros((0, 3)), rack_rotation=np.zeros((0, 4)))


def predictions(boxes: list[tuple[int, str, float, float, float]]) -> Predictions:
    """``boxes``: (sample, class, x, y, score)."""
    n = len(boxes)
    return Predictions(
        sample=np.array([b[0] for b in boxes], np.int64),
        label=np.array([EVAL_CLASSES.index(b[1]) for b in boxes], np.int64),
        translation=np.array([[b[2], b[3], 0.5] for b in boxes]), size=np.ones((n, 3)),
        rotation=np.tile(IDENTITY, (n, 1)), velocity=np.zeros((n, 2)),
        score=np.array([b[4] for b in boxes]), attribute=np.full(n, -1, np.int64),
        num_pts=np.full(n, -1, np.int64))


GT = ground_truth([
    (0, "barrier", 0, 5), (0, "barrier", 0, -5), (0, "traffic_cone", 0, 10), (0, "car", 10, 10),
    (1, "barrier", 5, 0), (1, "barrier", -5, 0), (1, "pedestrian", 0, 20),
])


def test_each_top_prediction_is_sorted_by_what_it_sits_on():
    preds = predictions([
        (0, "barrier", 33.0, 0.0, 0.99),   # beyond the barrier's 30 m range: never counted
        (0, "barrier", 0.5, 5.0, 0.9),     # TP (0.5 m)
        (0, "barrier", 0.3, 10.2, 0.8),    # on the cone (0.36 m)
        (0, "barrier", 0.2, 5.1, 0.7),     # next to the barrier the 0.9 one took: a duplicate
        (1, "barrier", 0.0, 20.0, 0.6),    # on sample 1's pedestrian
        (0, "barrier", 20.0, 20.0, 0.55),  # nothing within 2 m
        (1, "barrier", 5.0, 0.5, 0.5),     # TP, but fifth: outside the window of 4
        (0, "car", 10.0, 11.5, 0.9),       # the car: TP at 1.5 m
    ])
    src = top_detection_sources(GT, preds)
    # 4 barriers kept -> window 4: TP, cone, duplicate, pedestrian (20 m < 30 m: kept)
    assert src["barrier"] == {"window": 4, "tp": 1, "duplicate": 1, "background": 0,
                              "traffic_cone": 1, "pedestrian": 1}
    assert src["car"] == {"window": 1, "tp": 1, "duplicate": 0, "background": 0}
    assert src["bus"] == {"window": 0, "tp": 0, "duplicate": 0, "background": 0}
    # a wider window reaches the background one and the second TP
    wide = top_detection_sources(GT, preds, top=10)["barrier"]
    assert wide == {"window": 6, "tp": 2, "duplicate": 1, "background": 1, "traffic_cone": 1,
                    "pedestrian": 1}


def test_the_match_distance_is_strict_and_settable():
    preds = predictions([(0, "barrier", 0.0, 7.0, 0.9), (0, "barrier", 0.0, 8.5, 0.8)])
    # the first is exactly 2 m from the barrier at y=5 (and 3 m from the cone): no match at
    # 2 m (the benchmark matches at d < 2), a match at 2.5 m; the second is 1.5 m from the cone
    src = top_detection_sources(GT, preds)["barrier"]
    assert src == {"window": 2, "tp": 0, "duplicate": 0, "background": 1, "traffic_cone": 1}
    src = top_detection_sources(GT, preds, dist_th=2.5)["barrier"]
    assert src == {"window": 2, "tp": 1, "duplicate": 0, "background": 0, "traffic_cone": 1}


def test_the_nearest_box_decides_and_the_window_takes_the_best_scores():
    preds = predictions([
        (0, "barrier", 0.0, 5.0, 0.9),    # TP on the barrier at y=5
        (0, "barrier", 0.0, 8.6, 0.8),    # 3.6 m from that barrier, 1.4 m from the cone: cone
        (0, "barrier", 0.0, 6.5, 0.7),    # 1.5 m from the taken barrier, 3.5 m from the cone
        (0, "barrier", 0.0, -5.0, 0.1),   # TP, but the lowest score
    ])
    src = top_detection_sources(GT, preds, top=3)["barrier"]
    assert src == {"window": 3, "tp": 1, "duplicate": 1, "background": 0, "traffic_cone": 1}
    # both a taken barrier and a cone within 2 m: the nearer one names it
    gt = ground_truth([(0, "barrier", 0, 5), (0, "traffic_cone", 0, 7.5), (1, "barrier", 0, 5),
                       (1, "barrier", 5, 0), (1, "barrier", -5, 0)])
    near = predictions([(0, "barrier", 0.0, 5.0, 0.9),    # TP
                        (0, "barrier", 0.0, 6.0, 0.8),    # barrier 1.0 m, cone 1.5 m
                        (0, "barrier", 0.0, 6.6, 0.7),    # barrier 1.6 m, cone 0.9 m
                        (0, "barrier", 20.0, 20.0, 0.6)])
    assert top_detection_sources(gt, near)["barrier"] == {
        "window": 4, "tp": 1, "duplicate": 1, "background": 1, "traffic_cone": 1}
    with pytest.raises(ValueError, match="top must be at least 0"):
        top_detection_sources(GT, preds, top=-1)


def test_boxes_without_points_are_not_targets_or_confusions():
    gt = ground_truth([(0, "barrier", 0, 5), (0, "traffic_cone", 0, 10)], points=0)
    preds = predictions([(0, "barrier", 0.0, 10.0, 0.9)])
    assert top_detection_sources(gt, preds)["barrier"]["window"] == 0  # no kept barrier
    assert top_detection_sources(gt, preds, top=1)["barrier"] == {
        "window": 1, "tp": 0, "duplicate": 0, "background": 1}


def test_table_lists_shares_and_the_two_main_confusions():
    src = {"barrier": {"window": 8, "tp": 4, "duplicate": 1, "background": 0, "traffic_cone": 2,
                       "pedestrian": 1},
           "bus": {"window": 0, "tp": 0, "duplicate": 0, "background": 0}}
    lines = sources_table(src).splitlines()
    assert lines[2] == ("| barrier | 8 | 50 % | 12 % | 0 % | 38 % | traffic_cone 25 %, "
                        "pedestrian 12 % |")
    assert lines[3] == "| bus | 0 |  |  |  |  |  |"
    by_run = sources_table({"a-s0": src["barrier"]}, first="run", columns={"AP %": {"a-s0": "9.1"}})
    assert by_run.splitlines()[:3] == [
        "| run | AP % | top W | TP | duplicate | background | on other classes | mostly on |",
        "|---|---|---|---|---|---|---|---|",
        "| a-s0 | 9.1 | 8 | 50 % | 12 % | 0 % | 38 % | traffic_cone 25 %, pedestrian 12 % |"]

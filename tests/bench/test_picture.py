import json
import math
import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from bevkd.bench.picture import (SAMPLE_FILE, drawable, keep_sample, picture_sample,
                                 sample_detections, shown_boxes)
from bevkd.errors import BevkdError
from bevkd.structures.classes import DETECTION_CLASSES


def _box(token, score, name="car", translation=(0.0, 0.0, 1.0)):
    return {"sample_token": token, "translation": list(translation), "size": [2.0, 4.0, 1.5],
            "rotation": [1.0, 0.0, 0.0, 0.0], "velocity": [0.0, 0.0], "detection_name": name,
            "detection_score": score, "attribute_name": ""}


def _results(run, boxes_by_token, split="synth_val"):
    folder = os.path.join(run, "eval", split)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump({"meta": {"use_camera": True}, "results": boxes_by_token}, f)


def test_the_picture_keeps_the_confident_boxes_and_at_least_the_best_few():
    boxes = [_box("s", sc) for sc in (0.1, 0.9, 0.35, 0.2)]
    assert [b["detection_score"] for b in shown_boxes(boxes, 0.3, 2)] == [0.9, 0.35]
    assert [b["detection_score"] for b in shown_boxes(boxes, 0.3, 1)] == [0.9, 0.35]
    assert [b["detection_score"] for b in shown_boxes(boxes, 0.95, 3)] == [0.9, 0.35, 0.2]
    assert shown_boxes([], 0.3, 20) == []


def test_detections_come_back_to_the_samples_ego_frame_best_first(tmp_path):
    """Ego pose: yaw +90 deg, at (100, 50, 0). A truck 10 m ahead of the ego heading its way
    at 1 m/s is, in the global frame, at (100, 60, 1), yaw +90 deg, velocity (0, 1)."""
    pose = np.eye(4)
    pose[:2, :2] = [[0.0, -1.0], [1.0, 0.0]]
    pose[:3, 3] = [100.0, 50.0, 0.0]
    info = SimpleNamespace(token="s", global_T_ego=pose)
    c = math.cos(math.pi / 4)
    truck = dict(_box("s", 0.8, "truck", (100.0, 60.0, 1.0)), rotation=[c, 0.0, 0.0, c],
                 velocity=[0.0, 1.0])
    car = _box("s", 0.1, "car", (100.0, 50.0, 1.0))  # at the ego
    run = str(tmp_path / "run")
    _results(run, {"s": [car, truck], "other": [_box("other", 0.5)]})
    assert drawable(run) and not drawable(run, "another_split")
    det = sample_detections(run, info)
    assert det.sample_token == "s" and det.scores.tolist() == [0.8, 0.1]
    assert det.labels.tolist() == [DETECTION_CLASSES.index("truck"), DETECTION_CLASSES.index("car")]
    np.testing.assert_allclose(det.boxes.tensor, [[10, 0, 1, 4, 2, 1.5, 0, 1, 0],
                                                  [0, 0, 1, 4, 2, 1.5, -math.pi / 2, 0, 0]],
                               atol=1e-9)
    # the archive's copy of that sample reads the same, without the results it leaves out
    dest = str(tmp_path / "archived")
    assert keep_sample(run, dest, "s") == os.path.join(dest, "eval", "synth_val", SAMPLE_FILE)
    kept = sample_detections(dest, info)
    np.testing.assert_allclose(kept.boxes.tensor, det.boxes.tensor)
    assert kept.scores.tolist() == [0.8, 0.1]
    with open(os.path.join(dest, "eval", "synth_val", SAMPLE_FILE)) as f:
        assert list(json.load(f)["results"]) == ["s"]  # that sample alone


def test_a_run_without_the_samples_detections_is_not_drawn_and_says_why(tmp_path):
    run = str(tmp_path / "run")
    info = SimpleNamespace(token="s", global_T_ego=np.eye(4))
    assert not drawable(run) and keep_sample(run, str(tmp_path / "a"), "s") is None
    with pytest.raises(BevkdError, match="no detections of the picture's sample s in "
                                         "eval/synth_val/"):
        sample_detections(run, info)
    os.makedirs(os.path.join(run, "checkpoints"))  # weights alone are not detections
    assert not drawable(run) and not drawable(run, "s")
    _results(run, {"t": [_box("t", 0.5)]})  # another dataset's sample
    assert drawable(run) and not drawable(run, "s") and drawable(run, "t")
    assert keep_sample(run, str(tmp_path / "a"), "s") is None
    with pytest.raises(BevkdError, match="no detections of the picture's sample s"):
        sample_detections(run, info)
    # ... while the archive's copy beside it holds the sample: that one is read
    kept = os.path.join(run, "eval", "synth_val", SAMPLE_FILE)
    with open(kept, "w") as f:
        json.dump({"meta": {}, "results": {"s": [_box("s", 0.4)]}}, f)
    assert drawable(run, "s") and sample_detections(run, info).scores.tolist() == [0.4]


def test_a_damaged_results_file_is_named_and_costs_only_the_picture(tmp_path, capsys):
    from bevkd.bench.archive import archive_run

    run = tmp_path / "run"
    folder = run / "eval" / "synth_val"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text("{}")
    (folder / "results.json").write_text('{"meta": {}, "results": {"s": [')  # cut short
    info = SimpleNamespace(token="s", global_T_ego=np.eye(4))
    assert drawable(str(run)) and not drawable(str(run), "s")
    with pytest.raises(BevkdError, match="results.json: not a readable results file"):
        sample_detections(str(run), info)
    with pytest.raises(BevkdError, match="not a readable results file"):
        keep_sample(str(run), str(tmp_path / "copy"), "s")
    # the archive copies the run all the same, without the sample, and says why
    dest = archive_run(str(run), str(tmp_path / "archive"), picture="s")
    assert os.path.isfile(os.path.join(dest, "eval", "synth_val", "metrics.json"))
    assert not os.path.exists(os.path.join(dest, "eval", "synth_val", SAMPLE_FILE))
    assert "the archive keeps no BEV picture sample" in capsys.readouterr().out
    # a box without the fields of the format
    (folder / "results.json").write_text(json.dumps({"results": {"s": [{"score": 1}]}}))
    with pytest.raises(BevkdError, match="is not a results-format box"):
        sample_detections(str(run), info)


def test_the_picture_of_a_trained_run_is_its_evaluations_detections(trained_run, synth_root,
                                                                    tmp_path):
    """A real run: the sample is the val split's first; the archived copy keeps of its
    detections those the picture shows, and reads back as the run's own do."""
    info = picture_sample(synth_root)
    with open(os.path.join(trained_run, "eval", "synth_val", "results.json")) as f:
        every = json.load(f)["results"]
    assert info.token == next(iter(every))  # the evaluation's first sample, too
    run = sample_detections(trained_run, info)
    assert len(run) == len(every[info.token])
    dest = str(tmp_path / "copy")
    keep_sample(trained_run, dest, info.token)
    kept = sample_detections(dest, info)
    n = len(kept)
    assert n == len(shown_boxes(every[info.token]))
    np.testing.assert_allclose(kept.boxes.tensor, run.boxes.tensor[:n], atol=1e-9)
    np.testing.assert_allclose(kept.scores, run.scores[:n])
    assert os.path.getsize(os.path.join(dest, "eval", "synth_val", SAMPLE_FILE)) < 20_000
    shutil.rmtree(dest)

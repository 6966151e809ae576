"""Table reading: predefined splits without the devkit import, scanner vs json fallback."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from bevkd.errors import BevkdError
from bevkd.eval import results as results_mod
from bevkd.eval import tables
from bevkd.eval.groundtruth import GroundTruth
from bevkd.eval.records import ARR, STR, Field, RowRecords
from bevkd.eval.results import load_predictions, parse_results

from .conftest import VERSION, perturbed_results, split_samples, write


def test_predefined_splits_equal_the_devkits():
    from nuscenes.utils.splits import create_splits_scenes

    ours = tables.predefined_split_scenes()
    theirs = create_splits_scenes()
    assert set(ours) == set(theirs)
    assert all(list(ours[k]) == theirs[k] for k in theirs)


def test_ground_truth_is_the_same_through_the_json_fallback(root, monkeypatch):
    fast = GroundTruth.load(root, VERSION, "synth_train")
    monkeypatch.setattr(tables, "scan_table", lambda raw, fields: None)
    slow = GroundTruth.load(root, VERSION, "synth_train")
    for f in ("sample", "label", "translation", "size", "rotation", "velocity", "num_pts",
              "attribute", "rack_translation", "ego_translation", "ego_rotation"):
        assert np.array_equal(getattr(fast, f), getattr(slow, f), equal_nan=True), f
    assert fast.sample_tokens == slow.sample_tokens


def test_records_fall_back_to_json_and_report_bad_rows(root, tmp_path):
    data = tmp_path / VERSION
    shutil.copytree(os.path.join(root, VERSION), data)
    path = data / "ego_pose.json"
    rows = json.loads(path.read_text())
    rows[0]["translation"] = [1.0, 2.0]  # the scanner declines, json reads it, we refuse it
    path.write_text(json.dumps(rows))
    recs = tables.records(str(tmp_path), VERSION, "ego_pose",
                          (Field("token", STR), Field("translation", ARR, 3)))
    assert isinstance(recs, RowRecords)
    with pytest.raises(BevkdError, match="malformed 'translation'"):
        recs.numbers("translation")
    path.write_text("[{]")
    with pytest.raises(BevkdError, match="ego_pose.json is not valid JSON"):
        tables.records(str(tmp_path), VERSION, "ego_pose", (Field("token", STR),))
    with pytest.raises(BevkdError, match="nuScenes table nope not found"):
        tables.records(str(tmp_path), VERSION, "nope", (Field("token", STR),))


@pytest.mark.parametrize("predefined", [False, True])
def test_scanned_predictions_equal_parsed_ones(nusc, tmp_path, predefined):
    tokens = split_samples(nusc, "synth_val")
    data = perturbed_results(nusc, tokens, 8)
    data["results"] = dict(reversed(list(data["results"].items())))  # key order matters
    for k, boxes in enumerate(data["results"].values()):
        for j, b in enumerate(boxes):
            if (j + k) % 5 == 0:
                b["num_pts"] = j % 3
    path = write(tmp_path, data)
    fast = load_predictions(path, tokens, predefined)
    slow = parse_results(json.loads(open(path).read()), tokens, predefined)
    for f in ("sample", "label", "translation", "size", "rotation", "velocity", "score",
              "attribute", "num_pts"):
        assert np.array_equal(getattr(fast, f), getattr(slow, f)), f
    assert fast.meta == slow.meta


def test_scanner_problems_get_the_parsers_messages(nusc, tmp_path, monkeypatch):
    tokens = split_samples(nusc, "synth_val")
    data = perturbed_results(nusc, tokens, 1)
    data["results"][tokens[1]][0]["detection_name"] = "unicorn"
    path = write(tmp_path, data)
    with pytest.raises(BevkdError, match=f"sample {tokens[1]}, box 0: unknown detection_name"):
        load_predictions(path, tokens, False)
    data["results"][tokens[1]][0]["detection_name"] = "car"
    data["results"][tokens[1]][0]["size"] = [1.0, float("nan"), 1.0]
    path = write(tmp_path, data)
    with pytest.raises(BevkdError, match=f"sample {tokens[1]}, box 0: size must be finite"):
        load_predictions(path, tokens, False)
    # and the scanner really took the fast path for that one
    called = []
    monkeypatch.setattr(results_mod, "parse_results", lambda *a, **k: called.append(1))
    with pytest.raises(BevkdError):
        load_predictions(path, tokens, False)
    assert not called


def test_results_file_errors(tmp_path):
    with pytest.raises(BevkdError, match="results file not found"):
        load_predictions(str(tmp_path / "none.json"), ["a"], False)
    (tmp_path / "bad.json").write_text('{"meta": {}, "results": {"a": [}')
    with pytest.raises(BevkdError, match="is not valid JSON"):
        load_predictions(str(tmp_path / "bad.json"), ["a"], False)
    (tmp_path / "empty.json").write_text("")
    with pytest.raises(BevkdError, match="is not valid JSON"):
        load_predictions(str(tmp_path / "empty.json"), ["a"], False)

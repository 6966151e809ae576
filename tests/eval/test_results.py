"""The results-file validator: every problem is a one-line BevkdError naming the culprit."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from bevkd.errors import BevkdError
from bevkd.eval.config import EVAL_CLASSES
from bevkd.eval.export import validate_results
from bevkd.eval.results import parse_results
from bevkd.eval.groundtruth import GroundTruth

from .conftest import META, VERSION, perturbed_results, split_samples


@pytest.fixture(scope="module")
def base(nusc):
    tokens = split_samples(nusc, "synth_val")
    return tokens, perturbed_results(nusc, tokens, 0, shuffle=False)


def _broken(base, edit):
    tokens, data = base
    data = json.loads(json.dumps(data))  # a fresh copy, as parsed from a file
    edit(data, tokens)
    return tokens, data


def _first(data, tokens):
    return data["results"][tokens[1]][2]


def _check(base, edit, match):
    tokens, data = _broken(base, edit)
    with pytest.raises(BevkdError, match=match) as info:
        validate_results(data, tokens, where="res.json")
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_valid_file_passes_and_parses(base):
    tokens, data = base
    validate_results(data, tokens)
    p = parse_results(data, tokens, predefined=False)
    assert len(p) == sum(len(v) for v in data["results"].values())
    assert p.meta == META
    b = data["results"][tokens[0]][0]
    assert p.translation[0].tolist() == b["translation"]
    assert EVAL_CLASSES[p.label[0]] == b["detection_name"]


def test_missing_meta_or_results(base):
    _check(base, lambda d, t: d.pop("meta"), "res.json: missing 'meta'")
    _check(base, lambda d, t: d.pop("results"), "res.json: missing 'results'")
    with pytest.raises(BevkdError, match="must be a JSON object"):
        validate_results([], base[0])
    _check(base, lambda d, t: d.update(results=[]), "'results' must be an object")
    _check(base, lambda d, t: d.update(meta=None), "'meta' must be an object")


def test_missing_sample_of_the_split(base):
    msg = _check(base, lambda d, t: d["results"].pop(t[1]), "1 sample\\(s\\) of the split are "
                                                            "missing")
    assert base[0][1] in msg


def test_other_samples_are_ignored(base):
    tokens, data = _broken(base, lambda d, t: d["results"].update(other=[{"junk": 1}]))
    validate_results(data, tokens)


def test_more_than_500_boxes(base):
    def edit(d, t):
        d["results"][t[0]] = [d["results"][t[0]][0]] * 501

    _check(base, edit, f"sample {base[0][0]} has 501 boxes; at most 500")


@pytest.mark.parametrize("field,value,match", [
    ("translation", [1.0, float("nan"), 2.0], "translation must be finite"),
    ("size", [1.0, 2.0, float("inf")], "size must be finite"),
    ("rotation", [float("nan"), 0.0, 0.0, 1.0], "rotation must be finite"),
    ("velocity", [float("-inf"), 0.0], "velocity must be finite"),
    ("detection_score", float("nan"), "detection_score must be finite"),
])
def test_nan_and_inf_anywhere(base, field, value, match):
    msg = _check(base, lambda d, t: _first(d, t).update({field: value}), match)
    assert f"sample {base[0][1]}, box 2" in msg


def test_nan_survives_a_json_round_trip_and_is_still_caught(base):
    tokens, data = _broken(base, lambda d, t: _first(d, t).update(velocity=[float("nan"), 0.0]))
    data = json.loads(json.dumps(data))  # Python writes NaN, reads it back as nan
    with pytest.raises(BevkdError, match="velocity must be finite"):
        validate_results(data, tokens)


def test_unknown_class(base):
    _check(base, lambda d, t: _first(d, t).update(detection_name="unicorn"),
           "box 2: unknown detection_name 'unicorn'")


def test_unknown_attribute(base):
    _check(base, lambda d, t: _first(d, t).update(attribute_name="vehicle.flying"),
           "unknown attribute_name 'vehicle.flying'")


def test_attribute_not_valid_for_the_class(base):
    def edit(d, t):
        _first(d, t).update(detection_name="car", attribute_name="pedestrian.moving")

    _check(base, edit, "attribute 'pedestrian.moving' is not valid for class 'car'")
    _check(base, lambda d, t: _first(d, t).update(detection_name="barrier",
                                                  attribute_name="vehicle.moving"),
           "not valid for class 'barrier' \\(allowed: ''\\)")


def test_empty_attribute_is_valid_for_every_class(base):
    def edit(d, t):
        _first(d, t).update(detection_name="car", attribute_name="")

    tokens, data = _broken(base, edit)
    validate_results(data, tokens)


def test_bad_quaternion(base):
    _check(base, lambda d, t: _first(d, t).update(rotation=[1.0, 0.0, 0.0, 0.5]),
           "rotation must be a unit quaternion")
    _check(base, lambda d, t: _first(d, t).update(rotation=[0.0, 0.0, 0.0, 0.0]),
           "rotation must be a unit quaternion")
    _check(base, lambda d, t: _first(d, t).update(rotation=[1.0, 0.0, 0.0]),
           "rotation must be a list of 4 numbers, got 3 elements")


def test_bad_size(base):
    _check(base, lambda d, t: _first(d, t).update(size=[1.0, 2.0]),
           "size must be a list of 3 numbers, got 2 elements")
    _check(base, lambda d, t: _first(d, t).update(size=[1.0, 0.0, 2.0]),
           "size \\[w, l, h\\] must be positive")
    _check(base, lambda d, t: _first(d, t).update(size=[1.0, -2.0, 2.0]), "must be positive")


def test_wrong_lengths_and_types(base):
    _check(base, lambda d, t: _first(d, t).update(translation=[1.0, 2.0]),
           "translation must be a list of 3 numbers")
    _check(base, lambda d, t: _first(d, t).update(velocity=[1.0, 2.0, 0.0]),
           "velocity must be a list of 2 numbers, got 3")
    _check(base, lambda d, t: _first(d, t).update(translation=["1", 2.0, 3.0]),
           "translation must be 3 finite numbers")
    _check(base, lambda d, t: _first(d, t).update(size=[True, 2.0, 3.0]),
           "size must be 3 finite numbers")
    _check(base, lambda d, t: _first(d, t).update(detection_score="0.5"),
           "detection_score must be a finite number")
    _check(base, lambda d, t: _first(d, t).update(velocity=None), "velocity must be a list")


def test_incomplete_or_misplaced_boxes(base):
    _check(base, lambda d, t: _first(d, t).pop("attribute_name"), "box 2: missing 'attribute_name'")
    _check(base, lambda d, t: _first(d, t).pop("detection_score"), "missing 'detection_score'")
    _check(base, lambda d, t: d["results"][t[1]].__setitem__(2, 7), "box 2: must be an object")
    _check(base, lambda d, t: d["results"].__setitem__(t[1], {}), "must map to a list of boxes")
    _check(base, lambda d, t: _first(d, t).update(sample_token=t[0]),
           "its sample_token is .* not the key it is listed under")
    _check(base, lambda d, t: _first(d, t).pop("sample_token"), "box 2: no 'sample_token'")


def test_num_pts_must_be_a_number(base):
    _check(base, lambda d, t: _first(d, t).update(num_pts="many"), "num_pts must be an integer")


def test_numpy_scalars_of_in_memory_dicts_are_numbers(base):
    tokens, data = _broken(base, lambda d, t: None)
    b = data["results"][tokens[0]][0]
    b["translation"] = [np.float64(v) for v in b["translation"]]
    b["detection_score"] = np.float32(0.25)
    validate_results(data, tokens)


def test_cli_prints_the_error_in_one_line(root, base, tmp_path, capsys):
    from bevkd.cli import main

    tokens, data = _broken(base, lambda d, t: _first(d, t).update(detection_name="unicorn"))
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    code = main(["metrics", "--data", root, "--version", VERSION, "--split", "synth_val",
                 "--results", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err.startswith("bevkd metrics: error: ") and "unicorn" in err and str(path) in err


def test_gt_loader_does_not_need_predictions(root):
    gt = GroundTruth.load(root, VERSION, "synth_val")
    empty = {"meta": {}, "results": {t: [] for t in gt.sample_tokens}}
    assert len(parse_results(copy.deepcopy(empty), gt.sample_tokens, False)) == 0

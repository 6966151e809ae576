"""Inconsistent tables, bad annotations and empty splits: one-line errors naming the culprit."""

from __future__ import annotations

import json
import shutil

import pytest

from bevkd.data.infos import load_infos
from bevkd.errors import BevkdError


@pytest.fixture
def tables(synth_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(synth_root, root, ignore=shutil.ignore_patterns("samples", "sweeps",
                                                                   "synth_debug", ".bevkd_cache"))
    return root


def _edit(root, table: str, fn) -> None:
    path = root / "v1.0-synth" / f"{table}.json"
    rows = json.load(open(path))
    fn(rows)
    json.dump(rows, open(path, "w"))


def _load(root, tmp_path, split="synth_val"):
    return load_infos(str(root), "v1.0-synth", split, cache_dir=str(tmp_path / "cache"))


@pytest.mark.parametrize("size", [[float("nan"), 1.0, 1.0], [1.8, -0.5, 1.5], [1.0, 0.0, 1.0]])
def test_non_finite_or_non_positive_box_sizes_name_the_annotation(tables, tmp_path, size):
    val_scene = json.load(open(tables / "v1.0-synth" / "splits.json"))["synth_val"][0]
    scene = next(s for s in json.load(open(tables / "v1.0-synth" / "scene.json"))
                 if s["name"] == val_scene)
    victim = {}

    def corrupt(rows):
        row = next(r for r in rows if r["sample_token"] == scene["first_sample_token"])
        row["size"] = size
        victim["token"] = row["token"]

    _edit(tables, "sample_annotation", corrupt)
    with pytest.raises(BevkdError, match=f"annotation {victim['token']} has a non-finite or "
                                         "non-positive box"):
        _load(tables, tmp_path)


def test_a_dangling_token_is_named(tables, tmp_path):
    _edit(tables, "sample_data", lambda rows: rows[0].update(calibrated_sensor_token="deadbeef"))
    with pytest.raises(BevkdError, match="tables reference a missing token 'deadbeef'"):
        _load(tables, tmp_path)


def test_an_empty_split_is_an_error(tables, tmp_path):
    path = tables / "v1.0-synth" / "splits.json"
    splits = json.load(open(path))
    splits["synth_empty"] = []
    json.dump(splits, open(path, "w"))
    with pytest.raises(BevkdError, match="split 'synth_empty' of v1.0-synth has no samples"):
        _load(tables, tmp_path, "synth_empty")
    with pytest.raises(BevkdError, match="unknown split 'synth_nope'"):
        _load(tables, tmp_path, "synth_nope")


def test_a_table_that_is_not_json_is_named(tables, tmp_path):
    path = tables / "v1.0-synth" / "sample_annotation.json"
    path.write_bytes(path.read_bytes()[:1000])  # a copy cut short
    with pytest.raises(BevkdError, match=r"nuScenes table sample_annotation .*v1.0-synth/"
                                         r"sample_annotation.json is not valid JSON"):
        _load(tables, tmp_path)

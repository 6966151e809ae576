"""Typed configs: YAML + base chain + overrides; bad keys name themselves and the nearest key."""

from __future__ import annotations

import pytest

from bevkd.config import apply_overrides, differing_keys, from_dict, load_config, to_dict
from bevkd.data.nuscenes import DataConfig
from bevkd.errors import BevkdError


def test_yaml_with_base_and_overrides_builds_the_dataclass(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "use_lidar: false\nimage:\n  final_size: [64, 176]\n  resize_lim: [0.2, 0.3]\n")
    (tmp_path / "tiny.yaml").write_text("base: base.yaml\nimage:\n  rot_lim: [-1, 1]\n")
    cfg = load_config(DataConfig, str(tmp_path / "tiny.yaml"), ["bev.scale_lim=[0.9, 1.1]"])
    assert cfg.use_lidar is False
    assert cfg.image.final_size == (64, 176) and cfg.image.resize_lim == (0.2, 0.3)
    assert cfg.image.rot_lim == (-1.0, 1.0) and isinstance(cfg.image.rot_lim[0], float)
    assert cfg.bev.scale_lim == (0.9, 1.1)
    assert cfg.image.flip is True  # untouched defaults stay
    assert from_dict(DataConfig, to_dict(cfg)) == cfg


@pytest.mark.parametrize("data, message", [
    ({"image": {"finl_size": [1, 2]}}, "unknown config key 'image.finl_size'; did you mean "
                                       "'final_size'?"),
    ({"lidar_sweps": 3}, "did you mean 'lidar_sweeps'?"),
    ({"lidar_sweeps": "ten"}, "lidar_sweeps: expected an integer"),
    ({"image": {"final_size": [1, 2, 3]}}, "image.final_size: expected 2 values"),
    ({"use_camera": "yes"}, "use_camera: expected true/false"),
])
def test_bad_keys_and_values_are_one_line_errors(data, message):
    with pytest.raises(BevkdError) as err:
        from_dict(DataConfig, data)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_overrides_parse_yaml_values_and_reject_malformed_items():
    out = apply_overrides({"a": {"b": 1}}, ["a.b=2.5", "a.c=[1, 2]", "d=true"])
    assert out == {"a": {"b": 2.5, "c": [1, 2]}, "d": True}
    with pytest.raises(BevkdError, match="must look like key.path=value"):
        apply_overrides({}, ["novalue"])
    methods = {"distill": {"methods": [{"type": "a", "args": {"t": 1}}]}}
    out = apply_overrides(methods, ["distill.methods.0.args.t=0.5"])
    assert out["distill"]["methods"][0]["args"]["t"] == 0.5
    assert methods["distill"]["methods"][0]["args"]["t"] == 1  # the input is not modified
    with pytest.raises(BevkdError, match="no list item '3'"):
        apply_overrides(methods, ["distill.methods.3.args.t=1"])
    # a baseline's config has no methods: an item of them is no new mapping keyed "0"
    with pytest.raises(BevkdError, match="distill.methods is empty in this config, so it has "
                                         "no item 0"):
        apply_overrides({"distill": {}}, ["distill.methods.0.args.t=1"])
    # by its type: the mapping it makes is told as such when the config is typed
    from bevkd.engine.config import ExperimentConfig

    with pytest.raises(BevkdError, match=r"distill.methods: expected a list, got .*names an "
                                         r"item of a list this config leaves empty"):
        from_dict(ExperimentConfig, apply_overrides({}, ["distill.methods.asd.args.t=1"]))


def test_a_typed_list_item_is_named_by_its_type():
    methods = {"distill": {"methods": [{"type": "labeldistill"}, {"type": "asd", "args": {}},
                                       {"type": "asd", "args": {}}, {"type": "dualdistill"}]}}
    out = apply_overrides(methods, ["distill.methods.dualdistill.args.t=0.5",
                                    "distill.methods.labeldistill={type: labeldistill, w: 2}"])
    assert out["distill"]["methods"][3] == {"type": "dualdistill", "args": {"t": 0.5}}
    assert out["distill"]["methods"][0] == {"type": "labeldistill", "w": 2}
    assert apply_overrides(methods, ["distill.methods.3.args.t=0.5"]) == \
        apply_overrides(methods, ["distill.methods.dualdistill.args.t=0.5"])
    with pytest.raises(BevkdError, match=r"2 list items of type 'asd'; name the one by its "
                                         r"index \(1, 2\)"):
        apply_overrides(methods, ["distill.methods.asd.args.x=1"])
    with pytest.raises(BevkdError, match=r"no list item 'bevdistill' \(items by type: "
                                         r"labeldistill, asd, asd, dualdistill\)"):
        apply_overrides(methods, ["distill.methods.bevdistill.args.x=1"])


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(BevkdError, match="nope.yaml does not exist"):
        load_config(DataConfig, str(tmp_path / "nope.yaml"))


def test_exponent_numbers_without_a_dot_are_numbers():
    """YAML 1.1 reads ``1e-3`` as a string; a float field takes it as the number it means."""
    from bevkd.engine.config import OptimConfig

    assert from_dict(OptimConfig, {"lr": "1e-3"}).lr == 1e-3
    with pytest.raises(BevkdError, match="expected a number, got 'fast'"):
        from_dict(OptimConfig, {"lr": "fast"})


def test_differing_keys_names_every_changed_leaf_dotted_and_sorted():
    a = {"optim": {"lr": 1e-3, "schedule": "cosine"}, "train": {"epochs": 4}, "data": [1, 2]}
    b = {"optim": {"lr": 2e-3, "schedule": "cosine"}, "train": {"epochs": 4, "seed": 1},
         "data": [1, 3]}
    assert differing_keys(a, b) == ["data", "optim.lr", "train.seed"]
    assert differing_keys(a, a) == []


def test_a_configs_path_reads_the_shipped_config_from_any_folder(tmp_path, monkeypatch):
    """``configs/<kind>/<file>`` (the README's commands, written for a checkout) names the
    shipped config where the working folder has none; a file that is there is itself."""
    import os

    from bevkd.config import CONFIGS_DIR, shipped_config

    monkeypatch.chdir(tmp_path)
    assert shipped_config("configs/student/bevdepth.yaml") == os.path.join(
        CONFIGS_DIR, "student", "bevdepth.yaml")
    (tmp_path / "configs" / "student").mkdir(parents=True)
    (tmp_path / "configs" / "student" / "bevdepth.yaml").write_text("model: {type: bevdepth}\n")
    assert shipped_config("configs/student/bevdepth.yaml") == "configs/student/bevdepth.yaml"
    for other in ("configs/student/mine.yaml", "student/bevdepth.yaml", "x/configs/a/b.yaml"):
        assert shipped_config(other) == other
    with pytest.raises(BevkdError, match="config file configs/student/mine.yaml does not exist"):
        load_config(DataConfig, shipped_config("configs/student/mine.yaml"))
    # a preset of one's own, elsewhere, based on a shipped one by that spelling
    from bevkd.config import read_yaml

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "wide.yaml").write_text(
        "base: configs/presets/tiny.yaml\ngrid: {cell: 0.8}\n")
    monkeypatch.chdir(tmp_path / "mine")
    wide = read_yaml("wide.yaml")
    assert wide["grid"]["cell"] == 0.8 and wide["data"]["image"]["final_size"] == [96, 264]
    (tmp_path / "mine" / "wide.yaml").write_text("base: configs/presets/huge.yaml\n")
    with pytest.raises(BevkdError, match="config file .*/mine/configs/presets/huge.yaml does not "
                                         "exist"):
        read_yaml("wide.yaml")

"""Experiment configs: which preset a ``--preset`` names; values out of range are one-line
errors naming the key."""

from __future__ import annotations

import os
import re

import pytest

from bevkd.engine.config import (PRESETS_DIR, ExperimentConfig, load_experiment, preset_name,
                                 resolve_preset, shipped_preset)
from bevkd.errors import BevkdError


def test_a_preset_is_a_shipped_name_or_a_file_and_a_wrong_one_says_which(tmp_path,
                                                                         monkeypatch):
    shipped = ", ".join(sorted(f[:-5] for f in os.listdir(PRESETS_DIR) if f.endswith(".yaml")))
    assert {"demo", "tiny", "small", "full"} <= set(shipped.split(", "))
    assert resolve_preset("tiny") == os.path.join(PRESETS_DIR, "tiny.yaml")
    own = tmp_path / "wide.yaml"
    own.write_text("base: tiny.yaml\n")
    assert resolve_preset(str(own)) == str(own) and preset_name(str(own)) == "wide"
    with pytest.raises(BevkdError, match=r"unknown preset 'tinny'; did you mean 'tiny'\?"):
        resolve_preset("tinny")
    with pytest.raises(BevkdError, match=rf"unknown preset 'gpu'; valid keys: {shipped}$"):
        resolve_preset("gpu")
    # a path that is not there is a missing file, not a misspelt name
    monkeypatch.chdir(tmp_path)
    for missing in ("my/wide.yaml", "wide2.yaml", str(tmp_path / "nope" / "x.yml")):
        with pytest.raises(BevkdError, match=re.escape(
                f"preset file '{missing}' does not exist (a preset is one of {shipped} or a "
                "YAML file of one's own)") + "$"):
            resolve_preset(missing)
    # a shipped preset's name written as a file in the working folder
    with pytest.raises(BevkdError, match=r"of one's own\); did you mean 'tiny'\?$"):
        resolve_preset("tiny.yaml")


def test_a_shipped_presets_file_is_that_preset_by_name(tmp_path, monkeypatch):
    """``configs/presets/tiny.yaml`` (through the checkout's link, or in a folder without one)
    and ``bevkd/configs/presets/tiny.yaml`` are the preset ``tiny``: one name for its table
    and the commands a bench records. A preset file of one's own keeps its path."""
    shipped = os.path.join(PRESETS_DIR, "tiny.yaml")
    assert shipped_preset(shipped) == "tiny" and shipped_preset("tiny") == "tiny"
    monkeypatch.chdir(tmp_path)  # no configs/ here: the shipped file by that spelling
    assert shipped_preset("configs/presets/tiny.yaml") == "tiny"
    assert resolve_preset("configs/presets/tiny.yaml") == shipped
    assert preset_name("configs/presets/demo.yaml") == "demo"
    (tmp_path / "configs" / "presets").mkdir(parents=True)
    os.symlink(PRESETS_DIR, tmp_path / "linked")
    assert shipped_preset(str(tmp_path / "linked" / "small.yaml")) == "small"
    own = tmp_path / "configs" / "presets" / "tiny.yaml"  # one's own, by the same name
    own.write_text("base: configs/presets/tiny.yaml\n")
    assert shipped_preset("configs/presets/tiny.yaml") == "configs/presets/tiny.yaml"
    assert preset_name("configs/presets/tiny.yaml") == "tiny"


@pytest.mark.parametrize("override, message", [
    ("optim.lr=-1", "optim: lr must be a positive number, got -1.0"),
    ("optim.lr=.inf", "optim: lr must be a positive number, got inf"),
    ("optim.weight_decay=-0.1", "optim: weight_decay must be at least 0"),
    ("optim.schedule=linear", "optim: schedule must be one of step, cosine, constant, got "
                              "'linear'"),
    ("optim.step_at=[0.5, 1.5]", "optim: step_at must be fractions of the training in (0, 1]"),
    ("train.epochs=0", "train: epochs must be at least 1, got 0"),
    ("train.batch_size=0", "train: batch_size must be at least 1, got 0"),
    ("train.ema_decay=1.0", "train: ema_decay must be in [0, 1)"),
    ("train.precision=fp16", "train: precision must be one of auto, 32-true"),
    ("distill.methods.0.weight=-1", "distill.methods[0]: weight must be at least 0, got -1.0"),
    ("data.image.final_size=[0, 0]", "data.image: final_size (H, W) must be at least 32 pixels "
                                     "a side, got (0, 0)"),
    ("data.image.resize_lim=[0.5, 0.4]", "data.image: resize_lim must be (low, high) with 0 < "
                                         "low <= high"),
])
def test_values_out_of_range_are_one_line_errors_naming_the_key(override, message):
    with pytest.raises(BevkdError) as err:
        load_experiment("configs/distill/dualdistill.yaml", "tiny", [override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_every_shipped_config_and_preset_is_in_range():
    configs = [os.path.join(kind, f) for kind in ("teacher", "student", "distill")
               for f in sorted(os.listdir(os.path.join(os.path.dirname(PRESETS_DIR), kind)))]
    presets = sorted(f[:-5] for f in os.listdir(PRESETS_DIR) if f.endswith(".yaml"))
    assert len(configs) >= 8 and {"tiny", "demo", "small", "full"} <= set(presets)
    for config in configs:  # each raises where a value is out of range
        for preset in presets:
            cfg = load_experiment(os.path.join("configs", config), preset, [])
            assert isinstance(cfg, ExperimentConfig)

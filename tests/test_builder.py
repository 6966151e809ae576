"""The builder: DESIGN §1's flat ``DETECTORS`` dict and the errors for unknown names."""

from __future__ import annotations

import glob

import pytest

from bevkd.config import read_yaml


def test_detectors_is_the_flat_dict_every_config_names():
    from bevkd import builder
    from bevkd.models.camera.bevdepth import BEVDepth

    assert builder.DETECTORS["bevdepth"] is BEVDepth
    types = {read_yaml(p)["model"]["type"] for p in glob.glob("configs/*/*.yaml")
             if "presets" not in p and "model" in read_yaml(p)}
    assert types and types <= set(builder.DETECTORS)
    with pytest.raises(AttributeError, match="DETECTOR"):
        builder.DETECTOR  # noqa: B018 (a misspelling is an AttributeError, not None)


def test_an_unknown_model_type_is_an_error_naming_the_closest():
    from bevkd.builder import build_detector
    from bevkd.engine.config import ModelSpec
    from bevkd.errors import BevkdError
    from bevkd.models.grid import BevGrid

    with pytest.raises(BevkdError, match="unknown model type 'bevdept'.*bevdepth"):
        build_detector(ModelSpec(type="bevdept"), BevGrid())


def test_a_teacher_that_is_not_a_run_says_how_to_give_one(tmp_path):
    """The distill configs' placeholder, a folder that does not exist and one that is no run
    are each named with the --set that gives the teacher."""
    from bevkd.builder import build_model
    from bevkd.engine.config import load_experiment
    from bevkd.errors import BevkdError

    how = r"--set distill.teachers.lidar=<the teacher's run folder>"
    cases = [("RUN", "distill.teachers.lidar is the config's placeholder RUN: train the lidar "
                     "teacher first and pass its run with "),
             (str(tmp_path / "gone"), f"lidar teacher {tmp_path / 'gone'} does not exist "
                                      "(distill.teachers.lidar); pass its run with "),
             (str(tmp_path), f"lidar teacher {tmp_path} is not a run folder (no config.yaml; "
                             "distill.teachers.lidar); pass a `bevkd train` run with ")]
    for teacher, message in cases:
        sets = [] if teacher == "RUN" else [f"distill.teachers.lidar={teacher}"]
        cfg = load_experiment("configs/distill/dualdistill.yaml", "tiny", sets)
        with pytest.raises(BevkdError) as err:
            build_model(cfg)
        assert str(err.value) == message + how

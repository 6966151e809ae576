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

"""The one place that maps config names to classes (DESIGN §1: flat dicts, no registries)."""

from __future__ import annotations

import inspect
import typing

from torch import nn

from .config import _coerce, _suggest
from .engine.config import ExperimentConfig, ModelSpec
from .errors import BevkdError
from .models.grid import BevGrid


def _detectors() -> dict[str, type[nn.Module]]:
    # imported here so that `bevkd synth` does not pay for the model code
    from .models.camera.bevdepth import BEVDepth
    from .models.fusion.fusion_teacher import FusionTeacher
    from .models.lidar.centerpoint import CenterPointPillars

    return {"bevdepth": BEVDepth, "pillars": CenterPointPillars, "fusion": FusionTeacher}


def typed_kwargs(cls: type, args: dict, where: str, skip: tuple[str, ...] = ()) -> dict:
    """``args`` checked and coerced against ``cls.__init__``'s typed signature."""
    params = {k: p for k, p in inspect.signature(cls.__init__).parameters.items()
              if k != "self" and k not in skip and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    hints = typing.get_type_hints(cls.__init__)
    out = {}
    for key, value in args.items():
        if key not in params:
            raise BevkdError(f"unknown config key '{where}.{key}'{_suggest(key, sorted(params))}")
        out[key] = _coerce(value, hints.get(key, typing.Any), f"{where}.{key}")
    return out


def build_detector(spec: ModelSpec, grid: BevGrid, image_size: tuple[int, int] | None = None,
                   where: str = "model") -> nn.Module:
    """A detector from its spec; ``image_size`` (H, W) reaches camera models."""
    detectors = _detectors()
    if spec.type not in detectors:
        raise BevkdError(f"unknown model type {spec.type!r}{_suggest(spec.type, sorted(detectors))}")
    cls = detectors[spec.type]
    extra = {"grid": grid}
    if "image_size" in inspect.signature(cls.__init__).parameters:
        extra["image_size"] = image_size
    kwargs = typed_kwargs(cls, spec.args, f"{where}.args", skip=tuple(extra))
    return cls(**extra, **kwargs)


def build_model(cfg: ExperimentConfig) -> nn.Module:
    """The trainable model of an experiment (a detector; distillation wraps it in issue #6)."""
    return build_detector(cfg.model, cfg.grid, cfg.data.image.final_size)

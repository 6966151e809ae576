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
    from .distill.label_encoder import LabelEncoder  # LabelDistill's stage-1 model

    return {"bevdepth": BEVDepth, "pillars": CenterPointPillars, "fusion": FusionTeacher,
            "label_encoder": LabelEncoder}


def __getattr__(name: str):
    """``DETECTORS``, DESIGN §1's flat dict of detector name -> class, built on first use
    (PEP 562) so that importing the builder does not import the model code."""
    if name == "DETECTORS":
        return _detectors()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def typed_kwargs(cls: type, args: dict, where: str, skip: tuple[str, ...] = ()) -> dict:
    """``args`` checked and coerced against ``cls.__init__``'s typed signature."""
    params = {k: p for k, p in inspect.signature(cls.__init__).parameters.items()
              if k != "self" and k not in skip
              and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
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
        raise BevkdError(
            f"unknown model type {spec.type!r}{_suggest(spec.type, sorted(detectors))}")
    cls = detectors[spec.type]
    extra = {"grid": grid}
    if "image_size" in inspect.signature(cls.__init__).parameters:
        extra["image_size"] = image_size
    kwargs = typed_kwargs(cls, spec.args, f"{where}.args", skip=tuple(extra))
    return cls(**extra, **kwargs)


def _distillers() -> dict[str, type[nn.Module]]:
    from .distill.methods import DISTILLERS

    return DISTILLERS


# Detector types that can fill each teacher role (a new teacher architecture adds itself here).
TEACHER_TYPES: dict[str, tuple[str, ...]] = {"lidar": ("pillars",), "fusion": ("fusion",),
                                             "label": ("label_encoder",)}


def load_teacher(path: str, grid: BevGrid, role: str, load_weights: bool = True,
                 image_size: tuple[int, int] | None = None) -> nn.Module:
    """A trained teacher from its run folder (or a checkpoint inside one), checked to share
    the student's BEV grid (responses and features must align cell by cell) and, for a teacher
    that reads the cameras, the student's image size ``image_size`` (H, W; the batch's images
    are the student's, and the teacher's frustum was built for its own size)."""
    import os

    from .engine.run import load_run_config, load_trained

    how = f"--set distill.teachers.{role}=<the teacher's run folder>"
    if not os.path.exists(path):
        if os.path.basename(path) == "RUN":  # the distill configs' placeholder
            raise BevkdError(f"distill.teachers.{role} is the config's placeholder RUN: train "
                             f"the {role} teacher first and pass its run with {how}")
        raise BevkdError(f"{role} teacher {path} does not exist (distill.teachers.{role}); "
                         f"pass its run with {how}")
    run, ckpt = teacher_run(path)
    if not os.path.isfile(os.path.join(run, "config.yaml")):
        raise BevkdError(f"{role} teacher {path} is not a run folder (no config.yaml; "
                         f"distill.teachers.{role}); pass a `bevkd train` run with {how}")
    tcfg = load_run_config(run)
    allowed = TEACHER_TYPES.get(role)
    if allowed is not None and tcfg.model.type not in allowed:
        raise BevkdError(f"{role} teacher {run} is a {tcfg.model.type!r} model; the {role} role "
                         f"takes {', '.join(allowed)}")
    if tcfg.grid != grid:
        raise BevkdError(f"{role} teacher {run} was trained on grid {tcfg.grid}, the student "
                         f"uses {grid}: both must share one BEV grid")
    size = tuple(tcfg.data.image.final_size)
    if image_size is not None and tcfg.data.use_camera and size != tuple(image_size):
        raise BevkdError(f"{role} teacher {run} was trained on {size[0]}x{size[1]} images, the "
                         f"student's are {image_size[0]}x{image_size[1]}: the teacher reads the "
                         "student's batch, so set data.image.final_size to the teacher's")
    if not load_weights:  # the weights come from a distillation checkpoint instead
        return build_model(without_init_weights(tcfg))
    return load_trained(run, ckpt)[1]


def teacher_run(path: str) -> tuple[str, str | None]:
    """``(run folder, checkpoint or None)`` of a ``distill.teachers`` entry: a run folder (its
    last checkpoint), or a checkpoint file inside one (``RUN/checkpoints/X.ckpt``)."""
    import os

    if os.path.isfile(path):
        return os.path.dirname(os.path.dirname(os.path.abspath(path))), path
    return path, None


def without_init_weights(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` without the files its model was initialised from: the image backbone's weights
    and the label encoder's LiDAR teacher's (whose architecture is still read from the
    teacher's config). A model about to receive a trained checkpoint must not need (or read)
    them: they may be gone (a bench run restored without checkpoints)."""
    from dataclasses import replace

    args = {k: v for k, v in cfg.model.args.items() if k != "backbone_weights"}
    if cfg.model.type == "label_encoder":
        args["teacher_weights"] = False
    return replace(cfg, model=replace(cfg.model, args=args))


def build_model(cfg: ExperimentConfig, load_teachers: bool = True) -> nn.Module:
    """The trainable model of an experiment: a detector, or a ``DistillModel`` of that detector
    with the configured teachers and methods.

    ``load_teachers=False`` builds the teachers' architectures without reading their
    checkpoints (a distillation checkpoint already holds their weights).
    """
    student = build_detector(cfg.model, cfg.grid, cfg.data.image.final_size)
    if not cfg.distill.methods:
        return student
    from .distill.base import DistillModel

    teachers = {role: load_teacher(path, cfg.grid, role, load_teachers,
                                   cfg.data.image.final_size)
                for role, path in cfg.distill.teachers.items()}
    registry = _distillers()
    distillers, weights = {}, {}
    for i, m in enumerate(cfg.distill.methods):
        if m.type not in registry:
            raise BevkdError(f"unknown distillation method {m.type!r}"
                             f"{_suggest(m.type, sorted(registry))}")
        cls = registry[m.type]
        name = m.name or m.type
        if name in distillers:
            raise BevkdError(f"distill.methods[{i}]: two methods named {name!r}; set `name`")
        context = {"grid": cfg.grid, "student_channels": student.feature_channels,
                   "teacher_channels": {r: t.feature_channels for r, t in teachers.items()}}
        kwargs = typed_kwargs(cls, m.args, f"distill.methods[{i}].args", skip=tuple(context))
        distillers[name] = cls(**context, **kwargs)
        weights[name] = m.weight
    return DistillModel(student, teachers, distillers, weights)

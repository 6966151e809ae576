"""The distillation framework: frozen teachers beside a student, methods as pluggable losses.

``DistillModel(student, teachers, distillers)`` follows the detector contract, so the Lightning
module trains it like any detector:

- ``forward(batch)`` runs the student and, in training, every teacher under ``no_grad``;
- ``loss(outputs, batch)`` is the student's own loss plus each distiller's named, weighted terms,
  logged as ``distill/<method>/<term>``;
- ``decode`` is the student's: distillation adds nothing at inference.

Teachers are frozen (``requires_grad_(False)``) and stay in eval mode even when the trainer calls
``.train()`` (LabelDistill's published code let Lightning switch its teacher's BatchNorm to train
mode; we do not). Their parameters never reach the optimiser or the exported student.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import BevkdError
from ..models.outputs import DetOutputs
from ..structures.batch import Batch
from ..structures.detections import Detections


class Distiller(nn.Module):
    """One distillation method. Subclasses set ``name``, ``requires`` (student feature keys),
    ``teacher_requires`` (teacher role -> feature keys) and implement ``forward``, returning
    named loss terms that are already weighted by the method's own hyper-parameters.

    Adapters (projections from student to teacher channels etc.) are submodules of the
    distiller: they train with the student and are dropped at export.
    """

    name: str = "distiller"
    #: teacher roles the method always needs (known before construction: the benchmark
    #: planner trains those teachers first)
    roles: tuple[str, ...] = ()
    #: student / teacher feature keys, set by the constructor (they depend on the chosen levels)
    requires: tuple[str, ...] = ()
    teacher_requires: dict[str, tuple[str, ...]] = {}

    def attach(self, student: nn.Module, teachers: dict[str, nn.Module]) -> None:
        """Called once by DistillModel: methods that reuse teacher parts (e.g. DualDistill's
        CRD runs student features through the frozen teacher head) keep references here.
        Do not register teacher modules as submodules (they would be trained and exported)."""

    def forward(self, student_out: DetOutputs, teacher_out: dict[str, DetOutputs],
                batch: Batch) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class DistillOutputs:
    """Student outputs plus, in training, the teachers' (by role)."""

    student: DetOutputs
    teachers: dict[str, DetOutputs] = field(default_factory=dict)

    @property
    def feats(self) -> dict[str, torch.Tensor]:
        return self.student.feats

    @property
    def preds(self) -> list[dict[str, torch.Tensor]]:
        return self.student.preds


class _FrozenTeachers(nn.ModuleDict):
    """Teachers never leave eval mode, whatever ``train()`` the parent receives."""

    def train(self, mode: bool = True) -> "_FrozenTeachers":
        return super().train(False)


class DistillModel(nn.Module):
    """A student trained with frozen teachers and weighted distillers."""

    def __init__(self, student: nn.Module, teachers: dict[str, nn.Module],
                 distillers: dict[str, Distiller], weights: dict[str, float] | None = None):
        super().__init__()
        self.student = student
        self.teachers = _FrozenTeachers(teachers)
        for teacher in self.teachers.values():
            teacher.requires_grad_(False)
        self.teachers.eval()
        self.distillers = nn.ModuleDict(distillers)
        self.weights = {k: float((weights or {}).get(k, 1.0)) for k in distillers}
        self._check_contract()
        for d in self.distillers.values():
            d.attach(self.student, dict(self.teachers.items()))

    @property
    def feature_keys(self) -> tuple[str, ...]:
        return self.student.feature_keys

    def _check_contract(self) -> None:
        """Every key a distiller reads must be published by its student / teacher."""
        for key, d in self.distillers.items():
            missing = [k for k in d.requires if k not in self.student.feature_keys]
            if missing:
                raise BevkdError(f"distiller {key!r} needs student features {missing}, which "
                                 f"{type(self.student).__name__} does not publish "
                                 f"({', '.join(self.student.feature_keys)})")
            for role, keys in d.teacher_requires.items():
                if role not in self.teachers:
                    raise BevkdError(f"distiller {key!r} needs a {role!r} teacher; given: "
                                     f"{', '.join(self.teachers) or 'none'} (distill.teachers)")
                have = self.teachers[role].feature_keys
                missing = [k for k in keys if k not in have]
                if missing:
                    raise BevkdError(f"distiller {key!r} needs {role} teacher features {missing}")

    def train(self, mode: bool = True) -> "DistillModel":
        super().train(mode)
        self.teachers.eval()  # belt and braces: _FrozenTeachers already refuses train mode
        return self

    def forward(self, batch: Batch) -> DistillOutputs:
        out = DistillOutputs(self.student(batch))
        if self.training:
            with torch.no_grad():
                out.teachers = {role: t(batch) for role, t in self.teachers.items()}
        return out

    def loss(self, outputs: DistillOutputs, batch: Batch) -> dict[str, torch.Tensor]:
        losses = dict(self.student.loss(outputs.student, batch))
        if not outputs.teachers:  # evaluation pass: no distillation terms
            return losses
        for key, d in self.distillers.items():
            w = self.weights[key]
            for term, value in d(outputs.student, outputs.teachers, batch).items():
                losses[f"distill/{key}/{term}"] = w * value
        return losses

    @torch.no_grad()
    def decode(self, outputs: DistillOutputs, batch: Batch) -> list[Detections]:
        return self.student.decode(outputs.student, batch)

"""The registered distillation methods: config name -> class (DESIGN §1, one flat dict)."""

from __future__ import annotations

from .asd import ASD
from .base import Distiller
from .bevdistill import BEVDistill
from .dualdistill import DualDistill
from .labeldistill import LabelDistill

DISTILLERS: dict[str, type[Distiller]] = {
    "bevdistill": BEVDistill,
    "labeldistill": LabelDistill,
    "dualdistill": DualDistill,
    "asd": ASD,
}

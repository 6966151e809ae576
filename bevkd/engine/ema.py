"""Exponential moving average of the trained weights, as a Lightning callback.

Validation, checkpoints' ``ema_state_dict`` and the exported model use the averaged weights.
The average lives in the checkpoint, so ``--resume`` continues it exactly.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import lightning as L
import torch
from torch import nn

from ..errors import BevkdError


class EMA(L.Callback):
    """Keeps ``shadow = d_n * shadow + (1 - d_n) * weights`` after the n-th optimiser step, with
    BEVDepth's warm-up (its ``ModelEMA``, after YOLOX): ``d_n = decay * (1 - exp(-n / ramp))``,
    ``ramp`` = 2000 steps there (``train.ema_ramp``), so the early average follows the
    fast-moving weights closely."""

    def __init__(self, decay: float, ramp: float = 2000.0):
        if not 0.0 < decay < 1.0 or ramp <= 0:
            raise BevkdError(f"EMA needs 0 < train.ema_decay < 1 and train.ema_ramp > 0, got "
                             f"{decay} and {ramp}")
        self.decay, self.ramp = decay, ramp
        self.shadow: dict[str, torch.Tensor] | None = None
        self.updates = 0
        self._backup: dict[str, torch.Tensor] | None = None

    @staticmethod
    def _tracked(model: nn.Module) -> dict[str, torch.Tensor]:
        # only what is trained (and its BN statistics): frozen teachers are not averaged
        return {k: v for k, v in model.state_dict().items()
                if v.dtype.is_floating_point and not k.startswith("teachers.")}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.shadow is None:
            self.shadow = {k: v.detach().clone() for k, v in self._tracked(pl_module.model).items()}
        else:  # restored from a checkpoint
            dev = next(pl_module.parameters()).device
            self.shadow = {k: v.to(dev) for k, v in self.shadow.items()}

    @torch.no_grad()
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self.updates += 1
        d = self.decay * (1.0 - math.exp(-self.updates / self.ramp))
        for k, v in self._tracked(pl_module.model).items():
            self.shadow[k].mul_(d).add_(v.detach(), alpha=1 - d)

    def _swap_in(self, pl_module: L.LightningModule) -> None:
        if self.shadow is None:
            return
        model = pl_module.model
        self._backup = {k: v.detach().clone() for k, v in self._tracked(model).items()}
        model.load_state_dict(self.shadow, strict=False)

    def _swap_out(self, pl_module: L.LightningModule) -> None:
        if self._backup is not None:
            pl_module.model.load_state_dict(self._backup, strict=False)
            self._backup = None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._swap_in(pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._swap_out(pl_module)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        # a checkpoint written during validation (a SIGTERM stops it) holds the trained
        # weights, not the average swapped in for it: a resume trains on from them
        if self._backup is not None:
            prefix = next(n for n, m in pl_module.named_children() if m is pl_module.model)
            for k, v in self._backup.items():
                checkpoint["state_dict"][f"{prefix}.{k}"] = v.detach().clone()

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates,
                "shadow": None if self.shadow is None else {k: v.cpu() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay, self.updates, self.shadow = state["decay"], state["updates"], state["shadow"]

    @staticmethod
    def averaged(model: nn.Module, shadow: dict[str, torch.Tensor]) -> nn.Module:
        """A copy of ``model`` with the averaged weights."""
        out = copy.deepcopy(model)
        out.load_state_dict(shadow, strict=False)
        return out

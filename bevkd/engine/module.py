"""The Lightning module: any model with the detector contract, trained and evaluated.

``model(batch) -> DetOutputs``, ``model.loss(outputs, batch) -> dict`` of named (weighted) terms,
``model.decode(outputs, batch) -> list[Detections]``. Every term is logged as ``train/<name>``
(distillation terms arrive already named ``distill/<method>/<term>``).
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch import nn

from ..errors import BevkdError
from ..structures.batch import Batch
from ..structures.detections import Detections
from .config import OptimConfig


class NonFiniteLoss(BevkdError):
    """A loss became NaN or infinite; training stops (the last good checkpoint stays)."""


class DetectionModule(L.LightningModule):
    """Trains ``model``; validates with ``evaluator`` (a ``DetectionEvaluator``) if given."""

    def __init__(self, model: nn.Module, optim: OptimConfig, evaluator: Any | None = None,
                 total_steps: int | None = None):
        super().__init__()
        self.model = model
        self.optim_cfg = optim
        self.evaluator = evaluator
        self.total_steps = total_steps
        self._val_dets: list[Detections] = []
        self.last_metrics: dict[str, Any] | None = None
        # where each class's top detections land (bevkd.eval.confusion), same validation
        self.last_sources: dict[str, dict[str, int]] | None = None
        # the detections those metrics scored, for results.json: rank 0 keeps every rank's
        # (the others none: they would hold a whole split's boxes each until the next one)
        self.last_detections: list[Detections] | None = None
        # the training step those metrics scored the weights of (None: no validation yet)
        self.last_metrics_step: int | None = None

    def forward(self, batch: Batch):
        return self.model(batch)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        outputs = self.model(batch)
        losses = self.model.loss(outputs, batch)
        total = torch.stack([v for v in losses.values()]).sum()
        if not torch.isfinite(total):
            terms = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
            raise NonFiniteLoss(f"non-finite loss at step {self.global_step} "
                                f"(epoch {self.current_epoch}): {terms}")
        bs = batch.size
        for name, value in losses.items():
            key = name if name.startswith("distill/") else f"train/{name}"
            self.log(key, value.detach(), batch_size=bs, on_step=True, on_epoch=True,
                     sync_dist=True)  # DDP: the mean over ranks, not rank 0's share
        self.log("train/loss", total.detach(), batch_size=bs, prog_bar=True, on_step=True,
                 on_epoch=True, sync_dist=True)
        return total

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        outputs = self.model(batch)
        self._val_dets.extend(d.numpy() for d in self.model.decode(outputs, batch))

    def on_validation_epoch_start(self) -> None:
        self._val_dets = []

    def on_validation_epoch_end(self) -> None:
        if self.evaluator is None or self.trainer.sanity_checking:
            return
        dets = self._gather(self._val_dets)
        metrics, sources = (self.evaluator.evaluate_with_sources(dets)
                            if self.trainer.is_global_zero else (None, None))
        if self.trainer.world_size > 1:  # every rank logs rank 0's numbers, the same keys
            import torch.distributed as dist

            box = [metrics, sources]
            dist.broadcast_object_list(box, src=0)
            metrics, sources = box
        self.last_metrics, self.last_sources = metrics, sources
        self.last_detections = dets if self.trainer.is_global_zero else None
        self.last_metrics_step = self.global_step
        values = {"val/mAP": float(metrics["mean_ap"]), "val/NDS": float(metrics["nd_score"])}
        for key, err in metrics["tp_errors"].items():
            values[f"val/{key}"] = float(err)
        # identical on every rank; syncing (a no-op max) keeps Lightning's DDP check quiet
        self.log_dict(values, prog_bar=True, sync_dist=True, reduce_fx="max")

    def _gather(self, dets: list[Detections]) -> list[Detections]:
        """All ranks' detections on rank 0 (DDP), deduplicated by sample token (a
        DistributedSampler pads the last batch with repeats)."""
        if self.trainer.world_size > 1:
            import torch.distributed as dist

            parts: list[list[Detections]] = [None] * self.trainer.world_size  # type: ignore
            dist.all_gather_object(parts, dets)
            dets = [d for part in parts for d in part]
        seen, out = set(), []
        for d in dets:
            if d.sample_token not in seen:
                seen.add(d.sample_token)
                out.append(d)
        return out

    def configure_optimizers(self):
        cfg = self.optim_cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        total = self.total_steps or self.trainer.estimated_stepping_batches

        def factor(step: int) -> float:
            warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
            if cfg.schedule == "step":
                return warm * 0.1 ** sum(step >= f * total for f in cfg.step_at)
            if cfg.schedule == "cosine":
                return warm * 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, total))))
            return warm

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

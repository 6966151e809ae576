"""The detector contract (DESIGN §3) shared by students and teachers.

``forward(batch) -> DetOutputs``, ``loss(outputs, batch) -> dict`` of named terms,
``decode(outputs, batch) -> list[Detections]``. Boxes are decoded in the batch's (augmented)
ego frame, which at evaluation is the key-frame ego frame (no BEV augmentation).
"""

from __future__ import annotations

import torch
from torch import nn

from ..structures.batch import Batch
from ..structures.detections import Detections
from .heads.center_head import CenterHead
from .outputs import DetOutputs


class Detector(nn.Module):
    """Base class: subclasses build ``self.head`` and implement ``forward``."""

    head: CenterHead
    #: feature keys this detector publishes (checked by distillers at build time)
    feature_keys: tuple[str, ...] = ("bev_in", "bev_s1", "bev_s2", "bev_neck")

    @property
    def feature_channels(self) -> dict[str, int]:
        """Channels of each published feature (distillers size their adapters with these)."""
        return {"bev_in": self.trunk_in_channels, "bev_s1": self.trunk.channels[0],
                "bev_s2": self.trunk.channels[1], "bev_neck": self.trunk.out_channels}

    def forward(self, batch: Batch) -> DetOutputs:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, outputs: DetOutputs, batch: Batch) -> dict[str, torch.Tensor]:
        return self.head.loss(outputs.preds, batch.targets.boxes, batch.targets.labels)

    @torch.no_grad()
    def decode(self, outputs: DetOutputs, batch: Batch) -> list[Detections]:
        out = []
        for token, (boxes, scores, labels) in zip(batch.meta.sample_tokens,
                                                  self.head.decode(outputs.preds)):
            out.append(Detections(token, boxes, scores, labels))
        return out

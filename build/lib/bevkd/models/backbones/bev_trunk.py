"""BEV trunk shared by students and teachers: ResNet stages on the BEV grid + a SECONDFPN neck.

Publishes the documented feature keys (DESIGN §3): ``bev_s1`` (stage 1, stride 1), ``bev_s2``
(stage 2, stride 2) and ``bev_neck`` (the head input, stride 1). Both sides of a distillation
pair use this class, so their stage outputs live on the same grids.
"""

from __future__ import annotations

import torch
from torch import nn

from ..necks.second_fpn import SecondFPN
from .resnet import BasicBlock, make_layer


class BevTrunk(nn.Module):
    """BEV encoder (B, C_in, Y, X) -> dict of ``bev_s1`` (B, c1, Y, X), ``bev_s2``
    (B, c2, Y/2, X/2), ``bev_neck`` (B, 2 * neck_channels, Y, X)."""

    def __init__(self, in_channels: int, channels: tuple[int, int] = (128, 256),
                 blocks: tuple[int, int] = (2, 2), neck_channels: int = 128):
        super().__init__()
        self.stage1 = make_layer(BasicBlock, in_channels, channels[0], blocks[0], stride=1)
        self.stage2 = make_layer(BasicBlock, channels[0], channels[1], blocks[1], stride=2)
        self.neck = SecondFPN(channels, (1, 2), out_stride=1, level_channels=neck_channels)
        self.channels = channels
        self.out_channels = self.neck.out_channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        s1 = self.stage1(x)
        s2 = self.stage2(s1)
        return {"bev_s1": s1, "bev_s2": s2, "bev_neck": self.neck([s1, s2])}

    def from_stages(self, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        """The neck alone, for callers that bring their own stage features (LabelDistill's
        label encoder goes through the frozen teacher neck and head)."""
        return self.neck([s1, s2])

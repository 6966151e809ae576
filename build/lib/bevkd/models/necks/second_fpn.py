"""SECONDFPN-style necks: bring several feature levels to one stride and concatenate them.

Used twice, as BEVDepth does: on image features (to the depth net's stride, 16) and on the BEV
trunk's stage outputs (to the head's grid).
"""

from __future__ import annotations

import torch
from torch import nn


def _resample(in_ch: int, out_ch: int, scale: float) -> nn.Sequential:
    """Conv block changing the resolution by ``scale`` (2, 4 ...: up; 0.5, 0.25: down)."""
    if scale > 1:
        k = int(round(scale))
        conv = nn.ConvTranspose2d(in_ch, out_ch, k, k, bias=False)
    elif scale < 1:
        k = int(round(1 / scale))
        conv = nn.Conv2d(in_ch, out_ch, k, k, bias=False)
    else:
        conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class SecondFPN(nn.Module):
    """Levels at ``in_strides`` -> each resampled to ``out_stride`` with ``level_channels``
    channels -> concatenated: (B, len(levels) * level_channels, H / out_stride, W / out_stride)."""

    def __init__(self, in_channels: tuple[int, ...], in_strides: tuple[int, ...],
                 out_stride: int, level_channels: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            _resample(c, level_channels, s / out_stride) for c, s in zip(in_channels, in_strides))
        self.out_channels = level_channels * len(in_channels)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        outs = [block(f) for block, f in zip(self.blocks, feats)]
        h = min(o.shape[-2] for o in outs)  # odd sizes: crop to the smallest
        w = min(o.shape[-1] for o in outs)
        return torch.cat([o[..., :h, :w] for o in outs], dim=1)

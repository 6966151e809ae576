"""ASD's student-side adapters and its adaptive-smooth feature loss (DESIGN §4.4).

Our documented reading of the abstract (no public code):

- ``F_sim = GCM(Lift(·))``: the simulated-LiDAR branch. ``Lift(·)`` is the student's own LSS
  output (its published ``bev_in``); :class:`GeometryCompensation` (GCM) is a residual block on
  that lifted camera BEV — ``x + body(x)``, ``body`` = (Conv3×3-BN-ReLU)×(depth−1) +
  Conv3×3-BN, no deformable offsets (SimDistill's GCM compensates geometry with deformable
  convs; we keep the residual, offset-free form, which needs no custom op).
- ``F_f = F_c + g ⊙ φ(F_sim)``, ``g = σ(conv([F_c, F_sim]))``: :class:`HeterogeneousFusion`,
  camera-biased (the gate bias starts negative, so ``g`` starts small and the fused feature is
  the camera feature plus a little simulated LiDAR).
- :func:`adaptive_smooth_loss`: per-cell granularity between exact (fine) and smoothed (coarse)
  alignment, chosen by the cell's discrepancy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BevkdError
from ..models.grid import BevGrid
from ..structures.boxes import Boxes3D
from .masks import box_mask, gaussian_mask

MASK_KINDS = ("gaussian", "box", "all")
ALPHA_SCOPES = ("sample", "batch")


def _conv_bn(c_in: int, c_out: int, relu: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                               nn.BatchNorm2d(c_out)]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


class GeometryCompensation(nn.Module):
    """GCM: ``x + body(x)`` on the lifted camera BEV, (B, C, Y, X) -> (B, C, Y, X).

    ``depth`` conv layers (0 = identity: ``F_sim`` is the lifted BEV itself, the second lift's
    or the student's; the ablation without GCM).
    """

    def __init__(self, channels: int, depth: int = 2):
        super().__init__()
        if depth < 0:
            raise BevkdError(f"GCM depth must be >= 0, got {depth}")
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += _conv_bn(channels, channels, relu=i < depth - 1)
        self.body = nn.Sequential(*layers)
        self.depth = depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.depth == 0 else x + self.body(x)


class HeterogeneousFusion(nn.Module):
    """Camera-biased fusion ``F_f = F_c + g ⊙ φ(F_sim)``, ``g = σ(Conv3×3([F_c, F_sim]))``.

    ``φ`` = Conv1×1-BN-ReLU; the gate is per channel and cell, its bias starts at
    ``gate_bias_init`` (< 0: ``g ≈ σ(bias)`` at init, camera-dominant) and its weights at
    ``N(0, 0.01²)`` so the initial gate is nearly uniform. Shapes: (B, C, Y, X) each.
    """

    def __init__(self, channels: int, gate_bias_init: float = -2.0):
        super().__init__()
        self.phi = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False),
                                 nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.gate = nn.Conv2d(2 * channels, channels, 3, padding=1)
        nn.init.normal_(self.gate.weight, std=0.01)
        nn.init.constant_(self.gate.bias, gate_bias_init)

    def gate_values(self, f_cam: torch.Tensor, f_sim: torch.Tensor) -> torch.Tensor:
        """``g`` (B, C, Y, X) in (0, 1)."""
        return torch.sigmoid(self.gate(torch.cat([f_cam, f_sim], dim=1)))

    def forward(self, f_cam: torch.Tensor, f_sim: torch.Tensor) -> torch.Tensor:
        return f_cam + self.gate_values(f_cam, f_sim) * self.phi(f_sim)


def feature_mask(kind: str, boxes: Sequence[Boxes3D], grid: BevGrid, shape: tuple[int, int],
                 min_radius: int = 1) -> torch.Tensor:
    """(B, 1, H, W) distillation region: ``gaussian`` (GT heatmap, max over classes), ``box``
    (inside GT footprints) or ``all`` (every cell)."""
    if kind == "gaussian":
        return gaussian_mask(boxes, grid, shape, min_radius=min_radius)
    if kind == "box":
        return box_mask(boxes, grid, shape)
    if kind == "all":
        device = boxes[0].tensor.device if boxes and boxes[0].is_torch else torch.device("cpu")
        return torch.ones(len(boxes), 1, *shape, device=device)
    raise BevkdError(f"unknown mask kind {kind!r}; valid: {', '.join(MASK_KINDS)}")


def granularity_weight(student: torch.Tensor, teacher: torch.Tensor, scope: str = "sample",
                       eps: float = 1e-6) -> torch.Tensor:
    """``α = σ((d − mean d) / std d)``, ``d = mean_c (S − T)²`` (detached): (B, 1, H, W).

    ``scope="sample"``: mean/std over each sample's cells; ``"batch"``: over the whole batch.
    α → 1 where the discrepancy is large (align the coarse structure), → 0 where it is small
    (align fine detail). A constant ``d`` gives α = ½ everywhere.
    """
    if scope not in ALPHA_SCOPES:
        raise BevkdError(f"unknown alpha scope {scope!r}; valid: {', '.join(ALPHA_SCOPES)}")
    with torch.no_grad():
        d = ((student.float() - teacher.float()) ** 2).mean(1, keepdim=True)
        dims = (1, 2, 3) if scope == "sample" else (0, 1, 2, 3)
        mean = d.mean(dims, keepdim=True)
        std = d.std(dims, keepdim=True, unbiased=False)
        return torch.sigmoid((d - mean) / (std + eps))


def smooth(x: torch.Tensor, kernel: int = 3) -> torch.Tensor:
    """``sm``: average pool, stride 1, 'same' padding (padding excluded from the average, so
    border cells are not darkened)."""
    if kernel <= 1:
        return x
    if kernel % 2 == 0:
        raise BevkdError(f"smoothing kernel must be odd, got {kernel}")
    return F.avg_pool2d(x, kernel, stride=1, padding=kernel // 2, count_include_pad=False)


def adaptive_smooth_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor,
                         kernel: int = 3, scope: str = "sample",
                         alpha: torch.Tensor | None = None) -> torch.Tensor:
    """``Σ M·[(1−α)·‖S−T‖² + α·‖sm(S) − sm(T)‖²] / max(1, Σ M)``, ‖·‖² summed over
    channels.

    student, teacher: (B, C, H, W); mask: (B, 1, H, W); α from :func:`granularity_weight`
    unless given. Zero when S == T.
    """
    s, t = student.float(), teacher.float()
    a = granularity_weight(s, t, scope) if alpha is None else alpha
    fine = ((s - t) ** 2).sum(1, keepdim=True)
    coarse = ((smooth(s, kernel) - smooth(t, kernel)) ** 2).sum(1, keepdim=True)
    m = mask.to(s.dtype)
    return (m * ((1 - a) * fine + a * coarse)).sum() / m.sum().clamp_min(1.0)


__all__ = ["ALPHA_SCOPES", "MASK_KINDS", "GeometryCompensation", "HeterogeneousFusion",
           "adaptive_smooth_loss", "feature_mask", "granularity_weight", "smooth"]

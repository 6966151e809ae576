"""Spatial masks shared by the distillation methods (DESIGN §4), at any BEV map size.

All masks are built from the (augmented) GT boxes of the batch, on a feature map of shape
``(H, W)`` covering the experiment's ``BevGrid`` (so the same code serves the 128x128 head grid
and a 64x64 trunk stage). Shapes: ``(B, 1, H, W)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..models.grid import BevGrid
from ..models.heads.center_head import encode_boxes, feature_cell
from ..models.heads.gaussian import draw_gaussians, heatmap_radius
from ..structures.boxes import Boxes3D


def _cells(grid: BevGrid, shape: tuple[int, int], device: torch.device) -> torch.Tensor:
    """(H, W, 2) x, y centres of the cells of a map of ``shape`` covering ``grid``."""
    x0, y0, cx, cy = feature_cell(grid, shape)
    h, w = shape
    ys = y0 + (torch.arange(h, device=device) + 0.5) * cy
    xs = x0 + (torch.arange(w, device=device) + 0.5) * cx
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], -1)


def gaussian_mask(boxes: Sequence[Boxes3D], grid: BevGrid, shape: tuple[int, int],
                  min_radius: int = 1, overlap: float = 0.1) -> torch.Tensor:
    """CenterPoint Gaussian GT heatmap, max over classes: (B, 1, H, W) in [0, 1].

    One channel per sample (class does not matter for feature imitation): BEVDistill's and
    LabelDistill's foreground mask. Correct at any batch size (BEVDistill's published mask only
    broadcast at batch 1).
    """
    bsz, (h, w) = len(boxes), shape
    device = boxes[0].tensor.device if bsz and boxes[0].is_torch else torch.device("cpu")
    heat = torch.zeros(bsz, h, w, device=device)
    _, _, cx, cy = feature_cell(grid, shape)
    for b, bx in enumerate(boxes):
        t = bx.torch(device).tensor.float()
        if len(t) == 0:
            continue
        ixy, _ = encode_boxes(t, grid, shape)
        on = (ixy[:, 0] >= 0) & (ixy[:, 0] < w) & (ixy[:, 1] >= 0) & (ixy[:, 1] < h)
        r = heatmap_radius(t[on, 3] / cx, t[on, 4] / cy, overlap, min_radius)
        draw_gaussians(heat[b:b + 1], torch.zeros(int(on.sum()), dtype=torch.long, device=device),
                       ixy[on], r)
    return heat.unsqueeze(1)


def _inside(boxes: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """(K, H, W) bool: cell centres (H, W, 2) inside the BEV footprints of boxes (K, 9)."""
    d = cells[None] - boxes[:, None, None, :2]
    c, s = torch.cos(boxes[:, 6]), torch.sin(boxes[:, 6])
    lx = d[..., 0] * c[:, None, None] + d[..., 1] * s[:, None, None]
    ly = -d[..., 0] * s[:, None, None] + d[..., 1] * c[:, None, None]
    return (lx.abs() <= boxes[:, 3, None, None] / 2) & (ly.abs() <= boxes[:, 4, None, None] / 2)


def box_mask(boxes: Sequence[Boxes3D], grid: BevGrid, shape: tuple[int, int]) -> torch.Tensor:
    """(B, 1, H, W) 1 where a cell centre lies inside a GT box footprint."""
    return box_weights(boxes, grid, shape, scale=False)[0]


def box_weights(boxes: Sequence[Boxes3D], grid: BevGrid, shape: tuple[int, int],
                scale: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Foreground mask and DualDistill's adaptive region weights.

    Returns ``(fg (B, 1, H, W) float 0/1, weight (B, 1, H, W))`` where ``weight`` is
    ``sqrt(cell_area / (w·l))`` on cells inside a box (max over overlapping boxes; small
    objects weigh more per cell, so every object counts about equally) and ``1 / N_bg`` on the
    background cells of the sample.
    """
    bsz = len(boxes)
    device = boxes[0].tensor.device if bsz and boxes[0].is_torch else torch.device("cpu")
    cells = _cells(grid, shape, device)
    _, _, cx, cy = feature_cell(grid, shape)
    fg = torch.zeros(bsz, 1, *shape, device=device)
    weight = torch.zeros(bsz, 1, *shape, device=device)
    for b, bx in enumerate(boxes):
        t = bx.torch(device).tensor.float()
        if len(t):
            inside = _inside(t, cells)  # (K, H, W)
            fg[b, 0] = inside.any(0).float()
            if scale:
                per_box = torch.sqrt(cx * cy / (t[:, 3] * t[:, 4]).clamp_min(1e-6))
                weight[b, 0] = (inside * per_box[:, None, None]).amax(0)
        n_bg = (fg[b] == 0).sum().clamp_min(1)
        weight[b] = torch.where(fg[b] > 0, weight[b], 1.0 / n_bg)
    return fg, weight


def false_positive_region(teacher_heatmap: torch.Tensor, gt_heatmap: torch.Tensor,
                          fg: torch.Tensor, threshold: float = 0.1) -> torch.Tensor:
    """(B, 1, H, W) cells where the teacher fires (prob > threshold) but no object is: GT
    heatmap < threshold and outside every box (DualDistill's false-positive region).

    ``teacher_heatmap``: (B, C, H, W) probabilities (max over classes is taken).
    """
    t = teacher_heatmap.amax(1, keepdim=True)
    return ((t > threshold) & (gt_heatmap < threshold) & (fg == 0)).float()


def teacher_heatmap(preds: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    """All classes' heatmap probabilities of a head's predictions: (B, 10, H, W) in task order."""
    return torch.cat([p["heatmap"].sigmoid() for p in preds], dim=1)

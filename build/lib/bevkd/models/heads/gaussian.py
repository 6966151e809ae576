"""CenterPoint Gaussian heatmap targets: the radius rule and vectorised drawing.

Shared by :class:`~bevkd.models.heads.center_head.CenterHead` and by distillation masks that
need the same GT heatmap at other grid sizes (DESIGN §4).
"""

from __future__ import annotations

import torch

__all__ = ["gaussian_radius", "heatmap_radius", "draw_gaussians"]


def gaussian_radius(det_size: tuple[torch.Tensor, torch.Tensor] | tuple[float, float],
                    min_overlap: float = 0.5) -> torch.Tensor:
    """CenterNet/CenterPoint's Gaussian radius (in cells) of boxes ``det_size = (h, w)``.

    ``h``, ``w`` are the footprint extents in feature-map cells, scalars or tensors ``(N,)``.
    The smallest of the three corner-shift radii at which a shifted box still has IoU
    ``min_overlap`` with the original. The formulas are kept *exactly* as CenterPoint/mmdet3d
    write them (including the first case's missing ``/ (2 a)``, which CenterNet shipped with),
    so heatmaps match the published models. Symmetric in ``h`` and ``w``.

    Returns: radius ``(N,)`` (or 0-d) float, same dtype as the input.
    """
    height, width = (torch.as_tensor(v, dtype=torch.float64) if not torch.is_tensor(v) else v
                     for v in det_size)
    a1 = 1.0
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2

    a2 = 4.0
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + torch.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2

    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + torch.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def heatmap_radius(l_cells: torch.Tensor, w_cells: torch.Tensor, min_overlap: float = 0.1,
                   min_radius: int = 2) -> torch.Tensor:
    """Integer drawing radius per box as CenterPoint: ``max(min_radius, int(radius))``.

    ``l_cells``, ``w_cells``: ``(N,)`` footprint extents in feature cells. Returns ``(N,)`` long.
    """
    r = gaussian_radius((l_cells, w_cells), min_overlap)
    # int() truncates toward zero; radii are non-negative so floor is the same
    return r.floor().long().clamp_min(min_radius)


def draw_gaussians(heatmap: torch.Tensor, channel: torch.Tensor, centre: torch.Tensor,
                   radius: torch.Tensor) -> torch.Tensor:
    """Draw CenterPoint Gaussians into ``heatmap`` in place, keeping the max where they overlap.

    Args:
        heatmap: ``(C, H, W)`` float (e.g. batch and classes flattened into C).
        channel: ``(N,)`` long channel of each Gaussian.
        centre: ``(N, 2)`` long integer ``(ix, iy)`` centre cells (must lie on the map).
        radius: ``(N,)`` long radii in cells.

    Each Gaussian is ``exp(-(dx² + dy²) / (2 σ²))`` on the ``(2r+1)²`` window around its
    centre, ``σ = (2r+1)/6``, value 1 at the centre, clipped at the map border, as mmdet3d's
    ``draw_heatmap_gaussian``. All boxes are drawn at once: windows are padded to the largest
    radius and the padding is masked out, then one ``scatter_reduce(amax)``.

    Returns: ``heatmap`` (the same tensor).
    """
    n = int(channel.numel())
    if n == 0:
        return heatmap
    _, h, w = heatmap.shape
    rmax = int(radius.max())
    offs = torch.arange(-rmax, rmax + 1, device=heatmap.device)
    dy, dx = torch.meshgrid(offs, offs, indexing="ij")  # (K, K)
    r = radius.view(n, 1, 1)
    sigma = (2 * r + 1).to(heatmap.dtype) / 6
    val = torch.exp(-(dx ** 2 + dy ** 2).to(heatmap.dtype) / (2 * sigma ** 2))  # (N, K, K)
    # mmdet3d zeroes values below eps·max (max is 1); in float32 this never triggers inside the
    # window (the corner value is >= exp(-9)), but keep the rule for exactness.
    val = torch.where(val < torch.finfo(torch.float64).eps, torch.zeros_like(val), val)
    gx = centre[:, 0].view(n, 1, 1) + dx
    gy = centre[:, 1].view(n, 1, 1) + dy
    ok = (dx.abs() <= r) & (dy.abs() <= r) & (gx >= 0) & (gx < w) & (gy >= 0) & (gy < h)
    flat = (channel.view(n, 1, 1) * h + gy) * w + gx
    heatmap.view(-1).scatter_reduce_(0, flat[ok], val[ok], reduce="amax", include_self=True)
    return heatmap

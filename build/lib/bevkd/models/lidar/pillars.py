"""PointPillars encoder in pure PyTorch: points -> pillar features -> BEV pseudo-image.

Pillars are the BEV grid's own cells, so the teacher's ``bev_in`` lies on exactly the grid of
the student's LSS output. Scatter and max-pooling use ``scatter_reduce`` (no torch-scatter, no
spconv, no CUDA extension).
"""

from __future__ import annotations

import torch
from torch import nn

from ..grid import BevGrid

# input point channels: x, y, z, intensity, ring, time lag (bevkd.structures.batch.LidarInputs)
POINT_FEATURES = 10  # x, y, z, intensity/255, lag, dx/dy/dz to the pillar mean, dx/dy to centre


class PillarEncoder(nn.Module):
    """(M, 6) points with batch indices -> (B, C, Y, X) pillar pseudo-image.

    Per point: raw xyz, intensity, time lag, offset to the mean of its pillar and to the
    pillar centre (PointPillars' decoration), then Linear-BN-ReLU, max over the pillar.
    """

    def __init__(self, grid: BevGrid, out_channels: int = 64):
        super().__init__()
        self.grid = grid
        self.linear = nn.Linear(POINT_FEATURES, out_channels, bias=False)
        self.norm = nn.BatchNorm1d(out_channels)
        self.out_channels = out_channels

    def forward(self, points: torch.Tensor, batch_index: torch.Tensor,
                batch_size: int) -> torch.Tensor:
        g = self.grid
        Y, X = g.shape
        ij = g.cell_index(points[:, :2])
        z = points[:, 2]
        keep = ((ij[:, 0] >= 0) & (ij[:, 0] < X) & (ij[:, 1] >= 0) & (ij[:, 1] < Y)
                & (z >= g.z_range[0]) & (z < g.z_range[1]))
        pts, ij, b = points[keep], ij[keep], batch_index[keep]
        if len(pts) < 2:  # BatchNorm needs two values; an empty sweep is an empty image
            return points.new_zeros(batch_size, self.out_channels, Y, X)
        cell = (b * Y + ij[:, 1]) * X + ij[:, 0]  # flat (batch, y, x) index
        n_cells = batch_size * Y * X
        ones = torch.ones_like(cell, dtype=pts.dtype)
        count = torch.zeros(n_cells, dtype=pts.dtype, device=pts.device).index_add_(0, cell, ones)
        mean = torch.zeros(n_cells, 3, dtype=pts.dtype, device=pts.device).index_add_(
            0, cell, pts[:, :3]) / count.clamp_min(1).unsqueeze(1)
        centre = (ij.to(pts.dtype) + 0.5) * g.cell + torch.tensor(
            [g.x_range[0], g.y_range[0]], dtype=pts.dtype, device=pts.device)
        feats = torch.cat([pts[:, :3], pts[:, 3:4] / 255.0, pts[:, 5:6],
                           pts[:, :3] - mean[cell], pts[:, :2] - centre], dim=1)
        x = torch.relu(self.norm(self.linear(feats)))
        out = torch.zeros(n_cells, x.shape[1], dtype=x.dtype, device=x.device)
        # ReLU outputs are >= 0, so max-pooling into zeros equals max over the pillar's points
        out = out.scatter_reduce(0, cell.unsqueeze(1).expand_as(x), x, reduce="amax",
                                 include_self=True)
        return out.view(batch_size, Y, X, -1).permute(0, 3, 1, 2).contiguous()

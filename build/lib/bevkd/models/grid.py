"""The BEV grid shared by students and teachers, so that their features and heads align."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BevGrid:
    """An axis-aligned grid in the (augmented) key ego frame; tensors on it are [B, C, Y, X].

    Cell ``(iy, ix)`` has centre ``x = x_min + (ix + 0.5) * cell``, ``y = y_min + (iy + 0.5) *
    cell`` (DESIGN §2). Defaults are BEVDepth's: +-51.2 m at 0.8 m, z in [-5, 3].
    """

    x_range: tuple[float, float] = (-51.2, 51.2)
    y_range: tuple[float, float] = (-51.2, 51.2)
    z_range: tuple[float, float] = (-5.0, 3.0)
    cell: float = 0.8

    @property
    def size_x(self) -> int:
        return round((self.x_range[1] - self.x_range[0]) / self.cell)

    @property
    def size_y(self) -> int:
        return round((self.y_range[1] - self.y_range[0]) / self.cell)

    @property
    def shape(self) -> tuple[int, int]:
        """(Y, X)."""
        return self.size_y, self.size_x

    def cell_index(self, xy: torch.Tensor, stride: int = 1) -> torch.Tensor:
        """Integer ``(ix, iy)`` (..., 2) of points (..., 2) on the grid downsampled by ``stride``
        (may be out of range: callers mask)."""
        lo = torch.tensor([self.x_range[0], self.y_range[0]], dtype=xy.dtype, device=xy.device)
        return torch.floor((xy - lo) / (self.cell * stride)).long()

    def cell_centres(self, stride: int = 1, device: torch.device | str = "cpu") -> torch.Tensor:
        """(Y', X', 2) x, y centres of the cells of the grid downsampled by ``stride``."""
        c = self.cell * stride
        xs = self.x_range[0] + (torch.arange(self.size_x // stride, device=device) + 0.5) * c
        ys = self.y_range[0] + (torch.arange(self.size_y // stride, device=device) + 0.5) * c
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack([gx, gy], -1)

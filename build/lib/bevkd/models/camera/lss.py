"""Lift-Splat view transform: frustum points of every feature cell and depth bin, in the ego frame.

Depth bins follow BEVDepth's ``d_bound = (min, max, step)``: ``D = (max - min) / step`` bins,
bin ``k`` covering camera depths ``[min + k·step, min + (k+1)·step)`` (the range that BEVDepth's
one-hot depth target assigns to it, see :func:`depth_bin_index`). The lifted point of a bin sits
at the bin's *centre* (BEVDepth lifts to the lower edge, which pulls every feature a half bin
towards the camera). Depth is the camera-frame z, which image augmentation does not change.

Pixel coordinates are continuous (pixel ``(i, j)`` covers ``[i, i+1) x [j, j+1)``), so the
centre of feature cell ``(r, c)`` at stride ``s`` is the augmented pixel ``((c+0.5)s, (r+0.5)s)``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..grid import BevGrid
from ..ops.bev_pool import BevPoolPlan, bev_pool, bev_pool_plan


def num_depth_bins(depth_bins: tuple[float, float, float]) -> int:
    """D of ``depth_bins = (min, max, step)``."""
    lo, hi, step = depth_bins
    n = round((hi - lo) / step)
    if n <= 0 or abs(lo + n * step - hi) > 1e-6 * max(1.0, abs(hi)):
        raise ValueError(f"depth_bins {depth_bins} must split [min, max) into whole steps")
    return n


def depth_bin_centres(depth_bins: tuple[float, float, float],
                      device: torch.device | str = "cpu",
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(D,) camera depth at the centre of each bin."""
    lo, _, step = depth_bins
    n = num_depth_bins(depth_bins)
    return lo + (torch.arange(n, device=device, dtype=dtype) + 0.5) * step


def depth_bin_index(depth: torch.Tensor, depth_bins: tuple[float, float, float]) -> torch.Tensor:
    """Bin of each camera depth (same shape, int64); -1 outside ``[min, max)`` (or depth 0)."""
    lo, _, step = depth_bins
    n = num_depth_bins(depth_bins)
    idx = torch.floor((depth - lo) / step).long()
    return torch.where((idx >= 0) & (idx < n), idx, torch.full_like(idx, -1))


def frustum(image_size: tuple[int, int], stride: int, depth_bins: tuple[float, float, float],
            device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(D, h, w, 3) ``(u, v, d)``: augmented pixel of each feature-cell centre and bin depth.

    Args:
        image_size: (H, W) of the augmented image; ``h, w = H // stride, W // stride``.
        stride: image pixels per feature cell.
        depth_bins: ``(min, max, step)`` in metres.
    """
    H, W = image_size
    h, w = H // stride, W // stride
    u = (torch.arange(w, device=device, dtype=dtype) + 0.5) * stride
    v = (torch.arange(h, device=device, dtype=dtype) + 0.5) * stride
    d = depth_bin_centres(depth_bins, device, dtype)
    D = d.numel()
    return torch.stack([u.view(1, 1, w).expand(D, h, w), v.view(1, h, 1).expand(D, h, w),
                        d.view(D, 1, 1).expand(D, h, w)], dim=-1)


def frustum_to_ego(frustum_uvd: torch.Tensor, ego_T_cam: torch.Tensor, pix_T_cam: torch.Tensor,
                   aug_T_pix: torch.Tensor, bda: torch.Tensor) -> torch.Tensor:
    """Frustum points in the augmented ego frame.

    Each ``(u, v, d)`` is taken back to original pixels (``aug_T_pix⁻¹``), unprojected to the
    camera point at depth ``d`` along the camera z (``pix_T_cam⁻¹``), moved to the key ego frame
    (``ego_T_cam``) and then to the augmented ego frame (``bda``).

    Args:
        frustum_uvd: (D, h, w, 3) from :func:`frustum`.
        ego_T_cam: (B, N, 4, 4) camera -> key ego.
        pix_T_cam: (B, N, 3, 3) original intrinsics.
        aug_T_pix: (B, N, 3, 3) original -> augmented pixels.
        bda: (B, 4, 4) key ego -> augmented ego.

    Returns:
        (B, N, D, h, w, 3) x, y, z.
    """
    B, N = ego_T_cam.shape[:2]
    dtype = ego_T_cam.dtype
    uvd = frustum_uvd.to(device=ego_T_cam.device, dtype=dtype)
    uv1 = torch.cat([uvd[..., :2], torch.ones_like(uvd[..., :1])], dim=-1)
    # (B, N, 1, 1, 3, 3) so the matrices broadcast over (D, h, w)
    pix_T_aug = torch.linalg.inv(aug_T_pix.to(dtype)).view(B, N, 1, 1, 1, 3, 3)
    pix = (pix_T_aug @ uv1.unsqueeze(-1)).squeeze(-1)
    # the image augmentation is affine in practice; dividing keeps a projective one exact too
    pix = pix / pix[..., 2:3]
    cam_T_pix = torch.linalg.inv(pix_T_cam.to(dtype))
    bda_rot, bda_t = bda.to(dtype)[:, :3, :3].unsqueeze(1), bda.to(dtype)[:, :3, 3].unsqueeze(1)
    # one 3x3 map and one offset per camera: augego_T_cam · cam_T_pix, applied to d·(x, y, 1)
    lin = bda_rot @ ego_T_cam[..., :3, :3] @ cam_T_pix                       # (B, N, 3, 3)
    off = (bda_rot @ ego_T_cam[..., :3, 3:4]).squeeze(-1) + bda_t            # (B, N, 3)
    scaled = pix * uvd[..., 2:3]
    pts = (lin.view(B, N, 1, 1, 1, 3, 3) @ scaled.unsqueeze(-1)).squeeze(-1)
    return pts + off.view(B, N, 1, 1, 1, 3)


class LSSViewTransformer(nn.Module):
    """Lift image features with a categorical depth distribution and splat them onto the BEV grid.

    Args:
        grid: the BEV grid of the output.
        image_size: (H, W) of the augmented images.
        stride: image pixels per feature cell.
        depth_bins: ``(min, max, step)``; e.g. BEVDepth's (2.0, 58.0, 0.5) -> 112 bins.
        pooling: ``"sum"`` (Lift-Splat, BEVDepth): each cell sums ``depth · context`` of the
            frustum points in it; C output channels. ``"normalized"``: the depth-weighted mean
            context of the cell, ``Σ p·ctx / (Σ p + ε)``, plus ``log(Σ p + ε)`` as one more
            channel (C + 1). Summed features fall by orders of magnitude with range (fewer
            frustum points per cell, and early in training little depth mass far away: on the
            tiny preset the median |feature| is 0.9 at 5-10 m and 6e-4 at 30-40 m), so after
            the trunk's BatchNorm the far half of the grid is blank; the mean keeps every cell
            on one scale and the log-mass channel keeps where the depth puts its weight.
    """

    POOLINGS = ("sum", "normalized")
    EPS = 1e-3  # depth mass (in frustum points) below which a cell counts as empty

    def __init__(self, *, grid: BevGrid, image_size: tuple[int, int], stride: int,
                 depth_bins: tuple[float, float, float], pooling: str = "sum") -> None:
        super().__init__()
        if pooling not in self.POOLINGS:
            raise ValueError(f"pooling must be one of {self.POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.grid = grid
        self.image_size = tuple(image_size)
        self.stride = stride
        self.depth_bins = tuple(depth_bins)
        # derived from the config, so not worth a checkpoint entry
        self.register_buffer("frustum", frustum(self.image_size, stride, self.depth_bins),
                             persistent=False)

    def out_channels(self, context_channels: int) -> int:
        """Channels of the BEV output for ``context_channels`` context channels."""
        return context_channels + (self.pooling == "normalized")

    @property
    def depth_channels(self) -> int:
        """D."""
        return self.frustum.shape[0]

    @property
    def feature_size(self) -> tuple[int, int]:
        """(h, w) of the image feature map."""
        return self.frustum.shape[1], self.frustum.shape[2]

    def geometry(self, ego_T_cam: torch.Tensor, pix_T_cam: torch.Tensor, aug_T_pix: torch.Tensor,
                 bda: torch.Tensor) -> torch.Tensor:
        """(B, N, D, h, w, 3) frustum points in the augmented ego frame (see frustum_to_ego)."""
        return frustum_to_ego(self.frustum, ego_T_cam, pix_T_cam, aug_T_pix, bda)

    def plan(self, ego_T_cam: torch.Tensor, pix_T_cam: torch.Tensor, aug_T_pix: torch.Tensor,
             bda: torch.Tensor) -> BevPoolPlan:
        """Pooling pattern for this batch's cameras; reuse it for several lifts of one batch."""
        return bev_pool_plan(self.geometry(ego_T_cam, pix_T_cam, aug_T_pix, bda), self.grid)

    def forward(self, depth_logits: torch.Tensor, context: torch.Tensor, ego_T_cam: torch.Tensor,
                pix_T_cam: torch.Tensor, aug_T_pix: torch.Tensor, bda: torch.Tensor,
                plan: BevPoolPlan | None = None) -> torch.Tensor:
        """BEV features of one frame.

        Args:
            depth_logits: (B·N, D, h, w) unnormalised; softmax over D is taken here.
            context: (B·N, C, h, w).
            ego_T_cam: (B, N, 4, 4).  pix_T_cam, aug_T_pix: (B, N, 3, 3).  bda: (B, 4, 4).
            plan: optional pattern from :meth:`plan` for these cameras.

        Returns:
            (B, C, Y, X) on ``self.grid`` (C + 1 channels with ``pooling="normalized"``).
        """
        B, N = ego_T_cam.shape[:2]
        D, (h, w) = self.depth_channels, self.feature_size
        if tuple(depth_logits.shape) != (B * N, D, h, w):
            raise ValueError(f"depth_logits must be (B·N, D, h, w) = ({B * N}, {D}, {h}, {w}), "
                             f"got {tuple(depth_logits.shape)}")
        if context.dim() != 4 or context.shape[0] != B * N or tuple(context.shape[2:]) != (h, w):
            raise ValueError(f"context must be (B·N, C, h, w) = ({B * N}, C, {h}, {w}), "
                             f"got {tuple(context.shape)}")
        if plan is None:
            plan = self.plan(ego_T_cam, pix_T_cam, aug_T_pix, bda)
        # softmax in fp32 under AMP: 112 bins of small probabilities lose too much in fp16
        dtype = torch.promote_types(depth_logits.dtype, torch.float32)
        depth = depth_logits.to(dtype).softmax(dim=1).view(B, N, D, h, w)
        if self.pooling == "sum":
            return bev_pool(depth, context.view(B, N, -1, h, w), None, self.grid, plan=plan)
        # one pooling of [context, 1]: the last channel is the cell's depth mass Σ p
        ones = context.new_ones(B * N, 1, h, w)
        pooled = bev_pool(depth, torch.cat([context, ones], 1).view(B, N, -1, h, w), None,
                          self.grid, plan=plan)
        feats, mass = pooled[:, :-1], pooled[:, -1:]
        return torch.cat([feats / (mass + self.EPS), torch.log(mass + self.EPS)], 1)

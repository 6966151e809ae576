"""BEVDepth's camera-aware DepthNet: depth distribution and context from image features.

The depth of a pixel depends on the camera that saw it (focal length, mounting height, image and
BEV augmentation), so BEVDepth feeds 27 camera parameters through an MLP whose output gates the
channels of the image feature (squeeze-excitation style), once for the depth branch and once for
the context branch.

The 27 parameters (:func:`camera_params`, BEVDepth's ``mlp_input`` order, with our 3x3 image
augmentation matrix where BEVDepth has a 4x4 one):

====== ============================================================================
0-3    intrinsics ``fx, fy, cx, cy`` (``pix_T_cam`` [0,0], [1,1], [0,2], [1,2])
4-9    image augmentation ``aug_T_pix`` [0,0], [0,1], [0,2], [1,0], [1,1], [1,2]
       (2x2 resize/rotation/flip part and the 2 translations, row by row)
10-14  BEV augmentation ``bda`` [0,0], [0,1], [1,0], [1,1], [2,2]
       (rotation·scale·flip in the ground plane and the z scale)
15-26  extrinsics ``ego_T_cam`` [:3, :4] row-major (rotation and translation)
====== ============================================================================

Depth head: BEVDepth stacks 3 BasicBlocks, an ASPP block and a deformable conv before the final
1x1 conv. Ours: ``num_blocks`` BasicBlocks (default 2), an ASPP block (1x1 and dilated 3x3
branches plus an image-pooling branch; no BatchNorm on the pooled branch, so a single camera in
training mode still works), no deformable conv (no custom ops), then a 1x1 conv to D logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NUM_CAMERA_PARAMS = 27


def camera_params(ego_T_cam: torch.Tensor, pix_T_cam: torch.Tensor, aug_T_pix: torch.Tensor,
                  bda: torch.Tensor) -> torch.Tensor:
    """The 27 per-camera parameters of the module docstring.

    Args:
        ego_T_cam: (B, ..., 4, 4), e.g. (B, N, 4, 4) or (B, T, N, 4, 4).
        pix_T_cam: (B, ..., 3, 3).  aug_T_pix: (B, ..., 3, 3).
        bda: (B, 4, 4), shared by all cameras of a sample.

    Returns:
        (B, ..., 27) in the dtype of ``ego_T_cam``.
    """
    lead = ego_T_cam.shape[:-2]
    dtype = ego_T_cam.dtype
    K, A = pix_T_cam.to(dtype), aug_T_pix.to(dtype)
    bda = bda.to(dtype).view(bda.shape[0], *([1] * (len(lead) - 1)), 4, 4).expand(*lead, 4, 4)
    return torch.cat([
        torch.stack([K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2]], dim=-1),
        A[..., :2, :].reshape(*lead, 6),
        torch.stack([bda[..., 0, 0], bda[..., 0, 1], bda[..., 1, 0], bda[..., 1, 1],
                     bda[..., 2, 2]], dim=-1),
        ego_T_cam[..., :3, :].reshape(*lead, 12),
    ], dim=-1)


def _conv_bn_relu(cin: int, cout: int, kernel: int = 3, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _BasicBlock(nn.Module):
    """ResNet BasicBlock with identity shortcut (channels and stride unchanged)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(y)) + x, inplace=True)


class _ASPP(nn.Module):
    """Atrous spatial pyramid pooling: parallel dilated convs + image pooling, fused by 1x1."""

    def __init__(self, channels: int, dilations: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            _conv_bn_relu(channels, channels, 1 if d == 1 else 3, d) for d in dilations)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, channels, 1),
                                  nn.ReLU(inplace=True))
        self.fuse = nn.Sequential(
            _conv_bn_relu(channels * (len(dilations) + 1), channels, 1), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [b(x) for b in self.branches]
        outs.append(self.pool(x).expand_as(x))
        return self.fuse(torch.cat(outs, dim=1))


class _ParamGate(nn.Module):
    """Camera-parameter channel gate: MLP(27 → C → C), then SE ``sigmoid(W2·ReLU(W1·m))``.

    This is BEVDepth's ``Mlp`` + ``SELayer`` pair; the SE convs act on a 1x1 map, so they are
    linear layers here.
    """

    def __init__(self, num_params: int, channels: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(num_params, channels), nn.ReLU(inplace=True),
                                 nn.Linear(channels, channels))
        self.se_reduce = nn.Linear(channels, channels)
        self.se_expand = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """x: (M, C, h, w); params: (M, 27) normalised. Returns x gated per channel."""
        g = self.se_expand(F.relu(self.se_reduce(self.mlp(params))))
        return x * torch.sigmoid(g)[:, :, None, None]


class DepthNet(nn.Module):
    """Camera-aware depth and context heads (BEVDepth).

    Args:
        in_channels: C_in of the image features.
        mid_channels: width of the shared reduce conv and both branches.
        context_channels: C_ctx of the context output.
        depth_channels: D depth bins.
        num_blocks: BasicBlocks in the depth branch (BEVDepth: 3).
        aspp_dilations: dilations of the ASPP branches (1 = a 1x1 conv).
        aspp_dropout: dropout after the ASPP fusion (BEVDepth: 0.5).
    """

    def __init__(self, *, in_channels: int, mid_channels: int, context_channels: int,
                 depth_channels: int, num_blocks: int = 2,
                 aspp_dilations: tuple[int, ...] = (1, 6, 12, 18),
                 aspp_dropout: float = 0.5) -> None:
        super().__init__()
        self.depth_channels = depth_channels
        self.context_channels = context_channels
        self.reduce_conv = _conv_bn_relu(in_channels, mid_channels, 3)
        # raw parameters span pixels (~1e3), metres and unit rotations: normalise them first
        self.param_bn = nn.BatchNorm1d(NUM_CAMERA_PARAMS)
        self.context_gate = _ParamGate(NUM_CAMERA_PARAMS, mid_channels)
        self.depth_gate = _ParamGate(NUM_CAMERA_PARAMS, mid_channels)
        self.context_conv = nn.Conv2d(mid_channels, context_channels, 1)
        self.depth_conv = nn.Sequential(
            *[_BasicBlock(mid_channels) for _ in range(num_blocks)],
            _ASPP(mid_channels, tuple(aspp_dilations), aspp_dropout),
            nn.Conv2d(mid_channels, depth_channels, 1))

    def forward(self, feats: torch.Tensor,
                cam_params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Depth logits and context.

        Args:
            feats: (B·N, C_in, h, w) image features.
            cam_params: (B·N, 27) or (B, N, 27) from :func:`camera_params`, same camera order.

        Returns:
            depth_logits: (B·N, D, h, w) (softmax over D gives the depth distribution).
            context: (B·N, C_ctx, h, w).
        """
        params = cam_params.reshape(-1, NUM_CAMERA_PARAMS)
        if params.shape[0] != feats.shape[0]:
            raise ValueError(f"{params.shape[0]} camera parameter rows for {feats.shape[0]} "
                             "feature maps")
        params = self.param_bn(params.to(feats.dtype))
        x = self.reduce_conv(feats)
        context = self.context_conv(self.context_gate(x, params))
        depth = self.depth_conv(self.depth_gate(x, params))
        return depth, context

"""The camera-to-BEV encoder shared by the BEVDepth student and the fusion teacher:
ResNet -> SECONDFPN (one stride) -> camera-aware DepthNet -> LSS lift + BEV pooling."""

from __future__ import annotations

import torch
from torch import nn

from ...errors import BevkdError
from ...structures.batch import CameraInputs
from ..backbones.resnet import ResNet
from ..grid import BevGrid
from ..necks.second_fpn import SecondFPN
from .depthnet import DepthNet, camera_params
from .lss import LSSViewTransformer


class CameraBevEncoder(nn.Module):
    """Multi-view (multi-frame) images -> BEV features on ``grid``.

    ``forward`` returns ``bev`` (B, T·C_bev, Y, X) (``C_bev`` = C_ctx + 1 with
    ``pooling="normalized"``) (frames concatenated along channels) and the
    key frame's ``img_feats`` (B, N, C, h, w), ``depth_logits`` (B, N, D, h, w) and ``context``
    (B, N, C_ctx, h, w).
    """

    def __init__(self, grid: BevGrid, image_size: tuple[int, int], backbone_depth: int = 50,
                 backbone_weights: str | None = None, frozen_stages: int = -1,
                 norm_eval: bool = False, image_stride: int = 16, image_neck_channels: int = 128,
                 depth_bins: tuple[float, float, float] = (2.0, 58.0, 0.5),
                 depth_mid_channels: int = 256, context_channels: int = 80, frames: int = 1,
                 pooling: str = "sum"):
        super().__init__()
        if image_size is None:
            raise BevkdError("a camera model needs the augmented image size "
                             "(data.image.final_size)")
        if image_stride not in (8, 16, 32):
            raise BevkdError(f"image_stride must be 8, 16 or 32, got {image_stride}")
        self.frames = frames
        self.backbone = ResNet(backbone_depth, (1, 2, 3, 4), frozen_stages, norm_eval,
                               backbone_weights)
        self.image_neck = SecondFPN(self.backbone.out_channels, (4, 8, 16, 32), image_stride,
                                    image_neck_channels)
        self.view = LSSViewTransformer(grid=grid, image_size=tuple(image_size),
                                       stride=image_stride, depth_bins=tuple(depth_bins),
                                       pooling=pooling)
        self.depth_net = DepthNet(in_channels=self.image_neck.out_channels,
                                  mid_channels=depth_mid_channels,
                                  context_channels=context_channels,
                                  depth_channels=self.view.depth_channels)
        self.out_channels = self.view.out_channels(context_channels) * frames

    def forward(self, cams: CameraInputs | None) -> dict[str, torch.Tensor]:
        if cams is None:
            raise BevkdError("this model needs camera input (data.use_camera: true)")
        B, T, N = cams.images.shape[:3]
        if T != self.frames:
            raise BevkdError(f"the model was built for {self.frames} frame(s) but the batch has "
                             f"{T} (data.prev_frames must be frames - 1)")
        h, w = self.view.feature_size
        feats = self.image_neck(self.backbone(cams.images.flatten(0, 2)))[..., :h, :w]
        if feats.shape[-2:] != (h, w):
            raise BevkdError(f"image features are {tuple(feats.shape[-2:])}, the frustum expects "
                             f"{(h, w)}: data.image.final_size must be a multiple of the stride")
        params = camera_params(cams.ego_T_cam, cams.pix_T_cam, cams.aug_T_pix, cams.bda)
        depth_logits, context = self.depth_net(feats, params.flatten(0, 2))
        depth_logits = depth_logits.view(B, T, N, *depth_logits.shape[1:])
        context = context.view(B, T, N, *context.shape[1:])
        bevs = [self.view(depth_logits[:, t].flatten(0, 1), context[:, t].flatten(0, 1),
                          cams.ego_T_cam[:, t], cams.pix_T_cam[:, t], cams.aug_T_pix[:, t],
                          cams.bda) for t in range(T)]
        return {"bev": torch.cat(bevs, dim=1),
                "img_feats": feats.view(B, T, N, *feats.shape[1:])[:, 0],
                "depth_logits": depth_logits[:, 0], "context": context[:, 0]}

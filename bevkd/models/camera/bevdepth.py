"""BEVDepth camera student: ResNet -> SECONDFPN (stride 16) -> camera-aware DepthNet -> LSS
lift + BEV pooling -> BEV trunk + neck -> CenterHead, with LiDAR depth supervision.

Multi-frame: previous key frames come from the loader with cameras already expressed in the
key frame's ego frame, so their lifted BEV features land aligned by construction; the frames'
BEV maps are concatenated along channels (BEVDepth) before the trunk.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import BevkdError
from ...structures.batch import Batch
from ..backbones.bev_trunk import BevTrunk
from ..detector import Detector
from ..grid import BevGrid
from ..heads.center_head import CenterHead
from ..outputs import DetOutputs
from .encoder import CameraBevEncoder
from .lss import depth_bin_index


class BEVDepth(Detector):
    """Camera-only 3D detector. Publishes ``img_feats`` (B, N, C, h, w), ``depth_logits``
    (B, N, D, h, w), ``context`` (B, N, C_ctx, h, w) of the key frame, and the BEV keys
    ``bev_in`` (B, T·C_bev, Y, X) (``C_bev`` = C_ctx, or C_ctx + 1 with ``pooling="normalized"``:
    see :class:`LSSViewTransformer`), ``bev_s1``, ``bev_s2``, ``bev_neck``."""

    feature_keys = ("bev_in", "bev_s1", "bev_s2", "bev_neck", "img_feats", "depth_logits",
                    "context")

    def __init__(self, grid: BevGrid, image_size: tuple[int, int], backbone_depth: int = 50,
                 backbone_weights: str | None = None, frozen_stages: int = -1,
                 norm_eval: bool = False, image_stride: int = 16, image_neck_channels: int = 128,
                 depth_bins: tuple[float, float, float] = (2.0, 58.0, 0.5),
                 depth_mid_channels: int = 256, context_channels: int = 80,
                 depth_loss_weight: float = 3.0, frames: int = 1,
                 trunk_channels: tuple[int, int] = (160, 320), trunk_blocks: tuple[int, int] = (2, 2),
                 bev_neck_channels: int = 128, head_channels: int = 64, pooling: str = "sum"):
        super().__init__()
        self.grid = grid
        self.depth_loss_weight = depth_loss_weight
        self.encoder = CameraBevEncoder(grid, image_size, backbone_depth, backbone_weights,
                                        frozen_stages, norm_eval, image_stride,
                                        image_neck_channels, depth_bins, depth_mid_channels,
                                        context_channels, frames, pooling)
        self.trunk = BevTrunk(self.encoder.out_channels, trunk_channels, trunk_blocks,
                              bev_neck_channels)
        self.trunk_in_channels = self.encoder.out_channels
        self.head = CenterHead(in_channels=self.trunk.out_channels, grid=grid,
                               shared_channels=head_channels, head_channels=head_channels)

    @property
    def feature_channels(self) -> dict[str, int]:
        enc = self.encoder
        return {**super().feature_channels, "img_feats": enc.image_neck.out_channels,
                "depth_logits": enc.view.depth_channels,
                "context": enc.depth_net.context_channels}

    def forward(self, batch: Batch) -> DetOutputs:
        cam = self.encoder(batch.cams)
        bev_in = cam.pop("bev")
        feats = {"bev_in": bev_in, **self.trunk(bev_in), **cam}
        return DetOutputs(feats=feats, preds=self.head(feats["bev_neck"]))

    def loss(self, outputs: DetOutputs, batch: Batch) -> dict[str, torch.Tensor]:
        losses = super().loss(outputs, batch)
        if self.depth_loss_weight > 0:
            losses["depth"] = self.depth_loss_weight * self.depth_loss(
                outputs.feats["depth_logits"], batch.targets.depth)
        return losses

    def depth_loss(self, depth_logits: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        """BEVDepth's depth loss: BCE between the softmax depth distribution and the one-hot
        bin of the LiDAR depth, on feature cells with a target, averaged over those cells.

        depth_logits: (B, N, D, h, w); target: (B, N, h, w) metres, 0 = no target.
        """
        if target is None:
            raise BevkdError("depth supervision needs depth targets from the loader")
        if target.shape[-2:] != depth_logits.shape[-2:]:
            raise BevkdError(f"depth targets are {tuple(target.shape[-2:])} cells, depth "
                             f"logits {tuple(depth_logits.shape[-2:])}: data.depth_stride must "
                             "equal model.args.image_stride")
        D = depth_logits.shape[2]
        idx = depth_bin_index(target, self.encoder.view.depth_bins)
        valid = idx >= 0
        # in float32 outside mixed precision, as BEVDepth does: CUDA's autocast refuses
        # binary_cross_entropy on probabilities (a training at 16-mixed or bf16-mixed stopped
        # at its first step), and a softmax over ~100 depth bins wants the precision anyway
        with torch.autocast(depth_logits.device.type, enabled=False):
            prob = depth_logits.float().softmax(dim=2).permute(0, 1, 3, 4, 2)[valid]  # (K, D)
            if prob.numel() == 0:
                return depth_logits.sum() * 0.0  # keeps the graph; no LiDAR point in view
            onehot = F.one_hot(idx[valid], D).to(prob.dtype)
            bce = F.binary_cross_entropy(prob.clamp(1e-6, 1 - 1e-6), onehot, reduction="sum")
        return bce / max(1.0, float(valid.sum()))

"""LiDAR + camera fusion teacher (for ASD): a camera BEV branch and a pillar BEV branch,
concatenated and fused by convolutions, then the shared trunk, neck and CenterHead."""

from __future__ import annotations

import torch
from torch import nn

from ...structures.batch import Batch
from ..backbones.bev_trunk import BevTrunk
from ..camera.encoder import CameraBevEncoder
from ..detector import Detector
from ..grid import BevGrid
from ..heads.center_head import CenterHead
from ..lidar.pillars import PillarEncoder
from ..outputs import DetOutputs


class FusionTeacher(Detector):
    """Publishes ``bev_in`` (the fused BEV input to the trunk), ``bev_s1``, ``bev_s2``,
    ``bev_neck``, and the branch inputs ``bev_cam`` and ``bev_lidar``."""

    feature_keys = ("bev_in", "bev_s1", "bev_s2", "bev_neck", "bev_cam", "bev_lidar")

    def __init__(self, grid: BevGrid, image_size: tuple[int, int], backbone_depth: int = 50,
                 backbone_weights: str | None = None, image_stride: int = 16,
                 image_neck_channels: int = 128,
                 depth_bins: tuple[float, float, float] = (2.0, 58.0, 0.5),
                 depth_mid_channels: int = 256, context_channels: int = 80,
                 pillar_channels: int = 64, fused_channels: int = 128,
                 trunk_channels: tuple[int, int] = (128, 256), trunk_blocks: tuple[int, int] = (2, 2),
                 neck_channels: int = 128, head_channels: int = 64, pooling: str = "sum"):
        super().__init__()
        self.grid = grid
        self.camera = CameraBevEncoder(grid, image_size, backbone_depth, backbone_weights,
                                       image_stride=image_stride,
                                       image_neck_channels=image_neck_channels,
                                       depth_bins=depth_bins,
                                       depth_mid_channels=depth_mid_channels,
                                       context_channels=context_channels, pooling=pooling)
        self.pillars = PillarEncoder(grid, pillar_channels)
        self.fuser = nn.Sequential(
            nn.Conv2d(self.camera.out_channels + pillar_channels, fused_channels, 3, padding=1,
                      bias=False),
            nn.BatchNorm2d(fused_channels), nn.ReLU(inplace=True))
        self.trunk = BevTrunk(fused_channels, trunk_channels, trunk_blocks, neck_channels)
        self.trunk_in_channels = fused_channels
        self.head = CenterHead(in_channels=self.trunk.out_channels, grid=grid,
                               shared_channels=head_channels, head_channels=head_channels)

    @property
    def feature_channels(self) -> dict[str, int]:
        return {**super().feature_channels, "bev_cam": self.camera.out_channels,
                "bev_lidar": self.pillars.out_channels}

    def forward(self, batch: Batch) -> DetOutputs:
        if batch.lidar is None:
            raise ValueError("FusionTeacher needs LiDAR input (data.use_lidar: true)")
        bev_cam = self.camera(batch.cams)["bev"]
        bev_lidar = self.pillars(batch.lidar.points, batch.lidar.batch_index, batch.size)
        bev_in = self.fuser(torch.cat([bev_cam, bev_lidar], dim=1))
        feats = {"bev_in": bev_in, **self.trunk(bev_in), "bev_cam": bev_cam, "bev_lidar": bev_lidar}
        return DetOutputs(feats=feats, preds=self.head(feats["bev_neck"]))

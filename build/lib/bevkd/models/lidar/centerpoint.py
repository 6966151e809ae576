"""CenterPoint-Pillars LiDAR teacher: pillars -> BEV trunk + neck -> CenterHead."""

from __future__ import annotations

from ...structures.batch import Batch
from ..backbones.bev_trunk import BevTrunk
from ..detector import Detector
from ..grid import BevGrid
from ..heads.center_head import CenterHead
from ..outputs import DetOutputs
from .pillars import PillarEncoder


class CenterPointPillars(Detector):
    """Multi-sweep LiDAR detector; publishes ``bev_in`` (pillar scatter), ``bev_s1``, ``bev_s2``,
    ``bev_neck`` on the shared grid."""

    def __init__(self, grid: BevGrid, pillar_channels: int = 64,
                 trunk_channels: tuple[int, int] = (128, 256), trunk_blocks: tuple[int, int] = (2, 2),
                 neck_channels: int = 128, head_channels: int = 64):
        super().__init__()
        self.grid = grid
        self.pillars = PillarEncoder(grid, pillar_channels)
        self.trunk = BevTrunk(pillar_channels, trunk_channels, trunk_blocks, neck_channels)
        self.trunk_in_channels = pillar_channels
        self.head = CenterHead(in_channels=self.trunk.out_channels, grid=grid,
                               shared_channels=head_channels, head_channels=head_channels)

    def forward(self, batch: Batch) -> DetOutputs:
        lidar = batch.lidar
        if lidar is None:
            raise ValueError("CenterPointPillars needs LiDAR input (data.use_lidar: true)")
        bev_in = self.pillars(lidar.points, lidar.batch_index, batch.size)
        feats = {"bev_in": bev_in, **self.trunk(bev_in)}
        return DetOutputs(feats=feats, preds=self.head(feats["bev_neck"]))

"""Typed samples and batches: what the loader gives the models. No positional tuples.

Shapes use B batch, T frames (key frame first, then previous key frames), N cameras, H x W the
augmented image size, h x w the depth-target grid, M points. Every frame is expressed in the
**ego frame of the key frame before BEV augmentation**; ``bda`` maps it to the augmented ego
frame in which LiDAR points and boxes are given (so the camera path applies
``bda @ ego_T_cam`` to its frustum, as BEVDepth does).

:func:`collate` lives here, beside the types it stacks, rather than in ``data/collate.py``
(DESIGN §1's layout): a batch's fields and how samples stack into them are one contract, so a
field added to a type is stacked in the same file.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any

import torch

from .boxes import Boxes3D


def _move(value: Any, device: torch.device | str) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, Boxes3D):
        return value.to(device)
    if isinstance(value, list):
        return [_move(v, device) for v in value]
    if is_dataclass(value):
        return value.to(device)
    return value


class _Movable:
    def to(self, device: torch.device | str):
        """A copy with every tensor (and Boxes3D) on ``device``."""
        return replace(self, **{f.name: _move(getattr(self, f.name), device)
                                for f in fields(self)})


@dataclass
class CameraInputs(_Movable):
    """Camera images and their geometry (batched: leading B; one sample: no B)."""

    images: torch.Tensor       # (B, T, N, 3, H, W) float32, normalised
    ego_T_cam: torch.Tensor    # (B, T, N, 4, 4) camera -> key ego frame
    pix_T_cam: torch.Tensor    # (B, T, N, 3, 3) original intrinsics
    aug_T_pix: torch.Tensor    # (B, T, N, 3, 3) original -> augmented pixels
    bda: torch.Tensor          # (B, 4, 4) key ego -> augmented ego frame


@dataclass
class LidarInputs(_Movable):
    """Multi-sweep points, concatenated over the batch."""

    points: torch.Tensor       # (M, 6) x, y, z (augmented ego), intensity, ring, time lag (s)
    batch_index: torch.Tensor  # (M,) int64 sample of each point


@dataclass
class Targets(_Movable):
    boxes: list[Boxes3D]       # per sample (K_i, 9), augmented ego frame, torch float32
    labels: list[torch.Tensor]  # per sample (K_i,) int64 into DETECTION_CLASSES
    depth: torch.Tensor | None  # (B, N, h, w) min LiDAR depth per feature cell, 0 = none


@dataclass
class Meta(_Movable):
    sample_tokens: list[str]
    global_T_ego: torch.Tensor  # (B, 4, 4) float64 key-frame ego pose (for export)
    timestamps: list[int]


@dataclass
class Batch(_Movable):
    cams: CameraInputs | None
    lidar: LidarInputs | None
    targets: Targets
    meta: Meta

    @property
    def size(self) -> int:
        return len(self.meta.sample_tokens)


@dataclass
class Sample:
    """One item of the dataset (no batch dimension); `collate` turns a list into a Batch."""

    token: str
    timestamp: int
    global_T_ego: torch.Tensor       # (4, 4) float64
    images: torch.Tensor | None      # (T, N, 3, H, W)
    ego_T_cam: torch.Tensor | None   # (T, N, 4, 4)
    pix_T_cam: torch.Tensor | None   # (T, N, 3, 3)
    aug_T_pix: torch.Tensor | None   # (T, N, 3, 3)
    bda: torch.Tensor                # (4, 4)
    points: torch.Tensor | None      # (M, 6)
    boxes: Boxes3D                   # (K, 9) torch float32
    labels: torch.Tensor             # (K,)
    depth: torch.Tensor | None       # (N, h, w)


def collate(samples: list[Sample]) -> Batch:
    """Stack samples into a Batch (points are concatenated with a batch index)."""
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    first = samples[0]
    cams = None
    if first.images is not None:
        cams = CameraInputs(
            images=torch.stack([s.images for s in samples]),
            ego_T_cam=torch.stack([s.ego_T_cam for s in samples]),
            pix_T_cam=torch.stack([s.pix_T_cam for s in samples]),
            aug_T_pix=torch.stack([s.aug_T_pix for s in samples]),
            bda=torch.stack([s.bda for s in samples]))
    lidar = None
    if first.points is not None:
        lidar = LidarInputs(
            points=torch.cat([s.points for s in samples]),
            batch_index=torch.cat([torch.full((len(s.points),), i, dtype=torch.int64)
                                   for i, s in enumerate(samples)]))
    depth = torch.stack([s.depth for s in samples]) if first.depth is not None else None
    return Batch(
        cams=cams, lidar=lidar,
        targets=Targets([s.boxes for s in samples], [s.labels for s in samples], depth),
        meta=Meta([s.token for s in samples], torch.stack([s.global_T_ego for s in samples]),
                  [s.timestamp for s in samples]))

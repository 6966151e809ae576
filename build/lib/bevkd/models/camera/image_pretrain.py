"""Perspective-view pretraining of the camera student's ResNet on the training split.

Why: every published camera student starts from an ImageNet (or nuImages) pretrained
backbone; BEV detection training then only has to teach the lift and the BEV layers. Those
weights cannot be downloaded on our machines, and a ResNet trained from scratch inside a few
hundred BEV-detection steps learns almost nothing (on the ``tiny`` preset the student's
heatmap loss stays on its background plateau even with the LiDAR depth bin forced into the
lift, ``benchmarks/detectors_tiny.md``). So the benchmark pretrains the backbone once, on the
training split's images, with two dense image-plane tasks whose labels the dataset already has:

- **class map**: each feature cell takes the class of the nearest GT box whose projected
  8-corner rectangle covers it (0 = background), as a 2D semantic segmentation;
- **depth**: the LiDAR depth bin of the cell (the student's own depth targets).

The saved file is the ResNet's state dict with torchvision names, loaded like ImageNet
weights through ``model.args.backbone_weights``; baseline and distilled students share it,
so comparisons stay fair and nothing of a teacher is involved.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...structures.boxes import Boxes3D
from ..backbones.resnet import ResNet
from ..necks.second_fpn import SecondFPN
from .lss import depth_bin_index, num_depth_bins

NUM_CLASSES = 11  # background + the 10 detection classes


def box_class_maps(boxes: Boxes3D, labels: torch.Tensor, cam_T_box: torch.Tensor,
                   img_T_cam: torch.Tensor, feature_size: tuple[int, int], stride: int,
                   min_depth: float = 0.5) -> torch.Tensor:
    """Per-camera class maps from projected boxes.

    Args:
        boxes: ``(K, 9)`` boxes in the frame that ``cam_T_box`` maps from.
        labels: ``(K,)`` class indices into ``DETECTION_CLASSES``.
        cam_T_box: ``(N, 4, 4)`` box frame -> camera.
        img_T_cam: ``(N, 3, 3)`` camera -> (augmented) pixels.
        feature_size: ``(h, w)`` cells; a cell is ``stride`` x ``stride`` pixels.

    Returns: ``(N, h, w)`` long, ``label + 1`` of the nearest box covering the cell centre,
    0 where none does. A box counts in a camera when all its corners are at least
    ``min_depth`` in front of it (partly visible boxes behind the image plane are skipped
    rather than given a wrong rectangle).
    """
    h, w = feature_size
    n_cam = cam_T_box.shape[0]
    out = torch.zeros(n_cam, h, w, dtype=torch.long)
    if len(boxes) == 0:
        return out
    corners = torch.as_tensor(boxes.corners(), dtype=torch.float64)  # (K, 8, 3)
    ones = torch.ones(*corners.shape[:2], 1, dtype=torch.float64)
    hom = torch.cat([corners, ones], -1)  # (K, 8, 4)
    centres_v = (torch.arange(h, dtype=torch.float64) + 0.5) * stride
    centres_u = (torch.arange(w, dtype=torch.float64) + 0.5) * stride
    for n in range(n_cam):
        cam = hom @ cam_T_box[n].double().T  # (K, 8, 4)
        depth = cam[..., 2]
        ok = (depth > min_depth).all(1)
        if not ok.any():
            continue
        pix = cam[ok][..., :3] @ img_T_cam[n].double().T
        uv = pix[..., :2] / pix[..., 2:3]
        lo, hi = uv.min(1).values, uv.max(1).values  # (K', 2) rectangles
        near = depth[ok].min(1).values
        lab = torch.as_tensor(labels)[ok].long() + 1
        for k in torch.argsort(near, descending=True):  # far first: near boxes paint over
            cols = (centres_u >= lo[k, 0]) & (centres_u < hi[k, 0])
            rows = (centres_v >= lo[k, 1]) & (centres_v < hi[k, 1])
            if cols.any() and rows.any():
                out[n][rows[:, None] & cols[None, :]] = lab[k]
    return out


class ImagePretrainNet(nn.Module):
    """ResNet -> SecondFPN (stride ``stride``) -> 3x3 conv -> class and depth-bin logits.

    forward: images ``(M, 3, H, W)`` -> ``(class_logits (M, 11, h, w),
    depth_logits (M, D, h, w))``.
    """

    def __init__(self, backbone_depth: int = 18, stride: int = 8,
                 depth_bins: tuple[float, float, float] = (2.0, 58.0, 1.0),
                 neck_channels: int = 32, head_channels: int = 64):
        super().__init__()
        self.stride, self.depth_bins = stride, tuple(depth_bins)
        self.backbone = ResNet(backbone_depth, out_stages=(1, 2, 3, 4))
        self.neck = SecondFPN(self.backbone.out_channels, (4, 8, 16, 32), stride, neck_channels)
        self.head = nn.Sequential(
            nn.Conv2d(self.neck.out_channels, head_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(head_channels), nn.ReLU(inplace=True),
            nn.Conv2d(head_channels, NUM_CLASSES + num_depth_bins(self.depth_bins), 1))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.head(self.neck(self.backbone(images)))
        return y[:, :NUM_CLASSES], y[:, NUM_CLASSES:]

    def loss(self, class_logits: torch.Tensor, depth_logits: torch.Tensor,
             class_map: torch.Tensor, depth: torch.Tensor,
             background_weight: float = 0.2) -> dict[str, torch.Tensor]:
        """Cross-entropy on every cell's class (background down-weighted: it covers most of
        the image) and on the depth bin of cells with a LiDAR depth.

        class_map: ``(M, h, w)`` long; depth: ``(M, h, w)`` metres, 0 = no target.
        """
        h, w = class_logits.shape[-2:]
        class_map, depth = class_map[..., :h, :w], depth[..., :h, :w]
        weight = torch.ones(NUM_CLASSES, device=class_logits.device)
        weight[0] = background_weight
        losses = {"class": F.cross_entropy(class_logits, class_map, weight=weight)}
        idx = depth_bin_index(depth, self.depth_bins)
        valid = idx >= 0
        logits = depth_logits.permute(0, 2, 3, 1)[valid]
        losses["depth"] = (F.cross_entropy(logits, idx[valid]) if logits.numel()
                           else depth_logits.sum() * 0.0)
        return losses

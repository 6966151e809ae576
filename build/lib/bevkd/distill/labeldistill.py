"""LabelDistill (Kim et al., ECCV 2024) on a BEVDepth student (DESIGN §4.2).

Two teachers: the LiDAR detector (role ``lidar``) and the trained label encoder (role ``label``,
:class:`~bevkd.distill.label_encoder.LabelEncoder`, which publishes ``bev_s1``/``bev_s2`` shaped
like the LiDAR trunk's stages).

- Feature partitioning: at each of two student levels (``bev_in``, ``bev_s1``) the channels are
  split in thirds, ``c = C // 3``: ``[:c]`` feeds the label adaptor, ``[c:2c]`` the LiDAR adaptor,
  ``[2c:]`` gets no distillation loss (the whole feature still feeds the student's head). Each
  adaptor is ``Conv3x3(c→C_t) + BN + ReLU + BasicBlock``. Slicing before the adaptors means each
  partition gets gradient from its own loss only.
- Targets per level: the teachers' trunk stage outputs (``bev_s1`` for student level 0,
  ``bev_s2`` for level 1; as the published code, whose label encoder mimics exactly those). The
  adapted student map is bilinearly resized to the target's shape where they differ.
- ``L_lidar = Σ_levels Σ M·‖T − A(S)‖²_c / max(1, Σ M)`` with ``M`` the GT Gaussian heatmap (max
  over classes, CenterPoint radius) built on the head grid and bilinearly resized to the level;
  ``L_label`` the same with the binary mask ``M > 0``.
- Response: per task, Gaussian focal loss of the student heatmap against
  ``clip_sigmoid(teacher) · GT heatmap`` over the number of GT peaks, plus ``0.25 ×`` the L1
  (code-weighted) between student and teacher regression codes at GT centre cells over the
  number of objects.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import BevkdError
from ..models.backbones.resnet import BasicBlock
from ..models.grid import BevGrid
from ..models.heads.center_head import CenterHead, clip_sigmoid, gather_code, gaussian_focal_loss
from ..models.outputs import DetOutputs
from ..structures.batch import Batch
from ..structures.boxes import Boxes3D
from .base import Distiller
from .losses import masked_feature_mse, resize_to
from .masks import gaussian_mask


def _adaptor(c_in: int, c_out: int) -> nn.Sequential:
    """LabelDistill's DistillAdaptor: Conv3x3 + BN + ReLU + BasicBlock."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True), BasicBlock(c_out, c_out))


class LabelDistill(Distiller):
    """LiDAR + label feature distillation into separate channel partitions, plus response.

    Args:
        grid: the shared BEV grid.
        student_channels, teacher_channels: feature channels by key (teachers by role).
        student_levels: student feature keys that are partitioned (``bev_in``, ``bev_s1``).
        lidar_levels: LiDAR teacher keys matched to them (``bev_s1``, ``bev_s2``).
        label_levels: label encoder keys matched to them (``bev_s1``, ``bev_s2``).
        lidar_weight, label_weight: ``0.3`` each.
        response_weight: ``1.0`` (on both response terms).
        response_bbox_weight: ``0.25`` (the head's L1 weight).
        mask_min_radius, mask_overlap: the GT Gaussian rule of the mask (CenterPoint: 2, 0.1).
    """

    name = "labeldistill"
    roles = ("lidar", "label")

    def __init__(self, grid: BevGrid, student_channels: dict[str, int],
                 teacher_channels: dict[str, dict[str, int]],
                 student_levels: tuple[str, ...] = ("bev_in", "bev_s1"),
                 lidar_levels: tuple[str, ...] = ("bev_s1", "bev_s2"),
                 label_levels: tuple[str, ...] = ("bev_s1", "bev_s2"),
                 lidar_weight: float = 0.3, label_weight: float = 0.3,
                 response_weight: float = 1.0, response_bbox_weight: float = 0.25,
                 mask_min_radius: int = 2, mask_overlap: float = 0.1):
        super().__init__()
        for role in ("lidar", "label"):
            if role not in teacher_channels:
                raise BevkdError(f"labeldistill needs a {role!r} teacher; given: "
                                 f"{', '.join(teacher_channels) or 'none'} (distill.teachers)")
        if not len(student_levels) == len(lidar_levels) == len(label_levels):
            raise BevkdError("labeldistill: student_levels, lidar_levels and label_levels must "
                             f"pair up: got {student_levels}, {lidar_levels}, {label_levels}")
        for key in student_levels:
            if key not in student_channels:
                raise BevkdError(f"labeldistill: the student publishes no {key!r}")
            if student_channels[key] < 3:
                raise BevkdError(f"labeldistill: {key!r} has {student_channels[key]} channels, "
                                 "fewer than the three partitions")
        for role, keys in (("lidar", lidar_levels), ("label", label_levels)):
            missing = [k for k in keys if k not in teacher_channels[role]]
            if missing:
                raise BevkdError(f"labeldistill: the {role} teacher publishes no {missing}")
        self.grid = grid
        self.student_levels, self.lidar_levels = tuple(student_levels), tuple(lidar_levels)
        self.label_levels = tuple(label_levels)
        self.requires = tuple(dict.fromkeys(student_levels))
        self.teacher_requires = {"lidar": tuple(dict.fromkeys(lidar_levels)),
                                 "label": tuple(dict.fromkeys(label_levels))}
        self.lidar_weight, self.label_weight = lidar_weight, label_weight
        self.response_weight, self.response_bbox_weight = response_weight, response_bbox_weight
        self.mask_min_radius, self.mask_overlap = mask_min_radius, mask_overlap
        self.split = [student_channels[k] // 3 for k in student_levels]
        self.label_adaptors = nn.ModuleList(
            _adaptor(c, teacher_channels["label"][k]) for c, k in zip(self.split, label_levels))
        self.lidar_adaptors = nn.ModuleList(
            _adaptor(c, teacher_channels["lidar"][k]) for c, k in zip(self.split, lidar_levels))
        # the student's head makes the GT targets of the response term (see attach)
        object.__setattr__(self, "_head", None)

    def attach(self, student: nn.Module, teachers: dict[str, nn.Module]) -> None:
        object.__setattr__(self, "_head", getattr(student, "head", None))

    def _targets_head(self, device: torch.device) -> CenterHead:
        if self._head is None:  # not attached (unit use): a default head, for its targets only
            object.__setattr__(self, "_fallback_head", getattr(self, "_fallback_head", None)
                               or CenterHead(1, self.grid, shared_channels=1, head_channels=1))
            return self._fallback_head.to(device)
        return self._head

    # ------------------------------------------------------------------------------------------
    def forward(self, student_out: DetOutputs, teacher_out: dict[str, DetOutputs],
                batch: Batch) -> dict[str, torch.Tensor]:
        boxes, labels = batch.targets.boxes, batch.targets.labels
        lidar, label = self.feature_losses(student_out.feats, teacher_out["lidar"].feats,
                                           teacher_out["label"].feats, boxes)
        heat, bbox = self.response_losses(student_out.preds, teacher_out["lidar"].preds,
                                          boxes, labels)
        return {"lidar": self.lidar_weight * lidar, "label": self.label_weight * label,
                "response_heatmap": self.response_weight * heat,
                "response_bbox": self.response_weight * self.response_bbox_weight * bbox}

    # ------------------------------------------------------------------------------------------
    def partitions(self, feat: torch.Tensor, level: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(label part [:c], lidar part [c:2c])`` of a student level's feature."""
        c = self.split[level]
        return feat[:, :c], feat[:, c:2 * c]

    def feature_losses(self, student: dict[str, torch.Tensor], lidar: dict[str, torch.Tensor],
                       label: dict[str, torch.Tensor], boxes: Sequence[Boxes3D]
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Unweighted ``(L_lidar, L_label)`` summed over the levels."""
        first = student[self.student_levels[0]]
        soft = gaussian_mask(boxes, self.grid, self.grid.shape, self.mask_min_radius,
                             self.mask_overlap).to(first.device)
        l_lidar = first.new_zeros((), dtype=torch.float32)
        l_label = first.new_zeros((), dtype=torch.float32)
        for i, key in enumerate(self.student_levels):
            part_label, part_lidar = self.partitions(student[key], i)
            t_lidar = lidar[self.lidar_levels[i]].float()
            t_label = label[self.label_levels[i]].float()
            s_lidar = resize_to(self.lidar_adaptors[i](part_lidar).float(), t_lidar.shape[-2:])
            s_label = resize_to(self.label_adaptors[i](part_label).float(), t_label.shape[-2:])
            m_lidar = resize_to(soft, t_lidar.shape[-2:])
            m_label = (resize_to(soft, t_label.shape[-2:]) > 0).float()
            l_lidar = l_lidar + masked_feature_mse(s_lidar, t_lidar, m_lidar, "mask")
            l_label = l_label + masked_feature_mse(s_label, t_label, m_label, "mask")
        return l_lidar, l_label

    def response_losses(self, student_preds: Sequence[dict[str, torch.Tensor]],
                        teacher_preds: Sequence[dict[str, torch.Tensor]],
                        boxes: Sequence[Boxes3D], labels: Sequence[torch.Tensor]
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Unweighted ``(heatmap, bbox)`` response terms summed over tasks (published
        ``KDHead.response_loss``): targets are the teacher's clipped probabilities times the GT
        heatmap, and the teacher's regression at GT centre cells."""
        s0 = student_preds[0]["heatmap"]
        head = self._targets_head(s0.device)
        tgts = head.targets(boxes, labels, tuple(s0.shape[-2:]))
        heat = s0.new_zeros((), dtype=torch.float32)
        bbox = s0.new_zeros((), dtype=torch.float32)
        for sp, tp, tgt in zip(student_preds, teacher_preds, tgts):
            soft = clip_sigmoid(tp["heatmap"].detach().float()) * tgt.heatmap
            num_pos = tgt.heatmap.eq(1).sum().clamp_min(1)
            heat = heat + gaussian_focal_loss(clip_sigmoid(sp["heatmap"].float()), soft) / num_pos
            if tgt.ind.shape[1] == 0:
                continue
            cs = gather_code(sp, tgt.ind).float()
            ct = gather_code({k: v.detach() for k, v in tp.items()}, tgt.ind).float()
            weight = (tgt.mask[..., None] & torch.isfinite(tgt.box)) * head.code_weights
            bbox = bbox + ((cs - ct).abs() * weight).sum() / (tgt.mask.sum() + 1e-4)
        return heat, bbox

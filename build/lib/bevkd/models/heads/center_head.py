"""CenterPoint's multi-task CenterHead (as in CenterPoint / BEVDepth; DESIGN §3).

Per task group: a Gaussian heatmap over the group's classes plus box regressions at object
centres. The regression code of one box on a feature map of cell size ``(cx, cy)`` is

    [dx, dy, z, log l, log w, log h, sin yaw, cos yaw, vx, vy]

with ``(dx, dy)`` the centre's offset from its cell centre in cells (``[-0.5, 0.5)``), ``z`` the
geometric centre height in metres. :func:`encode_boxes` / :func:`decode_boxes` are the exact pair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

from bevkd.models.grid import BevGrid
from bevkd.models.heads.gaussian import draw_gaussians, heatmap_radius
from bevkd.models.heads.nms import circle_nms
from bevkd.structures.boxes import Boxes3D
from bevkd.structures.classes import CLASS_INDEX, DETECTION_CLASSES, TASK_GROUPS

__all__ = [
    "CODE_SIZE", "REG_HEADS", "TaskTargets", "CenterHead", "encode_boxes", "decode_boxes",
    "gather_code", "clip_sigmoid", "gaussian_focal_loss", "feature_cell",
]

CODE_SIZE = 10
# Regression heads in code order, with their channel counts.
REG_HEADS: tuple[tuple[str, int], ...] = (("reg", 2), ("height", 1), ("dim", 3), ("rot", 2),
                                          ("vel", 2))


# ----------------------------------------------------------------------------------------------
# Box coding
# ----------------------------------------------------------------------------------------------

def feature_cell(grid: BevGrid, shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """``(x_min, y_min, cell_x, cell_y)`` of a feature map of ``shape (H, W)`` covering ``grid``."""
    h, w = shape
    return (grid.x_range[0], grid.y_range[0], (grid.x_range[1] - grid.x_range[0]) / w,
            (grid.y_range[1] - grid.y_range[0]) / h)


def encode_boxes(boxes: torch.Tensor, grid: BevGrid,
                 shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes ``(N, 9)`` -> centre cells ``ixy (N, 2)`` long ``(ix, iy)`` and codes ``(N, 10)``.

    ``shape (H, W)`` is the feature map's; cells may fall outside it (callers mask). Sizes are
    clamped to 1 mm before the log so a degenerate box cannot make the loss infinite.
    """
    x0, y0, cx, cy = feature_cell(grid, shape)
    gx = (boxes[:, 0] - x0) / cx  # continuous cell coordinates
    gy = (boxes[:, 1] - y0) / cy
    ix, iy = torch.floor(gx), torch.floor(gy)
    code = torch.stack([
        gx - ix - 0.5, gy - iy - 0.5, boxes[:, 2],
        *boxes[:, 3:6].clamp_min(1e-3).log().unbind(1),
        torch.sin(boxes[:, 6]), torch.cos(boxes[:, 6]), boxes[:, 7], boxes[:, 8],
    ], dim=1)
    # NaN centres must not turn into valid-looking indices
    finite = torch.isfinite(gx) & torch.isfinite(gy)
    ixy = torch.stack([ix, iy], 1).nan_to_num(-1.0).masked_fill(~finite[:, None], -1.0).long()
    return ixy, code


LOG_DIM_MIN, LOG_DIM_MAX = -5.0, 4.0


def decode_boxes(ixy: torch.Tensor, code: torch.Tensor, grid: BevGrid,
                 shape: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`encode_boxes`: ``ixy (..., 2)``, ``code (..., 10)`` -> boxes ``(..., 9)``.

    Position = cell centre + offset; sizes ``exp``; yaw ``atan2(sin, cos)`` wrapped to
    ``[-pi, pi)`` as :class:`Boxes3D` does.
    """
    x0, y0, cx, cy = feature_cell(grid, shape)
    xy = ixy.to(code.dtype) + 0.5 + code[..., 0:2]
    x = x0 + xy[..., 0] * cx
    y = y0 + xy[..., 1] * cy
    yaw = torch.atan2(code[..., 6], code[..., 7])
    yaw = torch.where(yaw >= math.pi, yaw - 2 * math.pi, yaw)
    # an untrained (or diverging) head can regress any log size; exp() of it must stay a
    # finite positive size (0.7 cm .. 55 m) or the official results format rejects the box
    dims = code[..., 3:6].clamp(LOG_DIM_MIN, LOG_DIM_MAX).exp()
    return torch.cat([
        torch.stack([x, y, code[..., 2]], -1), dims, yaw[..., None], code[..., 8:10],
    ], dim=-1)


def gather_code(pred: dict[str, torch.Tensor], ind: torch.Tensor) -> torch.Tensor:
    """Regression code of one task's predictions at flat cells ``ind (B, M)`` (``iy·W + ix``).

    ``pred`` holds the task's ``reg/height/dim/rot/vel`` maps ``(B, c, H, W)``. Returns
    ``(B, M, 10)``.
    """
    code = torch.cat([pred[name] for name, _ in REG_HEADS], dim=1).flatten(2)  # (B, 10, H·W)
    return code.gather(2, ind[:, None, :].expand(-1, code.shape[1], -1)).transpose(1, 2)


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------

def clip_sigmoid(logits: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """``sigmoid`` clamped to ``[eps, 1 - eps]`` (CenterPoint's ``clip_sigmoid``)."""
    return logits.sigmoid().clamp(eps, 1 - eps)


def gaussian_focal_loss(prob: torch.Tensor, target: torch.Tensor, alpha: float = 2.0,
                        gamma: float = 4.0) -> torch.Tensor:
    """CenterNet's Gaussian focal loss, summed (callers normalise): ``prob``, ``target`` same
    shape; positives are cells with ``target == 1``, negatives are down-weighted by
    ``(1 - target)^gamma``. Returns a 0-d tensor.
    """
    eps = 1e-12
    pos = target.eq(1).to(prob.dtype)
    neg_w = (1 - target).pow(gamma)
    pos_loss = -(prob + eps).log() * (1 - prob).pow(alpha) * pos
    neg_loss = -(1 - prob + eps).log() * prob.pow(alpha) * neg_w
    return (pos_loss + neg_loss).sum()


# ----------------------------------------------------------------------------------------------
# Module
# ----------------------------------------------------------------------------------------------

@dataclass
class TaskTargets:
    """CenterPoint targets of one task for a batch (``M`` = most objects of this task in one
    sample, capped at ``max_objs``; padded entries have ``mask = False``).

    Attributes:
        heatmap: ``(B, n_cls, H, W)`` Gaussian heatmaps, 1 at object centre cells.
        ind: ``(B, M)`` long flat centre cells ``iy·W + ix``.
        mask: ``(B, M)`` bool, real objects.
        box: ``(B, M, 10)`` regression codes (NaN velocities stay NaN; the loss masks them).
        labels: ``(B, M)`` long class index within the task.
    """

    heatmap: torch.Tensor
    ind: torch.Tensor
    mask: torch.Tensor
    box: torch.Tensor
    labels: torch.Tensor


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class CenterHead(nn.Module):
    """CenterPoint multi-task head: shared 3×3 conv, then per task separate heads.

    Args:
        in_channels: channels of the input BEV feature.
        grid: the BEV grid; the head's map is ``grid.shape // out_stride``.
        out_stride: downsampling of the head's feature map w.r.t. ``grid``.
        tasks: class-name groups (one heatmap per group).
        shared_channels, head_channels: widths of the shared conv and of each separate head.
        code_weights: L1 weights of the 10 code entries (reg 2, height 1, dim 3, rot 2, vel 2).
        heatmap_weight, bbox_weight: weights of the two loss terms.
        gaussian_overlap, min_radius: CenterPoint heatmap radius rule.
        max_objs: cap on objects per task and sample in the targets.
        init_bias: heatmap logit bias at init (prior ≈ 0.1).
        score_threshold, pre_max, post_max, max_per_sample: decoding.
        nms_radius: CenterPoint's per-task circle-NMS ``min_radius`` values. CenterPoint compares
            them with the *squared* BEV centre distance, so the suppression radius in metres is
            ``sqrt(nms_radius)`` (2.0 m for cars with the default 4.0); kept that way so
            published configs give published behaviour.
    """

    def __init__(
        self,
        in_channels: int,
        grid: BevGrid,
        out_stride: int = 1,
        tasks: Sequence[Sequence[str]] = TASK_GROUPS,
        shared_channels: int = 64,
        head_channels: int = 64,
        code_weights: Sequence[float] = (1, 1, 1, 1, 1, 1, 1, 1, 0.2, 0.2),
        heatmap_weight: float = 1.0,
        bbox_weight: float = 0.25,
        gaussian_overlap: float = 0.1,
        min_radius: int = 2,
        max_objs: int = 500,
        init_bias: float = -2.19,
        score_threshold: float = 0.1,
        pre_max: int = 1000,
        post_max: int = 83,
        nms_radius: Sequence[float] = (4.0, 12.0, 10.0, 1.0, 0.85, 0.175),
        max_per_sample: int = 500,
    ) -> None:
        super().__init__()
        self.tasks = tuple(tuple(t) for t in tasks)
        names = [n for t in self.tasks for n in t]
        unknown = [n for n in names if n not in CLASS_INDEX]
        if unknown:
            raise ValueError(f"unknown classes {unknown} in tasks; valid: {DETECTION_CLASSES}")
        if len(set(names)) != len(names):
            raise ValueError(f"a class appears in more than one task: {self.tasks}")
        if len(code_weights) != CODE_SIZE:
            raise ValueError(f"code_weights needs {CODE_SIZE} values, got {len(code_weights)}")
        if len(nms_radius) != len(self.tasks):
            raise ValueError(f"nms_radius needs one value per task ({len(self.tasks)}), "
                             f"got {len(nms_radius)}")
        if grid.size_x % out_stride or grid.size_y % out_stride:
            raise ValueError(f"grid {grid.shape} is not divisible by out_stride {out_stride}")
        self.grid, self.out_stride = grid, out_stride
        self.heatmap_weight, self.bbox_weight = heatmap_weight, bbox_weight
        self.gaussian_overlap, self.min_radius = gaussian_overlap, min_radius
        self.max_objs = max_objs
        self.score_threshold, self.pre_max, self.post_max = score_threshold, pre_max, post_max
        self.nms_radius = tuple(float(r) for r in nms_radius)
        self.max_per_sample = max_per_sample

        # Label lookups: global class -> task, class within task, channel in all tasks' heatmaps.
        n_cls = len(DETECTION_CLASSES)
        to_task = torch.full((n_cls,), -1, dtype=torch.long)
        to_local = torch.full((n_cls,), -1, dtype=torch.long)
        to_channel = torch.full((n_cls,), -1, dtype=torch.long)
        task_labels = torch.full((len(self.tasks), max(map(len, self.tasks))), -1, dtype=torch.long)
        ch = 0
        for t, group in enumerate(self.tasks):
            for j, name in enumerate(group):
                c = CLASS_INDEX[name]
                to_task[c], to_local[c], to_channel[c] = t, j, ch
                task_labels[t, j] = c
                ch += 1
        self.num_channels = ch
        # Constants, not state: non-persistent so checkpoints hold only learned tensors.
        self.register_buffer("class_to_task", to_task, persistent=False)
        self.register_buffer("class_to_local", to_local, persistent=False)
        self.register_buffer("class_to_channel", to_channel, persistent=False)
        self.register_buffer("task_labels", task_labels, persistent=False)
        self.register_buffer("code_weights", torch.tensor(code_weights, dtype=torch.float32),
                             persistent=False)

        self.shared_conv = _conv_bn_relu(in_channels, shared_channels)
        self.task_heads = nn.ModuleList()
        for group in self.tasks:
            outs = (("heatmap", len(group)),) + REG_HEADS
            heads = nn.ModuleDict({
                name: nn.Sequential(_conv_bn_relu(shared_channels, head_channels),
                                    nn.Conv2d(head_channels, c, 3, padding=1))
                for name, c in outs
            })
            for name, head in heads.items():
                if name == "heatmap":
                    nn.init.constant_(head[-1].bias, init_bias)
                    continue
                # mmcv's kaiming_init as CenterPoint's SeparateHead.init_weights
                for m in head.modules():
                    if isinstance(m, nn.Conv2d):
                        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                        if m.bias is not None:
                            nn.init.zeros_(m.bias)
            self.task_heads.append(heads)

    @property
    def feature_shape(self) -> tuple[int, int]:
        """``(H, W)`` of the head's feature map."""
        return self.grid.size_y // self.out_stride, self.grid.size_x // self.out_stride

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """``x (B, C, H, W)`` -> per task ``{heatmap (B, n_cls, H, W) logits, reg (B, 2, H, W),
        height (B, 1, H, W), dim (B, 3, H, W), rot (B, 2, H, W), vel (B, 2, H, W)}``."""
        x = self.shared_conv(x)
        return [{name: head(x) for name, head in heads.items()} for heads in self.task_heads]

    # ------------------------------------------------------------------------------------------
    # Targets and loss
    # ------------------------------------------------------------------------------------------

    def targets(self, boxes: Sequence[Boxes3D], labels: Sequence[torch.Tensor],
                shape: Optional[tuple[int, int]] = None) -> list[TaskTargets]:
        """CenterPoint targets for a batch.

        Args:
            boxes: per sample ``Boxes3D`` (N_b boxes, ego frame; numpy or torch).
            labels: per sample ``(N_b,)`` indices into ``DETECTION_CLASSES``; classes in no task
                are ignored.
            shape: ``(H, W)`` of the feature map (default :attr:`feature_shape`); any size works,
                the cell size follows from the grid extent.

        Returns: one :class:`TaskTargets` per task, on the device of this module's buffers.
        Boxes whose centre cell is off the map are skipped.
        """
        h, w = self.feature_shape if shape is None else tuple(shape)
        dev = self.code_weights.device
        bsz = len(boxes)
        if len(labels) != bsz:
            raise ValueError(f"{bsz} box sets but {len(labels)} label sets")
        bt = [b.torch(dev).tensor for b in boxes]
        dtype = torch.promote_types(bt[0].dtype if bt else torch.float32, torch.float32)
        bt = torch.cat([b.to(dtype) for b in bt]) if bt else torch.zeros(0, 9, dtype=dtype,
                                                                             device=dev)
        lab = torch.cat([torch.as_tensor(lb, device=dev).long().reshape(-1) for lb in labels]) \
            if bsz else torch.zeros(0, dtype=torch.long, device=dev)
        counts = torch.tensor([len(b) for b in boxes], device=dev, dtype=torch.long)
        if lab.numel() != bt.shape[0]:
            raise ValueError(f"labels ({lab.numel()}) and boxes ({bt.shape[0]}) differ in count")
        sample = torch.repeat_interleave(torch.arange(bsz, device=dev), counts)

        ixy, code = encode_boxes(bt, self.grid, (h, w))
        _, _, cx, cy = feature_cell(self.grid, (h, w))
        valid = (lab >= 0) & (lab < len(DETECTION_CLASSES))
        task = torch.where(valid, self.class_to_task[lab.clamp(0, len(DETECTION_CLASSES) - 1)], -1)
        on_map = (ixy[:, 0] >= 0) & (ixy[:, 0] < w) & (ixy[:, 1] >= 0) & (ixy[:, 1] < h)
        inside = (task >= 0) & on_map

        # Rank of each box among its sample's boxes of the same task, in input order
        # (CenterPoint keeps the first max_objs).
        n_tasks = len(self.tasks)
        key = torch.where(inside, sample * n_tasks + task, -1)
        rank = torch.zeros_like(key)
        if key.numel():
            onehot = (key[:, None] == torch.arange(bsz * n_tasks, device=dev)[None]).long()
            rank = ((onehot.cumsum(0) - 1) * onehot).sum(1)
        keep = inside & (rank < self.max_objs)

        lab_k = lab[keep]
        radius = heatmap_radius(bt[keep, 3] / cx, bt[keep, 4] / cy, self.gaussian_overlap,
                                self.min_radius)
        heat = torch.zeros(bsz * self.num_channels, h, w, device=dev)
        draw_gaussians(heat, sample[keep] * self.num_channels + self.class_to_channel[lab_k],
                       ixy[keep], radius)
        heat = heat.view(bsz, self.num_channels, h, w)

        out: list[TaskTargets] = []
        ch = 0
        for t, group in enumerate(self.tasks):
            sel = keep & (task == t)
            s, r = sample[sel], rank[sel]
            m = int(r.max()) + 1 if r.numel() else 0
            ind = torch.zeros(bsz, m, dtype=torch.long, device=dev)
            mask = torch.zeros(bsz, m, dtype=torch.bool, device=dev)
            box = torch.zeros(bsz, m, CODE_SIZE, device=dev)
            tl = torch.zeros(bsz, m, dtype=torch.long, device=dev)
            ind[s, r] = ixy[sel, 1] * w + ixy[sel, 0]
            mask[s, r] = True
            box[s, r] = code[sel].to(box.dtype)
            tl[s, r] = self.class_to_local[lab[sel]]
            out.append(TaskTargets(heat[:, ch:ch + len(group)], ind, mask, box, tl))
            ch += len(group)
        return out

    def loss(self, preds: Sequence[dict[str, torch.Tensor]], boxes: Sequence[Boxes3D],
             labels: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """CenterPoint loss: ``{"heatmap", "bbox"}``, each summed over tasks and weighted.

        heatmap: Gaussian focal loss on clipped sigmoid / max(1, #cells with target 1);
        bbox: ``bbox_weight`` · Σ code_weights·|pred − target| at centre cells / #objects
        (non-finite targets, e.g. NaN velocities, are masked out).
        """
        shape = tuple(preds[0]["heatmap"].shape[-2:])
        tgts = self.targets(boxes, labels, shape)
        hm_loss = preds[0]["heatmap"].new_zeros(())
        bbox_loss = preds[0]["heatmap"].new_zeros(())
        for pred, tgt in zip(preds, tgts):
            prob = clip_sigmoid(pred["heatmap"].float())
            num_pos = tgt.heatmap.eq(1).sum().clamp_min(1)
            hm_loss = hm_loss + gaussian_focal_loss(prob, tgt.heatmap) / num_pos
            code = gather_code(pred, tgt.ind).float()  # (B, M, 10)
            weight = (tgt.mask[..., None] & torch.isfinite(tgt.box)) * self.code_weights
            err = (code - tgt.box.nan_to_num(0.0)).abs() * weight
            bbox_loss = bbox_loss + err.sum() / (tgt.mask.sum() + 1e-4)
        return {"heatmap": self.heatmap_weight * hm_loss, "bbox": self.bbox_weight * bbox_loss}

    # ------------------------------------------------------------------------------------------
    # Decoding
    # ------------------------------------------------------------------------------------------

    @torch.no_grad()
    def decode(self, preds: Sequence[dict[str, torch.Tensor]],
               score_threshold: float | None = None
               ) -> list[tuple[Boxes3D, torch.Tensor, torch.Tensor]]:
        """Detections per sample: ``(Boxes3D (K, 9), scores (K,), labels (K,) long)``, ego frame,
        labels indexing ``DETECTION_CLASSES``, sorted by decreasing score, ``K <= max_per_sample``.

        Per task: sigmoid heatmap, top-``pre_max`` over classes×cells, ``score >= threshold``
        (``score_threshold``, default the head's own), circle NMS (radius
        ``sqrt(nms_radius[task])`` m), best ``post_max``; then tasks merged.
        """
        threshold = self.score_threshold if score_threshold is None else float(score_threshold)
        bsz, _, h, w = preds[0]["heatmap"].shape
        per_sample: list[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = [
            [] for _ in range(bsz)]
        for t, pred in enumerate(preds):
            heat = pred["heatmap"].float().sigmoid().flatten(1)  # (B, n_cls·H·W)
            scores, idx = heat.topk(min(self.pre_max, heat.shape[1]), dim=1)
            cls, cell = idx // (h * w), idx % (h * w)
            code = gather_code(pred, cell).float()  # (B, K, 10)
            ixy = torch.stack([cell % w, cell // w], -1)
            dec = decode_boxes(ixy, code, self.grid, (h, w))  # (B, K, 9)
            labels = self.task_labels[t][cls]
            finite = torch.isfinite(dec).all(-1)  # NaN/inf regressions never leave the head
            for b in range(bsz):
                ok = (scores[b] >= threshold) & finite[b]
                bb, sb, lb = dec[b][ok], scores[b][ok], labels[b][ok]
                kept = circle_nms(bb[:, :2], sb, math.sqrt(self.nms_radius[t]), self.post_max)
                per_sample[b].append((bb[kept], sb[kept], lb[kept]))
        out = []
        for parts in per_sample:
            bb = torch.cat([p[0] for p in parts])
            sb = torch.cat([p[1] for p in parts])
            lb = torch.cat([p[2] for p in parts])
            order = torch.sort(sb, descending=True, stable=True).indices[:self.max_per_sample]
            out.append((Boxes3D(bb[order]), sb[order], lb[order]))
        return out

"""BEVDistill (Chen et al., ICLR 2023) on a BEVDepth student (DESIGN §4.1).

Three terms, each already weighted:

- ``dense``: foreground-guided feature imitation on one BEV level (default the neck)
  ``w_d · Σ_{b,c,h,w} M·(A(F_s) − F_t)² / Σ M`` with ``M`` the GT Gaussian heatmap (max over
  classes, CenterPoint radius, min 1) of *each sample's own* boxes and ``A`` a 1x1 conv to the
  teacher's channels. Normalised by ``Σ M`` only, not by ``C`` (as published).
- ``sparse``: instance-level InfoNCE between student and teacher ``bev_in`` features bilinearly
  sampled at the student's top-K heatmap peaks (detached) and the GT centres, through two
  projection heads (``Linear(C→512)`` then ``Linear-BN-ReLU-Linear(512→512)``, L2-normalised),
  ``τ = 0.07``, positives on the diagonal.
- ``response_bbox``: the teacher's top-50 boxes (local maxima of its per-task class-max heatmap,
  decoded) are soft pseudo-targets: L1 between the student's box code and the re-encoded teacher
  box at the box's centre cell, weighted by the teacher score and normalised by the score sum.
  ``response_heatmap`` (weight 0 as released, so not computed by default): per-cell BCE between
  student and teacher class probabilities inside the GT Gaussian mask, ``/ Σ M``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BevkdError
from ..models.grid import BevGrid
from ..models.heads.center_head import decode_boxes, encode_boxes, feature_cell, gather_code
from ..models.outputs import DetOutputs
from ..structures.batch import Batch
from ..structures.boxes import Boxes3D
from .base import Distiller
from .losses import info_nce, masked_feature_mse, resize_to
from .masks import gaussian_mask

_CENTERHEAD_CODE_WEIGHTS = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2)


def _projection(c_in: int, c_mid: int) -> nn.Sequential:
    """BEVDistill's projection head (MoCo-v2 style): Linear, then Linear-BN-ReLU-Linear."""
    return nn.Sequential(nn.Linear(c_in, c_mid), nn.Linear(c_mid, c_mid), nn.BatchNorm1d(c_mid),
                         nn.ReLU(inplace=True), nn.Linear(c_mid, c_mid))


def sample_bev(feat: torch.Tensor, xy: torch.Tensor, grid: BevGrid) -> torch.Tensor:
    """Bilinear samples of a BEV map at metric positions.

    feat: (B, C, H, W) covering ``grid`` (any H, W: a feature cell's value sits at its centre);
    xy: (B, P, 2) x, y in the grid's frame. Returns (B, P, C). Positions outside the map read
    zeros beyond the border cells' centres (``grid_sample`` zero padding).
    """
    x0, x1 = grid.x_range
    y0, y1 = grid.y_range
    u = (xy[..., 0] - x0) / (x1 - x0) * 2 - 1
    v = (xy[..., 1] - y0) / (y1 - y0) * 2 - 1
    g = torch.stack([u, v], -1).unsqueeze(1).to(feat.dtype)  # (B, 1, P, 2)
    out = F.grid_sample(feat, g, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[:, :, 0].transpose(1, 2)


def heatmap_peaks(preds: Sequence[dict[str, torch.Tensor]], k: int,
                  kernel: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-``k`` local maxima of the per-task class-max heatmap probabilities.

    Returns ``scores (B, K)``, ``task (B, K)`` long and ``cell (B, K)`` long flat indices
    ``iy·W + ix`` on the head's map (K = min(k, n_tasks·H·W)).
    """
    prob = torch.stack([p["heatmap"].detach().float().sigmoid().amax(1) for p in preds], 1)
    if kernel > 1:  # CenterNet-style peak extraction: a cell survives if it is its window's max
        pooled = F.max_pool2d(prob, kernel, stride=1, padding=kernel // 2)
        prob = prob * (prob == pooled)
    h, w = prob.shape[-2:]
    flat = prob.flatten(1)
    scores, idx = flat.topk(min(k, flat.shape[1]), dim=1)
    return scores, idx // (h * w), idx % (h * w)


class BEVDistill(Distiller):
    """BEVDistill: dense + sparse instance (InfoNCE) + score-weighted response distillation
    from the ``lidar`` teacher.

    Args:
        grid: the shared BEV grid.
        student_channels, teacher_channels: feature channels by key (teacher: by role).
        dense_level: feature key of the dense term (student and teacher), default the neck.
        dense_weight: ``0.01``.
        mask_min_radius, mask_overlap: GT Gaussian mask rule (CenterPoint radius, min 1).
        sparse_level: feature key sampled for the instance term (``bev_in``).
        sparse_weight: ``0.2``; ``0`` disables the term.
        sparse_topk: student heatmap peaks per sample (plus every GT centre).
        sparse_max_points: cap on the points of a batch (N×N logits); a random subset is kept.
        proj_channels: width of the projection heads (512).
        tau: InfoNCE temperature (0.07).
        response_topk: teacher boxes per sample used as pseudo-targets (50).
        response_weight: weight of the box-code L1 (0.25).
        response_heatmap_weight: weight of the heatmap term (0 as released).
        peak_kernel: max-pool window of peak extraction (1: raw top-K cells).
        code_weights: per-entry weights of the box-code L1 (CenterHead's by default).
    """

    name = "bevdistill"
    roles = ("lidar",)

    def __init__(self, grid: BevGrid, student_channels: dict[str, int],
                 teacher_channels: dict[str, dict[str, int]], dense_level: str = "bev_neck",
                 dense_weight: float = 0.01, mask_min_radius: int = 1, mask_overlap: float = 0.1,
                 sparse_level: str = "bev_in", sparse_weight: float = 0.2, sparse_topk: int = 32,
                 sparse_max_points: int = 256, proj_channels: int = 512, tau: float = 0.07,
                 response_topk: int = 50, response_weight: float = 0.25,
                 response_heatmap_weight: float = 0.0, peak_kernel: int = 3,
                 code_weights: tuple[float, ...] = _CENTERHEAD_CODE_WEIGHTS):
        super().__init__()
        if "lidar" not in teacher_channels:
            raise BevkdError(f"bevdistill needs a 'lidar' teacher; given: "
                             f"{', '.join(teacher_channels) or 'none'} (distill.teachers)")
        t_ch = teacher_channels["lidar"]
        for key in (dense_level, sparse_level):
            if key not in student_channels or key not in t_ch:
                raise BevkdError(f"bevdistill: feature {key!r} is not published by both the "
                                 f"student ({sorted(student_channels)}) and the lidar teacher "
                                 f"({sorted(t_ch)})")
        if len(code_weights) != 10:
            raise BevkdError(f"bevdistill: code_weights needs 10 values, got {len(code_weights)}")
        self.grid = grid
        self.dense_level, self.sparse_level = dense_level, sparse_level
        self.requires = tuple(dict.fromkeys((dense_level, sparse_level)))
        self.teacher_requires = {"lidar": self.requires}
        self.dense_weight, self.sparse_weight = dense_weight, sparse_weight
        self.mask_min_radius, self.mask_overlap = mask_min_radius, mask_overlap
        self.sparse_topk, self.sparse_max_points, self.tau = sparse_topk, sparse_max_points, tau
        self.response_topk, self.response_weight = response_topk, response_weight
        self.response_heatmap_weight, self.peak_kernel = response_heatmap_weight, peak_kernel
        self.register_buffer("code_weights", torch.tensor(code_weights, dtype=torch.float32),
                             persistent=False)

        self.adapter = nn.Conv2d(student_channels[dense_level], t_ch[dense_level], 1)
        self.proj_student = _projection(student_channels[sparse_level], proj_channels)
        self.proj_teacher = _projection(t_ch[sparse_level], proj_channels)

    # ------------------------------------------------------------------------------------------
    def forward(self, student_out: DetOutputs, teacher_out: dict[str, DetOutputs],
                batch: Batch) -> dict[str, torch.Tensor]:
        s, t = student_out, teacher_out["lidar"]
        boxes = batch.targets.boxes
        out = {"dense": self.dense_weight * self.dense_loss(s.feats[self.dense_level],
                                                            t.feats[self.dense_level], boxes)}
        if self.sparse_weight > 0:
            points = self.sample_points(s.preds, boxes)
            out["sparse"] = self.sparse_weight * self.sparse_loss(
                s.feats[self.sparse_level], t.feats[self.sparse_level], points)
        out["response_bbox"] = self.response_weight * self.response_bbox_loss(s.preds, t.preds)
        if self.response_heatmap_weight > 0:
            out["response_heatmap"] = self.response_heatmap_weight * self.response_heatmap_loss(
                s.preds, t.preds, boxes)
        return out

    # ------------------------------------------------------------------------------------------
    def dense_mask(self, boxes: Sequence[Boxes3D], shape: tuple[int, int],
                   device: torch.device) -> torch.Tensor:
        """(B, 1, H, W) GT Gaussian foreground mask, one per sample."""
        return gaussian_mask(boxes, self.grid, shape, self.mask_min_radius,
                             self.mask_overlap).to(device)

    def dense_loss(self, fs: torch.Tensor, ft: torch.Tensor,
                   boxes: Sequence[Boxes3D]) -> torch.Tensor:
        """Unweighted ``Σ M·(A(F_s) − F_t)² / Σ M`` on the student's map (the teacher map is
        bilinearly resized to it when the grids differ, as published)."""
        shape = tuple(fs.shape[-2:])
        adapted = self.adapter(fs).float()
        target = resize_to(ft.float(), shape)
        mask = self.dense_mask(boxes, shape, fs.device)
        return masked_feature_mse(adapted, target, mask, normalise="mask")

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_points(self, student_preds: Sequence[dict[str, torch.Tensor]],
                      boxes: Sequence[Boxes3D]) -> list[torch.Tensor]:
        """Per sample (N_b, 2) x, y: GT centres on the grid, then the student's top-K heatmap
        peaks (cell centres, detached) that do not share a head cell with a GT centre."""
        h, w = student_preds[0]["heatmap"].shape[-2:]
        x0, y0, cx, cy = feature_cell(self.grid, (h, w))
        _, _, cells = heatmap_peaks(student_preds, self.sparse_topk, self.peak_kernel)
        device = cells.device
        out = []
        for b, bx in enumerate(boxes):
            gt = bx.torch(device).tensor[:, :2].float()
            ix, iy = torch.floor((gt[:, 0] - x0) / cx), torch.floor((gt[:, 1] - y0) / cy)
            on = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
            gt, gt_cell = gt[on], (iy[on] * w + ix[on]).long()
            c = cells[b]
            c = c[~torch.isin(c, gt_cell)]
            peaks = torch.stack([x0 + (c % w + 0.5) * cx, y0 + (c // w + 0.5) * cy], -1).float()
            out.append(torch.cat([gt, peaks]))
        return out

    def sparse_loss(self, fs: torch.Tensor, ft: torch.Tensor,
                    points: Sequence[torch.Tensor]) -> torch.Tensor:
        """Unweighted InfoNCE over the batch's points (at most ``sparse_max_points``): every
        point's teacher embedding must pick out the same point's student embedding."""
        n_max = max((len(p) for p in points), default=0)
        if n_max == 0:
            return fs.new_zeros((), dtype=torch.float32)
        bsz = len(points)
        xy = fs.new_zeros(bsz, n_max, 2, dtype=torch.float32)
        valid = torch.zeros(bsz, n_max, dtype=torch.bool, device=fs.device)
        for b, p in enumerate(points):
            xy[b, :len(p)] = p.to(xy)
            valid[b, :len(p)] = True
        vs = sample_bev(fs.float(), xy, self.grid)[valid]  # (N, C_s)
        vt = sample_bev(ft.float(), xy, self.grid)[valid]  # (N, C_t)
        if len(vs) > self.sparse_max_points:
            keep = torch.randperm(len(vs), device=vs.device)[:self.sparse_max_points]
            vs, vt = vs[keep], vt[keep]
        if len(vs) < 2:  # one point: log(1) = 0, and BatchNorm needs two
            return fs.new_zeros((), dtype=torch.float32)
        zs = F.normalize(self.proj_student(vs), dim=1)
        zt = F.normalize(self.proj_teacher(vt), dim=1)
        return info_nce(zs, zt, self.tau)

    # ------------------------------------------------------------------------------------------
    def response_targets(self, teacher_preds: Sequence[dict[str, torch.Tensor]]
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The teacher's top boxes as pseudo-targets on the head map.

        Returns ``task (B, K)``, ``ind (B, K)`` flat centre cells of the decoded boxes,
        ``code (B, K, 10)`` their re-encoded codes and ``weight (B, K)`` (teacher max-class score,
        0 where the decoded centre left the map).
        """
        h, w = teacher_preds[0]["heatmap"].shape[-2:]
        scores, task, cell = heatmap_peaks(teacher_preds, self.response_topk, self.peak_kernel)
        code = torch.zeros(*cell.shape, 10, device=cell.device)
        for t, pred in enumerate(teacher_preds):
            sel = task == t
            if sel.any():
                code[sel] = gather_code({k: v.detach().float() for k, v in pred.items()},
                                        cell)[sel]
        ixy = torch.stack([cell % w, cell // w], -1)
        boxes = decode_boxes(ixy, code, self.grid, (h, w))
        ixy2, target = encode_boxes(boxes.reshape(-1, 9), self.grid, (h, w))
        ixy2, target = ixy2.view(*cell.shape, 2), target.view(*cell.shape, 10)
        on = (ixy2[..., 0] >= 0) & (ixy2[..., 0] < w) & (ixy2[..., 1] >= 0) & (ixy2[..., 1] < h)
        ind = torch.where(on, ixy2[..., 1] * w + ixy2[..., 0], torch.zeros_like(cell))
        return task, ind, target, scores * on

    def response_bbox_loss(self, student_preds: Sequence[dict[str, torch.Tensor]],
                           teacher_preds: Sequence[dict[str, torch.Tensor]]) -> torch.Tensor:
        """Unweighted ``Σ_k s_k·Σ_j c_j·|code_s − code_t| / Σ_k s_k`` over the teacher's top-K
        boxes ``k`` (scores ``s_k``), each at its task's regression maps."""
        task, ind, target, weight = self.response_targets(teacher_preds)
        total = student_preds[0]["heatmap"].new_zeros((), dtype=torch.float32)
        for t, pred in enumerate(student_preds):
            wt = weight * (task == t)
            if not bool((wt > 0).any()):
                continue
            err = ((gather_code(pred, ind).float() - target).abs() * self.code_weights).sum(-1)
            total = total + (err * wt).sum()
        return total / weight.sum().clamp_min(1e-4)

    def response_heatmap_loss(self, student_preds: Sequence[dict[str, torch.Tensor]],
                              teacher_preds: Sequence[dict[str, torch.Tensor]],
                              boxes: Sequence[Boxes3D]) -> torch.Tensor:
        """Unweighted ``Σ_tasks Σ M·BCE(σ(s), σ(t)) / Σ M`` (classes summed per cell) inside
        the GT Gaussian mask of the head map."""
        s0 = student_preds[0]["heatmap"]
        mask = self.dense_mask(boxes, tuple(s0.shape[-2:]), s0.device)
        total = s0.new_zeros((), dtype=torch.float32)
        for sp, tp in zip(student_preds, teacher_preds):
            bce = F.binary_cross_entropy_with_logits(
                sp["heatmap"].float(), tp["heatmap"].detach().float().sigmoid(), reduction="none")
            total = total + (bce * mask).sum()
        return total / mask.sum().clamp_min(1.0)

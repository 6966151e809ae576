"""DualDistill (Kim et al., BMVC 2025; DESIGN §4.3): AOA + MFD + CRD from a LiDAR teacher.

- **AOA** (attention-guided orthogonal alignment) at the trunk levels: the student feature
  attends to itself through learnable queries, then a per-cell orthogonal map
  (:class:`OrthogonalLinear`) carries it into the teacher's channel space without distorting
  its geometry (norms and angles are kept; only ``γ``/``β`` rescale).
- **MFD** (multi-scale feature distillation) with adaptive region weights: foreground cells
  weighted ``sqrt(cell_area / (w·l))`` per box, background ``1 / N_bg``, times a spatial
  attention of both features; at the head level also the teacher's false-positive region.
- **CRD** (cross-head response distillation): the student's head-level feature goes through the
  *frozen teacher head* and is trained with the CenterPoint loss against the teacher's own
  detections decoded at temperature ``T = 0.1`` (sharpened heatmap) with score >= 0.1.

Everything here is an adapter of the distiller (training only): the exported student is the
baseline architecture. Attention cost: AOA attends over ``N = h·w`` tokens of its level
(``h, w`` = grid / stride, or ``attn_size`` when pooled), i.e. ``O(B·N²·C)`` FLOPs per level;
PyTorch's ``MultiheadAttention`` with ``need_weights=False`` dispatches to fused
scaled-dot-product attention, so memory stays ``O(B·N·C)`` where a fused kernel exists (GPU) and
is ``O(B·heads·N²)`` otherwise. At the full grid (128², stride 1: N = 16384) that is
~1.7e11 FLOPs per sample for ``bev_s1`` — fine on a GPU, slow on a CPU, where
``attn_size: 32`` (N = 1024) is the sensible setting.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import orthogonal

from ..errors import BevkdError
from ..models.grid import BevGrid
from ..models.heads.center_head import CenterHead
from ..models.outputs import DetOutputs
from ..structures.batch import Batch
from ..structures.boxes import Boxes3D
from .base import Distiller
from .losses import resize_to
from .masks import box_weights, false_positive_region, gaussian_mask, teacher_heatmap

# Strides of the published BEV keys w.r.t. the grid (BevTrunk: stage 1 stride 1, stage 2
# stride 2, neck and LSS output stride 1). AOA needs them at construction to size its learnable
# queries and positional embedding (the optimiser is built before the first forward).
LEVEL_STRIDES: dict[str, int] = {"bev_in": 1, "bev_s1": 1, "bev_s2": 2, "bev_neck": 1}


class OrthogonalLinear(nn.Module):
    """Per-cell ``y = γ ⊙ (W x) + β`` with ``W`` (C_out, C_in) kept orthogonal by
    ``torch.nn.utils.parametrizations.orthogonal`` (semi-orthogonal when C_out != C_in:
    orthonormal rows if C_out < C_in, orthonormal columns otherwise). ``γ = 1``, ``β = 0`` at
    init, so at init the map is an isometry of the channel vector (C_out >= C_in).

    x: (B, C_in, H, W) -> (B, C_out, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.linear = orthogonal(nn.Linear(in_channels, out_channels, bias=False))
        self.gamma = nn.Parameter(torch.ones(out_channels))
        self.beta = nn.Parameter(torch.zeros(out_channels))

    @property
    def weight(self) -> torch.Tensor:
        """The current orthogonal ``W`` (C_out, C_in)."""
        return self.linear.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.einsum("oc,bchw->bohw", self.weight.to(x.dtype), x)
        return y * self.gamma.to(x.dtype)[:, None, None] + self.beta.to(x.dtype)[:, None, None]


class AOA(nn.Module):
    """Attention-guided orthogonal alignment of one student level (DESIGN §4.3).

    ``P = ReLU(BN(Conv3×3(X))) + pos``; ``Q = ReLU(Conv1×1(E))`` with learnable queries ``E``
    (h·w, C); ``Y = MHA(Q, P, P)``; ``X' = X + FFN(LN(Y))`` (``residual="input"``) or
    ``Y + FFN(LN(Y))`` (``residual="attention"``); bilinear resize to the teacher's grid; then
    :class:`OrthogonalLinear` to the teacher's channels.

    Args:
        in_channels, out_channels: student / teacher channels of the level.
        attn_hw: (h, w) of the attention grid (the level's own size, or smaller: ``X`` is
            average-pooled to it for ``P``, and ``FFN(LN(Y))`` is upsampled back bilinearly).
        num_heads: attention heads (must divide ``in_channels``).
        ffn_ratio: hidden width of the FFN in multiples of ``in_channels``.
        residual: see above.
    """

    def __init__(self, in_channels: int, out_channels: int, attn_hw: tuple[int, int],
                 num_heads: int = 8, ffn_ratio: int = 4, residual: str = "input"):
        super().__init__()
        if in_channels % num_heads:
            raise BevkdError(f"AOA: {num_heads} attention heads do not divide the student's "
                             f"{in_channels} channels (set num_heads)")
        if residual not in ("input", "attention"):
            raise BevkdError(f"AOA residual must be 'input' or 'attention', got {residual!r}")
        c = in_channels
        self.attn_hw, self.residual = tuple(attn_hw), residual
        h, w = self.attn_hw
        self.proj = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
                                  nn.ReLU(inplace=True))
        self.pos = nn.Parameter(torch.zeros(1, h * w, c))
        self.queries = nn.Parameter(torch.zeros(h * w, c))
        nn.init.trunc_normal_(self.pos, std=0.02)
        nn.init.trunc_normal_(self.queries, std=0.02)
        self.query_proj = nn.Linear(c, c)  # Conv1×1 on the (h, w) query map = Linear per token
        self.attn = nn.MultiheadAttention(c, num_heads, batch_first=True)
        self.norm = nn.LayerNorm(c)
        self.ffn = nn.Sequential(nn.Linear(c, ffn_ratio * c), nn.GELU(),
                                 nn.Linear(ffn_ratio * c, c))
        self.ortho = OrthogonalLinear(c, out_channels)

    def forward(self, x: torch.Tensor, out_shape: tuple[int, int]) -> torch.Tensor:
        """x: (B, C_s, H, W) -> (B, C_t, *out_shape)."""
        b, c, hx, wx = x.shape
        h, w = self.attn_hw
        p = self.proj(x)
        if (hx, wx) != (h, w):
            p = F.adaptive_avg_pool2d(p, (h, w))
        p = p.flatten(2).transpose(1, 2) + self.pos  # (B, h·w, C)
        q = F.relu(self.query_proj(self.queries)).unsqueeze(0).expand(b, -1, -1)
        y, _ = self.attn(q, p, p, need_weights=False)
        z = self.ffn(self.norm(y))
        z = z.transpose(1, 2).reshape(b, c, h, w)
        if self.residual == "input":
            out = x + resize_to(z, (hx, wx))
        else:
            out = resize_to(y.transpose(1, 2).reshape(b, c, h, w) + z, (hx, wx))
        return self.ortho(resize_to(out, out_shape))


class ConvAlign(nn.Module):
    """Head-level alignment: 1×1 conv to the teacher's channels, bilinear resize to its grid."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, out_shape: tuple[int, int]) -> torch.Tensor:
        return resize_to(self.conv(x), out_shape)


def spatial_attention(feat: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """``H·W · softmax_{h,w}(mean_c |F| / T)`` per sample: (B, C, H, W) -> (B, 1, H, W), with
    mean 1 over the cells."""
    b, _, h, w = feat.shape
    a = feat.float().abs().mean(1).flatten(1) / temperature
    return (h * w * a.softmax(dim=1)).view(b, 1, h, w)


def mfd_terms(student: torch.Tensor, teacher: torch.Tensor, fg: torch.Tensor,
              region: torch.Tensor, fp: torch.Tensor | None = None,
              temperature: float = 0.5) -> dict[str, torch.Tensor]:
    """Unweighted MFD terms of one level: ``{"fg", "bg", "fp"}``, each
    ``Σ_{b,h,w} W · A · Σ_c (S − T)² / B`` with

    - ``A = ½ [attn(T) + attn(S)]`` (detached; :func:`spatial_attention`),
    - fg: ``W = fg · region`` (``region`` = :func:`masks.box_weights`' per-box weight),
    - bg: ``W = (1 − fg) · region`` (``1 / N_bg``),
    - fp: ``W = fp / N_fp`` per sample (0 when ``fp`` is None or empty).

    student, teacher: (B, C, H, W) (student already aligned); fg, region, fp: (B, 1, H, W).
    """
    bsz = student.shape[0]
    att = 0.5 * (spatial_attention(teacher.detach(), temperature)
                 + spatial_attention(student.detach(), temperature))
    err = ((student.float() - teacher.float()) ** 2).sum(1, keepdim=True) * att
    out = {"fg": (err * fg * region).sum() / bsz, "bg": (err * (1 - fg) * region).sum() / bsz}
    if fp is None:
        out["fp"] = err.new_zeros(())
    else:
        n_fp = fp.flatten(1).sum(1).clamp_min(1.0).view(-1, 1, 1, 1)
        out["fp"] = (err * fp / n_fp).sum() / bsz
    return out


class DualDistill(Distiller):
    """DualDistill on a BEVDepth student (DESIGN §4.3).

    Args (beyond the builder's ``grid``, ``student_channels``, ``teacher_channels``):
        teacher: role of the teacher (``lidar``; any role whose detector has a CenterHead).
        aoa_levels: levels aligned by AOA (student key = teacher key); the original's two trunk
            stages.
        conv_levels: further trunk levels aligned by a cheap 1×1 conv instead (none by default;
            move a level here to drop its attention cost).
        head_level: head-input level, aligned by a 1×1 conv, with the false-positive term.
        attn_size: 0 = attend at the level's full resolution (original); ``n > 0`` pools the
            attention grid to at most ``n × n`` (see the module docstring for the cost).
        num_heads, ffn_ratio, aoa_residual: AOA attention heads, FFN width, residual (see AOA).
        fg_weight, bg_weight, fp_weight, attn_weight: MFD weights (6e-3, 4e-2, 6e-2, 2.5e-3).
        attention_temperature: spatial-attention temperature (0.5).
        fp_threshold: teacher probability above / GT heatmap below which a non-box cell is a
            false positive (0.1).
        gt_min_radius: min radius of the GT Gaussian heatmap of the fp rule (2, as the head's
            targets).
        crd_weight: weight of the CRD terms (the teacher head's loss weights apply inside).
        crd_temperature: teacher heatmap logits are divided by it before decoding (0.1).
        crd_score_threshold: score (at the temperature) a pseudo box must reach (0.1).
        crd_shared_adapter: the CRD adapter is the head-level MFD adapter (the *aligned* student
            goes through the teacher head); False gives CRD its own 1×1 conv.
        init_student_head_from_teacher: copy the teacher head's weights into the student head in
            ``attach`` (every tensor whose name and shape match; others are left and warned).
    """

    name = "dualdistill"
    roles = ("lidar",)

    def __init__(self, grid: BevGrid, student_channels: dict[str, int],
                 teacher_channels: dict[str, dict[str, int]], teacher: str = "lidar",
                 aoa_levels: tuple[str, ...] = ("bev_s1", "bev_s2"),
                 conv_levels: tuple[str, ...] = (), head_level: str = "bev_neck",
                 attn_size: int = 0, num_heads: int = 8, ffn_ratio: int = 4,
                 aoa_residual: str = "input",
                 fg_weight: float = 6e-3, bg_weight: float = 4e-2, fp_weight: float = 6e-2,
                 attn_weight: float = 2.5e-3, attention_temperature: float = 0.5,
                 fp_threshold: float = 0.1, gt_min_radius: int = 2,
                 crd_weight: float = 1.0, crd_temperature: float = 0.1,
                 crd_score_threshold: float = 0.1, crd_shared_adapter: bool = True,
                 init_student_head_from_teacher: bool = False):
        super().__init__()
        if teacher not in teacher_channels:
            raise BevkdError(f"dualdistill needs a {teacher!r} teacher; given: "
                             f"{', '.join(teacher_channels) or 'none'} (distill.teachers)")
        levels = tuple(aoa_levels) + tuple(conv_levels) + (head_level,)
        if len(set(levels)) != len(levels):
            raise BevkdError(f"dualdistill: a level appears twice in aoa_levels/conv_levels/"
                             f"head_level: {levels}")
        if crd_temperature <= 0:
            raise BevkdError(f"dualdistill: crd_temperature must be > 0, got {crd_temperature}")
        t_ch = teacher_channels[teacher]
        for lv in levels:
            for side, ch in (("student", student_channels), (f"{teacher} teacher", t_ch)):
                if lv not in ch:
                    raise BevkdError(f"dualdistill: level {lv!r} is not published by the {side} "
                                     f"({', '.join(ch)})")
        self.grid, self.teacher = grid, teacher
        self.aoa_levels, self.conv_levels, self.head_level = (
            tuple(aoa_levels), tuple(conv_levels), head_level)
        self.levels = levels
        self.requires = levels
        self.teacher_requires = {teacher: levels}
        self.fg_weight, self.bg_weight, self.fp_weight = fg_weight, bg_weight, fp_weight
        self.attn_weight, self.attention_temperature = attn_weight, attention_temperature
        self.fp_threshold, self.gt_min_radius = fp_threshold, gt_min_radius
        self.crd_weight, self.crd_temperature = crd_weight, crd_temperature
        self.crd_score_threshold = crd_score_threshold
        self.crd_shared_adapter = crd_shared_adapter
        self.init_student_head_from_teacher = init_student_head_from_teacher

        self.align = nn.ModuleDict()
        for lv in self.aoa_levels:
            if lv not in LEVEL_STRIDES:
                raise BevkdError(f"dualdistill: AOA needs the stride of level {lv!r}; known: "
                                 f"{', '.join(LEVEL_STRIDES)}")
            s = LEVEL_STRIDES[lv]
            hw = (grid.size_y // s, grid.size_x // s)
            if attn_size > 0:
                hw = (min(hw[0], attn_size), min(hw[1], attn_size))
            self.align[lv] = AOA(student_channels[lv], t_ch[lv], hw, num_heads, ffn_ratio,
                                 aoa_residual)
        for lv in self.conv_levels + (head_level,):
            self.align[lv] = ConvAlign(student_channels[lv], t_ch[lv])
        # the L1 term's Conv3×3 on the channel-mean map, one per level
        self.attn_conv = nn.ModuleDict({lv: nn.Conv2d(1, 1, 3, padding=1) for lv in levels})
        self.crd_adapter = None if crd_shared_adapter else ConvAlign(
            student_channels[head_level], t_ch[head_level])
        self._crd_in_channels = t_ch[head_level]

    # ------------------------------------------------------------------------------------------
    def attach(self, student: nn.Module, teachers: dict[str, nn.Module]) -> None:
        head = getattr(teachers[self.teacher], "head", None)
        if not isinstance(head, CenterHead):
            raise BevkdError(f"dualdistill: the {self.teacher} teacher has no CenterHead `head`")
        # the teacher's head: frozen and in eval mode (DistillModel does so too); a plain
        # attribute, not a submodule, so it is neither trained nor exported with the distiller
        if self.crd_weight > 0 and head.shared_conv[0].in_channels != self._crd_in_channels:
            raise BevkdError(f"dualdistill: CRD feeds the {self.head_level!r} level to the teacher "
                             f"head, which takes {head.shared_conv[0].in_channels} channels, not "
                             f"{self._crd_in_channels} (head_level must be the head's input)")
        head.requires_grad_(False).eval()
        object.__setattr__(self, "_teacher_head", head)
        if self.init_student_head_from_teacher:
            self._copy_head(head, student.head)

    @staticmethod
    def _copy_head(src: nn.Module, dst: nn.Module) -> None:
        theirs, mine = src.state_dict(), dst.state_dict()
        same = {k: v for k, v in theirs.items() if k in mine and mine[k].shape == v.shape}
        skipped = sorted(set(mine) - set(same))
        if skipped:
            more = " ..." if len(skipped) > 8 else ""
            warnings.warn(f"dualdistill: student head tensors not initialised from the teacher "
                          f"(shape/name mismatch): {skipped[:8]}{more}")
        with torch.no_grad():
            for k, v in same.items():
                mine[k].copy_(v)

    @property
    def teacher_head(self) -> CenterHead:
        head = self.__dict__.get("_teacher_head")
        if head is None:
            raise BevkdError("dualdistill: attach(student, teachers) was not called (CRD needs "
                             "the teacher head)")
        return head

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def pseudo_labels(self, teacher_preds: Sequence[dict[str, torch.Tensor]]
                      ) -> tuple[list[Boxes3D], list[torch.Tensor]]:
        """CRD targets: teacher heatmap logits / T, decoded by the teacher head (top-K, circle
        NMS) keeping scores >= ``crd_score_threshold``. Per sample ``(Boxes3D, labels)``.

        ``sigmoid(l / T) >= s`` <=> ``l >= T · logit(s)``: at T = 0.1, s = 0.1 a peak survives
        iff its raw probability is >= sigmoid(-0.2197) ≈ 0.445.
        """
        scaled = [{**p, "heatmap": p["heatmap"].float() / self.crd_temperature}
                  for p in teacher_preds]
        dets = self.teacher_head.decode(scaled, self.crd_score_threshold)
        return [d[0] for d in dets], [d[2] for d in dets]

    def crd(self, student_feat: torch.Tensor,
            teacher_preds: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """CenterPoint loss of ``teacher_head(student_feat)`` against the teacher's pseudo boxes.
        ``student_feat``: (B, C_t, H, W), already adapted to the teacher head's input."""
        head = self.teacher_head
        if head.training:  # the teacher's BN statistics must not move
            raise BevkdError("dualdistill: the teacher head is in train mode")
        boxes, labels = self.pseudo_labels(teacher_preds)
        loss = head.loss(head(student_feat), boxes, labels)
        return {f"crd_{k}": self.crd_weight * v for k, v in loss.items()}

    def forward(self, student_out: DetOutputs, teacher_out: dict[str, DetOutputs],
                batch: Batch) -> dict[str, torch.Tensor]:
        t_out = teacher_out[self.teacher]
        boxes = batch.targets.boxes
        sums = {"fg": 0.0, "bg": 0.0, "fp": 0.0, "attn": 0.0}
        head_aligned = None
        for lv in self.levels:
            ft = t_out.feats[lv]
            shape = tuple(ft.shape[-2:])
            fs = self.align[lv](student_out.feats[lv], shape)
            fg, region = box_weights(boxes, self.grid, shape)
            fg, region = fg.to(ft.device), region.to(ft.device)
            fp = None
            if lv == self.head_level:
                head_aligned = fs
                gt = gaussian_mask(boxes, self.grid, shape, self.gt_min_radius).to(ft.device)
                heat = resize_to(teacher_heatmap(t_out.preds).float(), shape)
                fp = false_positive_region(heat, gt, fg, self.fp_threshold)
            terms = mfd_terms(fs, ft, fg, region, fp, self.attention_temperature)
            for k in ("fg", "bg", "fp"):
                sums[k] = sums[k] + terms[k]
            s_mean = self.attn_conv[lv](fs.float().mean(1, keepdim=True))
            l1 = (ft.float().mean(1, keepdim=True) - s_mean).abs().sum() / ft.shape[0]
            sums["attn"] = sums["attn"] + l1
        out = {"fg": self.fg_weight * sums["fg"], "bg": self.bg_weight * sums["bg"],
               "fp": self.fp_weight * sums["fp"], "attn": self.attn_weight * sums["attn"]}
        if self.crd_weight > 0:
            feat = head_aligned if self.crd_adapter is None else self.crd_adapter(
                student_out.feats[self.head_level], tuple(t_out.feats[self.head_level].shape[-2:]))
            out.update(self.crd(feat, t_out.preds))
        return out


__all__ = ["AOA", "ConvAlign", "DualDistill", "LEVEL_STRIDES", "OrthogonalLinear",
           "mfd_terms", "spatial_attention"]

"""Loss pieces shared by the distillation methods (each written once)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.heads.center_head import clip_sigmoid, gather_code, gaussian_focal_loss


def resize_to(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a (B, C, H, W) map (identity when already ``shape``)."""
    if tuple(x.shape[-2:]) == tuple(shape):
        return x
    return F.interpolate(x, size=shape, mode="bilinear", align_corners=False)


def masked_feature_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor,
                       normalise: str = "mask") -> torch.Tensor:
    """``Σ_{b,c,h,w} M·(S − T)² / Σ_{b,h,w} M`` (squared error summed over channels).

    student, teacher: (B, C, H, W); mask: (B, 1, H, W) weights. ``normalise="mask"`` divides by
    the mask sum (BEVDistill / LabelDistill: by ΣM only, not by C), ``"batch"`` by B
    (DualDistill), ``"none"`` returns the sum.
    """
    err = (mask * (student - teacher) ** 2).sum()
    if normalise == "mask":
        return err / mask.sum().clamp_min(1.0)
    if normalise == "batch":
        return err / student.shape[0]
    return err


def info_nce(z_student: torch.Tensor, z_teacher: torch.Tensor, tau: float = 0.07) -> torch.Tensor:
    """InfoNCE with the diagonal as positives: CE(z_t · z_sᵀ / τ, arange(N)).

    z_*: (N, D), L2-normalised by the caller. Uninformative features (all logits equal) give
    exactly ``log N``.
    """
    logits = z_teacher @ z_student.t() / tau
    return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))


def kd_heatmap_loss(student_logits: torch.Tensor, target: torch.Tensor,
                    weight: torch.Tensor | None = None) -> torch.Tensor:
    """Gaussian focal loss of the student's heatmap against soft targets in [0, 1],
    normalised by the number of target peaks (cells with target >= 1 - 1e-4), min 1."""
    prob = clip_sigmoid(student_logits.float())
    if weight is not None:  # per-cell weights: apply to both focal terms
        pos = target.ge(1 - 1e-4).float()
        neg = 1.0 - pos
        pos_l = -torch.log(prob) * (1 - prob) ** 2 * pos
        neg_l = -torch.log(1 - prob) * prob ** 2 * (1 - target) ** 4 * neg
        loss = ((pos_l + neg_l) * weight).sum()
    else:
        loss = gaussian_focal_loss(prob, target)
    return loss / target.ge(1 - 1e-4).sum().clamp_min(1)


def regression_l1_at(student_pred: dict[str, torch.Tensor], teacher_pred: dict[str, torch.Tensor],
                     ind: torch.Tensor, weight: torch.Tensor,
                     code_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Σ weight·|code_s − code_t| at flat cells ``ind`` (B, M), normalised by Σ weight.

    weight: (B, M) (e.g. teacher scores, 0 for padding). Codes are the head's 10 regression
    channels (reg, height, dim, rot, vel).
    """
    cs = gather_code(student_pred, ind).float()
    ct = gather_code(teacher_pred, ind).float()
    err = (cs - ct).abs()
    if code_weights is not None:
        err = err * code_weights
    return (err.sum(-1) * weight).sum() / weight.sum().clamp_min(1e-4)

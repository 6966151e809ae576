"""Loss pieces shared by the distillation methods (each written once)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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


"""ASD (Zhao et al., AAAI 2026; DESIGN §4.4) — our documented reading of the abstract.

No public code exists; every choice the abstract leaves open is a constructor parameter with
the default below, and the benchmark carries its ablation row (``bevkd.bench.plan.ABLATIONS``:
smoothing kernel, α's statistics, the fusion path, γ, the GT agreement, the mask, the response
teacher, the GCM, the gate's start, a second lift or the student's). The loss weights, peak
selection and focal β are parameters taken from CenterPoint / BEVDistill and not ablated.

Student side (adapters of this distiller, see :mod:`bevkd.distill.asd_fusion`):

- ``F_c`` = the student's camera BEV (its published ``bev_in`` = the LSS ``Lift`` output);
- ``F_sim = GCM(Lift_sim(img_feats))``: the simulated-LiDAR branch lifts the student's image
  features a second time (``sim_lift="own"``, DESIGN §4.4): its own camera-aware depth net
  (the student's architecture, starting as a copy of the student's at construction, so the two
  lifts agree at step 0 and part in training) and the student's view transformer geometry
  (frustum, grid, pooling), then the geometry-compensation block (a residual conv block,
  SimDistill's design without deformable offsets). Its depth is not supervised: only the
  distillation to the LiDAR teacher's BEV shapes it. ``sim_lift="shared"`` (the ablation, and
  the composite's) reuses the student's lift: ``F_sim = GCM(F_c)``;
- ``F_f = F_c + g ⊙ φ(F_sim)``, ``g = σ(conv([F_c, F_sim]))``, gate bias negative at init so
  the fusion starts camera-dominant.

These modules are **training-only** (``training_only=True``): they feed only the distillation
losses, their gradients reach the student through ``bev_in``, and the exported student is the
unchanged baseline (zero inference cost). ``training_only=False`` — the simulated branch and
fusion feeding the student's own trunk and head — would change the student architecture and is
not supported by the baseline student yet.

Losses (names as logged under ``distill/asd/``):

- ``sim``: adaptive-smooth distillation of ``A_l(F_sim)`` to the LiDAR teacher's ``bev_in``;
- ``fusion``: adaptive-smooth distillation of ``A_f(F_f)`` to the fusion teacher's ``bev_in``
  (the fused BEV); ``A_*`` = 1×1 conv channel adapters where channels differ;
- ``resp_heatmap``, ``resp_reg``: soft-weighted response at the response teacher's heatmap peaks,
  weights ``q = p_t^γ · G`` (``G`` = GT Gaussian heatmap value of the peak's class at its cell),
  normalised by ``Σ q``: a KD focal loss (quality focal loss, ``BCE(s, p_t)·|s − p_t|^β``)
  between the student's and the teacher's heatmap, and an L1 between their regression codes.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BevkdError
from ..models.camera.depthnet import camera_params
from ..models.camera.encoder import CameraBevEncoder
from ..models.grid import BevGrid
from ..models.heads.center_head import CenterHead, gather_code
from ..models.outputs import DetOutputs
from ..structures.batch import Batch, CameraInputs
from .asd_fusion import (ALPHA_SCOPES, MASK_KINDS, GeometryCompensation, HeterogeneousFusion,
                         adaptive_smooth_loss, feature_mask)
from .base import Distiller
from .losses import resize_to

GT_AGREEMENT = ("class", "any", "none")
SIM_LIFTS = ("own", "shared")


def _adapter(c_in: int, c_out: int) -> nn.Module:
    return nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)


def teacher_peaks(prob: torch.Tensor, top_k: int = 100, threshold: float = 0.1,
                  kernel: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Local maxima of a task's heatmap probabilities ``prob`` (B, n, H, W): the best ``top_k``
    per sample over classes×cells with ``prob >= threshold`` that are maxima of their
    ``kernel × kernel`` neighbourhood. Returns ``ind`` (B, K) flat indices into ``n·H·W`` and
    ``valid`` (B, K) bool (K = min(top_k, n·H·W)); padding entries are invalid."""
    peak = prob == F.max_pool2d(prob, kernel, stride=1, padding=kernel // 2)
    score = torch.where(peak & (prob >= threshold), prob, torch.full_like(prob, -1.0)).flatten(1)
    val, ind = score.topk(min(top_k, score.shape[1]), dim=1)
    return ind, val >= 0


def quality_focal(student_logits: torch.Tensor, target: torch.Tensor,
                  beta: float = 2.0) -> torch.Tensor:
    """Elementwise ``BCE(σ(s), t) · |t − σ(s)|^β``: the soft-target (quality) focal loss,
    0 where σ(s) = t."""
    s = student_logits.float()
    bce = F.binary_cross_entropy_with_logits(s, target.float(), reduction="none")
    return bce * (target.float() - s.sigmoid()).abs().pow(beta)


class ASD(Distiller):
    """Adaptive-smooth distillation with a simulated-LiDAR branch and heterogeneous fusion.

    Args (beyond the builder's ``grid``, ``student_channels``, ``teacher_channels``):
        lidar_teacher, fusion_teacher: teacher roles (``lidar``, ``fusion``).
        student_level: the student's lifted camera BEV (``bev_in``).
        lidar_level, fusion_level: teacher features to match (``bev_in``: pillar scatter / the
            fused BEV input to the fusion trunk).
        sim_lift: ``own`` (a second lift of ``img_feats``: DESIGN's reading, the one
            ``configs/distill/asd.yaml`` sets) or ``shared`` (the student's ``bev_in``) as the
            simulated branch's input (module docstring). The default stays ``shared``, what
            ASD did before the second lift, so that a run's config written then (method args
            are kept as written, without this key) still builds the model it trained.
        gcm_depth: conv layers of the GCM residual body (2; 0 = no GCM).
        gate_bias_init: initial bias of the fusion gate (-2.0: ``g ≈ 0.12``).
        mask: feature region ``gaussian`` (GT heatmap, default), ``box`` or ``all``.
        mask_min_radius: min radius of the Gaussian mask (1, as BEVDistill).
        smooth_kernel: kernel of the smoothing average pool (3; stride 1).
        alpha_scope: statistics of the granularity weight, per ``sample`` (default) or ``batch``.
        sim_weight, fusion_weight: weights of the two feature terms (0.1 each; our choice).
        response_teacher: role whose heatmap drives the response (``fusion``).
        gamma: quality exponent of ``q = p_t^γ`` (2.0).
        gt_agreement: ``class`` (GT heatmap of the peak's class, default), ``any`` (max over
            classes) or ``none`` (``q = p_t^γ``).
        peak_top_k, peak_threshold: teacher peaks per task and sample (100) and their minimum
            probability (0.1, the decode threshold).
        focal_beta: exponent of the KD focal loss (2.0).
        response_heatmap_weight, response_reg_weight: weights of the response terms (1.0, 0.25
            — CenterPoint's heatmap/bbox weights).
        training_only: the extra branch exists only in training (must be True, see module doc).
    """

    name = "asd"
    roles = ("lidar", "fusion")

    def __init__(self, grid: BevGrid, student_channels: dict[str, int],
                 teacher_channels: dict[str, dict[str, int]],
                 lidar_teacher: str = "lidar", fusion_teacher: str = "fusion",
                 student_level: str = "bev_in", lidar_level: str = "bev_in",
                 fusion_level: str = "bev_in", sim_lift: str = "shared", gcm_depth: int = 2,
                 gate_bias_init: float = -2.0,
                 mask: str = "gaussian", mask_min_radius: int = 1, smooth_kernel: int = 3,
                 alpha_scope: str = "sample", sim_weight: float = 0.1, fusion_weight: float = 0.1,
                 response_teacher: str = "fusion", gamma: float = 2.0,
                 gt_agreement: str = "class", peak_top_k: int = 100, peak_threshold: float = 0.1,
                 focal_beta: float = 2.0, response_heatmap_weight: float = 1.0,
                 response_reg_weight: float = 0.25, training_only: bool = True):
        super().__init__()
        if not training_only:
            raise BevkdError("asd: training_only=false (the simulated-LiDAR branch and the fusion "
                             "feeding the student's own trunk) is not supported by the baseline "
                             "student architecture yet")
        for key, value, valid in (("mask", mask, MASK_KINDS), ("alpha_scope", alpha_scope,
                                  ALPHA_SCOPES), ("gt_agreement", gt_agreement, GT_AGREEMENT),
                                 ("sim_lift", sim_lift, SIM_LIFTS)):
            if value not in valid:
                raise BevkdError(f"asd: {key} must be one of {', '.join(valid)}; got {value!r}")
        if smooth_kernel < 1 or smooth_kernel % 2 == 0:
            raise BevkdError(f"asd: smooth_kernel must be odd and >= 1, got {smooth_kernel}")
        for role in (lidar_teacher, fusion_teacher, response_teacher):
            if role not in teacher_channels:
                raise BevkdError(f"asd needs a {role!r} teacher; given: "
                                 f"{', '.join(teacher_channels) or 'none'} (distill.teachers)")
        if student_level not in student_channels:
            raise BevkdError(f"asd: the student does not publish {student_level!r}")
        if sim_lift == "own" and student_level != "bev_in":
            raise BevkdError(f"asd: sim_lift=own lifts onto the student's lifted BEV, so "
                             f"student_level must be 'bev_in', got {student_level!r}")
        if sim_lift == "own" and "img_feats" not in student_channels:
            raise BevkdError("asd: sim_lift=own lifts the student's image features a second "
                             "time, and this student publishes no 'img_feats' (a camera "
                             "student does); or set sim_lift=shared")
        for role, lv in ((lidar_teacher, lidar_level), (fusion_teacher, fusion_level)):
            if lv not in teacher_channels[role]:
                raise BevkdError(f"asd: the {role} teacher does not publish {lv!r}")
        self.grid = grid
        self.lidar_teacher, self.fusion_teacher = lidar_teacher, fusion_teacher
        self.response_teacher = response_teacher
        self.student_level, self.lidar_level, self.fusion_level = (
            student_level, lidar_level, fusion_level)
        self.mask_kind, self.mask_min_radius = mask, mask_min_radius
        self.smooth_kernel, self.alpha_scope = smooth_kernel, alpha_scope
        self.sim_weight, self.fusion_weight = sim_weight, fusion_weight
        self.gamma, self.gt_agreement = gamma, gt_agreement
        self.peak_top_k, self.peak_threshold = peak_top_k, peak_threshold
        self.focal_beta = focal_beta
        self.response_heatmap_weight = response_heatmap_weight
        self.response_reg_weight = response_reg_weight
        self.training_only = training_only
        self.sim_lift = sim_lift
        self.requires = (student_level,) + (("img_feats",) if sim_lift == "own" else ())
        req: dict[str, tuple[str, ...]] = {lidar_teacher: (lidar_level,)}
        req[fusion_teacher] = tuple(dict.fromkeys(req.get(fusion_teacher, ()) + (fusion_level,)))
        req.setdefault(response_teacher, ())
        self.teacher_requires = req

        c = student_channels[student_level]
        self.gcm = GeometryCompensation(c, gcm_depth)
        self.fusion = HeterogeneousFusion(c, gate_bias_init)
        self.sim_adapter = _adapter(c, teacher_channels[lidar_teacher][lidar_level])
        self.fusion_adapter = _adapter(c, teacher_channels[fusion_teacher][fusion_level])

    # ------------------------------------------------------------------------------------------
    def attach(self, student: nn.Module, teachers: dict[str, nn.Module]) -> None:
        head = getattr(teachers[self.response_teacher], "head", None)
        if not isinstance(head, CenterHead):
            raise BevkdError(f"asd: the {self.response_teacher} teacher has no CenterHead `head`")
        # used only for its GT-heatmap targets (no parameters involved); not a submodule
        object.__setattr__(self, "_response_head", head)
        if self.sim_lift == "own" and "lift_depth" not in self._modules:
            encoder = getattr(student, "encoder", None)
            if not isinstance(encoder, CameraBevEncoder):
                raise BevkdError("asd: sim_lift=own needs a camera student with an LSS encoder "
                                 "(`encoder`: CameraBevEncoder) to copy its lift from; or set "
                                 "sim_lift=shared")
            if encoder.frames != 1:
                raise BevkdError(f"asd: sim_lift=own lifts the key frame only, and the student "
                                 f"stacks {encoder.frames} frames in its BEV; set "
                                 "sim_lift=shared for a multi-frame student")
            # the branch's own trainable lift: the student's depth net as it starts, and its
            # geometry (a view transformer holds no parameters); built here, before any
            # optimiser or checkpoint sees the model, because the constructor has no student
            self.lift_depth = copy.deepcopy(encoder.depth_net)
            self.lift_view = copy.deepcopy(encoder.view)

    @property
    def response_head(self) -> CenterHead:
        head = self.__dict__.get("_response_head")
        if head is None:
            raise BevkdError("asd: attach(student, teachers) was not called (the GT agreement "
                             "needs the response teacher's head targets)")
        return head

    def lift(self, img_feats: torch.Tensor, cams: CameraInputs) -> torch.Tensor:
        """The simulated branch's own lift (``sim_lift="own"``) of the key frame's image
        features ``img_feats`` (B, N, C, h, w) with the batch's cameras: (B, C_bev, Y, X), the
        shape of the student's ``bev_in``."""
        if "lift_depth" not in self._modules:
            raise BevkdError("asd: sim_lift=own, but attach(student, teachers) was not called")
        ego_T_cam, pix_T_cam, aug_T_pix = (cams.ego_T_cam[:, 0], cams.pix_T_cam[:, 0],
                                           cams.aug_T_pix[:, 0])
        params = camera_params(ego_T_cam, pix_T_cam, aug_T_pix, cams.bda)
        depth, context = self.lift_depth(img_feats.flatten(0, 1), params.flatten(0, 1))
        return self.lift_view(depth, context, ego_T_cam, pix_T_cam, aug_T_pix, cams.bda)

    def branches(self, f_cam: torch.Tensor, f_lift: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(F_sim, F_f)``, both (B, C, Y, X), from the camera BEV ``F_c`` (B, C, Y, X) and
        the second lift ``f_lift`` (same shape; None: the shared lift, ``F_sim = GCM(F_c)``)."""
        f_sim = self.gcm(f_cam if f_lift is None else f_lift)
        return f_sim, self.fusion(f_cam, f_sim)

    # ------------------------------------------------------------------------------------------
    def gt_heatmaps(self, batch: Batch, shape: tuple[int, int]) -> list[torch.Tensor]:
        """Per task the GT Gaussian agreement map (B, n_task, H, W) of ``gt_agreement``."""
        head = self.response_head
        heats = [t.heatmap for t in head.targets(batch.targets.boxes, batch.targets.labels, shape)]
        if self.gt_agreement == "any":
            agnostic = torch.cat(heats, 1).amax(1, keepdim=True)
            heats = [agnostic.expand_as(h) for h in heats]
        elif self.gt_agreement == "none":
            heats = [torch.ones_like(h) for h in heats]
        return heats

    def response_weights(self, teacher_preds: Sequence[dict[str, torch.Tensor]], batch: Batch
                         ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per task ``(ind (B, K) into n·H·W, q (B, K))``: teacher peaks and their soft weights
        ``q = p_t^γ · G`` (0 on padding), detached."""
        shape = tuple(teacher_preds[0]["heatmap"].shape[-2:])
        gts = self.gt_heatmaps(batch, shape)
        out = []
        with torch.no_grad():
            for pred, gt in zip(teacher_preds, gts):
                prob = pred["heatmap"].float().sigmoid()
                ind, valid = teacher_peaks(prob, self.peak_top_k, self.peak_threshold)
                p = prob.flatten(1).gather(1, ind)
                g = gt.to(prob.device).flatten(1).gather(1, ind)
                out.append((ind, p.pow(self.gamma) * g * valid))
        return out

    def response(self, student_preds: Sequence[dict[str, torch.Tensor]],
                 teacher_preds: Sequence[dict[str, torch.Tensor]], batch: Batch,
                 code_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Soft-weighted response terms (unweighted by the term weights): ``Σ q·QFL / Σ q`` and
        ``Σ q·Σ_k w_k |code_s − code_t| / Σ q`` at the teacher's peaks."""
        if len(student_preds) != len(teacher_preds):
            raise BevkdError("asd: student and teacher heads have different task groups")
        weights = self.response_weights(teacher_preds, batch)
        heat = student_preds[0]["heatmap"].new_zeros((), dtype=torch.float32)
        reg = heat.clone()
        total = heat.clone()
        for sp, tp, (ind, q) in zip(student_preds, teacher_preds, weights):
            if sp["heatmap"].shape != tp["heatmap"].shape:
                raise BevkdError(f"asd: student heatmap {tuple(sp['heatmap'].shape)} and teacher "
                                 f"heatmap {tuple(tp['heatmap'].shape)} differ")
            hw = sp["heatmap"].shape[-2] * sp["heatmap"].shape[-1]
            s_logit = sp["heatmap"].flatten(1).gather(1, ind)
            p_t = tp["heatmap"].float().sigmoid().flatten(1).gather(1, ind)
            heat = heat + (q * quality_focal(s_logit, p_t, self.focal_beta)).sum()
            cell = ind % hw
            err = (gather_code(sp, cell).float() - gather_code(tp, cell).float()).abs()
            if code_weights is not None:
                err = err * code_weights.to(err.device)
            reg = reg + (q * err.sum(-1)).sum()
            total = total + q.sum()
        norm = total.clamp_min(1e-4)
        return {"heatmap": heat / norm, "reg": reg / norm}

    # ------------------------------------------------------------------------------------------
    def forward(self, student_out: DetOutputs, teacher_out: dict[str, DetOutputs],
                batch: Batch) -> dict[str, torch.Tensor]:
        f_cam = student_out.feats[self.student_level]
        f_lift = None
        if self.sim_lift == "own":
            if batch.cams is None:
                raise BevkdError("asd: sim_lift=own needs the batch's cameras")
            f_lift = self.lift(student_out.feats["img_feats"], batch.cams)
        f_sim, f_fused = self.branches(f_cam, f_lift)
        out: dict[str, torch.Tensor] = {}
        pairs = (("sim", self.sim_weight, self.sim_adapter, f_sim,
                  teacher_out[self.lidar_teacher].feats[self.lidar_level]),
                 ("fusion", self.fusion_weight, self.fusion_adapter, f_fused,
                  teacher_out[self.fusion_teacher].feats[self.fusion_level]))
        for term, w, adapter, s, t in pairs:
            if w == 0:
                continue
            shape = tuple(t.shape[-2:])
            s = resize_to(adapter(s), shape)
            m = feature_mask(self.mask_kind, batch.targets.boxes, self.grid, shape,
                             self.mask_min_radius).to(t.device)
            out[term] = w * adaptive_smooth_loss(s, t, m, self.smooth_kernel, self.alpha_scope)
        if self.response_heatmap_weight or self.response_reg_weight:
            head = self.response_head
            r = self.response(student_out.preds, teacher_out[self.response_teacher].preds, batch,
                              head.code_weights)
            out["resp_heatmap"] = self.response_heatmap_weight * r["heatmap"]
            out["resp_reg"] = self.response_reg_weight * r["reg"]
        return out


__all__ = ["ASD", "GT_AGREEMENT", "SIM_LIFTS", "quality_focal", "teacher_peaks"]

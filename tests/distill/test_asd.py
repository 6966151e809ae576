"""ASD (DESIGN §4.4, our reading of the abstract): the math pinned with hand-made tensors."""

from __future__ import annotations

import math
import os

import pytest
import torch
from torch import nn

from bevkd.distill.asd import ASD, quality_focal, teacher_peaks
from bevkd.distill.asd_fusion import (GeometryCompensation, HeterogeneousFusion,
                                      adaptive_smooth_loss, granularity_weight, smooth)
from bevkd.errors import BevkdError
from bevkd.models.grid import BevGrid
from bevkd.models.heads.center_head import CenterHead
from bevkd.models.outputs import DetOutputs
from bevkd.structures.batch import Batch, Meta, Targets
from bevkd.structures.boxes import Boxes3D

GRID = BevGrid(cell=6.4)  # 16 x 16 cells
S_CH = {"bev_in": 8, "bev_s1": 8, "bev_s2": 16, "bev_neck": 16}
T_CH = {"lidar": {"bev_in": 6, "bev_s1": 8, "bev_s2": 16, "bev_neck": 16},
        "fusion": {"bev_in": 12, "bev_s1": 8, "bev_s2": 16, "bev_neck": 16}}


class _Holder(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = CenterHead(in_channels=8, grid=GRID, shared_channels=8, head_channels=8)


def _cell_centre(ix: int, iy: int) -> tuple[float, float]:
    return -51.2 + (ix + 0.5) * 6.4, -51.2 + (iy + 0.5) * 6.4


def _batch(boxes: list[list[list[float]]], labels: list[list[int]]) -> Batch:
    bsz = len(boxes)
    return Batch(cams=None, lidar=None,
                 targets=Targets([Boxes3D(torch.tensor(b, dtype=torch.float32).reshape(-1, 9))
                                  for b in boxes],
                                 [torch.tensor(lb, dtype=torch.long) for lb in labels], None),
                 meta=Meta([f"s{i}" for i in range(bsz)],
                           torch.eye(4, dtype=torch.float64).repeat(bsz, 1, 1), [0] * bsz))


def _asd(**kw) -> tuple[ASD, _Holder]:
    # the loss math on a given camera BEV: the shared lift (the constructor's default; the own
    # lift needs a camera student: test_contract.py and the tests below build one)
    d, holder = ASD(GRID, S_CH, T_CH, **kw), _Holder()
    d.attach(nn.Module(), {"lidar": _Holder(), "fusion": holder})
    return d, holder


def _flat_preds(bsz: int = 1) -> list[dict[str, torch.Tensor]]:
    preds = _Holder().head(torch.zeros(bsz, 8, 16, 16))
    preds = [{k: torch.zeros_like(v) for k, v in p.items()} for p in preds]
    for p in preds:
        p["heatmap"].fill_(-20.0)
    return preds


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


# ---------------------------------------------------------------------------------------------
# Adaptive-smooth feature distillation
# ---------------------------------------------------------------------------------------------

def test_alpha_coarse_where_discrepancy_is_large_fine_where_small():
    t = torch.zeros(1, 4, 8, 8)
    s = torch.zeros(1, 4, 8, 8)
    s[0, :, :, :] = torch.linspace(0, 0.5, 8)[None, None, :]  # discrepancy grows along x
    s[0, :, 2:4, 2:4] = 5.0                                    # and a large mismatch
    a = granularity_weight(s, t)
    d = ((s - t) ** 2).mean(1, keepdim=True)
    assert a.requires_grad is False and a.shape == (1, 1, 8, 8)
    assert float(a[0, 0, 2:4, 2:4].min()) > 0.95   # large discrepancy -> coarse (alpha -> 1)
    assert float(a[0, 0, :, 0].max()) < 0.5        # no discrepancy -> fine (alpha < 1/2)
    z = (d - d.mean()) / d.std(unbiased=False)
    assert torch.allclose(a, torch.sigmoid(z), atol=1e-5)  # sigma((d - mean d) / std d)
    order = d.flatten().argsort()
    assert bool((a.flatten()[order].diff() >= -1e-7).all())  # monotone in the discrepancy
    assert torch.allclose(granularity_weight(t + 1.0, t), torch.full_like(a, 0.5))  # constant d


def test_alpha_statistics_per_sample_or_over_the_batch():
    t = torch.zeros(2, 1, 4, 4)
    s = torch.zeros(2, 1, 4, 4)
    ramp = torch.linspace(0.1, 1.0, 16).reshape(4, 4)
    s[0, 0], s[1, 0] = ramp, 3.0 * ramp  # sample 1: the same pattern, 9x the discrepancy
    d = (s - t) ** 2

    def z(x: torch.Tensor) -> torch.Tensor:
        return (x - x.mean()) / x.std(unbiased=False)

    per_sample = granularity_weight(s, t, "sample")
    # each sample against its own statistics: the scale drops out, both get the same alpha
    assert torch.allclose(per_sample[0, 0], torch.sigmoid(z(d[0, 0])), atol=1e-5)
    assert torch.allclose(per_sample[0], per_sample[1], atol=1e-5)
    batch = granularity_weight(s, t, "batch")
    assert torch.allclose(batch, torch.sigmoid(z(d)), atol=1e-5)
    assert float(batch[1].mean()) > 0.5 > float(batch[0].mean())  # the worse sample goes coarse
    with pytest.raises(BevkdError, match="unknown alpha scope 'image'"):
        granularity_weight(s, t, "image")


def test_adaptive_smooth_loss_zero_when_equal_and_formula():
    s = torch.randn(2, 5, 8, 8)
    for mask in (torch.ones(2, 1, 8, 8), torch.rand(2, 1, 8, 8)):
        assert float(adaptive_smooth_loss(s.clone(), s, mask)) == 0.0
    t = torch.randn(2, 5, 8, 8)
    m = torch.rand(2, 1, 8, 8)
    fine = ((s - t) ** 2).sum(1, keepdim=True)
    coarse = ((smooth(s) - smooth(t)) ** 2).sum(1, keepdim=True)
    for a in (torch.zeros_like(m), torch.ones_like(m), torch.rand_like(m)):
        want = (m * ((1 - a) * fine + a * coarse)).sum() / m.sum()
        assert torch.allclose(adaptive_smooth_loss(s, t, m, alpha=a), want, atol=1e-5)
    # a constant offset c survives smoothing everywhere (borders too): loss = C c^2 for any alpha
    assert math.isclose(float(adaptive_smooth_loss(t + 0.5, t, m)), 5 * 0.25, rel_tol=1e-5)
    # smoothing = 3x3 average, stride 1
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 9.0
    sm = smooth(x)
    assert torch.allclose(sm[0, 0, 1:4, 1:4], torch.ones(3, 3)) and float(sm[0, 0, 0, 0]) == 0.0


def test_feature_terms_use_the_gaussian_mask():
    d, _ = _asd(response_heatmap_weight=0.0, response_reg_weight=0.0)
    x, y = _cell_centre(8, 8)
    batch = _batch([[[x, y, 0.0, 4.5, 2.0, 1.6, 0.0, 0.0, 0.0]]], [[0]])
    f_cam = torch.randn(1, 8, 16, 16, requires_grad=True)
    with torch.no_grad():
        f_sim, f_f = d.branches(f_cam)
        t_l, t_f = d.sim_adapter(f_sim).clone(), d.fusion_adapter(f_f).clone()
    teachers = {"lidar": DetOutputs({"bev_in": t_l}), "fusion": DetOutputs({"bev_in": t_f})}
    out = d(DetOutputs({"bev_in": f_cam}), teachers, batch)
    assert set(out) == {"sim", "fusion"} and all(v.item() == 0.0 for v in out.values())
    t_l[0, :, 0, 0] += 3.0  # far from the object: outside the Gaussian mask
    assert d(DetOutputs({"bev_in": f_cam}), teachers, batch)["sim"].item() == 0.0
    t_l[0, :, 8, 8] += 3.0  # at the object's centre
    out = d(DetOutputs({"bev_in": f_cam}), teachers, batch)
    assert out["sim"].item() > 0 and out["fusion"].item() == 0.0
    out["sim"].backward()
    assert f_cam.grad.abs().sum() > 0 and d.gcm.body[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("mask,expected", [
    # a 4.5 x 2 m box at a 6.4 m cell's centre: the Gaussian has the minimum radius 1 (sigma
    # 0.5), so the cell beside the centre weighs e^-2 of a mask summing to 1 + 4e^-2 + 4e^-4
    ("gaussian", math.exp(-2) / (1 + 4 * math.exp(-2) + 4 * math.exp(-4))),
    ("box", 0.0),  # the footprint covers the centre cell only
    ("all", 1 / 256),  # every one of the 16 x 16 cells
])
def test_feature_term_value_under_each_mask(mask, expected):
    # smooth_kernel 1: the smoothed and the fine errors are the same, so alpha drops out and
    # the term is w * sum_cells M * ||S - T||^2 / sum M
    d, _ = _asd(mask=mask, smooth_kernel=1, response_heatmap_weight=0.0, response_reg_weight=0.0)
    x, y = _cell_centre(8, 8)
    batch = _batch([[[x, y, 0.0, 4.5, 2.0, 1.6, 0.0, 0.0, 0.0]]], [[0]])
    f_cam = torch.randn(1, 8, 16, 16)
    with torch.no_grad():
        f_sim, f_f = d.branches(f_cam)
        t_l, t_f = d.sim_adapter(f_sim).clone(), d.fusion_adapter(f_f).clone()
        t_l[0, :, 8, 9] += 3.0  # the cell beside the centre (x + 1): 6 channels, each off by 3
        out = d(DetOutputs({"bev_in": f_cam}),
                {"lidar": DetOutputs({"bev_in": t_l}), "fusion": DetOutputs({"bev_in": t_f})},
                batch)
    assert out["sim"].item() == pytest.approx(0.1 * 6 * 9.0 * expected, rel=1e-5, abs=1e-9)
    assert out["fusion"].item() == pytest.approx(0.0, abs=1e-9)


def test_box_mask_covers_the_cells_whose_centres_lie_inside_the_footprint():
    from bevkd.distill.asd_fusion import feature_mask

    x, y = _cell_centre(8, 8)
    # 19.2 m along x: the centres of cells 7, 8 and 9 (row 8) lie inside, 6 and 10 outside
    boxes = _batch([[[x, y, 0.0, 19.2, 6.4, 1.6, 0.0, 0.0, 0.0]]], [[0]]).targets.boxes
    m = feature_mask("box", boxes, GRID, (16, 16))
    assert m.shape == (1, 1, 16, 16) and m[0, 0].nonzero().tolist() == [[8, 7], [8, 8], [8, 9]]
    with pytest.raises(BevkdError, match="unknown mask kind 'disc'"):
        feature_mask("disc", boxes, GRID, (16, 16))


# ---------------------------------------------------------------------------------------------
# Student-side branches
# ---------------------------------------------------------------------------------------------

def test_heterogeneous_gate_starts_camera_dominant():
    f_c, f_s = torch.randn(2, 8, 16, 16), torch.randn(2, 8, 16, 16)
    fusion = HeterogeneousFusion(8)
    with torch.no_grad():
        g = fusion.gate_values(f_c, f_s)
    assert float(g.mean()) < 0.5 and float(g.max()) < 0.5
    assert math.isclose(float(g.mean()), 1 / (1 + math.exp(2.0)), abs_tol=0.02)
    d, _ = _asd()
    with torch.no_grad():
        assert HeterogeneousFusion(8, gate_bias_init=2.0).gate_values(f_c, f_s).mean() > 0.5
        assert d.fusion.gate_values(f_c, f_s).mean() < 0.5
    # GCM is a residual block; depth 0 is the identity
    assert torch.equal(GeometryCompensation(8, 0)(f_c), f_c)
    assert GeometryCompensation(8, 2)(f_c).shape == f_c.shape


def test_heterogeneous_fusion_is_camera_plus_gated_phi_of_sim():
    """``F_f = F_c + g ⊙ φ(F_sim)``, ``g = σ(Conv3×3([F_c, F_sim]))`` with a gate set by hand;
    a closed gate (g ≈ 0) gives the camera feature."""
    g = torch.Generator().manual_seed(2)
    f_c, f_s = torch.randn(2, 4, 5, 6, generator=g), torch.randn(2, 4, 5, 6, generator=g)
    fusion = HeterogeneousFusion(4).eval()  # φ's BN on its initial statistics: x / sqrt(1 + eps)
    with torch.no_grad():
        fusion.phi[0].weight.copy_(torch.eye(4).view(4, 4, 1, 1))  # φ(x) = ReLU(x / sqrt(1+eps))
        fusion.gate.weight.zero_()
        fusion.gate.bias.fill_(0.3)
        for i in range(4):  # per channel: g_i = σ(F_c,i − 0.5·F_sim,i + 0.3) (centre tap)
            fusion.gate.weight[i, i, 1, 1] = 1.0
            fusion.gate.weight[i, 4 + i, 1, 1] = -0.5
        out = fusion(f_c, f_s)
    gate = 1 / (1 + torch.exp(-(f_c - 0.5 * f_s + 0.3)))
    phi = torch.clamp(f_s / math.sqrt(1 + 1e-5), min=0)
    assert torch.allclose(out, f_c + gate * phi, atol=1e-6)
    # a constant gate: only the bias
    with torch.no_grad():
        fusion.gate.weight.zero_()
        assert torch.allclose(fusion(f_c, f_s), f_c + 1 / (1 + math.exp(-0.3)) * phi, atol=1e-6)
        fusion.gate.bias.fill_(-40.0)  # closed: the camera feature, however large φ(F_sim)
        assert torch.allclose(fusion(f_c, f_s * 100), f_c, atol=1e-6)


def test_training_only_and_bad_choices_are_refused():
    with pytest.raises(BevkdError, match="training_only"):
        ASD(GRID, S_CH, T_CH, training_only=False)
    with pytest.raises(BevkdError, match="mask"):
        ASD(GRID, S_CH, T_CH, mask="circle")
    with pytest.raises(BevkdError, match="fusion"):
        ASD(GRID, S_CH, {"lidar": T_CH["lidar"]})
    d = ASD(GRID, S_CH, T_CH)
    assert d.requires == ("bev_in",)
    assert d.teacher_requires == {"lidar": ("bev_in",), "fusion": ("bev_in",)}


# ---------------------------------------------------------------------------------------------
# Soft-weighted response
# ---------------------------------------------------------------------------------------------

def _response_setup():
    x, y = _cell_centre(8, 8)
    batch = _batch([[[x, y, 0.0, 4.0, 2.0, 1.6, 0.0, 0.0, 0.0]]], [[0]])  # a car at cell (8, 8)
    t = _flat_preds()
    t[0]["heatmap"][0, 0, 8, 8] = _logit(0.8)    # car peak on the GT centre: G = 1
    t[0]["heatmap"][0, 0, 8, 10] = _logit(0.6)   # car peak two cells away: G = exp(-4 / 2s^2)
    t[0]["heatmap"][0, 0, 2, 2] = _logit(0.9)    # confident car peak, no GT: G = 0
    t[1]["heatmap"][0, 0, 8, 8] = _logit(0.7)    # truck peak on the car's centre
    t[0]["heatmap"][0, 0, 12, 12] = _logit(0.05)  # below the peak threshold
    return batch, t


def test_soft_weights_follow_p_gamma_times_gt_agreement():
    batch, t = _response_setup()
    sigma = (2 * 2 + 1) / 6  # radius max(2, r(4/6.4, 2/6.4)) = 2 cells
    g2 = math.exp(-4 / (2 * sigma ** 2))

    def weights(**kw):
        d, _ = _asd(**kw)
        out = {}
        for task, (ind, q) in enumerate(d.response_weights(t, batch)):
            for i, qi in zip(ind[0].tolist(), q[0].tolist()):
                if qi > 0:
                    out[(task, i // 256, i % 256 // 16, i % 16)] = qi
        return out

    got = weights()  # gamma 2, same-class GT agreement
    assert got.keys() == {(0, 0, 8, 8), (0, 0, 8, 10)}
    assert math.isclose(got[(0, 0, 8, 8)], 0.8 ** 2, rel_tol=1e-4)
    assert math.isclose(got[(0, 0, 8, 10)], 0.6 ** 2 * g2, rel_tol=1e-4)
    got = weights(gt_agreement="any")  # class-agnostic: the truck peak agrees too
    assert math.isclose(got[(1, 0, 8, 8)], 0.7 ** 2, rel_tol=1e-4)
    got = weights(gt_agreement="none", gamma=1.0)  # q = p_t: every peak above 0.1
    assert got.keys() == {(0, 0, 8, 8), (0, 0, 8, 10), (0, 0, 2, 2), (1, 0, 8, 8)}
    assert math.isclose(got[(0, 0, 2, 2)], 0.9, rel_tol=1e-4)


def test_soft_response_loss_normalised_by_the_weight_sum():
    batch, t = _response_setup()
    d, holder = _asd()
    s = [{k: v.clone() for k, v in p.items()} for p in t]
    r = d.response(s, t, batch, holder.head.code_weights)
    assert float(r["heatmap"]) == 0.0 and float(r["reg"]) == 0.0  # student == teacher
    q0, q1 = 0.64, 0.36 * math.exp(-4 / (2 * (5 / 6) ** 2))
    s[0]["reg"][0, 0, 8, 8] += 1.0   # x offset wrong at the best peak (code weight 1)
    s[0]["vel"][0, 0, 8, 10] += 1.0  # vx wrong at the second (code weight 0.2)
    s[0]["dim"][0, 0, 2, 2] += 5.0   # wrong where the teacher disagrees with GT: q = 0
    r = d.response(s, t, batch, holder.head.code_weights)
    assert math.isclose(float(r["reg"]), (q0 * 1.0 + q1 * 0.2) / (q0 + q1), rel_tol=1e-4)
    s[0]["heatmap"][0, 0, 8, 8] = _logit(0.3)  # student under-confident at the peak
    r = d.response(s, t, batch, holder.head.code_weights)
    want = q0 * float(quality_focal(torch.tensor(_logit(0.3)), torch.tensor(0.8))) / (q0 + q1)
    assert math.isclose(float(r["heatmap"]), want, rel_tol=1e-4)
    assert math.isclose(float(quality_focal(torch.tensor(_logit(0.3)), torch.tensor(0.8))),
                        -(0.8 * math.log(0.3) + 0.2 * math.log(0.7)) * 0.5 ** 2, rel_tol=1e-5)
    # full forward: named, weighted terms
    f_cam = torch.randn(1, 8, 16, 16)
    out = d(DetOutputs({"bev_in": f_cam}, s),
            {"lidar": DetOutputs({"bev_in": torch.randn(1, 6, 16, 16)}),
             "fusion": DetOutputs({"bev_in": torch.randn(1, 12, 16, 16)}, t)}, batch)
    assert set(out) == {"sim", "fusion", "resp_heatmap", "resp_reg"}
    assert math.isclose(float(out["resp_reg"]), 0.25 * float(r["reg"]), rel_tol=1e-5)


def test_teacher_peaks_are_local_maxima_above_threshold():
    prob = torch.full((1, 1, 6, 6), 0.01)
    prob[0, 0, 2, 2], prob[0, 0, 2, 3] = 0.9, 0.5  # 0.5 is next to a higher cell: not a peak
    prob[0, 0, 5, 5] = 0.2
    ind, valid = teacher_peaks(prob, top_k=4, threshold=0.1)
    assert ind[0][valid[0]].tolist() == [2 * 6 + 2, 5 * 6 + 5]


def test_config_spells_out_the_defaults():
    import inspect

    from bevkd.builder import typed_kwargs
    from bevkd.engine.config import load_experiment

    from bevkd.config import CONFIGS_DIR

    cfg = load_experiment(os.path.join(CONFIGS_DIR, "distill", "asd.yaml"))
    (method,) = cfg.distill.methods
    assert method.type == "asd" and cfg.data.use_lidar
    assert set(cfg.distill.teachers) == {"lidar", "fusion"}
    args = typed_kwargs(ASD, method.args, "args")
    params = {k: p.default for k, p in inspect.signature(ASD.__init__).parameters.items()
              if k not in ("self", "grid", "student_channels", "teacher_channels")}
    # the one value the config sets against the default: the second lift (the default keeps
    # configs written before it, which lack the key, building what they trained)
    assert args == {**params, "sim_lift": "own"} and params["sim_lift"] == "shared"


def _camera_student(synth_root: str):
    """A tiny BEVDepth student on the 16 x 16 grid of 6.4 m cells and a batch of 2 for it."""
    from bevkd.builder import build_model
    from bevkd.data.nuscenes import NuScenesDataset
    from bevkd.engine.config import load_experiment
    from bevkd.structures.batch import collate

    cfg = load_experiment("configs/student/bevdepth.yaml", "tiny", [
        "grid.cell=6.4", "model.args.head_channels=8", "model.args.trunk_channels=[8, 16]",
        "model.args.bev_neck_channels=8"])
    torch.manual_seed(0)
    student = build_model(cfg)
    ds = NuScenesDataset(synth_root, "v1.0-synth", "synth_train", cfg.data, train=True)
    return student, collate([ds[i] for i in range(2)])


def test_own_lift_starts_as_the_students_lift_and_trains_its_own_depth(synth_root):
    """sim_lift=own: the second lift copies the student's depth net and geometry, so with the
    same weights (eval: no dropout) it reproduces the student's bev_in from img_feats and the
    batch's cameras; its loss trains its own depth net and the shared image features, not the
    student's depth net."""
    student, batch = _camera_student(synth_root)
    c = student.feature_channels["bev_in"]
    teacher_ch = {"lidar": {"bev_in": c}, "fusion": {"bev_in": c}}
    d = ASD(GRID, student.feature_channels, teacher_ch, sim_lift="own", sim_weight=1.0,
            fusion_weight=0.0, response_heatmap_weight=0.0, response_reg_weight=0.0)
    assert d.requires == ("bev_in", "img_feats")
    d.attach(student, {"lidar": _Holder(), "fusion": _Holder()})
    assert d.lift_depth is not student.encoder.depth_net
    student.eval()
    d.eval()
    with torch.no_grad():
        out = student(batch)
        lifted = d.lift(out.feats["img_feats"], batch.cams)
    assert lifted.shape == out.feats["bev_in"].shape
    assert torch.allclose(lifted, out.feats["bev_in"], atol=1e-5, rtol=1e-4)
    # a trained copy parts from the student's: the lift then differs
    with torch.no_grad():
        d.lift_depth.context_conv.bias.add_(1.0)
        assert not torch.allclose(d.lift(out.feats["img_feats"], batch.cams),
                                  out.feats["bev_in"], atol=1e-3)
    student.train()
    d.train()
    out = student(batch)
    target = {"lidar": DetOutputs({"bev_in": torch.randn_like(out.feats["bev_in"])}),
              "fusion": DetOutputs({"bev_in": out.feats["bev_in"].detach()})}
    terms = d(out, target, batch)
    assert set(terms) == {"sim"} and terms["sim"].item() > 0
    terms["sim"].backward()

    def reached(module: nn.Module) -> bool:
        return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())

    assert reached(d.lift_depth) and reached(d.gcm) and reached(student.encoder.image_neck)
    assert not reached(student.encoder.depth_net)  # the term never passes the student's lift


def test_own_lift_needs_a_camera_student():
    with pytest.raises(BevkdError, match="publishes no 'img_feats'"):
        ASD(GRID, S_CH, T_CH, sim_lift="own")
    d = ASD(GRID, {**S_CH, "img_feats": 8}, T_CH, sim_lift="own")
    with pytest.raises(BevkdError, match="needs a camera student with an LSS encoder"):
        d.attach(nn.Module(), {"lidar": _Holder(), "fusion": _Holder()})
    with pytest.raises(BevkdError, match="sim_lift must be one of own, shared"):
        ASD(GRID, S_CH, T_CH, sim_lift="twice")
    with pytest.raises(BevkdError, match="student_level must be 'bev_in', got 'bev_s1'"):
        ASD(GRID, {**S_CH, "img_feats": 8}, T_CH, sim_lift="own", student_level="bev_s1")

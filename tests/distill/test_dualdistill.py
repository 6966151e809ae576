"""DualDistill (DESIGN §4.3): the math pinned with hand-made tensors and tiny real detectors."""

from __future__ import annotations

import math
import os

import pytest
import torch

from bevkd.distill.base import DistillModel
from bevkd.distill.dualdistill import (DualDistill, OrthogonalLinear, mfd_terms,
                                       spatial_attention)
from bevkd.distill.masks import box_weights, false_positive_region, teacher_heatmap
from bevkd.errors import BevkdError
from bevkd.models.grid import BevGrid
from bevkd.structures.classes import CLASS_INDEX, TASK_GROUPS
from bevkd.models.lidar.centerpoint import CenterPointPillars
from bevkd.models.outputs import DetOutputs
from bevkd.structures.batch import Batch, LidarInputs, Meta, Targets
from bevkd.structures.boxes import Boxes3D

GRID = BevGrid(cell=6.4)  # 16 x 16 cells


def _tiny() -> CenterPointPillars:
    return CenterPointPillars(grid=GRID, pillar_channels=8, trunk_channels=(8, 16),
                              neck_channels=8, head_channels=8)


def _batch(boxes: list[list[list[float]]], labels: list[list[int]], n_points: int = 600) -> Batch:
    bsz = len(boxes)
    g = torch.Generator().manual_seed(1)
    pts = torch.cat([torch.rand(n_points, 2, generator=g) * 102.4 - 51.2,
                     torch.rand(n_points, 1, generator=g) * 4 - 2,
                     torch.rand(n_points, 1, generator=g) * 255,
                     torch.zeros(n_points, 2)], 1)
    bidx = torch.arange(n_points) % bsz
    return Batch(cams=None, lidar=LidarInputs(pts, bidx),
                 targets=Targets([Boxes3D(torch.tensor(b, dtype=torch.float32).reshape(-1, 9))
                                  for b in boxes],
                                 [torch.tensor(lb, dtype=torch.long) for lb in labels], None),
                 meta=Meta([f"s{i}" for i in range(bsz)],
                           torch.eye(4, dtype=torch.float64).repeat(bsz, 1, 1), [0] * bsz))


def _cell_centre(ix: int, iy: int) -> tuple[float, float]:
    return -51.2 + (ix + 0.5) * 6.4, -51.2 + (iy + 0.5) * 6.4


# ---------------------------------------------------------------------------------------------
# AOA's orthogonal map
# ---------------------------------------------------------------------------------------------

def _assert_orthogonal(w: torch.Tensor) -> None:
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    assert torch.allclose(gram, torch.eye(gram.shape[0]), atol=1e-5)


@pytest.mark.parametrize("c_in,c_out", [(8, 8), (12, 8), (8, 12)])
def test_orthogonal_linear_stays_orthogonal(c_in, c_out):
    ol = OrthogonalLinear(c_in, c_out)
    _assert_orthogonal(ol.weight.detach())
    assert torch.equal(ol.gamma.detach(), torch.ones(c_out))
    assert torch.equal(ol.beta.detach(), torch.zeros(c_out))
    w0 = ol.weight.detach().clone()
    opt = torch.optim.Adam(ol.parameters(), lr=0.1)
    x, target = torch.randn(2, c_in, 3, 4), torch.randn(2, c_out, 3, 4)
    for _ in range(2):
        opt.zero_grad()
        ((ol(x) - target) ** 2).mean().backward()
        opt.step()
    assert not torch.allclose(ol.weight.detach(), w0, atol=1e-3)  # it did learn
    _assert_orthogonal(ol.weight.detach())                           # and stayed orthogonal


def test_orthogonal_linear_identity_gamma_beta():
    ol = OrthogonalLinear(6, 6)
    ol.linear.weight = torch.eye(6)  # the parametrisation accepts an orthogonal matrix
    x = torch.randn(2, 6, 3, 4)
    assert torch.allclose(ol(x), x, atol=1e-6)
    with torch.no_grad():
        ol.gamma.fill_(2.0)
        ol.beta.copy_(torch.arange(6.0))
    assert torch.allclose(ol(x), 2 * x + torch.arange(6.0)[None, :, None, None], atol=1e-5)
    # per cell: a channel permutation moves channels, not cells
    perm = torch.eye(6)[[1, 0, 2, 3, 5, 4]]
    ol.linear.weight = perm
    with torch.no_grad():
        ol.gamma.fill_(1.0)
        ol.beta.zero_()
    assert torch.allclose(ol(x), x[:, [1, 0, 2, 3, 5, 4]], atol=1e-6)


def test_aoa_shapes_and_attention_pooling():
    ch = {"bev_in": 8, "bev_s1": 8, "bev_s2": 16, "bev_neck": 16}
    tch = {"lidar": {"bev_in": 8, "bev_s1": 16, "bev_s2": 32, "bev_neck": 8}}
    full = DualDistill(GRID, ch, tch)
    assert full.align["bev_s1"].queries.shape == (16 * 16, 8)  # original: full level size
    assert full.align["bev_s2"].queries.shape == (8 * 8, 16)
    pooled = DualDistill(GRID, ch, tch, attn_size=4)
    assert pooled.align["bev_s1"].queries.shape == (16, 8)
    x = torch.randn(2, 8, 16, 16)
    assert pooled.align["bev_s1"](x, (16, 16)).shape == (2, 16, 16, 16)
    assert pooled.align["bev_s2"](torch.randn(2, 16, 8, 8), (8, 8)).shape == (2, 32, 8, 8)
    assert full.requires == ("bev_s1", "bev_s2", "bev_neck")
    with pytest.raises(BevkdError, match="8 attention heads do not divide the student's 12"):
        DualDistill(GRID, {**ch, "bev_s1": 12}, tch)
    # the attention's keys and values: the projected level average-pooled to 4 x 4, plus the
    # positional embedding; its queries: the 16 learned ones
    aoa = pooled.align["bev_s1"].eval()
    seen = {}
    aoa.attn.register_forward_hook(lambda m, args, out: seen.update(q=args[0], k=args[1],
                                                                     v=args[2]))
    with torch.no_grad():
        aoa(x, (16, 16))
        want = torch.nn.functional.adaptive_avg_pool2d(aoa.proj(x), (4, 4))
        want = want.flatten(2).transpose(1, 2) + aoa.pos
        queries = torch.relu(aoa.query_proj(aoa.queries))
    assert torch.allclose(seen["k"], want, atol=1e-6) and seen["v"] is seen["k"]
    assert seen["q"].shape == (2, 16, 8) and torch.allclose(seen["q"][1], queries, atol=1e-6)
    # residual "input": with the FFN's output zeroed, the level passes through unchanged to the
    # orthogonal map (resized to the teacher's grid)
    with torch.no_grad():
        aoa.ffn[-1].weight.zero_()
        aoa.ffn[-1].bias.zero_()
        assert torch.allclose(aoa(x, (16, 16)), aoa.ortho(x), atol=1e-6)
        half = torch.nn.functional.interpolate(x, size=(8, 8), mode="bilinear",
                                               align_corners=False)
        assert torch.allclose(aoa(x, (8, 8)), aoa.ortho(half), atol=1e-6)


# ---------------------------------------------------------------------------------------------
# MFD
# ---------------------------------------------------------------------------------------------

def test_region_weights_by_hand():
    x, y = _cell_centre(8, 8)
    big = [x, y, 0.0, 13.0, 6.4, 1.5, 0.0, 0.0, 0.0]  # 3 cell centres inside: ix 7..9, iy 8
    sx, sy = _cell_centre(3, 2)
    small = [sx, sy, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]  # only its own cell centre
    fg, w = box_weights([Boxes3D(torch.tensor([big])), Boxes3D(torch.tensor([small, big]))],
                        GRID, (16, 16))
    expect_fg = torch.zeros(2, 1, 16, 16)
    expect_fg[:, 0, 8, 7:10] = 1
    expect_fg[1, 0, 2, 3] = 1
    assert torch.equal(fg, expect_fg)
    assert torch.allclose(w[0, 0, 8, 7:10], torch.full((3,), math.sqrt(6.4 * 6.4 / (13.0 * 6.4))))
    assert math.isclose(float(w[1, 0, 2, 3]), math.sqrt(6.4 * 6.4 / 1.0), rel_tol=1e-5)
    assert math.isclose(float(w[0, 0, 0, 0]), 1 / (256 - 3), rel_tol=1e-6)
    assert math.isclose(float(w[1, 0, 15, 15]), 1 / (256 - 4), rel_tol=1e-6)


def _attention_by_hand(f: torch.Tensor, temp: float) -> torch.Tensor:
    b, _, h, w = f.shape
    e = torch.exp(f.abs().mean(1) / temp).view(b, -1)
    return (h * w * e / e.sum(1, keepdim=True)).view(b, 1, h, w)


def test_mfd_zero_when_equal_and_grows_only_with_masked_difference():
    t = torch.randn(2, 4, 16, 16)
    fg = torch.zeros(2, 1, 16, 16)
    fg[:, :, 5:7, 5:7] = 1
    region = torch.where(fg > 0, torch.tensor(0.7), torch.tensor(1 / 252))
    fp = torch.zeros(2, 1, 16, 16)
    fp[:, :, 12, 3] = 1
    fp[0, :, 12, 4] = 1
    zero = mfd_terms(t.clone(), t, fg, region, fp)
    assert all(float(v) == 0.0 for v in zero.values())

    s = t.clone()
    s[0, :, 5, 5] += 1.0  # foreground cell of sample 0
    r = mfd_terms(s, t, fg, region, fp)
    att = 0.5 * (_attention_by_hand(t, 0.5) + _attention_by_hand(s, 0.5))
    assert torch.allclose(att, 0.5 * (spatial_attention(t) + spatial_attention(s)), atol=1e-5)
    assert math.isclose(float(r["fg"]), 4 * 0.7 * float(att[0, 0, 5, 5]) / 2, rel_tol=1e-5)
    assert float(r["bg"]) == 0.0 and float(r["fp"]) == 0.0

    s2 = t.clone()
    s2[0, :, 12, 3] += 2.0  # a background cell in sample 0's false-positive region (N_fp = 2)
    r2 = mfd_terms(s2, t, fg, region, fp)
    att2 = 0.5 * (_attention_by_hand(t, 0.5) + _attention_by_hand(s2, 0.5))
    assert float(r2["fg"]) == 0.0
    assert math.isclose(float(r2["bg"]), 16 / 252 * float(att2[0, 0, 12, 3]) / 2, rel_tol=1e-5)
    assert math.isclose(float(r2["fp"]), 16 * float(att2[0, 0, 12, 3]) / 2 / 2, rel_tol=1e-5)
    # larger difference, larger loss
    s3 = t.clone()
    s3[0, :, 5, 5] += 2.0
    assert float(mfd_terms(s3, t, fg, region, fp)["fg"]) > float(r["fg"])


# ---------------------------------------------------------------------------------------------
# CRD
# ---------------------------------------------------------------------------------------------

def _distiller(student, teacher, **kw) -> DualDistill:
    return DualDistill(GRID, student.feature_channels, {"lidar": teacher.feature_channels}, **kw)


def test_crd_pseudo_boxes_keep_peaks_above_the_temperature_threshold():
    teacher = _tiny()
    d = _distiller(_tiny(), teacher)
    d.attach(_tiny(), {"lidar": teacher})
    thr = 0.1 * math.log(0.1 / 0.9)  # sigmoid(l / 0.1) >= 0.1  <=>  l >= 0.1 * logit(0.1)
    preds = teacher.head(torch.zeros(1, 16, 16, 16))
    preds = [{k: torch.zeros_like(v) for k, v in p.items()} for p in preds]
    for p in preds:
        p["heatmap"].fill_(-20.0)
    cars = {(2, 2): thr + 0.01, (6, 2): thr - 0.01, (10, 2): 0.5, (14, 2): -1.0}
    for (ix, iy), logit in cars.items():
        preds[0]["heatmap"][0, 0, iy, ix] = logit
    preds[5]["heatmap"][0, 0, 10, 10] = thr + 0.02  # pedestrian: kept
    preds[5]["heatmap"][0, 1, 13, 13] = thr - 0.02  # traffic cone: dropped
    boxes, labels = d.pseudo_labels(preds)
    got = {(round(float(b[0]), 3), round(float(b[1]), 3), int(lb))
           for b, lb in zip(boxes[0].tensor, labels[0])}
    want = {(*map(lambda v: round(v, 3), _cell_centre(2, 2)), 0),
            (*map(lambda v: round(v, 3), _cell_centre(10, 2)), 0),
            (*map(lambda v: round(v, 3), _cell_centre(10, 10)), CLASS_INDEX["pedestrian"])}
    assert got == want
    # (the implied raw-probability threshold is sigmoid(0.1 * logit(0.1)) ~ 0.445)
    assert teacher.head.score_threshold == 0.1  # the head keeps its own threshold


def test_crd_gradients_reach_student_not_teacher_head():
    student, teacher = _tiny(), _tiny()
    with torch.no_grad():
        teacher.head.task_heads[0]["heatmap"][-1].bias.fill_(1.0)  # cars everywhere: pseudo boxes
    d = _distiller(student, teacher)
    model = DistillModel(student, {"lidar": teacher}, {"dualdistill": d})
    model.train()
    assert not teacher.head.training and not d.teacher_head.training
    before = {k: v.clone() for k, v in teacher.head.state_dict().items()}
    x, y = _cell_centre(8, 8)
    batch = _batch([[[x, y, 0.0, 4.5, 2.0, 1.6, 0.3, 0.0, 0.0]], []], [[0], []])
    out = model(batch)
    losses = model.loss(out, batch)
    crd = losses["distill/dualdistill/crd_heatmap"] + losses["distill/dualdistill/crd_bbox"]
    assert torch.isfinite(crd) and losses["distill/dualdistill/crd_bbox"].item() > 0
    crd.backward(retain_graph=True)
    assert d.align["bev_neck"].conv.weight.grad.abs().sum() > 0         # the 1x1 adapter
    assert student.trunk.stage1[0].conv1.weight.grad.abs().sum() > 0    # the student
    assert all(p.grad is None and not p.requires_grad for p in teacher.head.parameters())
    # every MFD / CRD term trains the distiller's adapters
    model.zero_grad()
    sum(v for k, v in losses.items() if k.startswith("distill/")).backward()
    no_grad = [n for n, p in d.named_parameters() if p.grad is None]
    assert not no_grad, no_grad
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1).step()
    after = teacher.head.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN stats included
    assert not teacher.head.training


def test_init_student_head_from_teacher():
    student, teacher = _tiny(), _tiny()
    assert not torch.equal(student.head.shared_conv[0].weight, teacher.head.shared_conv[0].weight)
    DistillModel(student, {"lidar": teacher},
                 {"dualdistill": _distiller(student, teacher, init_student_head_from_teacher=True)})
    s, t = student.head.state_dict(), teacher.head.state_dict()
    assert all(torch.equal(s[k], t[k]) for k in t)


def test_config_spells_out_the_defaults():
    import inspect

    from bevkd.builder import typed_kwargs
    from bevkd.engine.config import load_experiment

    from bevkd.config import CONFIGS_DIR

    cfg = load_experiment(os.path.join(CONFIGS_DIR, "distill", "dualdistill.yaml"))
    (method,) = cfg.distill.methods
    assert method.type == "dualdistill" and cfg.data.use_lidar
    args = typed_kwargs(DualDistill, method.args, "args")
    params = {k: p.default for k, p in inspect.signature(DualDistill.__init__).parameters.items()
              if k not in ("self", "grid", "student_channels", "teacher_channels")}
    assert args == params


# ---------------------------------------------------------------------------------------------
# Shared masks of the false-positive term
# ---------------------------------------------------------------------------------------------

def test_false_positive_region_rule_by_hand():
    """A cell is a false positive iff the teacher's best class is strictly above 0.1, the GT
    heatmap strictly below 0.1 and the cell lies outside every box."""
    # one row of 8 cells, two classes: (class 0, class 1, GT heatmap, in a box) per cell
    cells = [(0.5, 0.0, 0.0, 0),    # fires, nothing there: fp
             (0.1, 0.1, 0.0, 0),    # exactly at the threshold: not above it
             (0.5, 0.0, 0.1, 0),    # GT heatmap exactly at the threshold: not below it
             (0.5, 0.0, 0.05, 1),   # inside a box: foreground, never fp
             (0.05, 0.3, 0.0, 0),   # the best class decides: fp
             (0.09, 0.0, 0.0999, 0),  # teacher below the threshold
             (0.11, 0.0, 0.0999, 0),  # just above / just below: fp
             (0.0, 0.0, 0.0, 0)]    # silent
    teacher = torch.tensor([[c[0] for c in cells], [c[1] for c in cells]]).view(1, 2, 1, 8)
    gt = torch.tensor([c[2] for c in cells]).view(1, 1, 1, 8)
    fg = torch.tensor([float(c[3]) for c in cells]).view(1, 1, 1, 8)
    fp = false_positive_region(teacher, gt, fg)
    assert fp.shape == (1, 1, 1, 8) and fp.dtype == torch.float32
    assert fp.view(-1).tolist() == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    # another threshold moves both comparisons
    assert false_positive_region(teacher, gt, fg, 0.08).view(-1).tolist() == \
        [1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    # per sample: sample 1 has the cells of sample 0, but all inside boxes
    two = false_positive_region(teacher.repeat(2, 1, 1, 1), gt.repeat(2, 1, 1, 1),
                                torch.cat([fg, torch.ones_like(fg)]))
    assert two[0].view(-1).tolist() == fp.view(-1).tolist() and not two[1].any()


def test_teacher_heatmap_is_every_class_probability_in_task_order():
    """The per-task heatmap logits become sigmoid probabilities, concatenated in task order
    (car | truck, construction_vehicle | bus, trailer | barrier | motorcycle, bicycle |
    pedestrian, traffic_cone)."""
    preds, k = [], 0
    for group in TASK_GROUPS:
        heat = torch.zeros(2, len(group), 3, 4)
        for j in range(len(group)):
            heat[0, j] = 0.5 * k - 2.0  # channel k of the result: logit 0.5 k - 2 in sample 0
            heat[1, j] = -(0.5 * k - 2.0)
            k += 1
        preds.append({"heatmap": heat, "reg": torch.full((2, 2, 3, 4), 9.0)})
    out = teacher_heatmap(preds)
    assert out.shape == (2, 10, 3, 4)
    for k in range(10):
        v = 0.5 * k - 2.0
        assert torch.allclose(out[0, k], torch.full((3, 4), 1 / (1 + math.exp(-v))), atol=1e-7)
        assert torch.allclose(out[1, k], torch.full((3, 4), 1 / (1 + math.exp(v))), atol=1e-7)


# ---------------------------------------------------------------------------------------------
# The whole forward on small fixed features
# ---------------------------------------------------------------------------------------------

def test_forward_terms_by_hand_at_the_head_level():
    """Head level only (no AOA): each MFD term (region weights, spatial attention, the
    false-positive region, the attention L1 through its Conv3×3), its published weight, the
    division by B, and the CRD value at ``crd_weight`` against the teacher's detections at
    T = 0.1 (DESIGN §4.3)."""
    student, teacher = _tiny(), _tiny()
    d = _distiller(student, teacher, aoa_levels=(), crd_weight=0.5)
    d.attach(student, {"lidar": teacher})
    assert d.levels == ("bev_neck",)
    assert student.feature_channels["bev_neck"] == teacher.feature_channels["bev_neck"] == 16
    with torch.no_grad():  # identity 1x1 adapter; the L1 conv: 2 · (centre tap) + 0.5
        d.align["bev_neck"].conv.weight.copy_(torch.eye(16).view(16, 16, 1, 1))
        d.align["bev_neck"].conv.bias.zero_()
        d.attn_conv["bev_neck"].weight.zero_()
        d.attn_conv["bev_neck"].weight[0, 0, 1, 1] = 2.0
        d.attn_conv["bev_neck"].bias.fill_(0.5)
    g = torch.Generator().manual_seed(5)
    fs, ft = torch.randn(2, 16, 16, 16, generator=g), torch.randn(2, 16, 16, 16, generator=g)
    preds = teacher.head(torch.zeros(2, 16, 16, 16))
    preds = [{k: torch.zeros_like(v) for k, v in p.items()} for p in preds]
    for p in preds:
        p["heatmap"].fill_(-20.0)
    car = preds[0]["heatmap"]
    car[0, 0, 8, 8] = 3.0     # on the GT car (its only cell inside the box): kept by CRD
    car[0, 0, 3, 12] = -0.85  # p 0.30, far from the car: false positive, dropped by CRD
    car[0, 0, 8, 10] = -1.5   # p 0.18, two cells from the car (GT heatmap e^-2.88 < 0.1): fp
    car[0, 0, 9, 8] = -1.0    # p 0.27, next to the car (GT heatmap e^-0.72 > 0.1): not fp
    car[1, 0, 5, 5] = -0.85   # sample 1 (no boxes): its one false positive
    x, y = _cell_centre(8, 8)
    batch = _batch([[[x, y, 0.0, 4.5, 2.0, 1.6, 0.0, 0.0, 0.0]], []], [[0], []])
    out = d(DetOutputs({"bev_neck": fs}, []), {"lidar": DetOutputs({"bev_neck": ft}, preds)},
            batch)
    assert set(out) == {"fg", "bg", "fp", "attn", "crd_heatmap", "crd_bbox"}

    att = 0.5 * (_attention_by_hand(ft, 0.5) + _attention_by_hand(fs, 0.5))[:, 0]  # (B, H, W)
    err = ((fs - ft) ** 2).sum(1) * att
    fg_w = math.sqrt(6.4 * 6.4 / (4.5 * 2.0))
    fg = fg_w * err[0, 8, 8] / 2
    bg = ((err[0].sum() - err[0, 8, 8]) / 255 + err[1].sum() / 256) / 2
    fp = ((err[0, 3, 12] + err[0, 8, 10]) / 2 + err[1, 5, 5] / 1) / 2  # N_fp per sample: 2, 1
    l1 = (ft.mean(1) - (2 * fs.mean(1) + 0.5)).abs().sum() / 2
    assert out["fg"].item() == pytest.approx(6e-3 * fg.item(), rel=1e-5)
    assert out["bg"].item() == pytest.approx(4e-2 * bg.item(), rel=1e-5)
    assert out["fp"].item() == pytest.approx(6e-2 * fp.item(), rel=1e-5)
    assert out["attn"].item() == pytest.approx(2.5e-3 * l1.item(), rel=1e-5)

    # CRD: the only pseudo box is the car (the others fall below sigmoid(l / 0.1) >= 0.1), and
    # the aligned (= identity) student feature goes through the frozen teacher head
    head = teacher.head
    (bx, _, lb), (bx1, _, _) = head.decode([{**p, "heatmap": p["heatmap"] / 0.1} for p in preds],
                                           0.1)
    assert len(bx) == 1 and int(lb[0]) == 0 and len(bx1) == 0
    assert bx.tensor[0, :2].tolist() == pytest.approx([x, y], abs=1e-4)
    with torch.no_grad():
        want = head.loss(head(fs), [bx, bx1], [lb, torch.zeros(0, dtype=torch.long)])
    assert out["crd_heatmap"].item() == pytest.approx(0.5 * want["heatmap"].item(), rel=1e-5)
    assert out["crd_bbox"].item() == pytest.approx(0.5 * want["bbox"].item(), rel=1e-5)
    assert want["bbox"].item() > 0

"""BEVDistill's math pinned with hand-made tensors (DESIGN §4.1): no trained model needed."""

from __future__ import annotations

import math

import pytest
import torch

from bevkd.distill.bevdistill import BEVDistill, heatmap_peaks, sample_bev
from bevkd.models.grid import BevGrid
from bevkd.models.heads.center_head import REG_HEADS
from bevkd.models.outputs import DetOutputs
from bevkd.structures.batch import Batch, Meta, Targets
from bevkd.structures.boxes import Boxes3D
from bevkd.structures.classes import TASK_GROUPS

GRID = BevGrid(x_range=(-8.0, 8.0), y_range=(-8.0, 8.0), cell=1.0)  # 16 x 16, 1 m cells
H = W = 16


def boxes(*rows) -> Boxes3D:
    """Boxes (x, y, l, w) at z 0, h 1.5, yaw 0, no velocity."""
    return Boxes3D(torch.tensor([[x, y, 0.0, l, w, 1.5, 0.0, 0.0, 0.0] for x, y, l, w in rows],
                                dtype=torch.float32).reshape(-1, 9))


def batch_of(box_sets) -> Batch:
    return Batch(cams=None, lidar=None,
                 targets=Targets(list(box_sets), [torch.zeros(len(b), dtype=torch.long)
                                                  for b in box_sets], None),
                 meta=Meta([f"s{i}" for i in range(len(box_sets))],
                           torch.eye(4).repeat(len(box_sets), 1, 1), [0] * len(box_sets)))


def preds(bsz: int, logit: float = -20.0) -> list[dict[str, torch.Tensor]]:
    """Per-task CenterHead outputs: heatmap logits ``logit`` everywhere, zero codes with a unit
    heading (sin 0, cos 1)."""
    out = []
    for group in TASK_GROUPS:
        p = {"heatmap": torch.full((bsz, len(group), H, W), logit)}
        for name, c in REG_HEADS:
            p[name] = torch.zeros(bsz, c, H, W)
        p["rot"][:, 1] = 1.0
        out.append(p)
    return out


def make(**kw) -> BEVDistill:
    args = dict(grid=GRID, student_channels={"bev_in": 6, "bev_neck": 3},
                teacher_channels={"lidar": {"bev_in": 4, "bev_neck": 3}})
    return BEVDistill(**args, **kw)


def identity_adapter(d: BEVDistill) -> None:
    with torch.no_grad():
        d.adapter.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        d.adapter.bias.zero_()


def test_defaults_are_the_published_hyper_parameters():
    d = make()
    assert (d.dense_level, d.dense_weight, d.mask_min_radius) == ("bev_neck", 0.01, 1)
    assert (d.sparse_level, d.sparse_weight, d.tau) == ("bev_in", 0.2, 0.07)
    assert (d.response_topk, d.response_weight, d.response_heatmap_weight) == (50, 0.25, 0.0)
    assert d.proj_student[0].out_features == 512 and d.proj_student[-1].out_features == 512
    assert isinstance(d.proj_student[2], torch.nn.BatchNorm1d)
    assert d.requires == ("bev_neck", "bev_in") and d.teacher_requires == {"lidar": d.requires}
    assert make(dense_level="bev_in").adapter.in_channels == 6


def test_dense_is_zero_when_adapted_student_equals_teacher_and_ignores_the_background():
    d = make()
    identity_adapter(d)
    bx = [boxes((0.5, 0.5, 4.0, 2.0))]
    fs = torch.randn(1, 3, H, W)
    assert d.dense_loss(fs, fs.clone(), bx).item() == pytest.approx(0.0, abs=1e-12)
    mask = d.dense_mask(bx, (H, W), fs.device)
    assert mask[0, 0, 8, 8] == 1.0 and mask.sum() > 1
    ft = fs.clone()
    ft[..., mask[0, 0] == 0] += torch.randn_like(ft[..., mask[0, 0] == 0]) * 10  # outside M
    assert d.dense_loss(fs, ft, bx).item() == pytest.approx(0.0, abs=1e-10)
    ft[0, :, 8, 8] += torch.tensor([1.0, 2.0, 3.0])  # inside: grows with the masked error
    # a 4 x 2 m box gets the minimum radius 1, so sigma = (2r + 1) / 6 = 0.5: the mask is 1 at
    # the centre, e^-2 at its 4 neighbours and e^-4 at the 4 diagonal cells
    mask_sum = 1 + 4 * math.exp(-2) + 4 * math.exp(-4)
    assert mask.sum().item() == pytest.approx(mask_sum, rel=1e-6)
    expected = 1.0 * (1 + 4 + 9) / mask_sum
    assert d.dense_loss(fs, ft, bx).item() == pytest.approx(expected, rel=1e-5)
    out = d(DetOutputs({"bev_neck": fs, "bev_in": torch.zeros(1, 6, H, W)}, preds(1)),
            {"lidar": DetOutputs({"bev_neck": ft, "bev_in": torch.zeros(1, 4, H, W)},
                                 preds(1))}, batch_of(bx))
    assert out["dense"].item() == pytest.approx(0.01 * expected, rel=1e-5)


def test_dense_mask_is_per_sample_at_batch_two():
    d = make()
    identity_adapter(d)
    bx = [boxes((-4.5, -4.5, 2.0, 2.0)), boxes((4.5, 4.5, 2.0, 2.0))]
    mask = d.dense_mask(bx, (H, W), torch.device("cpu"))
    assert mask[0, 0, 3, 3] == 1 and mask[0, 0, 12, 12] == 0
    assert mask[1, 0, 12, 12] == 1 and mask[1, 0, 3, 3] == 0
    fs = torch.randn(2, 3, H, W)
    ft = fs.clone()
    ft[1, :, 3, 3] += 5.0  # sample 1 at sample 0's box: outside sample 1's mask
    assert d.dense_loss(fs, ft, bx).item() == pytest.approx(0.0, abs=1e-10)
    ft[1, :, 12, 12] += 1.0  # sample 1 at its own box centre
    # each 2 x 2 m box: radius 1, sigma 0.5, as above
    one = 1 + 4 * math.exp(-2) + 4 * math.exp(-4)
    assert mask[0].sum().item() == pytest.approx(one, rel=1e-6) == mask[1].sum().item()
    # the sum over the batch is normalised by the whole batch's mask sum
    assert d.dense_loss(fs, ft, bx).item() == pytest.approx(3.0 / (2 * one), rel=1e-5)
    alone = d.dense_loss(fs[1:], ft[1:], bx[1:]).item()
    assert alone == pytest.approx(3.0 / one, rel=1e-5)


def test_dense_resizes_the_teacher_to_the_student_grid():
    d = make()
    identity_adapter(d)
    bx = [boxes((0.5, 0.5, 4.0, 2.0))]
    ft = torch.randn(1, 3, H // 2, W // 2)
    fs = torch.nn.functional.interpolate(ft, size=(H, W), mode="bilinear", align_corners=False)
    assert d.dense_loss(fs, ft, bx).item() == pytest.approx(0.0, abs=1e-10)


def test_sample_points_are_gt_centres_then_detached_student_peaks():
    d = make(sparse_topk=3)
    p = preds(2)
    p[0]["heatmap"][1, 0, 2, 5] = 3.0     # sample 1: a peak at cell (iy 2, ix 5)
    p[3]["heatmap"][1, 0, 12, 12] = 2.0   # and one on a GT centre cell (dropped: duplicate)
    for iy, ix in ((5, 9), (0, 0), (15, 15)):  # sample 0: three peaks, one on its GT cell
        p[1]["heatmap"][0, 1, iy, ix] = 1.0
    p[0]["heatmap"].requires_grad_(True)
    bx = [boxes((1.25, -2.5, 4, 2)), boxes((4.5, 4.5, 2, 2), (30.0, 0.0, 2, 2))]  # 2nd: off-grid
    pts = d.sample_points(p, bx)
    assert not any(t.requires_grad for t in pts)
    assert torch.allclose(pts[1][0], torch.tensor([4.5, 4.5]))
    assert len(pts[1]) == 1 + 3 - 1  # GT on the grid + top-3 peaks - the duplicate
    assert [-2.5, -5.5] in pts[1].tolist()  # peak at the cell centre x = -8 + 5.5, y = -8 + 2.5
    assert torch.allclose(pts[0][0], torch.tensor([1.25, -2.5]))
    assert pts[0][1:].tolist() == [[-7.5, -7.5], [7.5, 7.5]] or \
        pts[0][1:].tolist() == [[7.5, 7.5], [-7.5, -7.5]]


def test_sample_bev_reads_cell_centres_and_interpolates_between_them():
    feat = torch.arange(H * W, dtype=torch.float32).view(1, 1, H, W)
    xy = torch.tensor([[[-7.5, -7.5], [0.5, 0.5], [1.0, 0.5], [0.5, 1.0]]])
    got = sample_bev(feat, xy, GRID)[0, :, 0]
    assert got.tolist() == pytest.approx([0.0, 8 * W + 8, 8 * W + 8.5, 8.5 * W + 8])


def test_info_nce_is_log_n_for_uninformative_features_and_points_are_capped():
    d = make(sparse_max_points=5)
    with torch.no_grad():  # constant projections: every embedding is the same vector
        for proj in (d.proj_student, d.proj_teacher):
            proj[-1].weight.zero_()
            proj[-1].bias.uniform_(-1, 1)
    fs, ft = torch.randn(2, 6, H, W), torch.randn(2, 4, H, W)
    pts = [torch.tensor([[0.0, 0.0], [1.0, 2.0]]), torch.tensor([[-3.0, 4.0]])]
    assert d.sparse_loss(fs, ft, pts).item() == pytest.approx(math.log(3), rel=1e-5)
    many = [torch.rand(6, 2) * 10 - 5, torch.rand(4, 2) * 10 - 5]  # 10 points, capped at 5
    assert d.sparse_loss(fs, ft, many).item() == pytest.approx(math.log(5), rel=1e-5)
    assert d.sparse_loss(fs, ft, [torch.zeros(0, 2), torch.zeros(0, 2)]).item() == 0.0


def test_info_nce_rewards_matching_student_and_teacher_embeddings():
    d = make()
    d.eval()  # BatchNorm on running statistics: the two heads are then the same function
    d.proj_teacher = torch.nn.Sequential(torch.nn.Linear(6, 512), *list(d.proj_student)[1:])
    d.proj_teacher[0].load_state_dict(d.proj_student[0].state_dict())
    fs = torch.randn(1, 6, H, W) * 5
    pts = [torch.tensor([[x + 0.5, y + 0.5] for x in (-6, -2, 2, 6) for y in (-6, 0, 6)])]
    same = d.sparse_loss(fs, fs, pts)
    shuffled = d.sparse_loss(fs, fs.roll(3, dims=-1), pts)
    assert same.item() < shuffled.item() and same.item() < math.log(12)


def test_response_weights_follow_teacher_scores():
    d = make(response_topk=2)
    t, s = preds(1), preds(1)
    p1, p2 = 0.9, 0.3
    t[0]["heatmap"][0, 0, 4, 4] = math.log(p1 / (1 - p1))   # car at cell (4, 4)
    t[5]["heatmap"][0, 1, 10, 2] = math.log(p2 / (1 - p2))  # traffic cone at (iy 10, ix 2)
    for p in (t[0], t[5]):
        p["dim"][:] = 0.5
        p["height"][:] = 0.2
    s[0]["dim"][:] = 0.5
    s[5]["dim"][:] = 0.5
    s[0]["height"][0, 0, 4, 4] = 0.2 + 1.0    # error 1 at the confident box
    s[5]["height"][0, 0, 10, 2] = 0.2 - 3.0   # error 3 at the unsure one
    s[5]["height"][0, 0, 11, 11] = 100.0      # no teacher box here: ignored
    expected = (p1 * 1.0 + p2 * 3.0) / (p1 + p2)
    assert d.response_bbox_loss(s, t).item() == pytest.approx(expected, rel=1e-5)
    s[0]["vel"][0, 0, 4, 4] = 1.0  # velocity counts with its code weight 0.2
    expected = (p1 * 1.2 + p2 * 3.0) / (p1 + p2)
    assert d.response_bbox_loss(s, t).item() == pytest.approx(expected, rel=1e-5)
    # the student's own regression of the teacher's codes gives zero
    assert d.response_bbox_loss(t, t).item() == pytest.approx(0.0, abs=1e-6)


def test_response_targets_are_re_encoded_decoded_teacher_boxes():
    d = make(response_topk=1)
    t = preds(1)
    t[0]["heatmap"][0, 0, 4, 4] = 5.0
    t[0]["reg"][0, :, 4, 4] = torch.tensor([0.7, -0.2])  # the centre moves to the next cell
    t[0]["rot"][0, :, 4, 4] = torch.tensor([0.0, 2.0])   # not unit length: normalised
    task, ind, code, weight = d.response_targets(t)
    assert task.item() == 0 and ind.item() == 4 * W + 5
    assert code[0, 0, :2].tolist() == pytest.approx([-0.3, -0.2], abs=1e-5)
    assert code[0, 0, 6:8].tolist() == pytest.approx([0.0, 1.0], abs=1e-6)
    assert weight.item() == pytest.approx(torch.sigmoid(torch.tensor(5.0)).item())


def test_forward_terms_are_weighted_and_reach_adapters_and_student():
    d = make(response_heatmap_weight=0.5)
    d.train()
    fs_in = torch.randn(2, 6, H, W, requires_grad=True)
    fs_neck = torch.randn(2, 3, H, W, requires_grad=True)
    s, t = preds(2, logit=0.0), preds(2, logit=0.0)
    s[0]["heatmap"] = torch.randn(2, 1, H, W, requires_grad=True)
    t[0]["heatmap"] = torch.randn(2, 1, H, W)
    s[0]["height"] = torch.randn(2, 1, H, W)  # a box-code error at the teacher's boxes
    bx = [boxes((0.5, 0.5, 4, 2)), boxes((-3.5, 2.5, 2, 2), (5.5, -5.5, 1, 1))]
    ft_in, ft_neck = torch.randn(2, 4, H, W), torch.randn(2, 3, H, W)
    out = d(DetOutputs({"bev_in": fs_in, "bev_neck": fs_neck}, s),
            {"lidar": DetOutputs({"bev_in": ft_in, "bev_neck": ft_neck}, t)}, batch_of(bx))
    assert set(out) == {"dense", "sparse", "response_bbox", "response_heatmap"}
    assert all(torch.isfinite(v) and v.ndim == 0 for v in out.values())
    # each term is its published weight times the unweighted loss
    with torch.no_grad():
        raw = {"dense": d.dense_loss(fs_neck, ft_neck, bx),
               "sparse": d.sparse_loss(fs_in, ft_in, d.sample_points(s, bx)),
               "response_bbox": d.response_bbox_loss(s, t),
               "response_heatmap": d.response_heatmap_loss(s, t, bx)}
    assert all(v.item() > 0 for v in raw.values()), raw
    weights = {"dense": 0.01, "sparse": 0.2, "response_bbox": 0.25, "response_heatmap": 0.5}
    for k, w in weights.items():
        assert out[k].item() == pytest.approx(w * raw[k].item(), rel=1e-5), k
    sum(out.values()).backward()
    assert fs_in.grad.abs().sum() > 0 and fs_neck.grad.abs().sum() > 0
    assert d.adapter.weight.grad.abs().sum() > 0
    assert d.proj_student[0].weight.grad.abs().sum() > 0
    assert d.proj_teacher[0].weight.grad.abs().sum() > 0
    assert s[0]["heatmap"].grad.abs().sum() > 0
    teacher = {"lidar": DetOutputs({"bev_in": torch.randn(2, 4, H, W),
                                    "bev_neck": torch.randn(2, 3, H, W)}, t)}
    released = make()(DetOutputs({"bev_in": fs_in, "bev_neck": fs_neck}, s), teacher, batch_of(bx))
    assert "response_heatmap" not in released  # weight 0 as released: not even computed


def _sig(logit: float) -> float:
    return 1 / (1 + math.exp(-logit))


def _bce(logit: float, target: float) -> float:
    p = _sig(logit)
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def test_response_heatmap_loss_by_hand():
    """Per-cell BCE between student and teacher class probabilities, summed over all ten
    classes, weighted by the GT Gaussian mask and divided by its sum; cells outside the mask do
    not count."""
    d = make(response_heatmap_weight=1.0)
    s, t = preds(1, logit=0.0), preds(1, logit=-1.0)  # student p = 0.5: BCE = log 2 anywhere
    s[0]["heatmap"][0, 0, 8, 8] = 2.0    # car at the box centre (mask 1)
    t[0]["heatmap"][0, 0, 8, 8] = 1.0
    s[1]["heatmap"][0, 0, 8, 9] = -1.5   # truck in a neighbour (mask e^-2)
    t[1]["heatmap"][0, 0, 8, 9] = 0.5
    s[5]["heatmap"][0, 1, 0, 0] = 10.0   # far from the box: outside the mask
    t[5]["heatmap"][0, 1, 0, 0] = -10.0
    bx = [boxes((0.5, 0.5, 4.0, 2.0))]
    mask_sum = 1 + 4 * math.exp(-2) + 4 * math.exp(-4)  # radius 1, sigma 0.5 (see above)
    log2 = math.log(2)
    total = (mask_sum * 10 * log2 + 1.0 * (_bce(2.0, _sig(1.0)) - log2)
             + math.exp(-2) * (_bce(-1.5, _sig(0.5)) - log2))
    assert d.response_heatmap_loss(s, t, bx).item() == pytest.approx(total / mask_sum, rel=1e-5)


def test_heatmap_peaks_keep_only_the_higher_of_adjacent_peaks():
    """Local-maximum suppression (3x3 window) per task on the class-max heatmap: of two peaks in
    adjacent cells only the higher survives; a peak two cells away and a peak of another task in
    the same place are kept."""
    p = preds(1)
    car = p[0]["heatmap"]
    car[0, 0, 4, 4], car[0, 0, 4, 5], car[0, 0, 4, 7] = 2.0, 1.0, 0.5
    p[1]["heatmap"][0, 0, 10, 10] = 1.5  # truck
    p[1]["heatmap"][0, 1, 11, 11] = 1.2  # construction vehicle, diagonal neighbour: same task
    p[3]["heatmap"][0, 0, 4, 5] = 0.8    # barrier, in the car's suppressed cell
    scores, task, cell = heatmap_peaks(p, 5)
    assert list(zip(task[0, :4].tolist(), cell[0, :4].tolist())) == [
        (0, 4 * W + 4), (1, 10 * W + 10), (3, 4 * W + 5), (0, 4 * W + 7)]
    assert scores[0, :4].tolist() == pytest.approx([_sig(2.0), _sig(1.5), _sig(0.8), _sig(0.5)])
    assert scores[0, 4].item() < 1e-8  # the suppressed 0.73 and 0.77 are not next
    # without suppression the lower neighbours come back
    _, task1, cell1 = heatmap_peaks(p, 5, kernel=1)
    assert (0, 4 * W + 5) in list(zip(task1[0].tolist(), cell1[0].tolist()))

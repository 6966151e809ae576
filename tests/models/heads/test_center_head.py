"""CenterHead: targets, Gaussian radius, box coding, circle NMS, loss, decode, overfitting."""

from __future__ import annotations

import math

import pytest
import torch

from bevkd.models.grid import BevGrid
from bevkd.models.heads.center_head import (
    REG_HEADS,
    CenterHead,
    TaskTargets,
    decode_boxes,
    encode_boxes,
)
from bevkd.models.heads.gaussian import draw_gaussians, gaussian_radius, heatmap_radius
from bevkd.models.heads.nms import circle_nms
from bevkd.structures.boxes import Boxes3D
from bevkd.structures.classes import CLASS_INDEX, TASK_GROUPS

SMALL = BevGrid(x_range=(-4.0, 4.0), y_range=(-4.0, 4.0), cell=1.0)  # 8 x 8
STEPS = 150
GRID32 = BevGrid(x_range=(-12.8, 12.8), y_range=(-12.8, 12.8), cell=0.8)  # 32 x 32

# One box per task group, well apart (> 4 m) so no NMS interacts; (label, box).
SCENE = [
    ("car", [3.1, -2.2, 0.8, 4.5, 1.9, 1.6, 0.4, 2.0, -1.0]),
    ("truck", [-8.1, 6.3, 1.5, 8.0, 2.6, 3.2, -2.5, 0.0, 0.5]),
    ("trailer", [7.7, 8.9, 1.9, 11.0, 2.9, 3.8, 1.2, 0.3, 0.0]),
    ("barrier", [-3.3, -7.6, 0.5, 0.5, 2.4, 1.0, 3.0, 0.0, 0.0]),
    ("bicycle", [9.5, -8.2, 0.6, 1.8, 0.6, 1.3, -1.0, 1.5, 1.5]),
    ("pedestrian", [-9.9, -1.1, 0.9, 0.7, 0.7, 1.8, 2.2, -0.5, 0.2]),
    ("traffic_cone", [0.5, 5.5, 0.3, 0.4, 0.4, 0.9, 0.0, 0.0, 0.0]),
]


def scene(sel: list[int] | None = None) -> tuple[Boxes3D, torch.Tensor]:
    items = SCENE if sel is None else [SCENE[i] for i in sel]
    boxes = Boxes3D(torch.tensor([b for _, b in items], dtype=torch.float32).reshape(-1, 9))
    return boxes, torch.tensor([CLASS_INDEX[n] for n, _ in items], dtype=torch.long)


def perfect_preds(tgts: list[TaskTargets], peak: float | None = 20.0) -> list[dict]:
    """Predictions equal to the targets: heatmap logits ±peak at centres (or logit of the
    clipped Gaussian target when ``peak`` is None) and the exact codes at centre cells."""
    preds = []
    for t in tgts:
        b, _, h, w = t.heatmap.shape
        if peak is None:
            hm = torch.logit(t.heatmap.clamp(1e-4, 1 - 1e-4))
        else:
            hm = torch.where(t.heatmap.eq(1), peak, -peak)
        code = torch.zeros(b, h * w, 10)
        bi, mi = t.mask.nonzero(as_tuple=True)
        code[bi, t.ind[bi, mi]] = t.box[bi, mi].nan_to_num(0.0)  # NaN velocity: no target
        code = code.transpose(1, 2).reshape(b, 10, h, w)
        pred = {"heatmap": hm}
        start = 0
        for name, c in REG_HEADS:
            pred[name] = code[:, start:start + c]
            start += c
        preds.append(pred)
    return preds


def test_targets_one_box_hand_computed() -> None:
    head = CenterHead(in_channels=4, grid=SMALL)
    box = Boxes3D(torch.tensor([[1.3, -2.6, 0.5, 4.0, 2.0, 1.5, math.pi / 6, 1.0, -2.0]]))
    car = TASK_GROUPS.index(("car",))
    t = head.targets([box], [torch.tensor([CLASS_INDEX["car"]])])[car]
    # x: (1.3 + 4) / 1 = 5.3 -> ix 5, offset from the cell centre 5.5: -0.2; y: 1.4 -> iy 1, -0.1
    assert t.ind.tolist() == [[1 * 8 + 5]]
    assert t.mask.tolist() == [[True]]
    expected = [-0.2, -0.1, 0.5, math.log(4.0), math.log(2.0), math.log(1.5), 0.5,
                math.sqrt(3) / 2, 1.0, -2.0]
    torch.testing.assert_close(t.box[0, 0], torch.tensor(expected), atol=1e-6, rtol=0)
    assert t.heatmap.shape == (1, 1, 8, 8) and t.heatmap[0, 0, 1, 5] == 1.0
    assert t.labels.tolist() == [[0]]
    # other tasks get nothing
    others = [x for i, x in enumerate(head.targets([box], [torch.tensor([0])])) if i != car]
    assert all(x.mask.numel() == 0 and x.heatmap.sum() == 0 for x in others)

    # stride 2: 4 x 4 map, 2 m cells: x 2.65 -> ix 2, +0.15; y 0.7 -> iy 0, +0.2
    t2 = CenterHead(in_channels=4, grid=SMALL, out_stride=2).targets(
        [box], [torch.tensor([CLASS_INDEX["car"]])])[car]
    assert t2.heatmap.shape == (1, 1, 4, 4) and t2.ind.tolist() == [[0 * 4 + 2]]
    torch.testing.assert_close(t2.box[0, 0, :2], torch.tensor([0.15, 0.2]), atol=1e-6, rtol=0)


def test_gaussian_radius_hand_computed() -> None:
    # (10, 4) cells, overlap 0.1: r1 = (14 + sqrt(14² - 4·40·0.9/1.1)) / 2 = 11.0339,
    # r2 = (28 + sqrt(28² - 16·36)) / 2 = 21.2111,
    # r3 = (-2.8 + sqrt(2.8² + 1.6·36)) / 2 = 2.6447
    r = gaussian_radius((torch.tensor([10.0, 20.0]), torch.tensor([4.0, 8.0])), 0.1)
    torch.testing.assert_close(r, torch.tensor([2.6447497, 5.2894994]), atol=1e-5, rtol=0)
    assert float(gaussian_radius((4.0, 10.0), 0.1)) == pytest.approx(2.6447497, abs=1e-6)
    # overlap 0.5 on a (2, 2) box: a3 = 2, b3 = -4, c3 = -2 -> r3 = (-4 + sqrt(16 + 16)) / 2
    # = 0.8284 (r1 = (4 + sqrt(16 - 16/3)) / 2 = 3.633, r2 = (8 + sqrt(64 - 32)) / 2 = 6.828)
    assert float(gaussian_radius((2.0, 2.0), 0.5)) == pytest.approx((-4 + math.sqrt(32)) / 2)
    radius = heatmap_radius(torch.tensor([10.0, 20.0, 1.0]), torch.tensor([4.0, 8.0, 1.0]), 0.1, 2)
    assert radius.tolist() == [2, 5, 2]


def test_heatmap_peak_and_shape() -> None:
    heat = torch.zeros(2, 16, 16)
    draw_gaussians(heat, torch.tensor([0, 0, 1]), torch.tensor([[5, 7], [7, 7], [0, 15]]),
                   torch.tensor([2, 2, 3]))
    assert heat[0, 7, 5] == 1.0 and heat[0, 7, 7] == 1.0 and heat[1, 15, 0] == 1.0
    sigma = 5 / 6  # radius 2 -> diameter 5, sigma = diameter / 6
    assert float(heat[0, 9, 5]) == pytest.approx(math.exp(-4 / (2 * sigma ** 2)), rel=1e-6)
    # the two Gaussians meet at x = 6: max, not sum
    assert float(heat[0, 7, 6]) == pytest.approx(math.exp(-1 / (2 * sigma ** 2)), rel=1e-6)
    assert heat[0, 10, 5] == 0 and heat[0, 7, 10] == 0  # outside the (2r+1)² window
    assert heat[0].max() == 1.0 and (heat == 1).sum() == 3  # clipped at the border, one peak

    head = CenterHead(in_channels=4, grid=GRID32)
    boxes, labels = scene()
    tgts = head.targets([boxes], [labels])
    for t in tgts:
        for b, m in t.mask.nonzero().tolist():
            iy, ix = divmod(int(t.ind[b, m]), 32)
            assert t.heatmap[b, t.labels[b, m], iy, ix] == 1.0


def test_targets_skip_outside_nan_velocity_and_cap() -> None:
    head = CenterHead(in_channels=4, grid=SMALL, max_objs=2)
    box = torch.tensor([
        [0.2, 0.2, 0.0, 4.0, 2.0, 1.5, 0.0, float("nan"), float("nan")],
        [-4.5, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0],  # off the grid
        [4.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0],  # on the upper edge: off the grid
        [-2.2, 2.2, 0.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0],
        [2.2, -2.2, 0.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0],  # beyond max_objs
    ])
    t = head.targets([Boxes3D(box)], [torch.zeros(5, dtype=torch.long)])[0]
    assert t.ind.tolist() == [[4 * 8 + 4, 6 * 8 + 1]]
    assert (t.heatmap == 1).sum() == 2
    assert torch.isnan(t.box[0, 0, 8:]).all()
    preds = perfect_preds(head.targets([Boxes3D(box)], [torch.zeros(5, dtype=torch.long)]))
    loss = head.loss(preds, [Boxes3D(box)], [torch.zeros(5, dtype=torch.long)])
    assert torch.isfinite(loss["bbox"]) and float(loss["bbox"]) < 1e-6


def test_encode_decode_round_trip() -> None:
    torch.manual_seed(0)
    n = 200
    boxes = torch.cat([
        torch.rand(n, 2, dtype=torch.float64) * 102.4 - 51.2,
        torch.randn(n, 1, dtype=torch.float64),
        torch.rand(n, 3, dtype=torch.float64) * 12 + 0.2,
        (torch.rand(n, 1, dtype=torch.float64) - 0.5) * 6 * math.pi,
        torch.randn(n, 2, dtype=torch.float64) * 5,
    ], 1)
    for stride in (1, 4):
        shape = (128 // stride, 128 // stride)
        ixy, code = encode_boxes(boxes, BevGrid(), shape)
        assert ((ixy >= 0) & (ixy < shape[0])).all()
        assert (code[:, :2] >= -0.5).all() and (code[:, :2] < 0.5).all()
        out = decode_boxes(ixy, code, BevGrid(), shape)
        torch.testing.assert_close(out[:, :6], boxes[:, :6], atol=1e-5, rtol=1e-9)
        torch.testing.assert_close(out[:, 7:], boxes[:, 7:], atol=1e-9, rtol=0)
        dyaw = torch.remainder(out[:, 6] - boxes[:, 6] + math.pi, 2 * math.pi) - math.pi
        assert dyaw.abs().max() < 1e-9
        assert (out[:, 6] >= -math.pi).all() and (out[:, 6] < math.pi).all()


def test_circle_nms_hand_placed() -> None:
    centres = torch.tensor([[0.0, 0.0], [0.5, 0.0], [3.0, 0.0], [3.0, 0.9], [10.0, 10.0]])
    scores = torch.tensor([0.6, 0.9, 0.5, 0.4, 0.1])
    keep = circle_nms(centres, scores, radius=1.0)
    # 1 (0.9) suppresses 0 (0.5 m away); 2 suppresses 3 (0.9 m); 4 is alone
    assert keep.tolist() == [1, 2, 4]
    assert circle_nms(centres, scores, radius=0.4).tolist() == [1, 0, 2, 3, 4]
    assert circle_nms(centres, scores, radius=1.0, max_keep=2).tolist() == [1, 2]
    assert circle_nms(centres[:0], scores[:0], 1.0).numel() == 0
    # a chain: 0 suppresses 1, so 2 (out of reach of 0) survives although 1 would have hit it
    chain = torch.tensor([[0.0, 0.0], [0.8, 0.0], [1.6, 0.0]])
    assert circle_nms(chain, torch.tensor([0.9, 0.8, 0.7]), 1.0).tolist() == [0, 2]


def test_decode_perfect_targets_returns_gt() -> None:
    head = CenterHead(in_channels=4, grid=GRID32).eval()
    b0, l0 = scene()
    b1, l1 = scene([0, 5, 6])
    b1 = Boxes3D(b1.tensor + torch.tensor([-2.0, 3.0, 0, 0, 0, 0, 0.5, 0, 0]))
    tgts = head.targets([b0, b1], [l0, l1])
    dets = head.decode(perfect_preds(tgts))
    for (boxes, labels), (db, ds, dl) in zip([(b0, l0), (b1, l1)], dets):
        assert len(db) == len(boxes) and (ds > 0.99).all()
        for i in range(len(boxes)):
            d = (db.tensor[:, :2] - boxes.tensor[i, :2]).norm(dim=1)
            j = int(d.argmin())
            assert int(dl[j]) == int(labels[i])
            torch.testing.assert_close(db.tensor[j, [0, 1, 2, 3, 4, 5, 7, 8]],
                                       boxes.tensor[i, [0, 1, 2, 3, 4, 5, 7, 8]],
                                       atol=1e-4, rtol=1e-5)
            dyaw = math.remainder(float(db.tensor[j, 6] - boxes.tensor[i, 6]), 2 * math.pi)
            assert abs(dyaw) < 1e-5


def test_decode_nms_radius_is_centerpoint_squared_distance() -> None:
    head = CenterHead(in_channels=4, grid=GRID32).eval()
    car = CLASS_INDEX["car"]
    # cars 1.6 m apart (< sqrt(4) = 2 m): one kept; 2.4 m apart: both kept
    for dx, n in ((1.6, 1), (2.4, 2)):
        boxes = Boxes3D(torch.tensor([[0.4, 0.4, 0, 4, 2, 1.5, 0, 0, 0],
                                      [0.4 + dx, 0.4, 0, 4, 2, 1.5, 0, 0, 0]]))
        preds = perfect_preds(head.targets([boxes], [torch.tensor([car, car])]))
        preds[0]["heatmap"][0, 0, 16, 16] = 25.0  # first box scores higher
        db, ds, dl = head.decode(preds)[0]
        assert len(db) == n and dl.tolist() == [car] * n
        assert float(db.tensor[0, 0]) == pytest.approx(0.4, abs=1e-5)


def test_decode_score_threshold_argument_overrides_the_heads_own() -> None:
    head = CenterHead(in_channels=4, grid=GRID32).eval()  # score_threshold 0.1
    car = CLASS_INDEX["car"]
    boxes = Boxes3D(torch.tensor([[0.4, 0.4, 0, 4, 2, 1.5, 0, 0, 0],
                                  [8.4, 0.4, 0, 4, 2, 1.5, 0, 0, 0]]))
    preds = perfect_preds(head.targets([boxes], [torch.tensor([car, car])]))
    preds[0]["heatmap"][0, 0, 16, 26] = math.log(0.3 / 0.7)  # the second car scores 0.3
    assert len(head.decode(preds)[0][0]) == 2
    db, ds, _ = head.decode(preds, score_threshold=0.5)[0]
    assert len(db) == 1 and float(ds[0]) > 0.99
    assert float(db.tensor[0, 0]) == pytest.approx(0.4, abs=1e-5)
    assert head.score_threshold == 0.1


def test_loss_empty_and_batch_one() -> None:
    torch.manual_seed(0)
    head = CenterHead(in_channels=8, grid=GRID32, shared_channels=16, head_channels=16)
    x = torch.randn(1, 8, 32, 32)
    empty = Boxes3D.empty("torch")
    loss = head.loss(head(x), [empty], [torch.zeros(0, dtype=torch.long)])
    assert set(loss) == {"heatmap", "bbox"}
    assert torch.isfinite(loss["heatmap"]) and loss["heatmap"].item() > 0
    assert loss["bbox"].item() == 0.0
    boxes, labels = scene()
    x2 = torch.randn(2, 8, 32, 32)
    loss2 = head.loss(head(x2), [boxes, empty], [labels, torch.zeros(0, dtype=torch.long)])
    total = loss2["heatmap"] + loss2["bbox"]
    assert torch.isfinite(total) and loss2["bbox"].item() > 0
    total.backward()


def test_loss_perfect_lower_than_random_and_gradients() -> None:
    torch.manual_seed(0)
    head = CenterHead(in_channels=8, grid=GRID32, shared_channels=16, head_channels=16)
    # an odd number of objects per task, so the L1 sign gradients cannot cancel exactly
    b0, l0 = scene()
    b1, l1 = scene([5])
    tgts = head.targets([b0, b1], [l0, l1])
    perfect = head.loss(perfect_preds(tgts, peak=None), [b0, b1], [l0, l1])
    preds = head(torch.randn(2, 8, 32, 32))
    rand = head.loss(preds, [b0, b1], [l0, l1])
    assert perfect["heatmap"].item() < 0.05 * rand["heatmap"].item()
    assert perfect["bbox"].item() < 1e-5 < rand["bbox"].item()
    (rand["heatmap"] + rand["bbox"]).backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="unknown classes"):
        CenterHead(in_channels=4, grid=SMALL, tasks=(("car",), ("lorry",)), nms_radius=(1, 1))
    with pytest.raises(ValueError, match="nms_radius"):
        CenterHead(in_channels=4, grid=SMALL, nms_radius=(1.0,))
    with pytest.raises(ValueError, match="more than one task"):
        CenterHead(in_channels=4, grid=SMALL, tasks=(("car",), ("car",)), nms_radius=(1, 1))
    head = CenterHead(in_channels=4, grid=SMALL)
    assert not any(k.startswith(("code_weights", "class_to")) for k in head.state_dict())


def test_overfit_two_samples() -> None:
    torch.manual_seed(0)
    tasks = (("car",), ("truck", "construction_vehicle"), ("bus", "trailer"),
             ("pedestrian", "traffic_cone"))
    head = CenterHead(in_channels=16, grid=GRID32, tasks=tasks, shared_channels=16,
                      head_channels=16, nms_radius=(4.0, 12.0, 10.0, 0.175))
    x = torch.randn(2, 16, 32, 32)
    b0, l0 = scene([0, 1, 5])
    b1, l1 = scene([2, 6, 3])  # the barrier is in no task here: ignored
    boxes, labels = [b0, b1], [l0, l1]
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    # L1 regression under plain Adam keeps oscillating at a fixed lr; annealing settles it
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=STEPS)
    losses = []
    for _ in range(STEPS):
        loss = head.loss(head(x), boxes, labels)
        total = loss["heatmap"] + loss["bbox"]
        opt.zero_grad()
        total.backward()
        opt.step()
        sched.step()
        losses.append(total.item())
    assert losses[-1] < losses[0] / 5, (losses[0], losses[-1])
    head.eval()
    dets = head.decode(head(x))
    for gt, lab, (db, ds, dl) in zip(boxes, labels, dets):
        assert CLASS_INDEX["barrier"] not in dl.tolist()
        for i in range(len(gt)):
            if int(lab[i]) == CLASS_INDEX["barrier"]:
                continue
            # the best detection of the right class near the object sits on it
            d = (db.tensor[:, :2] - gt.tensor[i, :2]).norm(dim=1)
            near = (d < 2.0) & (dl == lab[i])
            assert near.any(), (i, int(lab[i]))
            j = torch.where(near, ds, torch.full_like(ds, -1.0)).argmax()
            assert float(d[j]) < 0.5, (i, float(d[j]))


def test_decode_never_emits_non_finite_or_degenerate_boxes():
    """An untrained head can regress huge log sizes or NaN: decoded boxes stay valid results."""
    grid = BevGrid(x_range=(-8.0, 8.0), y_range=(-8.0, 8.0), cell=1.0)
    head = CenterHead(4, grid, tasks=(("car",),), nms_radius=(4.0,))
    preds = head(torch.zeros(1, 4, 16, 16))
    preds[0]["heatmap"].fill_(5.0)            # every cell a confident detection
    preds[0]["dim"][0, 0].fill_(1e4)          # exp overflows without the clamp
    preds[0]["dim"][0, 1].fill_(-1e4)
    preds[0]["vel"][0, 0, 3, 3] = float("nan")
    boxes, scores, labels = head.decode(preds)[0]
    t = boxes.tensor
    assert len(t) > 0 and torch.isfinite(t).all() and (t[:, 3:6] > 0).all()
    assert t[:, 3].max() <= math.exp(4.0) + 1e-3

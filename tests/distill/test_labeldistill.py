"""LabelDistill and its label encoder pinned with hand-made tensors (DESIGN §4.2); the label
encoder's frozen parts come from a LiDAR teacher trained for one step in a fixture."""

from __future__ import annotations

import math

import pytest
import torch

from bevkd.distill.label_encoder import LabelEncoder, paint_labels
from bevkd.distill.labeldistill import LabelDistill
from bevkd.models.grid import BevGrid
from bevkd.models.heads.center_head import REG_HEADS, CenterHead, clip_sigmoid
from bevkd.models.outputs import DetOutputs
from bevkd.structures.batch import Batch, Meta, Targets
from bevkd.structures.boxes import Boxes3D
from bevkd.structures.classes import CLASS_INDEX, TASK_GROUPS

GRID = BevGrid(x_range=(-8.0, 8.0), y_range=(-8.0, 8.0), cell=1.0)  # 16 x 16, 1 m cells
H = W = 16
S_CH = {"bev_in": 9, "bev_s1": 12, "bev_s2": 16, "bev_neck": 8}
T_CH = {"lidar": {"bev_in": 4, "bev_s1": 5, "bev_s2": 6, "bev_neck": 8},
        "label": {"bev_s1": 3, "bev_s2": 7, "bev_neck": 8}}

CONE = CLASS_INDEX["traffic_cone"]  # task 5 (pedestrian, traffic_cone)


def box(x, y, l, w, yaw=0.0, z=0.5, h=1.5, vx=0.0, vy=0.0) -> list[float]:
    return [x, y, z, l, w, h, yaw, vx, vy]


def batch_of(box_sets, label_sets=None) -> Batch:
    bs = [Boxes3D(torch.tensor(b, dtype=torch.float32).reshape(-1, 9)) for b in box_sets]
    labels = label_sets or [[0] * len(b) for b in box_sets]
    return Batch(cams=None, lidar=None,
                 targets=Targets(bs, [torch.tensor(lb, dtype=torch.long) for lb in labels], None),
                 meta=Meta([f"s{i}" for i in range(len(bs))], torch.eye(4).repeat(len(bs), 1, 1),
                           [0] * len(bs)))


def painted_cells(painted: torch.Tensor) -> set[tuple[int, int]]:
    """(iy, ix) of the painted cells of one sample."""
    return {tuple(c) for c in painted.nonzero().tolist()}


# ---------------------------------------------------------------------------------------------
# Label painting
# ---------------------------------------------------------------------------------------------

def test_half_and_full_footprints_cover_exactly_the_expected_cells():
    # 5 m x 3 m box centred on cell (iy 8, ix 8) (centre x = y = 0.5)
    b = batch_of([[box(0.5, 0.5, 5.0, 3.0)]]).targets
    _, _, half = paint_labels(b.boxes, b.labels, GRID, "half")
    assert painted_cells(half[0]) == {(8, 7), (8, 8), (8, 9)}  # |dx| <= 1.25, |dy| <= 0.75
    _, _, full = paint_labels(b.boxes, b.labels, GRID, "full")
    assert painted_cells(full[0]) == {(iy, ix) for iy in (7, 8, 9) for ix in range(6, 11)}
    # turned by 90 degrees the length lies along y
    b = batch_of([[box(0.5, 0.5, 5.0, 3.0, yaw=math.pi / 2)]]).targets
    _, _, half = paint_labels(b.boxes, b.labels, GRID, "half")
    assert painted_cells(half[0]) == {(7, 8), (8, 8), (9, 8)}


def test_a_box_smaller_than_a_cell_still_paints_its_centre_cell_and_off_grid_boxes_nothing():
    b = batch_of([[box(-3.2, 5.9, 0.3, 0.3), box(30.0, 0.0, 4.0, 2.0)]], [[8, 0]]).targets
    boxes_, cls, painted = paint_labels(b.boxes, b.labels, GRID, "half")
    assert painted_cells(painted[0]) == {(13, 4)}
    assert cls[0, 13, 4].tolist() == [0.0] * 8 + [1.0, 0.0]  # label 8 one-hot


def test_painted_vector_is_the_documented_normalisation_and_background_is_zero():
    b = batch_of([[box(0.7, 0.2, 4.0, 2.0, yaw=0.3, z=-1.0, h=1.6, vx=2.0, vy=float("nan"))]],
                 [[3]]).targets
    vec, cls, painted = paint_labels(b.boxes, b.labels, GRID, "half")
    # cell (iy 8, ix 8) has centre (0.5, 0.5)
    expected = [0.2, -0.3, -1.0, math.log(4.0), math.log(2.0), math.log(1.6), 0.3, 2.0, 0.0]
    assert vec[0, 8, 8].tolist() == pytest.approx(expected, abs=1e-6)
    assert cls[0, 8, 8].argmax().item() == 3 and cls[0, 8, 8].sum() == 1
    assert (vec[0][~painted[0]] == 0).all() and (cls[0][~painted[0]] == 0).all()


def test_overlapping_footprints_take_the_nearest_box_and_samples_are_separate():
    b = batch_of([[box(0.0, 0.5, 6.0, 2.0), box(2.5, 0.5, 0.5, 0.5)], []], [[0, CONE], []]).targets
    _, cls, painted = paint_labels(b.boxes, b.labels, GRID, "full")
    assert cls[0, 8, 10].argmax().item() == CONE  # centre (2.5, 0.5): the cone's own cell
    assert cls[0, 8, 9].argmax().item() == 0   # (1.5, 0.5): nearer the car's centre
    assert not painted[1].any()


# ---------------------------------------------------------------------------------------------
# LabelDistill
# ---------------------------------------------------------------------------------------------

def make(**kw) -> LabelDistill:
    return LabelDistill(grid=GRID, student_channels=S_CH, teacher_channels=T_CH, **kw)


def student_feats(bsz: int = 2) -> dict[str, torch.Tensor]:
    return {"bev_in": torch.randn(bsz, 9, H, W, requires_grad=True),
            "bev_s1": torch.randn(bsz, 12, H, W, requires_grad=True)}


def teacher_feats(bsz: int = 2) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    lidar = {"bev_s1": torch.randn(bsz, 5, H, W), "bev_s2": torch.randn(bsz, 6, H // 2, W // 2)}
    label = {"bev_s1": torch.randn(bsz, 3, H, W), "bev_s2": torch.randn(bsz, 7, H // 2, W // 2)}
    return lidar, label


BOXES = [[box(0.5, 0.5, 4.0, 2.0)], [box(-4.5, 3.5, 2.0, 2.0), box(5.5, -5.5, 1.0, 1.0)]]
# the mask's mass around one box of radius 2 (sigma 5/6), summed by hand over its 5 x 5 cells
GAUSS_R2 = sum(math.exp(-(dx * dx + dy * dy) / (2 * (5 / 6) ** 2))
               for dx in range(-2, 3) for dy in range(-2, 3))


def test_defaults_and_adaptor_shapes():
    d = make()
    assert (d.lidar_weight, d.label_weight, d.response_weight, d.response_bbox_weight) == \
        (0.3, 0.3, 1.0, 0.25)
    assert d.student_levels == ("bev_in", "bev_s1") and d.split == [3, 4]
    assert d.requires == ("bev_in", "bev_s1")
    assert d.teacher_requires == {"lidar": ("bev_s1", "bev_s2"), "label": ("bev_s1", "bev_s2")}
    conv = d.label_adaptors[1][0]
    assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (4, 7, (3, 3))
    assert d.lidar_adaptors[0][0].out_channels == 5


@pytest.mark.parametrize("term", ["label", "lidar"])
def test_each_partition_gets_gradient_only_from_its_own_loss(term):
    d = make()
    s = student_feats()
    lidar, label = teacher_feats()
    l_lidar, l_label = d.feature_losses(s, lidar, label, batch_of(BOXES).targets.boxes)
    (l_label if term == "label" else l_lidar).backward()
    for i, key in enumerate(d.student_levels):
        c = d.split[i]
        g = s[key].grad.abs().sum(dim=(0, 2, 3))
        own = slice(0, c) if term == "label" else slice(c, 2 * c)
        assert (g[own] > 0).all(), key
        rest = torch.ones_like(g, dtype=torch.bool)
        rest[own] = False
        assert (g[rest] == 0).all(), key  # the other partition and [2c:] get nothing
    other = d.lidar_adaptors if term == "label" else d.label_adaptors
    assert all(p.grad is None for p in other.parameters())


def test_feature_loss_is_zero_when_adapted_equals_teacher_and_ignores_the_background():
    d = make().eval()
    s = student_feats()
    bx = batch_of(BOXES).targets.boxes
    with torch.no_grad():  # teachers = the adaptors' own outputs (level 1 at the teacher's grid)
        adapted = [d.lidar_adaptors[i](d.partitions(s[k], i)[1]) for i, k in
                   enumerate(d.student_levels)]
        lidar = {"bev_s1": adapted[0].clone(),
                 "bev_s2": torch.nn.functional.interpolate(adapted[1], size=(H // 2, W // 2),
                                                           mode="bilinear", align_corners=False)}
    _, label = teacher_feats()
    l_lidar, _ = d.feature_losses(s, lidar, label, bx)
    assert l_lidar.item() == pytest.approx(0.0, abs=1e-9)
    from bevkd.distill.masks import gaussian_mask
    mask = gaussian_mask(bx, GRID, (H, W), 2)
    lidar["bev_s1"][mask.expand_as(lidar["bev_s1"]) == 0] += 7.0  # outside the mask
    assert d.feature_losses(s, lidar, label, bx)[0].item() == pytest.approx(0.0, abs=1e-9)
    lidar["bev_s1"][0, :, 8, 8] += 1.0  # inside: Σ_c 1² = 5 channels at mask value 1
    # normalised by the batch's mask sum: 3 boxes at the minimum radius 2, so each a whole
    # 5 x 5 Gaussian with sigma (2r + 1) / 6 = 5/6, none clipped or overlapping
    assert mask.sum().item() == pytest.approx(3 * GAUSS_R2, rel=1e-6)
    expected = 5.0 / (3 * GAUSS_R2)
    assert d.feature_losses(s, lidar, label, bx)[0].item() == pytest.approx(expected, rel=1e-5)


def test_label_loss_uses_the_binary_mask():
    d = make().eval()
    s = student_feats(1)
    bx = batch_of(BOXES[:1]).targets.boxes
    with torch.no_grad():
        a0 = d.label_adaptors[0](d.partitions(s["bev_in"], 0)[0])
        a1 = d.label_adaptors[1](d.partitions(s["bev_s1"], 1)[0])
        label = {"bev_s1": a0.clone(), "bev_s2": torch.nn.functional.interpolate(
            a1, size=(H // 2, W // 2), mode="bilinear", align_corners=False)}
    lidar, _ = teacher_feats(1)
    from bevkd.distill.masks import gaussian_mask
    mask = gaussian_mask(bx, GRID, (H, W), 2)
    edge = (mask[0, 0] > 0) & (mask[0, 0] < 0.5)
    iy, ix = edge.nonzero()[0].tolist()
    label["bev_s1"][0, :, iy, ix] += 1.0  # weak Gaussian value, full weight in the binary mask
    assert (mask > 0).sum().item() == 25  # the one box's 5 x 5 cells
    expected = 3.0 / 25
    assert d.feature_losses(s, lidar, label, bx)[1].item() == pytest.approx(expected, rel=1e-5)


def preds(bsz: int, logit: float = -3.0) -> list[dict[str, torch.Tensor]]:
    out = []
    for group in TASK_GROUPS:
        p = {"heatmap": torch.full((bsz, len(group), H, W), logit)}
        for name, c in REG_HEADS:
            p[name] = torch.zeros(bsz, c, H, W)
        out.append(p)
    return out


def test_response_matches_the_published_terms():
    d = make()
    b = batch_of(BOXES, [[0], [0, CONE]]).targets
    s, t = preds(2, -2.0), preds(2, 1.0)
    head = CenterHead(1, GRID, shared_channels=1, head_channels=1)
    tgts = head.targets(b.boxes, b.labels, (H, W))
    heat, bbox = d.response_losses(s, t, b.boxes, b.labels)
    assert bbox.item() == pytest.approx(0.0, abs=1e-9)  # equal regression: no L1
    p_s, p_t = clip_sigmoid(torch.tensor(-2.0)), clip_sigmoid(torch.tensor(1.0))
    expected = 0.0
    for tgt in tgts:  # no target reaches 1: negatives only, over the GT peaks
        soft = p_t * tgt.heatmap
        neg = -torch.log(1 - p_s) * p_s ** 2 * (1 - soft) ** 4
        expected += neg.sum().item() / max(1, int(tgt.heatmap.eq(1).sum()))
    assert heat.item() == pytest.approx(expected, rel=1e-5)
    s[0]["height"][0, 0, 8, 8] = 2.0   # the car of sample 0 (centre cell iy 8, ix 8)
    s[5]["vel"][1, 0, 2, 13] = 1.0     # the cone of sample 1: velocity code weight 0.2
    s[0]["dim"][0, 0, 0, 0] = 9.0      # no GT centre here: ignored
    _, bbox = d.response_losses(s, t, b.boxes, b.labels)
    # per task over its objects in the batch: two cars, one cone
    assert bbox.item() == pytest.approx(2.0 / 2 + 0.2 / 1, rel=1e-3)
    feats, (lidar, label) = student_feats(), teacher_feats()
    out = d(DetOutputs(feats, s), {"lidar": DetOutputs(lidar, t), "label": DetOutputs(label, [])},
            batch_of(BOXES, [[0], [0, CONE]]))
    assert set(out) == {"lidar", "label", "response_heatmap", "response_bbox"}
    # L = ... + 0.3·L_lidar + 0.3·L_label + 1.0·L_resp, the L1 part of L_resp at 0.25 (§4.2)
    with torch.no_grad():
        l_lidar, l_label = d.feature_losses(feats, lidar, label, b.boxes)
        heat, bbox = d.response_losses(s, t, b.boxes, b.labels)
    assert min(l_lidar.item(), l_label.item(), heat.item(), bbox.item()) > 0
    assert out["lidar"].item() == pytest.approx(0.3 * l_lidar.item(), rel=1e-6)
    assert out["label"].item() == pytest.approx(0.3 * l_label.item(), rel=1e-6)
    assert out["response_heatmap"].item() == pytest.approx(1.0 * heat.item(), rel=1e-6)
    assert out["response_bbox"].item() == pytest.approx(0.25 * bbox.item(), rel=1e-6)
    # response_weight scales both response terms, and nothing else
    half = make(response_weight=0.5)
    half.load_state_dict(d.state_dict())
    out2 = half(DetOutputs(feats, s), {"lidar": DetOutputs(lidar, t),
                                       "label": DetOutputs(label, [])},
                batch_of(BOXES, [[0], [0, CONE]]))
    assert out2["response_heatmap"].item() == pytest.approx(0.5 * heat.item(), rel=1e-6)
    assert out2["response_bbox"].item() == pytest.approx(0.5 * 0.25 * bbox.item(), rel=1e-6)
    assert out2["lidar"].item() == pytest.approx(out["lidar"].item(), rel=1e-6)


# ---------------------------------------------------------------------------------------------
# Label encoder (needs a LiDAR teacher run)
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lidar_run(synth_root, tmp_path_factory) -> str:
    from bevkd.cli import main

    run = str(tmp_path_factory.mktemp("runs") / "pillars")
    assert main(["train", "configs/teacher/pillars.yaml", "--preset", "tiny", "--data", synth_root,
                 "--out", run, "--set", "grid.cell=6.4", "--set", "data.lidar_sweeps=1",
                 "--set", "model.args.head_channels=8",
                 "--set", "model.args.trunk_channels=[8, 16]",
                 "--set", "model.args.neck_channels=8", "--set", "train.epochs=1",
                 "--set", "train.num_workers=0"]) == 0
    return run


TINY_GRID = BevGrid(cell=6.4)  # what the lidar_run fixture trained on: 16 x 16


def test_label_encoder_keeps_the_teacher_frozen_and_trains_its_own_layers(lidar_run):
    from bevkd.builder import build_detector
    from bevkd.engine.config import ModelSpec

    enc = build_detector(ModelSpec("label_encoder", {"teacher": lidar_run, "hidden_channels": 16}),
                         TINY_GRID)
    assert isinstance(enc, LabelEncoder)
    enc.train()
    assert not enc.trunk.training and not enc.head.training and enc.block.training
    assert all(not p.requires_grad for p in [*enc.trunk.parameters(), *enc.head.parameters()])
    frozen = {"trunk": enc.trunk, "head": enc.head}
    stats = {f"{name}.{k}": v.clone() for name, m in frozen.items()
             for k, v in m.state_dict().items()}
    assert any(k.endswith("running_mean") for k in stats if k.startswith("trunk."))
    b = batch_of([[box(10.0, 3.0, 4.5, 1.9)], [box(-20.0, -7.0, 0.8, 0.6)]], [[0], [8]])
    out = enc(b)
    assert set(out.feats) == {"bev_s1", "bev_s2", "bev_neck"}
    assert out.feats["bev_s1"].shape == (2, 8, 16, 16)
    assert out.feats["bev_s2"].shape == (2, 16, 8, 8)
    assert enc.feature_channels == {"bev_s1": 8, "bev_s2": 16, "bev_neck": 16}
    losses = enc.loss(out, b)
    sum(losses.values()).backward()
    assert all(p.grad is None for p in [*enc.trunk.parameters(), *enc.head.parameters()])
    own = [enc.mlp_box, enc.mlp_cls, enc.mlp, enc.norm, enc.block, enc.out_s1, enc.out_s2]
    for m in own:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters()), m
    # frozen BatchNorm statistics did not move in a training-mode forward
    after = {f"{name}.{k}": v for name, m in frozen.items() for k, v in m.state_dict().items()}
    assert all(torch.equal(v, after[k]) for k, v in stats.items())
    assert len(enc.decode(out, b)) == 2


def test_label_encoder_needs_its_teacher():
    from bevkd.errors import BevkdError

    with pytest.raises(BevkdError, match="model.args.teacher"):
        LabelEncoder(TINY_GRID)


# ---------------------------------------------------------------------------------------------
# Configs and the whole chain: label encoder stage, then LabelDistill, through the CLI
# ---------------------------------------------------------------------------------------------

TINY = ["--preset", "tiny", "--set", "grid.cell=6.4", "--set", "data.lidar_sweeps=1",
        "--set", "train.epochs=1", "--set", "train.num_workers=0", "--set", "train.batch_size=2"]
TINY_STUDENT = [f"--set=model.args.{kv}" for kv in (
    "trunk_channels=[12, 24]", "bev_neck_channels=8", "head_channels=8", "context_channels=12",
    "image_neck_channels=16", "depth_mid_channels=16")]


@pytest.mark.parametrize("path", ["configs/distill/bevdistill.yaml",
                                  "configs/distill/labeldistill.yaml"])
def test_distill_configs_spell_out_the_constructor_defaults(path):
    import inspect

    from bevkd.builder import typed_kwargs
    from bevkd.distill.bevdistill import BEVDistill
    from bevkd.engine.config import load_experiment

    cfg = load_experiment(path)
    assert cfg.data.use_lidar and cfg.data.use_camera and cfg.model.type == "bevdepth"
    (spec,) = cfg.distill.methods
    cls = {"bevdistill": BEVDistill, "labeldistill": LabelDistill}[spec.type]
    args = typed_kwargs(cls, spec.args, "args")
    defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    assert args == defaults


@pytest.mark.filterwarnings("ignore:.*module\\(s\\) in eval mode")
def test_label_encoder_stage_then_labeldistill_train_through_the_cli(lidar_run, synth_root,
                                                                     tmp_path, monkeypatch):
    from bevkd.cli import main
    from bevkd.distill.methods import DISTILLERS
    from bevkd.engine.run import load_trained

    monkeypatch.setitem(DISTILLERS, "labeldistill", LabelDistill)
    label_run = str(tmp_path / "label_encoder")
    # the loader gives GT boxes with neither camera nor LiDAR
    assert main(["train", "configs/teacher/label_encoder.yaml", "--data", synth_root,
                 "--out", label_run, *TINY, "--set", f"model.args.teacher={lidar_run}",
                 "--set", "model.args.hidden_channels=16"]) == 0
    _, enc = load_trained(label_run)  # frozen teacher parts are in its checkpoint
    assert isinstance(enc, LabelEncoder) and not enc.head.training
    run = str(tmp_path / "labeldistill")
    assert main(["train", "configs/distill/labeldistill.yaml", "--data", synth_root, "--out", run,
                 *TINY, *TINY_STUDENT, "--set", f"distill.teachers.lidar={lidar_run}",
                 "--set", f"distill.teachers.label={label_run}"]) == 0
    import csv

    rows = list(csv.DictReader(open(tmp_path / "labeldistill" / "logs" / "metrics.csv")))
    logged = {k for r in rows for k, v in r.items() if v and k.startswith("distill/labeldistill/")}
    for term in ("lidar", "label", "response_heatmap", "response_bbox"):
        assert f"distill/labeldistill/{term}_step" in logged
    # a bench archive restores these runs without checkpoints: the label encoder's and the
    # student's networks still build (for their step time and latency) from configs alone,
    # and the label encoder's own checkpoint loads without its teacher's
    import os
    import shutil

    from bevkd.bench.archive import LEFT_OUT, timing_model

    restored = str(tmp_path / "labeldistill_restored")
    shutil.copytree(run, restored, ignore=shutil.ignore_patterns(*LEFT_OUT))
    teacher_ckpts = os.path.join(lidar_run, "checkpoints")
    os.rename(teacher_ckpts, teacher_ckpts + ".away")
    try:
        with pytest.raises(Exception, match="no checkpoint"):  # what it needed before
            LabelEncoder(TINY_GRID, teacher=lidar_run, hidden_channels=16)
        _, enc_again = load_trained(label_run)
        assert all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(),
                                                     enc_again.state_dict().values()))
        _, trained_model, has = timing_model(run)
        _, model, has_restored = timing_model(restored)
    finally:
        os.rename(teacher_ckpts + ".away", teacher_ckpts)
    assert has and not has_restored
    assert [(k, v.shape) for k, v in model.state_dict().items()] == \
        [(k, v.shape) for k, v in trained_model.state_dict().items()]

    # its teachers' trained weights are loaded where their runs hold checkpoints (a
    # distillation step's cost depends on them); a teacher without one keeps its initial ones
    def same(a, b):
        return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                     b.state_dict().values()))

    trained_teachers = trained_model.teachers
    assert same(model.teachers["label"], trained_teachers["label"])
    assert not same(model.teachers["lidar"], trained_teachers["lidar"])
    _, again, _ = timing_model(restored)  # the LiDAR teacher's checkpoint back in place
    assert same(again.teachers["lidar"], trained_teachers["lidar"])
    assert same(again.teachers["label"], trained_teachers["label"])
    assert not same(again.student, trained_model.student)  # the student's stay initial
    _, bare, _ = timing_model(restored, teacher_weights=False)
    assert not same(bare.teachers["label"], trained_teachers["label"])

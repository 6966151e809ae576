"""The distillation contract, checked on every registered method with real (tiny) models.

For each distiller: finite losses; gradients reach the student and the distiller's adapters;
teacher parameters stay bit-identical through optimiser steps; teachers stay in eval mode after
``model.train()``; the exported student has exactly the baseline student's parameter names and
shapes (distillation adds zero inference cost).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import replace

import pytest
import torch

from bevkd.builder import build_model
from bevkd.cli import main
from bevkd.data.nuscenes import NuScenesDataset
from bevkd.distill.base import DistillModel, Distiller
from bevkd.distill.methods import DISTILLERS
from bevkd.engine.config import DistillConfig, MethodSpec, load_experiment
from bevkd.errors import BevkdError
from bevkd.structures.batch import collate

# every model on a 16 x 16 grid of 6.4 m cells, one sweep, a few channels, 32x96 images (what
# the contract checks does not depend on their size, and a CPU without native bfloat16 runs
# the mixed-precision test's convolutions over 10x slower than float32 ones)
COMMON = ["grid.cell=6.4", "data.lidar_sweeps=1", "data.image.final_size=[32,96]",
          "train.epochs=1", "train.batch_size=2", "train.num_workers=0"]
NARROW = {"pillars": ["model.args.head_channels=8", "model.args.trunk_channels=[8, 16]",
                      "model.args.neck_channels=8"],
          "fusion": ["model.args.head_channels=8", "model.args.trunk_channels=[8, 16]",
                     "model.args.neck_channels=8"],
          "bevdepth": ["model.args.head_channels=8", "model.args.trunk_channels=[8, 16]",
                       "model.args.bev_neck_channels=8"],
          "label_encoder": []}


def _train(config: str, kind: str, root: str, out: str, extra: tuple[str, ...] = ()) -> str:
    sets = [f"--set={s}" for s in (*COMMON, *NARROW[kind], *extra)]
    assert main(["train", config, "--preset", "tiny", "--data", root, "--out", out,
                 "--max-steps", "1", *sets]) == 0
    return out


@pytest.fixture(scope="module")
def teachers(synth_root, tmp_path_factory):
    base = tmp_path_factory.mktemp("teachers")
    runs = {"lidar": _train("configs/teacher/pillars.yaml", "pillars", synth_root,
                            str(base / "pillars")),
            "fusion": _train("configs/teacher/fusion.yaml", "fusion", synth_root,
                             str(base / "fusion"))}
    if os.path.isfile("configs/teacher/label_encoder.yaml"):
        runs["label"] = _train("configs/teacher/label_encoder.yaml", "label_encoder", synth_root,
                               str(base / "label"), (f"model.args.teacher={runs['lidar']}",))
    return runs


def _student_cfg(extra: list[str] = ()):
    return load_experiment("configs/student/bevdepth.yaml", "tiny",
                           [*COMMON, *NARROW["bevdepth"], "data.use_lidar=true", *extra])


def test_registry_holds_the_four_published_methods():
    assert {"bevdistill", "labeldistill", "dualdistill", "asd"} <= set(DISTILLERS)


@pytest.mark.parametrize("method", sorted(DISTILLERS))
def test_distiller_contract(method, teachers, synth_root):
    cls = DISTILLERS[method]
    roles = set(cls.roles)
    assert roles, f"{method} declares no teacher roles"
    if not roles <= set(teachers):
        pytest.skip(f"{method} needs teachers {roles - set(teachers)}")
    cfg = _student_cfg()
    cfg = replace(cfg, distill=DistillConfig(
        teachers={r: teachers[r] for r in roles}, methods=(MethodSpec(type=method),)))
    model = build_model(cfg)
    assert isinstance(model, DistillModel)
    ds = NuScenesDataset(synth_root, "v1.0-synth", "synth_train", cfg.data, train=True)
    batch = collate([ds[0], ds[1]])

    teacher_before = {k: v.clone() for k, v in model.teachers.state_dict().items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for step in range(2):
        out = model(batch)
        losses = model.loss(out, batch)
        terms = [k for k in losses if k.startswith(f"distill/{method}/")]
        assert terms, f"{method} added no loss terms"
        assert all(torch.isfinite(v) for v in losses.values()), losses
        opt.zero_grad()
        if step == 0:
            # the distillation terms alone (the detection loss would reach the student anyway)
            # reach the lift, from which every distilled BEV feature is computed
            trainable = [(n, p) for n, p in model.student.named_parameters() if p.requires_grad]
            grads = torch.autograd.grad(sum(losses[k] for k in terms), [p for _, p in trainable],
                                        retain_graph=True, allow_unused=True)
            reached = {n.split(".")[1] for (n, _), g in zip(trainable, grads)
                       if g is not None and g.abs().sum() > 0}
            assert {"image_neck", "depth_net"} <= reached, sorted(reached)
        sum(losses.values()).backward()
        if step == 0:
            student_grads = [p.grad for _, p in trainable]
            assert all(g is not None for g in student_grads)
            unreached = [n for n, p in model.distillers.named_parameters()
                         if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
            assert not unreached, f"adapters without gradient: {unreached[:5]}"
            assert all(p.grad is None for p in model.teachers.parameters())
        opt.step()
    # teachers: bit-identical weights and BN statistics, still in eval mode
    after = model.teachers.state_dict()
    assert all(torch.equal(teacher_before[k], after[k]) for k in teacher_before)
    model.train()
    assert all(not m.training for m in model.teachers.modules())
    # the student inside is exactly the baseline student: the same parameter names and shapes
    baseline = build_model(_student_cfg())
    assert {k: v.shape for k, v in model.student.state_dict().items()} == \
        {k: v.shape for k, v in baseline.state_dict().items()}


@pytest.mark.parametrize("method", sorted(DISTILLERS))
def test_one_seed_starts_every_method_from_the_baselines_student(method, teachers):
    """The student is built first after seeding, so a method's run starts from the very
    weights of the baseline's run of the same seed (the bench's per-seed pairs rely on it);
    the teachers and adapters built after it draw from the generator without moving that."""
    import lightning as L

    roles = set(DISTILLERS[method].roles)
    if not roles <= set(teachers):
        pytest.skip(f"{method} needs teachers {roles - set(teachers)}")
    L.seed_everything(3, verbose=False)
    baseline = build_model(_student_cfg()).state_dict()
    L.seed_everything(3, verbose=False)
    cfg = replace(_student_cfg(), distill=DistillConfig(
        teachers={r: teachers[r] for r in roles}, methods=(MethodSpec(type=method),)))
    student = build_model(cfg).student.state_dict()
    assert list(student) == list(baseline)
    assert all(torch.equal(student[k], baseline[k]) for k in baseline)
    L.seed_everything(4, verbose=False)  # and the seed does decide them
    other = build_model(_student_cfg()).state_dict()
    assert not all(torch.equal(other[k], baseline[k]) for k in baseline)


def test_export_of_a_distilled_run_is_the_baseline_student(teachers, synth_root, tmp_path):
    from bevkd.engine.run import load_trained

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = _train("configs/distill/bevdistill.yaml", "bevdepth", synth_root,
                     str(tmp_path / "kd"), (f"distill.teachers.lidar={teachers['lidar']}",))
    # the teachers are in eval mode by design: Lightning's note about it is not shown
    assert not [w for w in caught if "in eval mode at the start" in str(w.message)]
    out = str(tmp_path / "student.pt")
    assert main(["export", "--ckpt", run, "--out", out]) == 0
    state = torch.load(out, weights_only=False)
    assert state["model"] == "bevdepth"
    # no teacher, no adapter: the baseline student's tensors, as trained
    baseline = build_model(_student_cfg())
    assert list(state["state_dict"]) == list(baseline.state_dict())
    trained = load_trained(run)[1]
    assert isinstance(trained, DistillModel)
    for k, v in trained.student.state_dict().items():
        assert torch.equal(state["state_dict"][k], v), k
    # its results are a camera submission (the LiDAR is the teacher's, in training only); the
    # LiDAR teacher's are not
    for folder, camera, lidar in ((run, True, False), (teachers["lidar"], False, True)):
        out = os.path.join(str(tmp_path), f"eval-{os.path.basename(folder)}")
        assert main(["eval", "--ckpt", folder, "--data", synth_root, "--out", out]) == 0
        with open(os.path.join(out, "results.json")) as f:
            meta = json.load(f)["meta"]
        assert (meta["use_camera"], meta["use_lidar"]) == (camera, lidar), folder


def test_missing_teacher_or_feature_is_a_build_time_error(teachers):
    cfg = replace(_student_cfg(), distill=DistillConfig(
        teachers={}, methods=(MethodSpec(type=sorted(DISTILLERS)[0]),)))
    with pytest.raises(BevkdError, match="teacher"):
        build_model(cfg)
    cfg = replace(_student_cfg(), distill=DistillConfig(
        teachers={"lidar": teachers["lidar"]}, methods=(MethodSpec(type="bevdistil"),)))
    with pytest.raises(BevkdError, match="did you mean 'bevdistill'"):
        build_model(cfg)
    # a feature the student or the teacher does not publish is named, with what they do publish
    from bevkd.engine.run import load_trained

    class Reads(Distiller):
        def __init__(self, student_keys: tuple[str, ...], teacher_keys: tuple[str, ...]):
            super().__init__()
            self.requires, self.teacher_requires = student_keys, {"lidar": teacher_keys}

    student, lidar = build_model(_student_cfg()), load_trained(teachers["lidar"])[1]
    with pytest.raises(BevkdError, match=r"needs student features \['bev_s9'\], which "
                                         r"BEVDepth does not publish \(bev_in, bev_s1"):
        DistillModel(student, {"lidar": lidar}, {"reads": Reads(("bev_s1", "bev_s9"), ())})
    with pytest.raises(BevkdError, match=r"needs lidar teacher features \['depth_logits'\]"):
        DistillModel(student, {"lidar": lidar},
                     {"reads": Reads(("bev_s1",), ("bev_s1", "depth_logits"))})
    DistillModel(student, {"lidar": lidar}, {"reads": Reads(("bev_s1",), ("bev_s1",))})


def test_teacher_on_another_grid_is_refused(teachers):
    cfg = _student_cfg(["grid.cell=3.2"])
    cfg = replace(cfg, distill=DistillConfig(teachers={"lidar": teachers["lidar"]},
                                             methods=(MethodSpec(type="bevdistill"),)))
    with pytest.raises(BevkdError, match="share one BEV grid"):
        build_model(cfg)


def test_a_camera_teacher_of_another_image_size_is_refused(teachers):
    """The fusion teacher reads the student's images through a frustum built for its own
    size: refused when the model is built, not with a shape error at the first step. The
    LiDAR teacher reads no images and takes any size."""
    cfg = _student_cfg(["data.image.final_size=[64,176]"])
    cfg = replace(cfg, distill=DistillConfig(
        teachers={"lidar": teachers["lidar"], "fusion": teachers["fusion"]},
        methods=(MethodSpec(type="asd"),)))
    with pytest.raises(BevkdError, match=r"fusion teacher .* was trained on 32x96 images, the "
                                         r"student's are 64x176"):
        build_model(cfg)
    cfg = replace(cfg, distill=DistillConfig(teachers={"lidar": teachers["lidar"]},
                                             methods=(MethodSpec(type="bevdistill"),)))
    assert isinstance(build_model(cfg), DistillModel)


def test_a_teacher_of_the_wrong_kind_for_its_role_is_named(teachers):
    cfg = _student_cfg()
    cfg = replace(cfg, distill=DistillConfig(teachers={"lidar": teachers["fusion"]},
                                             methods=(MethodSpec(type="bevdistill"),)))
    with pytest.raises(BevkdError, match="lidar teacher .* is a 'fusion' model; the lidar "
                                         "role takes pillars"):
        build_model(cfg)


def _method_model(method: str, teachers: dict, root: str):
    """``method`` alone on the narrow student, in training mode, and the training split."""
    roles = set(DISTILLERS[method].roles)
    cfg = replace(_student_cfg(), distill=DistillConfig(
        teachers={r: teachers[r] for r in roles}, methods=(MethodSpec(type=method),)))
    ds = NuScenesDataset(root, "v1.0-synth", "synth_train", cfg.data, train=True)
    return build_model(cfg).train(), ds


@pytest.mark.parametrize("method", sorted(DISTILLERS))
def test_every_method_trains_with_batch_size_one(method, teachers, synth_root):
    """The reference codebases break at batch size 1 (squeezed batch dims, BN on one value)."""
    model, ds = _method_model(method, teachers, synth_root)
    batch = collate([ds[2]])
    losses = model.loss(model(batch), batch)
    assert all(torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    model.eval()
    dets = model.decode(model(batch), batch)
    assert len(dets) == 1


@pytest.mark.parametrize("method", sorted(DISTILLERS))
def test_every_method_trains_a_step_in_bfloat16_mixed_precision(method, teachers, synth_root):
    """``train.precision=bf16-mixed`` on a CPU (a GPU's default is 16-mixed): the forward pass
    and the losses under autocast, the backward outside it, as Lightning runs them. A term that
    mixes dtypes (a float32 buffer against a bfloat16 feature) or that autocast refuses fails
    here; CUDA's own refusals are in the GPU tests (tests/models/test_detectors.py)."""
    model, ds = _method_model(method, teachers, synth_root)
    batch = collate([ds[0], ds[1]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch)
        losses = model.loss(out, batch)
    assert out.student.feats["bev_neck"].dtype == torch.bfloat16  # autocast did take effect
    assert any(k.startswith(f"distill/{method}/") for k in losses)
    assert all(torch.isfinite(v.float()) for v in losses.values()), losses
    sum(v.float() for v in losses.values()).backward()
    grads = [p.grad for p in model.student.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


class _Toy(torch.nn.Module):
    """A one-parameter detector: ``bev = a · x`` for a batch ``x``, loss ``Σ bev``."""

    feature_keys = ("bev",)

    def __init__(self, a: float):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(a))

    def forward(self, batch):
        from bevkd.models.outputs import DetOutputs

        return DetOutputs({"bev": self.a * batch}, [])

    def loss(self, outputs, batch):
        return {"det": outputs.feats["bev"].sum()}


class _SquaredGap(Distiller):
    """``gap = Σ (S − T)²`` and ``scaled = 3 · Σ |S − T|``."""

    requires = ("bev",)
    teacher_requires = {"lidar": ("bev",)}

    def forward(self, student_out, teacher_out, batch):
        diff = student_out.feats["bev"] - teacher_out["lidar"].feats["bev"]
        return {"gap": (diff ** 2).sum(), "scaled": 3 * diff.abs().sum()}


def test_method_weights_scale_each_distillation_term_and_its_gradient():
    """``distill/<method>/<term>`` = the method's weight × the distiller's own term (0.5, 0.0,
    and 1.0 for a method without a weight); the student's own loss is not scaled."""
    methods = {"w_half": _SquaredGap(), "w_zero": _SquaredGap(), "w_none": _SquaredGap()}
    model = DistillModel(_Toy(2.0), {"lidar": _Toy(0.5)}, methods,
                         weights={"w_half": 0.5, "w_zero": 0.0})
    assert model.weights == {"w_half": 0.5, "w_zero": 0.0, "w_none": 1.0}
    model.train()
    x = torch.tensor([1.0, -2.0, 3.0])
    losses = model.loss(model(x), x)
    # S − T = (2 − 0.5) x: Σ(S − T)² = 2.25 · 14, 3 Σ|S − T| = 3 · 1.5 · 6
    gap, scaled = 2.25 * 14, 3 * 1.5 * 6
    assert losses["det"].item() == pytest.approx(2.0 * 2)
    for name, w in (("w_half", 0.5), ("w_zero", 0.0), ("w_none", 1.0)):
        assert losses[f"distill/{name}/gap"].item() == pytest.approx(w * gap)
        assert losses[f"distill/{name}/scaled"].item() == pytest.approx(w * scaled)
        # d/da: Σ 2 (a − 0.5) x² = 2 · 1.5 · 14; Σ 3 |x| (a > 0.5) = 18
        (grad,) = torch.autograd.grad(losses[f"distill/{name}/gap"]
                                      + losses[f"distill/{name}/scaled"], model.student.a,
                                      retain_graph=True)
        assert grad.item() == pytest.approx(w * (2 * 1.5 * 14 + 18))
    assert not model.teachers["lidar"].a.requires_grad
    model.eval()  # no teachers run: no distillation terms
    assert set(model.loss(model(x), x)) == {"det"}


def test_composite_config_builds_and_trains_every_part(teachers, synth_root):
    """configs/distill/composite.yaml with the three teachers: every term of its three methods
    is logged under distill/<method>/, at the method's weight times the distiller's own term;
    the distillation terms reach the student's lift, never the teachers."""
    if "label" not in teachers:
        pytest.skip("no label encoder config")
    cfg = load_experiment("configs/distill/composite.yaml", "tiny",
                          [*COMMON, *NARROW["bevdepth"],
                           *(f"distill.teachers.{r}={teachers[r]}"
                             for r in ("lidar", "label", "fusion"))])
    assert [(m.type, m.weight) for m in cfg.distill.methods] == [
        ("labeldistill", 1.0), ("asd", 1.0), ("dualdistill", 1.0)]
    model = build_model(cfg)
    assert isinstance(model, DistillModel) and set(model.teachers) == {"lidar", "label", "fusion"}
    # the student head starts from the teacher head (before any training-mode BN update)
    s_head, t_head = model.student.head.state_dict(), model.teachers["lidar"].head.state_dict()
    assert all(torch.equal(s_head[k], t_head[k]) for k in t_head)
    ds = NuScenesDataset(synth_root, "v1.0-synth", "synth_train", cfg.data, train=True)
    batch = collate([ds[0]])  # one sample keeps the real forward of four models short
    model.train()
    out = model(batch)
    losses = model.loss(out, batch)
    groups = {}
    for k in losses:
        if k.startswith("distill/"):
            _, method, term = k.split("/")
            groups.setdefault(method, set()).add(term)
    assert groups == {"labeldistill": {"lidar", "label", "response_heatmap", "response_bbox"},
                      "asd": {"sim", "fusion"},  # its responses off: LabelDistill responds
                      "dualdistill": {"fg", "bg", "fp", "attn", "crd_heatmap", "crd_bbox"}}
    assert all(torch.isfinite(v) for v in losses.values()), losses
    with torch.no_grad():  # weight 1.0 each: the distillers' own terms, as they are
        for method, d in model.distillers.items():
            for term, v in d(out.student, out.teachers, batch).items():
                assert losses[f"distill/{method}/{term}"].item() == pytest.approx(v.item(),
                                                                                  rel=1e-5)
    # the MFD terms are off (weight 0); CRD runs at 0.5 through the frozen teacher head
    dual = model.distillers["dualdistill"]
    assert dual.levels == ("bev_neck",) and dual.crd_weight == 0.5
    assert all(losses[f"distill/dualdistill/{t}"].item() == 0.0
               for t in ("fg", "bg", "fp", "attn"))
    assert losses["distill/dualdistill/crd_heatmap"].item() > 0
    # LabelDistill's regression response is off (it hands on the teacher's heading reversals,
    # benchmarks/tiny_orientation.md); its heatmap response stays
    assert model.distillers["labeldistill"].response_bbox_weight == 0.0
    assert losses["distill/labeldistill/response_bbox"].item() == 0.0
    assert losses["distill/labeldistill/response_heatmap"].item() > 0
    terms = [k for k in losses if k.startswith("distill/")]
    trainable = [(n, p) for n, p in model.student.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(sum(losses[k] for k in terms), [p for _, p in trainable],
                                retain_graph=True, allow_unused=True)
    reached = {".".join(n.split(".")[:2]) for (n, _), g in zip(trainable, grads)
               if g is not None and g.abs().sum() > 0}
    assert {"encoder.image_neck", "encoder.depth_net", "trunk.stage1",
            "head.task_heads"} <= reached, sorted(reached)
    assert not any(p.requires_grad for p in model.teachers.parameters())
    assert all(not m.training for m in model.teachers.modules())

"""The detectors: contract, published features, backbone names, and overfitting real samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bevkd.builder import build_model
from bevkd.data.nuscenes import NuScenesDataset
from bevkd.engine.config import load_experiment
from bevkd.errors import BevkdError
from bevkd.eval.evaluator import DetectionEvaluator
from bevkd.models.backbones.resnet import ResNet
from bevkd.structures.batch import collate

CONFIGS = {"pillars": "configs/teacher/pillars.yaml", "bevdepth": "configs/student/bevdepth.yaml",
           "fusion": "configs/teacher/fusion.yaml"}
# the tiny preset made smaller still: a 32 x 32 grid of 3.2 m cells, one sweep, narrow layers
SHRINK = ["grid.cell=3.2", "data.lidar_sweeps=1", "model.args.head_channels=16",
          "model.args.trunk_channels=[24, 48]"]
NECK = {"pillars": "neck_channels", "bevdepth": "bev_neck_channels", "fusion": "neck_channels"}


def _setup(kind: str, root: str, n: int, extra: tuple[str, ...] = ()):
    cfg = load_experiment(CONFIGS[kind], "tiny",
                          SHRINK + [f"model.args.{NECK[kind]}=24", *extra])
    ds = NuScenesDataset(root, "v1.0-synth", "synth_train", cfg.data, train=False)
    return cfg, collate([ds[i] for i in range(n)])


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_detector_contract(kind, synth_root):
    torch.manual_seed(0)
    cfg, batch = _setup(kind, synth_root, 1)  # batch size 1 works everywhere
    model = build_model(cfg)
    out = model(batch)
    Y, X = cfg.grid.shape
    assert set(model.feature_keys) <= set(out.feats)
    assert out.feats["bev_neck"].shape[-2:] == (Y, X)
    assert out.feats["bev_s1"].shape[-2:] == (Y, X) and out.feats["bev_s2"].shape[-2:] == (Y // 2, X // 2)
    assert len(out.preds) == 6 and out.preds[0]["heatmap"].shape == (1, 1, Y, X)
    losses = model.loss(out, batch)
    assert {"heatmap", "bbox"} <= set(losses) and all(torch.isfinite(v) for v in losses.values())
    if kind == "bevdepth":
        assert "depth" in losses and out.feats["depth_logits"].shape[:2] == (1, 6)
    sum(losses.values()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, no_grad[:5]
    model.eval()
    dets = model.decode(model(batch), batch)
    assert len(dets) == 1 and dets[0].sample_token == batch.meta.sample_tokens[0]


def _depth_case(root: str):
    torch.manual_seed(0)
    cfg, batch = _setup("bevdepth", root, 1)
    model = build_model(cfg)
    with torch.no_grad():
        logits = model(batch).feats["depth_logits"]
    return model, logits, batch.targets.depth


def test_the_depth_loss_runs_in_float32_outside_mixed_precision(synth_root, monkeypatch):
    """CUDA's autocast refuses binary_cross_entropy (every camera student stopped at its first
    step at 16-mixed and bf16-mixed on an H200, benchmarks/gpu_smoke_small.md); CPU's lets it
    through, so what is checked here is that the loss leaves autocast, as BEVDepth's does."""
    import torch.nn.functional as F

    model, logits, target = _depth_case(synth_root)
    seen = []
    real = F.binary_cross_entropy

    def spy(prob, onehot, *args, **kwargs):
        seen.append((torch.is_autocast_enabled("cpu"), prob.dtype, onehot.dtype))
        return real(prob, onehot, *args, **kwargs)

    monkeypatch.setattr(F, "binary_cross_entropy", spy)
    plain = model.depth_loss(logits, target)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model.depth_loss(logits.bfloat16(), target)
    assert seen == [(False, torch.float32, torch.float32)] * 2
    assert mixed.dtype == torch.float32 and plain > 0
    # the same loss, but for the logits' rounding to bfloat16 (8 bits of mantissa)
    assert mixed.item() == pytest.approx(plain.item(), rel=2e-2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_camera_student_trains_a_step_in_mixed_precision_on_cuda(synth_root):
    cfg, batch = _setup("bevdepth", synth_root, 1)
    model = build_model(cfg).to("cuda").train()
    batch = batch.to("cuda")
    for dtype in (torch.float16, torch.bfloat16):
        with torch.autocast("cuda", dtype=dtype):
            losses = model.loss(model(batch), batch)
        assert losses["depth"].dtype == torch.float32
        assert all(torch.isfinite(v) for v in losses.values()), dtype
        sum(losses.values()).backward()


def test_resnet_names_and_sizes_match_torchvision(tmp_path):
    r18, r50 = ResNet(18), ResNet(50)
    keys = set(r18.state_dict())
    for k in ("conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer1.1.bn2.bias",
              "layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_var",
              "layer4.1.conv2.weight"):
        assert k in keys
    assert "layer3.5.conv3.weight" in r50.state_dict()
    # torchvision's parameter counts minus the classifier (fc: 512*1000+1000, 2048*1000+1000)
    assert sum(p.numel() for p in r18.parameters()) == 11_689_512 - 513_000
    assert sum(p.numel() for p in r50.parameters()) == 25_557_032 - 2_049_000
    x = torch.randn(1, 3, 64, 96)
    assert [f.shape[1:] for f in r18.eval()(x)] == [(64, 16, 24), (128, 8, 12), (256, 4, 6),
                                                    (512, 2, 3)]
    # a torchvision-format file (with fc) loads; one for another depth is refused by name
    state = {**r18.state_dict(), "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    torch.save(state, tmp_path / "r18.pth")
    loaded = ResNet(18, weights=str(tmp_path / "r18.pth"))
    assert torch.equal(loaded.layer3[1].conv2.weight, r18.layer3[1].conv2.weight)
    with pytest.raises(BevkdError, match="layer1.0.conv1.weight"):
        ResNet(50, weights=str(tmp_path / "r18.pth"))


def _overfit(kind: str, root: str, steps: int, lr: float, extra: tuple[str, ...] = ()) -> dict:
    torch.manual_seed(0)
    cfg, batch = _setup(kind, root, 3, extra)  # all of synth_train
    model = build_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    model.train()
    for _ in range(steps):
        loss = sum(model.loss(model(batch), batch).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        dets = [d.numpy() for d in model.decode(model(batch), batch)]
    return DetectionEvaluator(root, "v1.0-synth", "synth_train").evaluate(dets)


def test_lidar_teacher_overfits_a_few_samples(synth_root):
    # An untrained head scores mAP < 0.001 here; 100 steps on the three samples reach ~0.5
    # (cars, trucks, barriers, pedestrians found; cones are sub-cell on 3.2 m cells).
    m = _overfit("pillars", synth_root, 100, 1e-2)
    assert m["mean_ap"] > 0.3, m["mean_dist_aps"]
    assert m["mean_dist_aps"]["car"] > 0.3


def test_camera_student_overfits_a_few_samples(synth_root):
    # From scratch (no ImageNet weights here), 80 steps reach ~0.35 on the three samples:
    # lifting through learnt depth works end to end. 0.15 is far above an untrained model.
    # 48x128 images, not the preset's 96x264: the same mAP (0.39 at 48x128, 0.36 at 64x176,
    # 0.34 at 96x264) in a third of the time, the suite's slowest test.
    m = _overfit("bevdepth", synth_root, 80, 2e-3, ("data.image.final_size=[48,128]",))
    assert m["mean_ap"] > 0.15, m["mean_dist_aps"]
    assert np.isfinite(m["nd_score"]) and m["nd_score"] > 0.2

"""The EMA callback: the warm-up average step by step, validation on the averaged weights, and
trained runs loaded and exported with the average."""

from __future__ import annotations

import math
import os

import pytest
import torch
import yaml
from torch import nn

from bevkd.builder import build_model
from bevkd.config import to_dict
from bevkd.engine.config import OptimConfig, load_experiment
from bevkd.engine.ema import EMA
from bevkd.engine.module import DetectionModule
from bevkd.engine.run import export_student, load_trained


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.bn = nn.BatchNorm1d(1)  # running_mean is averaged; num_batches_tracked (int) not
        self.teachers = nn.Linear(1, 1)  # a frozen teacher is never averaged


def _set(module: DetectionModule, w: float, mean: float) -> None:
    with torch.no_grad():
        module.model.w.fill_(w)
        module.model.bn.running_mean.fill_(mean)


def test_average_follows_the_warm_up_then_the_decay():
    """Update n uses decay 0.6 * (1 - exp(-n / 2)) (BEVDepth's ramp, here over 2 steps):
    0.6 (1 - e^-1/2), 0.6 (1 - e^-1), 0.6 (1 - e^-3/2), each computed here by hand."""
    module = DetectionModule(_Toy(), OptimConfig())
    ema = EMA(0.6, ramp=2.0)
    ema.on_fit_start(None, module)  # the average starts at the initial weights
    assert set(ema.shadow) == {"w", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"}
    d1, d2, d3 = (0.6 * (1 - math.exp(-n / 2)) for n in (1, 2, 3))
    _set(module, 11.0, 22.0)
    ema.on_train_batch_end(None, module)
    assert ema.updates == 1
    a1 = d1 * 0.0 + (1 - d1) * 11.0
    assert ema.shadow["w"].item() == pytest.approx(a1, abs=1e-5)
    assert ema.shadow["bn.running_mean"].item() == pytest.approx((1 - d1) * 22.0, abs=1e-5)
    _set(module, 13.0, 22.0)
    ema.on_train_batch_end(None, module)
    a2 = d2 * a1 + (1 - d2) * 13.0
    assert ema.shadow["w"].item() == pytest.approx(a2, abs=1e-5)
    _set(module, 4.0, 22.0)
    ema.on_train_batch_end(None, module)
    a3 = d3 * a2 + (1 - d3) * 4.0
    assert ema.shadow["w"].item() == pytest.approx(a3, abs=1e-5)
    assert ema.updates == 3
    # far into training the decay is the configured one: 0.6 (1 - e^-50) = 0.6 to 1e-20
    ema.updates = 99
    _set(module, 0.0, 22.0)
    ema.on_train_batch_end(None, module)
    assert ema.shadow["w"].item() == pytest.approx(0.6 * a3, abs=1e-5)
    # averaged(): a copy with the average; the trained model keeps its weights
    avg = EMA.averaged(module.model, ema.shadow)
    assert avg.w.item() == pytest.approx(0.6 * a3, abs=1e-5) and module.model.w.item() == 0.0


def test_validation_runs_on_the_average_and_training_continues_on_the_raw_weights():
    """on_validation_start puts the averaged weights in the model, on_validation_end restores
    the trained ones exactly (teachers and integer buffers are never touched)."""
    module = DetectionModule(_Toy(), OptimConfig())
    ema = EMA(0.5, ramp=1e-9)  # no warm-up: d = 0.5 from the first step
    ema.on_fit_start(None, module)
    _set(module, 11.0, 0.0)
    ema.on_train_batch_end(None, module)  # average 0.5 * 0 + 0.5 * 11
    _set(module, 5.0, 0.0)
    module.model.bn.num_batches_tracked.fill_(7)
    teacher = module.model.teachers.weight.detach().clone()
    ema.on_validation_start(None, module)
    assert module.model.w.item() == pytest.approx(5.5, abs=1e-6)
    assert module.model.bn.num_batches_tracked.item() == 7
    assert torch.equal(module.model.teachers.weight, teacher)
    ema.on_validation_end(None, module)
    assert module.model.w.item() == 5.0
    assert ema.shadow["w"].item() == pytest.approx(5.5, abs=1e-6)  # validation changed nothing
    ema.on_validation_end(None, module)  # a second end without a start restores nothing
    assert module.model.w.item() == 5.0


NARROW = ["grid.cell=6.4", "data.lidar_sweeps=1", "model.args.head_channels=8",
          "model.args.trunk_channels=[8, 16]", "model.args.neck_channels=8"]


def _run_with_average(tmp_path, shadow_of) -> tuple[str, dict, dict]:
    """A run folder whose last.ckpt is laid out as a training with EMA writes it (Lightning
    keeps a callback's state_dict under its state_key): raw weights, and the average
    ``shadow_of(raw)`` of the floating-point ones."""
    cfg = load_experiment("configs/teacher/pillars.yaml", "tiny", NARROW)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    raw = {k: v.clone() for k, v in build_model(cfg).state_dict().items()}
    ema = EMA(0.9)
    ema.shadow = {k: shadow_of(v) for k, v in raw.items() if v.dtype.is_floating_point}
    ema.updates = 2
    torch.save({"state_dict": {f"model.{k}": v for k, v in raw.items()},
                "callbacks": {ema.state_key: ema.state_dict()}},
               run / "checkpoints" / "last.ckpt")
    return str(run), raw, ema.shadow


def test_a_run_with_an_average_loads_and_exports_the_average(tmp_path):
    """load_trained (by default) and export_student give the averaged weights, integer buffers
    from the trained model; use_ema=False gives the trained weights."""
    run, raw, shadow = _run_with_average(tmp_path, lambda v: v * 0.5 + 1)
    assert any(v.dtype == torch.long for v in raw.values())  # BN counters
    _, model = load_trained(run)
    got = model.state_dict()
    assert got.keys() == raw.keys()
    for k, v in raw.items():
        want = v * 0.5 + 1 if v.dtype.is_floating_point else v
        assert torch.equal(got[k], want), k
    _, trained = load_trained(run, use_ema=False)
    for k, v in trained.state_dict().items():
        assert torch.equal(v, raw[k]), k
    out = export_student(run, str(tmp_path / "student.pt"))
    exported = torch.load(out, weights_only=False)["state_dict"]
    assert exported.keys() == raw.keys()
    for k, v in exported.items():
        assert torch.equal(v, got[k]), k
    assert not os.path.exists(out + ".tmp")


def test_an_average_that_never_stepped_leaves_the_trained_weights(tmp_path):
    """An EMA state without a shadow (saved before on_fit_start) loads the trained weights."""
    run, raw, _ = _run_with_average(tmp_path, lambda v: v)
    path = os.path.join(run, "checkpoints", "last.ckpt")
    state = torch.load(path, weights_only=False)
    state["callbacks"]["EMA"]["shadow"] = None
    torch.save(state, path)
    _, model = load_trained(run)
    for k, v in model.state_dict().items():
        assert torch.equal(v, raw[k]), k


def test_an_average_that_cannot_average_is_refused():
    """train.ema_decay at 1 or more would freeze the average; a ramp of 0 divides by zero."""
    from bevkd.errors import BevkdError

    with pytest.raises(BevkdError, match="0 < train.ema_decay < 1 and train.ema_ramp > 0"):
        EMA(1.0)
    with pytest.raises(BevkdError, match="got 0.9 and 0"):
        EMA(0.9, 0)

"""The optimiser and learning-rate schedule of DetectionModule: warm-up, step decay, cosine,
per optimiser step, against hand-computed factors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bevkd.engine.config import OptimConfig
from bevkd.engine.module import DetectionModule


def _lrs(steps: int, total: int = 100, **optim) -> list[float]:
    """The learning rate of optimiser steps 0 .. steps - 1 (lr 1: the lr is the factor)."""
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    model[0].weight.requires_grad_(False)
    module = DetectionModule(model, OptimConfig(lr=1.0, **optim), total_steps=total)
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert conf["lr_scheduler"]["interval"] == "step"  # stepped per batch, not per epoch
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["weight_decay"] == 0.01
    # only what trains is optimised (the frozen weight is not)
    assert [p.shape for p in opt.param_groups[0]["params"]] == [(2,), (1, 2), (1,)]
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warm_up_is_linear_from_one_step_then_constant():
    """constant with 4 warm-up steps: (k + 1) / 4 for steps 0..3, then 1."""
    assert _lrs(7, schedule="constant", warmup_steps=4) == pytest.approx(
        [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0], abs=1e-12)
    assert _lrs(3, schedule="constant") == pytest.approx([1.0, 1.0, 1.0], abs=1e-12)


def test_step_decay_divides_by_ten_at_each_step_at_fraction():
    """step_at (0.5, 0.8) of 100 steps: x1 up to step 49, x0.1 from 50, x0.01 from 80."""
    lr = _lrs(101, schedule="step", step_at=(0.5, 0.8))
    want = {0: 1.0, 49: 1.0, 50: 0.1, 79: 0.1, 80: 0.01, 100: 0.01}
    assert {k: lr[k] for k in want} == pytest.approx(want, abs=1e-12)
    # warm-up and decay multiply: 60 warm-up steps, step 50 is 51/60 * 0.1
    lr = _lrs(61, schedule="step", step_at=(0.5,), warmup_steps=60)
    assert lr[49] == pytest.approx(50 / 60, abs=1e-12)
    assert lr[50] == pytest.approx(0.085, abs=1e-12)
    assert lr[60] == pytest.approx(0.1, abs=1e-12)


def test_cosine_falls_to_zero_at_the_last_step_and_stays_there():
    """0.5 (1 + cos(pi k / 100)): 1, 1/2 + sqrt(2)/4, 1/2, 1/2 - sqrt(2)/4, 0; 0 after 100."""
    lr = _lrs(121, schedule="cosine")
    r = math.sqrt(2) / 4
    want = {0: 1.0, 25: 0.5 + r, 50: 0.5, 75: 0.5 - r, 100: 0.0, 120: 0.0}
    assert {k: lr[k] for k in want} == pytest.approx(want, abs=1e-12)
    assert lr[51] < lr[50] < lr[49]
    # with 60 warm-up steps, step 50 is 51/60 * 1/2
    assert _lrs(51, schedule="cosine", warmup_steps=60)[50] == pytest.approx(0.425, abs=1e-12)


def test_an_unknown_schedule_is_an_error_naming_it():
    """A misspelt schedule fails as the config is made, listing the valid ones (not when the
    optimiser is built, after the datasets and the model)."""
    with pytest.raises(ValueError, match="schedule must be one of step, cosine, constant, "
                                         "got 'cosin'"):
        OptimConfig(schedule="cosin")

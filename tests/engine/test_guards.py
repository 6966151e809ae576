"""Numerical guard: a non-finite loss stops training with the step and the loss terms, and
the last good checkpoint stays loadable."""

from __future__ import annotations

import os

import torch

from bevkd.cli import main
from bevkd.models.detector import Detector
from bevkd.engine.run import checkpoint_is_whole

SETTINGS = ["--preset", "tiny", "--set", "grid.cell=6.4", "--set", "data.lidar_sweeps=1",
            "--set", "model.args.head_channels=8", "--set", "model.args.trunk_channels=[8, 16]",
            "--set", "model.args.neck_channels=8", "--set", "train.epochs=3",
            "--set", "train.batch_size=1", "--set", "train.num_workers=0",
            "--set", "train.checkpoint_every=1"]


def test_nan_loss_stops_with_step_and_terms_and_keeps_the_last_good_checkpoint(
        synth_root, tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    real_loss = Detector.loss

    def loss(self, outputs, batch):  # the 5th step's heatmap loss goes NaN
        terms = real_loss(self, outputs, batch)
        calls["n"] += 1
        if calls["n"] == 5:
            terms["heatmap"] = terms["heatmap"] * float("nan")
        return terms

    monkeypatch.setattr(Detector, "loss", loss)
    run = str(tmp_path / "run")
    rc = main(["train", "configs/teacher/pillars.yaml", "--data", synth_root, "--out", run,
               *SETTINGS])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2
    assert "non-finite loss at step 4 (epoch 1): heatmap=nan, bbox=" in err
    last = os.path.join(run, "checkpoints", "last.ckpt")
    assert checkpoint_is_whole(last)
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["global_step"] == 4  # the four good steps, nothing of the bad one
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values()
               if v.is_floating_point())

"""`bevkd train --devices 2`: Lightning DDP over 2 CPU processes (gloo) follows the loss
trajectory of 1 process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bevkd.engine.history import step_series, training_log

# 16 x 16 grid, one sweep, narrow pillars; no augmentation randomness needed to differ
COMMON = ["grid.cell=6.4", "data.lidar_sweeps=1", "train.epochs=2", "train.num_workers=0",
          "train.train_split=synth_both", "optim.lr=1e-3",
          "model.args.head_channels=8", "model.args.trunk_channels=[8, 16]",
          "model.args.neck_channels=8"]


@pytest.fixture(scope="module")
def six_sample_root(synth_root, tmp_path_factory):
    """The shared dataset with a split of both scenes (6 samples: 3 global batches of 2)."""
    root = tmp_path_factory.mktemp("ddp_data")
    for name in os.listdir(synth_root):
        if name != "v1.0-synth" and not name.startswith("."):
            os.symlink(os.path.join(synth_root, name), root / name)
    version = root / "v1.0-synth"
    version.mkdir()
    src = os.path.join(synth_root, "v1.0-synth")
    for name in os.listdir(src):
        if name != "splits.json":
            os.symlink(os.path.join(src, name), version / name)
    splits = json.load(open(os.path.join(src, "splits.json")))
    splits["synth_both"] = splits["synth_train"] + splits["synth_val"]
    json.dump(splits, open(version / "splits.json", "w"))
    return str(root)


def _train(root: str, out: str, devices: int, batch: int, seed: int = 0) -> list[float]:
    sets = [f"--set={s}" for s in (*COMMON, f"train.batch_size={batch}", f"train.seed={seed}")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "bevkd.cli", "train", "configs/teacher/pillars.yaml",
                           "--preset", "tiny", "--data", root, "--out", out, "--accelerator", "cpu",
                           "--devices", str(devices), *sets],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return step_series(training_log(out), "train/loss_step")[1].tolist()


def test_two_processes_follow_the_one_process_loss_trajectory(six_sample_root, tmp_path):
    one = _train(six_sample_root, str(tmp_path / "one"), devices=1, batch=2)
    two = _train(six_sample_root, str(tmp_path / "two"), devices=2, batch=1)
    other = _train(six_sample_root, str(tmp_path / "other"), devices=1, batch=2, seed=1)
    assert len(one) == len(two) == 6  # 3 global batches per epoch, 2 epochs
    one, two, other = map(np.array, (one, two, other))
    # Not bit-equal: CenterPoint normalises each rank's loss by that rank's object count and
    # BatchNorm sees one sample per rank (SyncBatchNorm is GPU-only), so the mean of the
    # ranks' losses is not the loss of the joined batch. Measured: 4.6 % mean, 9 % worst
    # step; a run on another seed (different init and order) is further away.
    rel = np.abs(two - one) / one
    assert rel.max() < 0.15 and rel.mean() < 0.08, (one, two)
    assert np.abs(two - one).sum() < np.abs(other - one).sum()
    assert rel[0] < 0.1  # same weights, same samples: only the normalisation differs

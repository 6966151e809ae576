"""A training killed with SIGKILL mid-epoch and continued with ``--resume`` ends exactly where
an uninterrupted one does (weights, EMA average, optimiser, metrics); damaged checkpoints are
never loaded."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch

from bevkd.cli import main
from bevkd.engine.history import step_series, training_log, validations
from bevkd.engine.run import (RESUME_NOTES_SILENCED, checkpoint_is_whole,
                              resume_checkpoint)
from bevkd.errors import BevkdError
from bevkd.provenance import git_commit, machine

# 16 x 16 grid, one sweep, narrow layers; 3 training samples at batch 1 = 3 steps per epoch,
# 2 epochs; a checkpoint every 2 steps, so a kill can land in the middle of either epoch.
# Augmentation stays on (that it replays exactly is part of what is tested), and EMA is on.
# 32x96 camera images: what is resumed does not depend on their size, and the preset's
# 96x264 made these the suite's slowest tests.
COMMON = ["grid.cell=6.4", "data.lidar_sweeps=1", "data.image.final_size=[32,96]",
          "train.epochs=2", "train.batch_size=1",
          "train.num_workers=1", "train.ema_decay=0.9", "train.checkpoint_every=2",
          "train.seed=3"]
NARROW = {"pillars": ["model.args.head_channels=8", "model.args.trunk_channels=[8, 16]",
                      "model.args.neck_channels=8"],
          "bevdepth": ["model.args.head_channels=8", "model.args.trunk_channels=[8, 16]",
                       "model.args.bev_neck_channels=8"]}


def _args(config: str, kind: str, root: str, out: str, extra=()) -> list[str]:
    sets = [f"--set={s}" for s in (*COMMON, *NARROW[kind], *extra)]
    return ["train", config, "--preset", "tiny", "--data", root, "--out", out, *sets]


def _kill_after_step(args: list[str], out: str, step: int, timeout: float = 300.0,
                     sig: int = signal.SIGKILL) -> int:
    """Runs ``bevkd train`` in a child process and sends ``sig`` as soon as the checkpoint of
    ``step`` exists (the child is then inside the following step); returns its exit code."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    child = subprocess.Popen([sys.executable, "-m", "bevkd.cli", *args], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    target = os.path.join(out, "checkpoints", f"step-{step}.ckpt")
    t0 = time.monotonic()
    try:
        while not os.path.isfile(target):
            if child.poll() is not None:
                raise AssertionError(f"training ended before step {step}: "
                                     f"{child.stderr.read().decode()[-2000:]}")
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"no checkpoint of step {step} after {timeout} s")
            time.sleep(0.02)
    finally:
        child.send_signal(sig)
        child.wait()
        child.stderr.close()
    return child.returncode


def _final_state(run: str) -> dict:
    ckpt = torch.load(os.path.join(run, "checkpoints", "last.ckpt"), map_location="cpu",
                      weights_only=False)
    ema = next(v for k, v in ckpt["callbacks"].items() if k.startswith("EMA"))
    return {"global_step": ckpt["global_step"], "weights": ckpt["state_dict"],
            "ema": ema["shadow"], "adam": ckpt["optimizer_states"][0]["state"],
            "metrics": json.load(open(os.path.join(run, "eval", "synth_val", "metrics.json"))),
            "timing": json.load(open(os.path.join(run, "timing.json")))}


def _assert_same(a: dict, b: dict) -> None:
    assert a["global_step"] == b["global_step"] == 6
    for part in ("weights", "ema"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part} {k} differs"
    assert a["adam"].keys() == b["adam"].keys()
    for i in a["adam"]:
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(a["adam"][i][key], b["adam"][i][key]), f"adam {i} {key} differs"
    assert a["metrics"]["mean_ap"] == b["metrics"]["mean_ap"]
    assert a["metrics"]["nd_score"] == b["metrics"]["nd_score"]
    # timing.json covers the whole training, the part before the kill included (its totals
    # travel in the checkpoint), not only the resumed process's steps
    assert a["timing"]["steps"] == b["timing"]["steps"] == 6


@pytest.fixture(scope="module")
def uninterrupted(synth_root, tmp_path_factory):
    """``get(config, kind, extra)``: the folder of that command's uninterrupted run, trained
    once for the module (the tests compare against it and only read it)."""
    done: dict[tuple, str] = {}

    def get(config: str, kind: str, extra=()) -> str:
        key = (config, kind, tuple(extra))
        if key not in done:
            out = str(tmp_path_factory.mktemp("whole") / "run")
            assert main(_args(config, kind, synth_root, out, extra)) == 0
            done[key] = out
        return done[key]

    return get


@pytest.fixture(scope="module")
def lidar_teacher(synth_root, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("teacher") / "pillars")
    assert main(["train", "configs/teacher/pillars.yaml", "--preset", "tiny", "--data", synth_root,
                 "--out", out, "--max-steps", "1",
                 *[f"--set={s}" for s in ("grid.cell=6.4", "data.lidar_sweeps=1",
                                          "train.num_workers=0", *NARROW["pillars"])]]) == 0
    return out


@pytest.mark.parametrize("kind", ["baseline", "bevdistill"])
def test_sigkill_then_resume_ends_as_the_uninterrupted_run(kind, synth_root, lidar_teacher,
                                                          uninterrupted, tmp_path, capsys):
    config = ("configs/student/bevdepth.yaml" if kind == "baseline"
              else "configs/distill/bevdistill.yaml")
    extra = () if kind == "baseline" else (f"distill.teachers.lidar={lidar_teacher}",)
    # step 2 is inside the first epoch, 4 inside the second (the Ctrl-C test below also stops
    # in the second): each kind is killed in another epoch
    kill_at = {"baseline": 2, "bevdistill": 4}[kind]
    whole, killed = uninterrupted(config, "bevdepth", extra), str(tmp_path / "killed")
    assert _kill_after_step(_args(config, "bevdepth", synth_root, killed, extra), killed,
                            kill_at) == -signal.SIGKILL
    if kill_at == 2:
        # killed before last.ckpt was (or may have been) written: resumed from step-2.ckpt,
        # which Lightning never deletes since it resumed from it; the finished run does
        last = os.path.join(killed, "checkpoints", "last.ckpt")
        if os.path.exists(last):
            os.remove(last)
    # where the resume starts: the kill may land before the step's last.ckpt is written
    start = torch.load(resume_checkpoint(os.path.join(killed, "checkpoints")),
                       map_location="cpu", weights_only=True)["global_step"]
    assert start in (kill_at - 1, kill_at)
    capsys.readouterr()
    assert main([*_args(config, "bevdepth", synth_root, killed, extra), "--resume"]) == 0
    # the log's progress lines name a re-entered epoch and its step (3 steps an epoch), and
    # go on from there
    out = capsys.readouterr().out.splitlines()
    epoch, done = start // 3 + 1, start % 3
    assert (f"epoch {epoch}/2: resumed at step {done} of 3" in out) == (done > 0), out
    assert re.findall(r"^epoch (\d)/2 +\d+% \((\d)/3\)", "\n".join(out), re.M) == [
        (str(e), str(n)) for e in (1, 2) for n in (1, 2, 3) if (e - 1) * 3 + n > start]
    _assert_same(_final_state(whole), _final_state(killed))
    # the training curve read back across both attempts is the uninterrupted run's: every
    # step that reached a log has the same loss, the resumed steps included, and the last
    # validation agrees
    logs = {run: training_log(run) for run in (whole, killed)}
    steps, loss = step_series(logs[whole], "train/loss_step")
    k_steps, k_loss = step_series(logs[killed], "train/loss_step")
    assert steps.tolist() == list(range(6)) and set(k_steps) >= set(range(kill_at, 6))
    np.testing.assert_allclose(k_loss, loss[k_steps], rtol=1e-6)
    assert validations(logs[killed])[-1] == validations(logs[whole])[-1]
    # one checkpoint per epoch, the latest step's, and one last.ckpt: nothing versioned beside
    # it (last-v1.ckpt ...), whether the run was interrupted or not. The latest step
    # checkpoint is step 4's: step 6 ends a validated epoch, where none is written
    for run in (whole, killed):
        assert sorted(os.listdir(os.path.join(run, "checkpoints"))) == [
            "epoch-00.ckpt", "epoch-01.ckpt", "last.ckpt", "step-4.ckpt"], run


def test_ctrl_c_stops_at_a_step_exits_130_and_resumes_exactly(synth_root, uninterrupted, tmp_path,
                                                              capsys, monkeypatch):
    run = str(tmp_path / "run")
    whole = uninterrupted("configs/student/bevdepth.yaml", "bevdepth")  # before the patches
    args = _args("configs/student/bevdepth.yaml", "bevdepth", synth_root, run)
    # after step 4 the child is inside step 5 of 6: it stops in the middle of epoch 1, which
    # must neither validate nor leave an epoch-end checkpoint that skips step 6 on resume
    assert _kill_after_step(args, run, 4, sig=signal.SIGINT) == 130
    last = os.path.join(run, "checkpoints", "last.ckpt")
    assert checkpoint_is_whole(last)
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 5
    assert not os.path.isfile(os.path.join(run, "checkpoints", "epoch-01.ckpt"))
    assert not os.path.isfile(os.path.join(run, "eval", "synth_val", "metrics.json"))
    # as if the first attempt ran on another CPU: the resumed run records both machines
    meta_path = os.path.join(run, "meta.json")
    meta = json.load(open(meta_path))
    assert meta["machines"] == [meta["machine"]]
    assert meta["commits"] == [meta["commit"]]
    first = meta["first_started_unix"]
    assert first == meta["started_unix"] and abs(time.time() - first) < 600
    # and with another commit, its records since corrected by a script
    other = {**meta["machine"], "cpu": "another CPU"}
    fixed = [{"what": "config.yaml a -> b", "why": "test"}]
    with open(meta_path, "w") as f:
        json.dump({**meta, "machine": other, "machines": [other], "commit": "0123abc",
                   "commits": ["0123abc"], "migrations": fixed}, f)
    capsys.readouterr()
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)  # as on a terminal: the bar
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main([*args, "--resume"]) == 0
    # the progress bar of the re-entered epoch names it and starts at its 2 done steps of 3
    # (Lightning's own would read "Training: 3/?"); the SIGKILL test checks the lines a log
    # file gets instead
    assert re.search(r"Epoch 1: +67%\|[^|]*\| 2/3 ", capsys.readouterr().out)
    # Lightning's notes on a resume (logs and checkpoints folders not empty, a mid-epoch
    # checkpoint with a plain DataLoader) are all untrue of a bevkd run folder, and hidden
    said = [str(w.message) for w in caught]
    assert not [m for m in said if re.search("|".join(RESUME_NOTES_SILENCED), m)], said
    assert os.path.isfile(os.path.join(run, "logs", "metrics.part1.csv"))
    meta = json.load(open(meta_path))
    assert meta["machines"] == [other, machine()] and meta["machine"] == machine()
    assert meta["commits"] == ["0123abc", git_commit()] and meta["commit"] == git_commit()
    assert meta["migrations"] == fixed
    # what it read may be as old as its first attempt: that start is kept
    assert meta["first_started_unix"] == first < meta["started_unix"]
    _assert_same(_final_state(whole), _final_state(run))


def test_damaged_last_checkpoint_falls_back_to_the_newest_whole_one(tmp_path, capsys):
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    torch.save({"a": torch.zeros(1000)}, ckpt / "epoch-00.ckpt")
    time.sleep(0.01)
    torch.save({"a": torch.ones(1000)}, ckpt / "epoch-01.ckpt")
    whole = (ckpt / "epoch-01.ckpt").read_bytes()
    (ckpt / "last.ckpt").write_bytes(whole[: len(whole) // 2])  # cut short: a full disk
    assert checkpoint_is_whole(str(ckpt / "epoch-01.ckpt"))
    assert not checkpoint_is_whole(str(ckpt / "last.ckpt"))
    assert resume_checkpoint(str(ckpt)) == str(ckpt / "epoch-01.ckpt")
    assert "last.ckpt is missing or damaged; resuming from" in capsys.readouterr().err
    # a flipped byte inside a tensor is caught by the archive's CRC
    corrupt = bytearray(whole)
    corrupt[len(corrupt) // 2] ^= 0xFF
    (ckpt / "epoch-01.ckpt").write_bytes(bytes(corrupt))
    assert not checkpoint_is_whole(str(ckpt / "epoch-01.ckpt"))
    assert resume_checkpoint(str(ckpt)) == str(ckpt / "epoch-00.ckpt")
    (ckpt / "epoch-00.ckpt").write_bytes(b"")
    with pytest.raises(BevkdError, match="every checkpoint in .* is damaged"):
        resume_checkpoint(str(ckpt))
    with pytest.raises(BevkdError, match="no checkpoint in"):
        resume_checkpoint(str(tmp_path / "nothing"))


def test_every_epoch_is_checkpointed_even_when_validation_is_sparse(synth_root, tmp_path,
                                                                   capsys):
    run = str(tmp_path / "run")
    sets = ["grid.cell=6.4", "data.lidar_sweeps=1", "train.epochs=3", "train.eval_every=0",
            "train.num_workers=0", *NARROW["pillars"]]
    assert main(["train", "configs/teacher/pillars.yaml", "--preset", "tiny", "--data",
                 synth_root, "--out", run, *[f"--set={s}" for s in sets]]) == 0
    names = sorted(os.listdir(os.path.join(run, "checkpoints")))
    assert names == ["epoch-00.ckpt", "epoch-01.ckpt", "epoch-02.ckpt", "last.ckpt"]
    # validated once, at the end
    metrics = os.path.join(run, "eval", "synth_val", "metrics.json")
    with open(metrics) as f:
        before = json.load(f)
    # killed after the last epoch's checkpoint but before the metrics were written: resuming
    # has no step left to train, and validates the trained weights instead
    os.remove(metrics)
    results = os.path.join(run, "eval", "synth_val", "results.json")
    os.remove(results)  # written with the metrics: the validation of the weights writes it too
    capsys.readouterr()
    assert main(["train", "configs/teacher/pillars.yaml", "--preset", "tiny", "--data",
                 synth_root, "--out", run, *[f"--set={s}" for s in sets], "--resume"]) == 0
    assert os.path.isfile(results)
    # the log says what it validated (not "after epoch 4/3": the fit has ended)
    assert re.search(r"^validation of the trained weights: mAP \S+  NDS \S+",
                     capsys.readouterr().out, re.M)
    with open(metrics) as f:
        after = json.load(f)
    assert after["mean_ap"] == before["mean_ap"] and after["nd_score"] == before["nd_score"]


@pytest.mark.parametrize("every", [1, 100])
def test_last_ckpt_is_written_with_each_checkpoint_and_not_again_at_the_end(every, synth_root,
                                                                         tmp_path, monkeypatch):
    """``every`` 100: the step checkpoint never comes (Lightning's ModelCheckpoint would then
    write last.ckpt once more when the training ends)."""
    import lightning as L

    saved = []
    save = L.Trainer.save_checkpoint

    def recorded(self, filepath, *args, **kwargs):
        saved.append(os.path.basename(filepath))
        return save(self, filepath, *args, **kwargs)

    monkeypatch.setattr(L.Trainer, "save_checkpoint", recorded)
    run = str(tmp_path / "run")
    sets = ["grid.cell=6.4", "data.lidar_sweeps=1", "train.epochs=2", "train.batch_size=1",
            "train.eval_every=1", "train.num_workers=0", f"train.checkpoint_every={every}",
            *NARROW["pillars"]]
    assert main(["train", "configs/teacher/pillars.yaml", "--preset", "tiny", "--data",
                 synth_root, "--out", run, *[f"--set={s}" for s in sets]]) == 0
    # 3 steps per epoch: step checkpoints after steps 1, 2, 4, 5 (not 3, 6: validation
    # follows), each epoch's checkpoint, and last.ckpt after every one of them, once
    others = [n for n in saved if n != "last.ckpt"]
    assert others == (["step-1.ckpt", "step-2.ckpt", "epoch-00.ckpt", "step-4.ckpt",
                       "step-5.ckpt", "epoch-01.ckpt"] if every == 1
                      else ["epoch-00.ckpt", "epoch-01.ckpt"])
    assert saved == [n for o in others for n in (o, "last.ckpt")]


@pytest.mark.parametrize("stop", ["sigterm_in_validation", "ctrl_c_at_the_last_step",
                                  "ctrl_c_at_the_final_step"])
def test_a_stop_at_an_epochs_end_validates_that_epoch_on_resume(stop, synth_root, uninterrupted,
                                                                tmp_path, monkeypatch):
    """A stop where an epoch ends and its validation is due. ``sigterm_in_validation``:
    Lightning's evaluation loop raises at the next batch after a SIGTERM (a scheduler's
    preemption), so the checkpoint holds a finished epoch whose validation never ended.
    ``ctrl_c_at_the_last_step``: the step boundary a Ctrl-C stops at is the epoch's last, before
    its validation; ``ctrl_c_at_the_final_step``: the same at the training's last step. The
    resumed run makes that validation whole (every epoch's validation in
    the log equals the uninterrupted run's) and trains on from the trained weights, not from
    the EMA average a validation swaps in (the run ends exactly as the uninterrupted one)."""
    from bevkd.engine.callbacks import StopOnInterrupt
    from bevkd.engine.module import DetectionModule

    run = str(tmp_path / "run")
    every = ("train.eval_every=1",)
    args = _args("configs/student/bevdepth.yaml", "bevdepth", synth_root, run, every)
    whole = uninterrupted("configs/student/bevdepth.yaml", "bevdepth", every)
    name = "validation_step" if stop == "sigterm_in_validation" else "training_step"
    step = getattr(DetectionModule, name)

    epoch = 1 if stop == "ctrl_c_at_the_final_step" else 0

    def stopped(self, batch, batch_idx):  # in the epoch's first val batch / its last step (2)
        if self.trainer.current_epoch == epoch and batch_idx == (0 if name == "validation_step"
                                                                 else 2):
            if name == "validation_step":
                self.trainer._signal_connector.received_sigterm = True
            else:  # as StopOnInterrupt's Ctrl-C handler does
                next(c for c in self.trainer.callbacks
                     if isinstance(c, StopOnInterrupt)).requested = True
        return step(self, batch, batch_idx)

    monkeypatch.setattr(DetectionModule, name, stopped)
    assert main(args) != 0
    assert torch.load(os.path.join(run, "checkpoints", "last.ckpt"), map_location="cpu",
                      weights_only=True)["global_step"] == 3 * (epoch + 1)
    assert not os.path.isfile(os.path.join(run, "eval", "synth_val", "metrics.json"))
    monkeypatch.setattr(DetectionModule, name, step)
    assert main([*args, "--resume"]) == 0
    got, want = validations(training_log(run)), validations(training_log(whole))
    assert [e for e, _ in want] == [0, 1]
    assert got == want
    _assert_same(_final_state(whole), _final_state(run))


def test_a_kill_during_an_epochs_validation_resumes_into_that_validation(synth_root,
                                                                        uninterrupted,
                                                                        tmp_path, monkeypatch):
    """A run killed outright (nothing saved on the way out) while it validates an epoch, with
    a step checkpoint due at that epoch's last step: the newest checkpoint is the step before,
    so the resumed run trains that last step again and validates the epoch, ending as the
    uninterrupted run does. (A checkpoint of the last step itself resumes into the next epoch
    and skips the validation.)"""
    from bevkd.engine.module import DetectionModule

    run = str(tmp_path / "run")
    # against the uninterrupted run of the test above (one checkpoint every 2 steps there):
    # how often a run is checkpointed changes nothing it trains
    args = _args("configs/student/bevdepth.yaml", "bevdepth", synth_root, run,
                 ("train.eval_every=1", "train.checkpoint_every=1"))
    whole = uninterrupted("configs/student/bevdepth.yaml", "bevdepth", ("train.eval_every=1",))
    step = DetectionModule.validation_step

    def killed(self, batch, batch_idx):  # the first validation: an error no handler saves at
        if self.trainer.current_epoch == 0:
            raise RuntimeError("killed")
        return step(self, batch, batch_idx)

    monkeypatch.setattr(DetectionModule, "validation_step", killed)
    with pytest.raises(RuntimeError, match="killed"):
        main(args)
    ckpts = os.path.join(run, "checkpoints")
    last = torch.load(os.path.join(ckpts, "last.ckpt"), map_location="cpu", weights_only=True)
    assert last["global_step"] == 2
    # the step checkpoint's state keeps ModelCheckpoint's key: a checkpoint written before
    # StepCheckpoint resumes with it
    assert [k for k in last["callbacks"] if "'every_n_train_steps': 1" in k] == [
        "ModelCheckpoint{'monitor': None, 'mode': 'min', 'every_n_train_steps': 1, "
        "'every_n_epochs': 0, 'train_time_interval': None}"]
    assert not os.path.isfile(os.path.join(ckpts, "step-3.ckpt"))
    monkeypatch.setattr(DetectionModule, "validation_step", step)
    assert main([*args, "--resume"]) == 0
    got, want = validations(training_log(run)), validations(training_log(whole))
    assert [e for e, _ in want] == [0, 1] and got == want
    _assert_same(_final_state(whole), _final_state(run))

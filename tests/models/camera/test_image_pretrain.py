"""Backbone pretraining: class maps from projected boxes, losses, and `bevkd pretrain`."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from bevkd.cli import main
from bevkd.models.backbones.resnet import ResNet
from bevkd.models.camera.image_pretrain import ImagePretrainNet, box_class_maps
from bevkd.structures.boxes import Boxes3D

# a camera looking along +x of the box frame: camera z = box x, camera x = -box y, y = -box z
CAM_T_BOX = torch.tensor([[0., -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]])[None]
K = torch.tensor([[100., 0, 80], [0, 100, 40], [0, 0, 1]])[None]


def test_a_box_paints_its_projected_rectangle_with_its_class():
    # 2 m cube 10 m ahead: corners at depth 9 and 11; widest at depth 9: u = 80 +- 100/9,
    # v = 40 +- 100/9 -> cells (stride 8) whose centres fall in [68.9, 91.1) x [28.9, 51.1)
    box = Boxes3D(torch.tensor([[10.0, 0, 0, 2, 2, 2, 0, 0, 0]]))
    m = box_class_maps(box, torch.tensor([3]), CAM_T_BOX, K, (10, 20), 8)[0]
    cols = [(c + 0.5) * 8 for c in range(20)]
    rows = [(r + 0.5) * 8 for r in range(10)]
    want = np.zeros((10, 20), int)
    for r, v in enumerate(rows):
        for c, u in enumerate(cols):
            if 80 - 100 / 9 <= u < 80 + 100 / 9 and 40 - 100 / 9 <= v < 40 + 100 / 9:
                want[r, c] = 4  # label 3 -> class map value 4 (0 is background)
    assert want.sum() > 0 and np.array_equal(m.numpy(), want)


def test_nearer_boxes_cover_farther_ones_and_boxes_behind_are_skipped():
    boxes = Boxes3D(torch.tensor([[20.0, 0, 0, 8, 8, 8, 0, 0, 0],    # far, label 0
                                  [8.0, 0, 0, 1, 1, 1, 0, 0, 0],     # near, label 5
                                  [-10.0, 0, 0, 2, 2, 2, 0, 0, 0]]))  # behind the camera
    m = box_class_maps(boxes, torch.tensor([0, 5, 7]), CAM_T_BOX, K, (10, 20), 8)[0]
    assert m[5, 10] == 6            # the centre: the near box
    assert (m == 1).any()           # the far box still shows around it
    assert not (m == 8).any()       # nothing from the box behind
    empty = box_class_maps(Boxes3D(torch.zeros(0, 9)), torch.zeros(0), CAM_T_BOX, K, (4, 4), 8)
    assert empty.shape == (1, 4, 4) and not empty.any()


def test_losses_and_a_backbone_file_the_student_resnet_loads(tmp_path):
    net = ImagePretrainNet(18, 8, (2.0, 10.0, 1.0))
    cls, depth = net(torch.randn(2, 3, 64, 96))
    assert cls.shape == (2, 11, 8, 12) and depth.shape == (2, 8, 8, 12)
    target = torch.zeros(2, 8, 12, dtype=torch.long)
    target[:, 2:4, 3:6] = 4
    d = torch.zeros(2, 8, 12)
    d[0, 1, 1] = 5.5  # bin 3
    losses = net.loss(cls, depth, target, d)
    assert set(losses) == {"class", "depth"} and all(torch.isfinite(v) for v in losses.values())
    losses["depth"].backward()
    # the depth loss reaches the depth logits of the one cell with a target only
    grad = torch.autograd.grad(net.loss(cls, depth, target, d)["depth"], depth)[0]
    assert grad[0, :, 1, 1].abs().sum() > 0 and grad.abs().sum() == grad[0, :, 1, 1].abs().sum()
    path = tmp_path / "r18.pth"
    torch.save(net.backbone.state_dict(), path)
    # torchvision names: loads as ImageNet weights would, every tensor
    loaded = ResNet(18, weights=str(path)).state_dict()
    saved = net.backbone.state_dict()
    assert set(saved) <= set(loaded)
    assert all(torch.equal(loaded[k], v) for k, v in saved.items())


def test_pretrain_command_writes_weights_and_held_out_accuracies(synth_root, tmp_path, capsys):
    out = tmp_path / "bb.pth"
    assert main(["pretrain", "configs/student/bevdepth.yaml", "--preset", "tiny", "--data",
                 synth_root, "--out", str(out), "--steps", "2", "--accelerator", "cpu",
                 "--set", "train.num_workers=0", "--set", "train.batch_size=1"]) == 0
    # its progress in a log: a line per step here (2 steps), each with that step's losses
    lines = [line for line in capsys.readouterr().err.splitlines()
             if line.startswith("pretrain backbone:")]
    assert [line.split()[3] for line in lines] == ["1/2", "2/2"], lines
    assert all("class=" in line and "depth=" in line for line in lines), lines
    info = json.load(open(f"{out}.json"))
    assert info["steps"] == 2 and 0 <= info["val_object_accuracy"] <= 1
    assert info["device"] == "cpu"
    state = torch.load(out, weights_only=True)
    assert "layer4.1.bn2.running_var" in state and not any(k.startswith("fc.") for k in state)
    assert main(["pretrain", "configs/teacher/pillars.yaml", "--data", synth_root,
                 "--out", str(tmp_path / "other.pth"), "--steps", "2"]) == 2
    assert "needs a camera model config" in capsys.readouterr().err
    # weights already there are kept, refused before any step
    before = out.read_bytes()
    assert main(["pretrain", "configs/student/bevdepth.yaml", "--preset", "tiny", "--data",
                 synth_root, "--out", str(out), "--steps", "2"]) == 2
    assert "bb.pth exists; choose another file or pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_a_stopped_pretraining_resumes_to_the_weights_of_one_never_stopped(synth_root, tmp_path,
                                                                          monkeypatch, capsys):
    """5 steps of one sample each over a 3-sample training split: stopped by SIGTERM during
    its 2nd step (it ends that step, saves, and stops), resumed: mid-epoch, then across the
    epoch's end, to the same weights, to the bit, as 5 steps in one go. Nothing is lost by a
    stop."""
    import signal

    from bevkd.engine import pretrain

    def command(out, *more):
        return ["pretrain", "configs/student/bevdepth.yaml", "--preset", "tiny", "--data",
                synth_root, "--out", str(out), "--steps", "5", "--accelerator", "cpu",
                "--set", "train.num_workers=0", "--set", "train.batch_size=1", *more]

    whole = tmp_path / "whole.pth"
    assert main(command(whole)) == 0
    out = tmp_path / "bb.pth"
    real_step, calls = pretrain._step, []

    def step(net, batch):  # SIGTERM arrives during the 2nd step, as a scheduler's would
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_step(net, batch)

    monkeypatch.setattr(pretrain, "_step", step)
    assert main(command(out)) == 130  # interrupted, after its step
    err = capsys.readouterr().err
    assert f"stopped at step 2 of 5; {out}.ckpt holds it" in err
    assert not out.exists() and (tmp_path / "bb.pth.ckpt").exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is undone
    monkeypatch.setattr(pretrain, "_step", real_step)
    # without --resume, the checkpoint is kept: an error that says how to go on
    assert main(command(out)) == 2
    assert "holds a pretraining that was stopped: pass --resume" in capsys.readouterr().err
    # another pretraining's checkpoint is refused, and says how it differs
    assert main([*command(out, "--resume"), "--set", "train.batch_size=2"]) == 2
    assert "is of another pretraining: batch_size 1 (now 2)" in capsys.readouterr().err
    # so is one resumed on other CPU threads, whose steps would round otherwise
    threads = torch.get_num_threads()
    try:
        assert main([*command(out, "--resume"), "--set", f"train.threads={threads + 1}"]) == 2
    finally:
        torch.set_num_threads(threads)
    assert (f"is of another pretraining: threads {threads} (now {threads + 1})"
            in capsys.readouterr().err)
    assert main(command(out, "--resume")) == 0
    err = capsys.readouterr().err
    assert f"resumes {out}.ckpt at step 2 of 5" in err
    # the bar goes on from step 2: its lines say steps 3, 4, 5
    assert [line.split()[3] for line in err.splitlines()
            if line.startswith("pretrain backbone:")] == ["3/5", "4/5", "5/5"]
    got, want = (torch.load(p, weights_only=True) for p in (out, whole))
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert not (tmp_path / "bb.pth.ckpt").exists()  # the weights written: nothing to resume
    assert json.load(open(f"{out}.json"))["steps"] == 5
    assert main(command(tmp_path / "x.pth", "--resume")) == 2
    assert "there is no checkpoint" in capsys.readouterr().err
    # stopped in the held-out pass after the last step: resumed straight to that pass
    real_eval = pretrain.evaluate_pretrain

    def stopped_eval(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrain, "evaluate_pretrain", stopped_eval)
    late = tmp_path / "late.pth"
    assert main(command(late)) == 130 and not late.exists()
    monkeypatch.setattr(pretrain, "evaluate_pretrain", real_eval)
    capsys.readouterr()
    assert main(command(late, "--resume")) == 0
    err = capsys.readouterr().err
    assert f"resumes {late}.ckpt at step 5 of 5" in err and "pretrain backbone:" not in err
    got = torch.load(late, weights_only=True)
    assert all(torch.equal(got[k], want[k]) for k in want)
    # --resume with --overwrite (as the bench passes them): a checkpoint that cannot be
    # resumed is started over, and said
    assert main([*command(out, "--resume", "--overwrite"), "--set", "train.batch_size=2"]) == 0
    assert "starting again (--overwrite)" in capsys.readouterr().err


def test_pretraining_runs_on_the_gpu_where_there_is_one(monkeypatch):
    from bevkd.engine.pretrain import pretrain_device
    from bevkd.errors import BevkdError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pretrain_device("auto") == pretrain_device("cpu") == torch.device("cpu")
    with pytest.raises(BevkdError, match="no CUDA device"):
        pretrain_device("gpu")
    with pytest.raises(BevkdError, match="auto, cpu or gpu"):
        pretrain_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pretrain_device("auto") == pretrain_device("gpu") == torch.device("cuda")
    assert pretrain_device("cpu") == torch.device("cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pretrain_on_the_gpu_writes_cpu_weights(synth_root, tmp_path):
    out = tmp_path / "bb.pth"
    assert main(["pretrain", "configs/student/bevdepth.yaml", "--preset", "tiny", "--data",
                 synth_root, "--out", str(out), "--steps", "2", "--accelerator", "gpu",
                 "--set", "train.num_workers=0", "--set", "train.batch_size=1"]) == 0
    assert json.load(open(f"{out}.json"))["device"] == "cuda"
    state = torch.load(out, weights_only=True)  # no map_location: CPU tensors
    assert all(v.device.type == "cpu" for v in state.values())


@pytest.mark.parametrize("norm_eval", [True, False])
def test_a_student_starts_from_the_weights_and_no_longer_needs_the_file(norm_eval, synth_root,
                                                                      tmp_path):
    from bevkd.engine.run import load_trained

    weights = tmp_path / "bb.pth"
    saved = ImagePretrainNet(18).backbone.state_dict()
    torch.save(saved, weights)
    run = str(tmp_path / "student")
    sets = ["grid.cell=6.4", "train.num_workers=0", "train.batch_size=1",
            "model.args.head_channels=8", "model.args.trunk_channels=[8, 16]",
            "model.args.bev_neck_channels=8", f"model.args.backbone_weights={weights}",
            "model.args.frozen_stages=4", f"model.args.norm_eval={str(norm_eval).lower()}"]
    assert main(["train", "configs/student/bevdepth.yaml", "--preset", "tiny", "--data",
                 synth_root, "--out", run, "--max-steps", "1",
                 *[f"--set={s}" for s in sets]]) == 0
    weights.unlink()  # moved or deleted: the checkpoint holds every weight
    _, model = load_trained(run)
    # a frozen backbone: after a training step the student holds the file's weights, and with
    # norm_eval its BatchNorm statistics too (without, they follow the training batches)
    got = model.encoder.backbone.state_dict()
    assert set(saved) == set(got)
    moved = [k for k, v in saved.items() if not torch.equal(got[k], v)]
    bn_stats = [k for k in saved if k.endswith(("running_mean", "running_var",
                                               "num_batches_tracked"))]
    assert moved == ([] if norm_eval else bn_stats)
    assert main(["eval", "--ckpt", run, "--data", synth_root]) == 0

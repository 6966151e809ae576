"""A distilled run evaluates and exports as its student alone: without its teachers' folders,
with the student's part of the weight average, and an exported student evaluates as the run
does. Damaged checkpoints and existing outputs are one-line errors."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
import yaml

from bevkd.builder import build_model, without_init_weights
from bevkd.cli import main
from bevkd.config import to_dict
from bevkd.engine.config import load_experiment
from bevkd.engine.ema import EMA
from bevkd.engine.run import evaluate_exported, evaluate_run, load_exported, load_trained
from bevkd.errors import BevkdError

SMALL = ["grid.cell=6.4", "data.lidar_sweeps=1", "model.args.head_channels=8"]
TEACHER = [*SMALL, "model.args.trunk_channels=[8, 16]", "model.args.neck_channels=8"]
STUDENT = [*SMALL, "model.args.trunk_channels=[8, 16]", "model.args.bev_neck_channels=8",
           "data.image.final_size=[32, 96]"]


def _folder(path, cfg) -> str:
    (path / "checkpoints").mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return str(path)


@pytest.fixture
def distilled(tmp_path):
    """``(run, teacher folder, raw weights, EMA shadow)``: a BEVDistill run's last.ckpt laid
    out as a training with EMA writes it (the whole model's tensors, teachers included, and
    an average keyed the same), its teacher a run folder of its own."""
    teacher = _folder(tmp_path / "teacher",
                      load_experiment("configs/teacher/pillars.yaml", "tiny", TEACHER))
    cfg = load_experiment("configs/distill/bevdistill.yaml", "tiny",
                          [*STUDENT, f"distill.teachers.lidar={teacher}"])
    run = _folder(tmp_path / "run", cfg)
    torch.manual_seed(1)
    raw = {k: v.clone() for k, v in
           build_model(without_init_weights(cfg), load_teachers=False).state_dict().items()}
    ema = EMA(0.9)
    ema.shadow = {k: v * 0.99 for k, v in raw.items() if v.dtype.is_floating_point}
    ema.updates = 2
    torch.save({"state_dict": {f"model.{k}": v for k, v in raw.items()},
                "callbacks": {ema.state_key: ema.state_dict()}},
               os.path.join(run, "checkpoints", "last.ckpt"))
    return run, teacher, raw, ema.shadow


def test_a_distilled_run_loads_its_student_alone_with_the_students_average(distilled):
    run, teacher, raw, shadow = distilled
    shutil.rmtree(teacher)  # the teacher's folder is gone: the student needs none of it
    cfg, student = load_trained(run, student_only=True)
    assert cfg.distill.methods and not hasattr(student, "teachers")
    got = student.state_dict()
    assert got.keys() == {k[len("student."):] for k in raw if k.startswith("student.")}
    for k, v in got.items():
        want = shadow[f"student.{k}"] if v.dtype.is_floating_point else raw[f"student.{k}"]
        assert torch.equal(v, want), k
    with pytest.raises(BevkdError, match="lidar teacher .* does not exist"):
        load_trained(run)  # the whole model needs the teacher's config


def _head_outputs(model, synth_root, cfg) -> list[dict[str, torch.Tensor]]:
    """``model``'s head outputs (every task's maps) on two val samples, in eval mode."""
    from bevkd.data.nuscenes import NuScenesDataset
    from bevkd.structures.batch import collate

    ds = NuScenesDataset(synth_root, cfg.train.version, cfg.train.val_split, cfg.data)
    model.eval()
    with torch.no_grad():
        out = model(collate([ds[0], ds[1]]))
    return getattr(out, "student", out).preds  # a DistillModel's outputs hold the student's


def test_the_student_alone_detects_exactly_as_the_whole_distilled_model(distilled, synth_root):
    """What eval and export read (the student alone) is what the whole model, teachers and
    adapters built as in training, outputs in eval mode, to the bit: its decoding is the
    student's own."""
    run = distilled[0]
    cfg, whole = load_trained(run)
    _, alone = load_trained(run, student_only=True)
    a, b = _head_outputs(whole, synth_root, cfg), _head_outputs(alone, synth_root, cfg)
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys() and "heatmap" in x
        for k in x:
            assert x[k].abs().sum() > 0 and torch.equal(x[k], y[k]), k


def test_an_exported_student_evaluates_as_its_run(distilled, synth_root, tmp_path, capsys):
    run, teacher, _, _ = distilled
    shutil.rmtree(teacher)
    out = str(tmp_path / "student.pt")
    assert main(["export", "--ckpt", run, "--out", out]) == 0
    cfg, model = load_exported(out)
    assert cfg.distill.methods and cfg.model.type == "bevdepth"
    alone = load_trained(run, student_only=True)[1].state_dict()
    assert list(model.state_dict()) == list(alone)
    for k, v in model.state_dict().items():
        assert torch.equal(v, alone[k]), k
    m_run, folder = evaluate_run(run, synth_root, progress=False, out=str(tmp_path / "a"))
    m_pt, folder_pt = evaluate_exported(out, synth_root, progress=False)
    dataset = os.path.basename(synth_root)
    assert folder_pt == str(tmp_path / "student_eval" / dataset / "synth_val")
    same = [{k: v for k, v in m.items() if k != "eval_time"} for m in (m_pt, m_run)]
    assert json.dumps(same[0]) == json.dumps(same[1])  # every metric (NaN included) alike
    assert os.path.isfile(os.path.join(folder_pt, "results.json"))
    # through the command line: an exported student is told by what it holds, wherever it
    # lies (here in a run's checkpoints folder, beside the run's config)
    inside = os.path.join(run, "checkpoints", "student.pt")
    shutil.copy(out, inside)
    capsys.readouterr()
    assert main(["eval", "--ckpt", inside, "--data", synth_root, "--out",
                 str(tmp_path / "b")]) == 0
    assert f"NDS {m_run['nd_score']:.4f}" in capsys.readouterr().out


def test_a_training_checkpoint_outside_its_run_folder_is_named(distilled, tmp_path, capsys):
    lone = tmp_path / "lone.ckpt"
    shutil.copy(os.path.join(distilled[0], "checkpoints", "last.ckpt"), lone)
    assert main(["eval", "--ckpt", str(lone), "--data", "unused"]) == 2
    err = capsys.readouterr().err
    assert "a checkpoint file is read in its run folder" in err and "has no config.yaml" in err


def test_export_keeps_an_existing_file_and_leaves_no_temporary_one(distilled, tmp_path, capsys):
    run = distilled[0]
    kept = tmp_path / "notes.txt"
    kept.write_text("mine")
    assert main(["export", "--ckpt", run, "--out", str(kept)]) == 2
    assert "exists; choose another file or pass --overwrite" in capsys.readouterr().err
    assert kept.read_text() == "mine"
    assert main(["export", "--ckpt", run, "--out", str(tmp_path)]) == 2
    assert "is a folder; give the file to write" in capsys.readouterr().err
    assert main(["export", "--ckpt", run, "--out", str(kept), "--overwrite"]) == 0
    assert load_exported(str(kept))[0].model.type == "bevdepth"
    assert sorted(os.listdir(tmp_path)) == ["notes.txt", "run", "teacher"]


def test_a_damaged_checkpoint_is_named_with_the_newest_whole_one(distilled, capsys):
    run = distilled[0]
    ckpts = os.path.join(run, "checkpoints")
    shutil.copy(os.path.join(ckpts, "last.ckpt"), os.path.join(ckpts, "epoch-00.ckpt"))
    with open(os.path.join(ckpts, "last.ckpt"), "r+b") as f:
        f.truncate(1000)  # a copy cut short
    assert main(["eval", "--ckpt", run, "--data", "unused"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "checkpoints/last.ckpt is damaged and cannot be read" in err
    assert err.endswith(f"the newest whole one beside it is {ckpts}/epoch-00.ckpt (pass it as "
                        "--ckpt)")

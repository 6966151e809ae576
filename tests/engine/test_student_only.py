"""A distilled run evaluates and exports as its student alone: without its teachers' folders,
with the student's part of the weight average, and an exported student evaluates as the run
does. Damaged checkpoints and existing outputs are one-line errors."""

from __future__ import annotations

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
    ema.shadow = {k: v * 0.5 + 1 for k, v in raw.items() if v.dtype.is_floating_point}
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


def test_an_exported_student_evaluates_as_its_run(distilled, synth_root, tmp_path, capsys):
    run, teacher, _, _ = distilled
    shutil.rmtree(teacher)
    out = str(tmp_path / "student.pt")
    assert main(["export", "--ckpt", run, "--out", out]) == 0
    cfg, model = load_exported(out)
    assert cfg.distill.methods and cfg.model.type == "bevdepth"
    for (k, v), (k2, v2) in zip(model.state_dict().items(),
                                load_trained(run, student_only=True)[1].state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    m_run, folder = evaluate_run(run, synth_root, progress=False, out=str(tmp_path / "a"))
    m_pt, folder_pt = evaluate_exported(out, synth_root, progress=False)
    assert folder_pt == str(tmp_path / "student_eval" / "synth_val")
    assert m_pt["mean_ap"] == m_run["mean_ap"] and m_pt["nd_score"] == m_run["nd_score"]
    assert os.path.isfile(os.path.join(folder_pt, "results.json"))
    # through the command line: a file outside any run is an exported student
    capsys.readouterr()
    assert main(["eval", "--ckpt", out, "--data", synth_root, "--out",
                 str(tmp_path / "b")]) == 0
    assert f"NDS {m_run['nd_score']:.4f}" in capsys.readouterr().out


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

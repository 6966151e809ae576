"""The command line's own checks: arguments out of range are refused by the parser (exit 2,
one line naming the option), and the environment's errors are said in words."""

from __future__ import annotations

import os

import pytest
import torch

from bevkd.cli import _devices, _os_error, main
from bevkd.engine.run import device_count


@pytest.mark.parametrize("argv, message", [
    (["train", "c.yaml", "--data", "d", "--out", "o", "--devices", "0"],
     "--devices must be at least 1, got 0"),
    (["train", "c.yaml", "--data", "d", "--out", "o", "--max-steps", "0"],
     "--max-steps must be at least 1, got 0"),
    (["train", "c.yaml", "--data", "d", "--out", "o", "--nodes", "0"],
     "--nodes must be at least 1"),
    (["pretrain", "c.yaml", "--data", "d", "--out", "o", "--lr", "-1"],
     "--lr must be a positive number, got -1"),
    (["pretrain", "c.yaml", "--data", "d", "--out", "o", "--steps", "0"],
     "--steps must be at least 1"),
    (["eval", "--ckpt", "r", "--data", "d", "--batch-size", "0"],
     "--batch-size must be at least 1"),
    (["bench", "--seeds", "0"], "--seeds must be at least 1"),
    (["train", "c.yaml", "--data", "d", "--out", "o", "--devices", "0,x"],
     "--devices: GPU indices are integers, got '0,x'"),
    (["bench", "--pretrain-steps", "-5"], "--pretrain-steps must be at least 0"),
])
def test_arguments_out_of_range_are_refused_by_the_parser(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_train_on_a_gpu_where_there_is_none_is_one_line(monkeypatch, synth_root, tmp_path,
                                                        capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["train", "configs/teacher/pillars.yaml", "--preset", "tiny", "--data",
                 synth_root, "--out", str(tmp_path / "r"), "--accelerator", "gpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--accelerator gpu: torch sees no CUDA device here" in err
    assert not os.path.exists(tmp_path / "r")  # refused before the run folder is made
    assert main(["train", "configs/teacher/pillars.yaml", "--preset", "tiny", "--data",
                 synth_root, "--out", str(tmp_path / "r"), "--accelerator", "tpu"]) == 2
    assert "accelerator must be auto, cpu or gpu, got 'tpu'" in capsys.readouterr().err


def test_a_file_where_a_folder_is_to_be_written_is_named(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(FileExistsError) as err:
        os.makedirs(afile, exist_ok=True)
    assert _os_error(err.value) == f"{afile} is a file, where a folder is to be written " \
                                   "(choose another path)"
    with pytest.raises(NotADirectoryError) as err:
        os.makedirs(afile / "sub" / "deeper", exist_ok=True)
    assert _os_error(err.value).startswith(f"{afile} is a file")
    with pytest.raises(FileNotFoundError) as err:
        open(tmp_path / "none" / "x")
    assert _os_error(err.value) == str(err.value)  # any other error as the OS says it


def test_devices_take_lightnings_spellings_and_count_the_processes(monkeypatch):
    """A count, ``auto``, ``-1`` (every GPU) or GPU indices; the processes a node starts for
    each (the step count a run plans, and whether a resumed one has finished, read it)."""
    assert [_devices(t) for t in ("2", "auto", "-1", "0,1")] == [2, "auto", "-1", "0,1"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert [device_count(d, "gpu") for d in (2, "auto", "-1", -1, "0,1", "1,2,3")] == \
        [2, 4, 4, 4, 2, 3]
    assert device_count("auto", "cpu") == 1 and device_count(3, "cpu") == 3


def test_bench_arguments_are_checked_before_anything_starts(tmp_path, monkeypatch, capsys):
    from bevkd.bench import command

    seen = {}
    monkeypatch.setattr(command, "run_bench", lambda *a, **k: seen.update(methods=a[5]) or
                        (_ for _ in ()).throw(SystemExit(0)))
    afile = tmp_path / "afile"
    afile.write_text("x")
    for flag in ("--out", "--archive", "--runs"):
        assert main(["bench", "--preset", "demo", flag, str(afile)]) == 2
        assert f"{flag} {afile} is a file: the bench writes a folder there" in \
            capsys.readouterr().err
    assert main(["bench", "--preset", "demo", "--methods", " , "]) == 2
    assert "--methods names no method" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--preset", "demo", "--methods", "dualdistill, bevdistill"])
    assert seen["methods"] == ("dualdistill", "bevdistill")  # spaces after commas dropped

"""Training progress: whole lines in a log file, the tqdm bar on a terminal, and none of the
notes Lightning and torch print on every fit that a bevkd user cannot act on."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import warnings

import pytest

from bevkd.bench.eta import live_progress
from bevkd.cli import main
from bevkd.engine.progress import BarProgress, LineProgress, progress_callback


def test_a_terminal_gets_the_bar_and_a_file_the_lines():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert isinstance(progress_callback(Tty()), BarProgress)
    assert isinstance(progress_callback(io.StringIO()), LineProgress)
    with pytest.raises(ValueError, match="every"):
        LineProgress(every=1.5)


def test_a_training_into_a_file_logs_whole_lines_and_no_lightning_notes(
        synth_root, tmp_path, tiny_train_settings, capsys, caplog):
    run = str(tmp_path / "run")
    caplog.set_level(logging.INFO)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # pytest's own filters would hide what bevkd does not
        assert main(["train", "configs/teacher/pillars.yaml", "--data", synth_root,
                     "--out", run, *tiny_train_settings, "--set", "train.batch_size=1",
                     "--set", "train.eval_every=1"]) == 0
    out = capsys.readouterr().out  # captured: not a terminal, as a log file is not
    assert "\r" not in out
    # 3 samples at batch 1: a line for each of an epoch's 3 steps, then its validation
    steps = re.findall(r"^epoch (\d)/2 +(\d+)% \((\d)/3\)  loss ([\d.]+)  ([\d.]+) s/step  "
                       r"epoch left \d:\d\d:\d\d  run left \d:\d\d:\d\d$", out, re.M)
    assert [(e, n) for e, _, n, _, _ in steps] == [(e, n) for e in "12" for n in "123"]
    assert [p for _, p, _, _, _ in steps] == ["33", "67", "100"] * 2
    # `bevkd bench` reads where a training stands from these lines (its last one, here
    # before the final validation's line)
    log = tmp_path / "logged"
    log.mkdir()
    (log / "train.log").write_text(out)
    live = live_progress(str(log))
    assert (live.epoch, live.epochs, live.step, live.steps) == (2, 2, 3, 3)
    assert f"{live.step_seconds:.2f}" == steps[-1][4] and live.left == 0.0
    vals = re.findall(r"^validation after epoch (\d)/2: mAP (\S+)  NDS (\S+)  \(\d:\d\d:\d\d\)$",
                      out, re.M)
    assert [v[0] for v in vals] == ["1", "2"]
    final = json.load(open(os.path.join(run, "eval", "synth_val", "metrics.json")))
    assert vals[-1][1:] == (f"{final['mean_ap']:.4f}", f"{final['nd_score']:.4f}")
    # Lightning's cloud-logger advertisement and its use of torch's deprecated LeafSpec
    # are gone; the rest of what Lightning logs is not (the check can see them)
    logged = [r.getMessage() for r in caplog.records]
    assert any("GPU available" in m for m in logged), logged
    assert not any("litlogger" in m for m in logged)
    said = [str(w.message) for w in caught]
    assert not any("LeafSpec" in m for m in said), said

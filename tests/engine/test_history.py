"""A resumed run's history reads as one: attempts in order, replayed steps from the latest."""

from __future__ import annotations

import os

import numpy as np

from bevkd.engine.history import log_files, loss_terms, step_series, training_log, validations

HEADER = "epoch,step,train/loss_step,val/mAP,val/NDS\n"


def _write(run, name, lines):
    os.makedirs(os.path.join(run, "logs"), exist_ok=True)
    with open(os.path.join(run, "logs", name), "w") as f:
        f.write(HEADER + "".join(line + "\n" for line in lines))


def test_attempts_are_read_oldest_first_and_replayed_steps_keep_the_latest(tmp_path):
    run = str(tmp_path / "run")
    # attempt 1: steps 0-3, validated after epoch 0, killed in step 3 of epoch 1
    _write(run, "metrics.part1.csv", ["0,0,9.0,,", "0,1,8.0,,", "0,1,,0.01,0.10",
                                      "1,2,7.0,,", "1,3,6.5,,"])
    # attempt 2 resumed from the checkpoint of step 2: step 3 is trained again
    _write(run, "metrics.part2.csv", ["1,3,6.0,,"])
    # attempt 10 (numeric order, not text: part10 comes after part2)
    _write(run, "metrics.part10.csv", ["1,4,5.0,,", "1,4,,0.05,0.20"])
    _write(run, "metrics.csv", ["2,5,4.0,,", "2,5,,0.07,0.25"])
    # a stray file that only looks like a part
    _write(run, "metrics.partX.csv", ["9,9,0.0,,"])
    names = [os.path.basename(p) for p in log_files(run)]
    assert names == ["metrics.part1.csv", "metrics.part2.csv", "metrics.part10.csv",
                     "metrics.csv"]
    rows = training_log(run)
    steps, loss = step_series(rows, "train/loss_step")
    assert steps.tolist() == [0, 1, 2, 3, 4, 5]
    # step 3 from attempt 2 (6.0), not the killed attempt's 6.5
    np.testing.assert_array_equal(loss, [9.0, 8.0, 7.0, 6.0, 5.0, 4.0])
    assert validations(rows) == [(0, {"val/mAP": 0.01, "val/NDS": 0.10}),
                                 (1, {"val/mAP": 0.05, "val/NDS": 0.20}),
                                 (2, {"val/mAP": 0.07, "val/NDS": 0.25})]


def test_a_run_without_logs_has_an_empty_history(tmp_path):
    assert log_files(str(tmp_path)) == []
    rows = training_log(str(tmp_path))
    assert rows == []
    steps, values = step_series(rows, "train/loss_step")
    assert steps.size == 0 and values.size == 0
    assert validations(rows) == []


def test_loss_terms_are_named_short_and_merged_across_attempts(tmp_path):
    run = str(tmp_path / "run")
    os.makedirs(os.path.join(run, "logs"))
    head = "epoch,step,train/heatmap_step,train/heatmap_epoch,distill/asd/sim_step,val/mAP\n"
    with open(os.path.join(run, "logs", "metrics.part1.csv"), "w") as f:
        f.write(head + "0,0,9.0,,0.5,\n0,1,8.0,,0.4,\n0,1,,8.5,,0.02\n")
    with open(os.path.join(run, "logs", "metrics.csv"), "w") as f:
        f.write(head + "1,2,7.0,,0.3,\n")
    terms = loss_terms(training_log(run))
    # epoch aggregates and validation results are not per-step terms
    assert sorted(terms) == ["distill/asd/sim", "heatmap"]
    assert terms["heatmap"][0].tolist() == [0, 1, 2]
    np.testing.assert_array_equal(terms["heatmap"][1], [9.0, 8.0, 7.0])
    np.testing.assert_array_equal(terms["distill/asd/sim"][1], [0.5, 0.4, 0.3])

"""The bench's time estimate and its reading of a training's progress line."""

from __future__ import annotations

import json
import os
import time

import pytest

from bevkd.bench import eta
from bevkd.bench.plan import Job
from bevkd.bench.runner import JobResult


def _finished(tmp_path, name: str, seconds: float | None) -> str:
    run = tmp_path / name
    run.mkdir()
    (run / "timing.json").write_text(json.dumps(
        {"step_seconds": 1.0} if seconds is None else {"train_seconds": seconds}))
    return str(run)


def test_live_progress_reads_the_last_progress_line_of_a_training_log(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert eta.live_progress(str(run)) is None  # no log yet
    log = run / "train.log"
    log.write_text("GPU available: False, used: False\n")
    assert eta.live_progress(str(run)) is None  # starting: no progress line yet
    log.write_text(
        "epoch 4/12 100% (95/95)  loss 49.36  9.43 s/step  epoch left 0:00:00  run left 1:59:28\n"
        "validation after epoch 4/12: mAP 0.0316  NDS 0.1949  (0:01:49)\n"
        "Restored all states from the checkpoint at /x/last.ckpt\n"
        "epoch 5/12   31% (29/95)  loss 48.88  23.50 s/step  epoch left 0:25:51  "
        "run left 24:46:17\n"
        "validation after epoch 5/12: mAP 0.0400  NDS 0.2000  (0:01:50)\n")
    got = eta.live_progress(str(run))
    assert got == eta.Live(5, 12, 29, 95, 23.5, 24 * 3600 + 46 * 60 + 17.0)
    assert got.epoch_seconds == pytest.approx(23.5 * 95)
    assert got.describe() == "epoch 5/12 (31 %), 24:46:17 left"
    # only the tail is read: a long log costs the same
    log.write_text("x" * 100_000 + "\n" + log.read_text())
    assert eta.live_progress(str(run)) == got
    # a resumed attempt: the lines before its start are the stopped attempt's, not its own
    start = log.stat().st_size
    assert eta.live_progress(str(run), start) is None
    with open(log, "a") as f:
        f.write("epoch 5/12  10% (10/95)  loss 48.00  9.00 s/step  epoch left 0:12:45  "
                "run left 2:00:00\n")
    assert eta.live_progress(str(run), start) == eta.Live(5, 12, 10, 95, 9.0, 7200.0)


def test_time_left_prices_each_job_at_its_configs_finished_runs(tmp_path):
    teacher = Job("teacher", "teacher", "t.yaml")
    base = [Job(f"baseline-s{i}", "baseline", "b.yaml", i) for i in range(3)]
    kd = [Job(f"asd-s{i}", "asd", "asd.yaml", i) for i in range(2)]
    ablation = Job("asd_gamma0-s0", "asd_gamma0", "asd.yaml")
    other = Job("bevdistill-s0", "bevdistill", "bd.yaml")
    jobs = [teacher, *base, *kd, ablation, other]
    results = {"teacher": JobResult(teacher, _finished(tmp_path, "teacher", 100.0), "reused")}
    # only the LiDAR teacher finished: no camera model has a pace, and the LiDAR teacher's
    # (several times faster) does not stand in for one: nothing priced, and the line says why
    assert eta.estimate(jobs, results, {}, 1) == eta.Estimate(
        0.0, tuple(j.name for j in jobs[1:]))
    assert eta.progress_line(jobs, results, {}, 1) == (
        "[bench] 1 of 8 jobs final; the time left is not known until a camera model has "
        "logged its pace (7 camera-model jobs left)")
    results.update({
        "baseline-s0": JobResult(base[0], _finished(tmp_path, "baseline-s0", 3000.0), "done"),
        "asd-s0": JobResult(kd[0], _finished(tmp_path, "asd-s0", 5000.0), "reused"),
        # a failed job and an old run without train_seconds give no pace
        "baseline-s1": JobResult(base[1], str(tmp_path / "nothing"), "failed"),
        "baseline-s2": JobResult(base[2], _finished(tmp_path, "baseline-s2", None), "reused")})
    # asd-s1 and the ASD ablation at ASD's pace, BEVDistill at the distilled students' (ASD's
    # 5000 s, not the baseline's 3000 s); asd-s1 has run 1000 s of this attempt; two at a time
    left = eta.time_left(jobs, results, {"asd-s1": 1000.0}, 2)
    assert left == pytest.approx((4000.0 + 5000.0 + 5000.0) / 2)
    assert eta.progress_line(jobs, results, {"asd-s1": 1000.0}, 2) == \
        "[bench] 5 of 8 jobs final; ~1 h 57 min to go"
    # one job left, two slots: as long as that job, not half of it
    rest = dict(results)
    rest.update({j.name: JobResult(j, str(tmp_path / "nothing"), "failed")
                 for j in jobs if j.name not in results and j is not other})
    assert eta.time_left(jobs, rest, {}, 2) == pytest.approx(5000.0)
    # before any distilled run has a pace, a method takes twice the baseline's (eta.BORROW:
    # the tiny preset's ratio), not the baseline's own, which came out 2x short
    no_kd = {k: v for k, v in results.items() if k != "asd-s0"}
    assert eta.BORROW["distilled"][0] == ("baseline", 2.0)
    assert eta.time_left([base[0], other], no_kd, {}, 1) == pytest.approx(6000.0)
    assert eta.time_left(jobs, {}, {}, 2) is None
    assert eta.progress_line(jobs, {}, {}, 2) == "[bench] 0 of 8 jobs final"
    # a run restored from an archive trained on another machine: final, but no pace
    from bevkd.bench.runner import RESTORED

    (tmp_path / "asd-s0" / RESTORED).write_text("{}")
    assert eta.time_left([kd[1]], results, {}, 1) == pytest.approx(6000.0)  # 2x the baseline's


def test_time_left_prices_per_epoch_and_takes_a_running_trainings_own_estimate(tmp_path):
    """The tiny bench's case: 6-epoch teachers finish first, 12-epoch students follow."""
    teacher = Job("teacher", "teacher", "t.yaml")
    label = Job("label_encoder", "label_encoder", "l.yaml")
    fusion = Job("fusion_teacher", "fusion_teacher", "f.yaml")
    base = [Job(f"baseline-s{i}", "baseline", "b.yaml", i) for i in range(2)]
    kd = Job("asd-s0", "asd", "asd.yaml")
    jobs = [teacher, label, fusion, *base, kd]
    epochs = {"teacher": 6, "label_encoder": 12, "fusion_teacher": 6, "baseline-s0": 12,
              "baseline-s1": 12, "asd-s0": 12}
    results = {"teacher": JobResult(teacher, _finished(tmp_path, "teacher", 600.0), "done")}
    # the label encoder takes the LiDAR teacher's pace: per run 600 s; per epoch (100 s) its
    # 12 epochs 1200 s. The camera models are not priced at a LiDAR model's pace
    assert eta.estimate(jobs, results, {}, 1) == eta.Estimate(
        600.0, ("fusion_teacher", "baseline-s0", "baseline-s1", "asd-s0"))
    assert eta.time_left(jobs, results, {}, 1, epochs) == pytest.approx(1200.0)
    assert eta.progress_line(jobs, results, {}, 1, epochs) == (
        "[bench] 1 of 6 jobs final; ~20 min to go and 4 camera-model jobs (not priced until "
        "a camera model has logged its pace)")
    # baseline-s0 training, 300 s per epoch (3 s/step, 100 steps), 2000 s left by its log;
    # the fusion teacher with no line yet, 100 s into this attempt: priced at the live
    # baseline pace times 1.9 (its epoch over the baseline's on the tiny preset), the other
    # baseline at that pace, the distilled student at twice it
    live = {"baseline-s0": eta.Live(5, 12, 10, 100, 3.0, 2000.0)}
    left = eta.time_left(jobs, results, {"fusion_teacher": 100.0, "baseline-s0": 900.0}, 2,
                         epochs, live)
    assert left == pytest.approx((1200.0 + 6 * 570.0 - 100.0 + 2000.0 + 12 * 300.0
                                  + 12 * 600.0) / 2)
    # a finished student's pace is preferred to a live one for the students without their own
    results["baseline-s1"] = JobResult(base[1], _finished(tmp_path, "baseline-s1", 2400.0),
                                       "done")
    left = eta.time_left(jobs, results, {"fusion_teacher": 100.0}, 2, epochs, live)
    assert left == pytest.approx((1200.0 + 6 * 380.0 - 100.0 + 2000.0 + 12 * 400.0) / 2)
    # nothing finished, one training with a line: its live pace alone gives an estimate (the
    # LiDAR models too take it as it is, rather than none)
    assert eta.time_left(jobs, {}, {}, 2, epochs, live) == pytest.approx(
        (2000.0 + 6 * 300.0 + 12 * 300.0 + 6 * 570.0 + 12 * 300.0 + 12 * 600.0) / 2)
    # a distilled student's pace is nearer a fusion teacher's than the baseline's
    results["asd-s0"] = JobResult(kd, _finished(tmp_path, "asd-s0", 12 * 500.0), "done")
    assert eta.time_left([fusion], results, {}, 1, epochs) == pytest.approx(6 * 500.0)


def test_pretrain_progress_reads_the_pretrainings_log_line(tmp_path):
    """The line `bevkd pretrain` writes to a log (bevkd.progress.LineBar), and tqdm's times."""
    from bevkd.progress import LineBar

    log = tmp_path / "backbone.log"
    assert eta.pretrain_progress(str(log)) is None  # no log yet
    with open(log, "w") as f:
        bar = LineBar(total=150, desc="pretrain backbone", file=f)
        bar.set_postfix({"class": "1.035"}, refresh=False)
        bar.update(105)  # past 10 % of the steps: a line
        bar.close()
    got = eta.pretrain_progress(str(log))
    assert (got.step, got.steps) == (105, 150) and got.left >= 0.0
    start = log.stat().st_size  # a later bench's attempt: the earlier lines are not its own
    assert eta.pretrain_progress(str(log), start) is None
    with open(log, "a") as f:
        f.write("pretrain backbone:  70% 105/150 [1:01:53<1:00:45,  1.01s/it, class=1.035]\n"
                "pretrain backbone:  80% 120/150 [01:53<00:45,  1.01s/it, class=1.035]\n"
                "pretrain backbone:  90% 135/150 [02:05<?, ?it/s]\n")  # no rate: no estimate

    def written(seconds_ago: float) -> None:  # when the log's last line came
        t = time.time() - seconds_ago
        os.utime(log, (t, t))

    written(-100)  # (just now, whatever the clock does during the test)
    got = eta.pretrain_progress(str(log), start)
    assert got == eta.PretrainLive(120, 150, 45.0)
    assert got.describe() == "step 120/150 (80 %), 0:00:45 left"
    # the line was written 30 s ago: 15 s are left of its 45; 60 s ago: none
    written(30)
    assert eta.pretrain_progress(str(log), start).left == pytest.approx(15.0, abs=2.0)
    written(60)
    assert eta.pretrain_progress(str(log), start).left == 0.0
    log.write_text("pretrain backbone:  70% 105/150 [1:01:53<1:00:45,  1.01s/it]\n")
    written(-100)
    assert eta.pretrain_progress(str(log)).left == 3645.0
    log.write_text("pretrain backbone:  70% 105/150 [1:01:53<1::45,  1.01s/it]\n")
    assert eta.pretrain_progress(str(log)) is None  # not a time tqdm writes


def test_time_left_counts_the_camera_jobs_wait_for_the_pretraining(tmp_path):
    """Worked by hand: the teacher has 600 s left by its line (300 s per epoch: the label
    encoder's pace too); a baseline run finished earlier took 300 s (the students' pace); the
    students have a camera model, the teacher and the label encoder not; 2 slots, the
    pretraining on 1 of them."""
    teacher = Job("teacher", "teacher", "t.yaml")
    label = Job("label_encoder", "label_encoder", "l.yaml")
    base = [Job(f"baseline-s{i}", "baseline", "b.yaml", i) for i in range(2)]
    earlier = Job("baseline-s9", "baseline", "b.yaml", 9)
    jobs = [teacher, label, *base, earlier]
    done = {earlier.name: JobResult(earlier, _finished(tmp_path, earlier.name, 300.0), "done")}
    live = {"teacher": eta.Live(1, 1, 10, 100, 3.0, 600.0)}

    def left(pretraining):
        return eta.time_left(jobs, done, {}, 2, None, live, pretraining)

    assert left(None) == pytest.approx(max((600 + 300 + 300 + 300) / 2, 600))
    # 1000 s to wait; the teacher's and label encoder's 900 s fit beside it on the free slot;
    # then the students' 600 s on 2 slots
    assert left((1000.0, 1)) == pytest.approx(1000 + 600 / 2)
    # 200 s to wait: 200 s of the 900 done beside it, the other 700 s with the students'
    assert left((200.0, 1)) == pytest.approx(200 + (700 + 600) / 2)
    # on every slot: nothing beside it, and the teacher too starts after it
    assert left((100.0, 2)) == pytest.approx(100 + 1500 / 2)
    assert eta.time_left([teacher], done, {}, 2, None, live, (1000.0, 2)) == \
        pytest.approx(1000 + 600)
    # 3 slots free beside it: each job works at most the wait there (the teacher and label
    # encoder 100 s each of their 300), not 300 s of their 600 on 3 slots at once; then
    # 4 students of 300 s
    short = {"teacher": eta.Live(1, 1, 10, 100, 3.0, 300.0)}
    four = [teacher, label, *(Job(f"baseline-s{i}", "baseline", "b.yaml", i) for i in range(4))]
    assert eta.time_left([*four, earlier], done, {}, 4, None, short, (100.0, 1)) == \
        pytest.approx(100 + (600 - 200 + 1200) / 4)
    # its time not known yet: counted as none, and the line says so
    assert left((None, 1)) == left(None)
    assert eta.progress_line(jobs, done, {}, 2, None, live, (None, 1)) == (
        "[bench] 1 of 5 jobs final; ~12 min to go and the backbone pretraining's time left "
        "(not known yet)")
    # slots to spare: no less than the wait and then the longest camera job (not 400 s and
    # the 300 s of work left spread over 4 slots), nor than the teacher's own 600 s
    assert eta.time_left([teacher, base[0], earlier], done, {}, 4, None, live, (400.0, 1)) == \
        pytest.approx(400 + 300)
    assert eta.time_left([teacher, base[0], earlier], done, {}, 4, None, live, (100.0, 1)) == \
        pytest.approx(600)
    assert eta.time_left(base[:1], {}, {}, 2, None, {}, (50.0, 1)) is None  # no pace at all
    # no camera pace yet: the LiDAR models' time, the wait, and the camera jobs said apart
    assert eta.estimate(jobs[:4], {}, {}, 2, None, live, (1000.0, 1)) == eta.Estimate(
        1000.0, ("baseline-s0", "baseline-s1"))
    # the LiDAR models done, the pretraining's wait known: that much at least, and the rest
    # said apart (not "not known")
    lidar_done = {j.name: JobResult(j, _finished(tmp_path, j.name, 60.0), "done")
                  for j in (teacher, label)}
    assert eta.progress_line(jobs[:4], lidar_done, {}, 2, None, {}, (600.0, 1)) == (
        "[bench] 2 of 4 jobs final; ~10 min to go and 2 camera-model jobs (not priced until a "
        "camera model has logged its pace)")
    assert eta.progress_line(jobs[:4], lidar_done, {}, 2, None, {}, None) == (
        "[bench] 2 of 4 jobs final; the time left is not known until a camera model has "
        "logged its pace (2 camera-model jobs left)")
    assert eta.progress_line(jobs[:4], {**lidar_done, **{j.name: JobResult(
        j, _finished(tmp_path, j.name, 60.0), "done") for j in base}}, {}, 2) == \
        "[bench] 4 of 4 jobs final"
    assert eta.progress_line(jobs[:4], {}, {}, 2, None, live, (None, 1)) == (
        "[bench] 0 of 4 jobs final; ~10 min to go and 2 camera-model jobs (not priced until a "
        "camera model has logged its pace) and the backbone pretraining's time left (not "
        "known yet)")


def test_running_line_names_each_training_and_where_it_is():
    live = {"baseline-s0": eta.Live(5, 12, 29, 95, 3.9, 2843.0), "fusion_teacher": None}
    assert eta.running_line(live) == ("[bench] training: baseline-s0 epoch 5/12 (31 %), "
                                      "0:47:23 left; fusion_teacher starting")
    assert eta.running_line({"backbone pretraining": eta.PretrainLive(15, 150, 140.0)}) == (
        "[bench] training: backbone pretraining step 15/150 (10 %), 0:02:20 left")

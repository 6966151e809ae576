"""`bevkd bench`'s job runner with a stand-in for `bevkd train` (the ``bench`` fixture of
conftest.py): reuse, dependencies, failures, retrained teachers, the
runs-folder lock and stopping the trainings when the bench stops."""

from __future__ import annotations

import os
import re
import time

import pytest

from bevkd.bench import runner
from bevkd.errors import BevkdError


def test_runs_reuse_and_a_retrained_teacher_refuses_its_students(bench):
    run, runs, data = bench
    status, logs = run()
    assert status == {"teacher": "done", "baseline-s0": "done", "bevdistill-s0": "done"}
    assert logs.index("[bench] start bevdistill-s0") > next(
        i for i, m in enumerate(logs) if m.startswith("[bench] done teacher"))
    # where the bench stands: once the first starts are made, and after each job
    assert logs[:3] == ["[bench] start teacher", "[bench] start baseline-s0",
                        "[bench] 0 of 3 jobs final"]
    assert logs[-1] == "[bench] 3 of 3 jobs final"
    assert sum(m.endswith("jobs final") for m in logs) == 4
    status, _ = run()
    assert set(status.values()) == {"reused"}
    # the teacher is trained again (its old run deleted): the student that learned from the
    # old one must not be reused, the baseline (which needs no teacher) still is
    import shutil

    shutil.rmtree(runs / "teacher")
    time.sleep(0.01)
    status, logs = run()
    assert status == {"teacher": "done", "baseline-s0": "reused", "bevdistill-s0": "failed"}
    why = next(m for m in logs if "FAILED bevdistill-s0" in m)
    assert "other inputs" in why and "teacher" in why
    # the same for regenerated data: every run refuses
    (data / "v1.0-synth" / "sample.json").write_text("[ ]")
    status, _ = run()
    assert set(status.values()) == {"failed", "skipped"}


def test_a_resumed_bench_counts_the_runs_it_reuses_after_its_first_start(bench):
    """baseline-s0 to train again, bevdistill-s0 (after it in the plan) finished: the first
    word on where the bench stands counts bevdistill-s0 as final, not as work to do."""
    import shutil

    run, runs, _ = bench
    run()
    shutil.rmtree(runs / "baseline-s0")
    status, logs = run()
    assert status == {"teacher": "reused", "baseline-s0": "done", "bevdistill-s0": "reused"}
    first = next(m for m in logs if m.endswith("jobs final") or "to go" in m)
    assert first.startswith("[bench] 2 of 3 jobs final")
    assert logs.index(first) > logs.index("[bench] reuse bevdistill-s0 (finished earlier)")


def test_a_failed_job_skips_what_needs_it_and_a_rerun_resumes_it(bench, monkeypatch):
    run, runs, _ = bench
    monkeypatch.setenv("FAKE_teacher", "fail")
    status, logs = run(parallel=1)
    assert status == {"teacher": "failed", "baseline-s0": "done", "bevdistill-s0": "skipped"}
    assert any("see " in m and "teacher/train.log" in m for m in logs)
    monkeypatch.setenv("FAKE_teacher", "ok")
    status, _ = run(parallel=1)
    assert status == {"teacher": "done", "baseline-s0": "reused", "bevdistill-s0": "done"}
    # the teacher left a checkpoint when it failed: the second bench resumed it
    assert (runs / "teacher" / "starts").read_text().split() == ["new", "resume"]


def test_a_partly_trained_job_starts_before_fresh_ones_ahead_of_it_in_the_plan(
        bench, monkeypatch):
    """bevdistill-s0 (last in the plan) stopped with a checkpoint, baseline-s0 (before it) to
    train anew: with one slot the half-done training goes first and says it resumes."""
    import shutil

    run, runs, _ = bench
    monkeypatch.setenv("FAKE_bevdistill_s0", "fail")
    run(parallel=1)
    shutil.rmtree(runs / "baseline-s0")
    monkeypatch.setenv("FAKE_bevdistill_s0", "ok")
    status, logs = run(parallel=1)
    assert status == {"teacher": "reused", "baseline-s0": "done", "bevdistill-s0": "done"}
    starts = [m for m in logs if m.startswith("[bench] start")]
    assert starts == ["[bench] start bevdistill-s0 (resumes its checkpoint)",
                      "[bench] start baseline-s0"]
    assert list(status) == ["teacher", "baseline-s0", "bevdistill-s0"]  # results: plan order


def test_report_only_takes_finished_runs_and_starts_nothing(bench, monkeypatch):
    run, runs, data = bench
    monkeypatch.setenv("FAKE_teacher", "fail")
    run(parallel=1)  # teacher failed (a checkpoint, no metrics), baseline done
    held = runner._lock(str(runs))  # as if a bench were still running there
    try:
        status, logs = run(train=False)
    finally:
        held.close()
    assert status == {"teacher": "missing", "baseline-s0": "reused", "bevdistill-s0": "missing"}
    assert not any("start" in m for m in logs)
    assert (runs / "teacher" / "starts").read_text().split() == ["new"]
    assert not (runs / "bevdistill-s0").exists()
    # a finished run that no longer fits (the data regenerated) is refused, as in a bench
    (data / "v1.0-synth" / "sample.json").write_text("[ ]")
    status, logs = run(train=False)
    assert status["baseline-s0"] == "failed" and any("other inputs" in m for m in logs)
    # an unfinished run is not the report's to refuse: it is still just missing (a bench about
    # to resume it refuses it, below)
    assert status["teacher"] == "missing"
    assert not any("FAILED teacher" in m for m in logs)
    status, logs = run(parallel=1)
    assert status["teacher"] == "failed" and any("FAILED teacher" in m for m in logs)


def test_one_bench_per_runs_folder_and_parallel_must_be_positive(bench, tmp_path):
    run, runs, _ = bench
    runs.mkdir()
    held = runner._lock(str(runs))
    try:
        with pytest.raises(BevkdError, match=f"another bevkd bench \\(pid {os.getpid()}\\)"):
            run()
    finally:
        held.close()
    with pytest.raises(BevkdError, match="parallel must be at least 1"):
        run(parallel=0)
    assert run()[0]["teacher"] == "done"  # the lock went with its holder


def test_stopping_the_bench_stops_its_trainings(bench, monkeypatch):
    run, runs, _ = bench
    monkeypatch.setenv("FAKE_baseline_s0", "slow")

    def log(message):  # the bench is interrupted once the slow training runs
        if message == "[bench] start baseline-s0":
            deadline = time.monotonic() + 30
            while not (runs / "baseline-s0" / "running").exists():
                assert time.monotonic() < deadline
                time.sleep(0.02)
            raise KeyboardInterrupt

    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run(parallel=2, log=log)
    # the training got SIGTERM (it would save a checkpoint) instead of running on for 60 s
    assert (runs / "baseline-s0" / "stopped").exists() and time.monotonic() - t0 < 30


def test_a_long_bench_says_where_its_trainings_stand(bench, monkeypatch):
    run, runs, data = bench
    monkeypatch.setenv("FAKE_teacher", "progress")
    monkeypatch.setenv("FAKE_baseline_s0", "progress")
    status, logs = run(parallel=2, status_every=0.3)
    assert status == {"teacher": "done", "baseline-s0": "done", "bevdistill-s0": "done"}
    # while the teacher and the baseline train: their last progress lines, then the estimate,
    # which takes their own time left (35 s each) and prices BEVDistill's 6 epochs at twice
    # the baseline's live pace (2 x 0.5 s/step x 20 steps: eta.BORROW), not the LiDAR
    # teacher's: no run has finished with a training time (the stand-ins write none). (At
    # least BEVDistill's 120 s, as the slots are 2 and the jobs' sum 190 s: "~2 min")
    said = [i for i, m in enumerate(logs)
            if "teacher epoch 3/6 (50 %), 0:00:35 left" in m
            and "baseline-s0 epoch 3/6 (50 %), 0:00:35 left" in m]
    assert said, logs
    assert logs[said[0]].startswith("[bench] training: ")
    assert logs[said[0] + 1] == "[bench] 0 of 3 jobs final; ~2 min to go"


def test_the_first_status_comes_early_and_the_next_ones_every_status_every(bench,
                                                                           monkeypatch):
    """A bench's status lines come every 10 minutes, but the first after 2 (here 0.5 s and
    30 min): the progress lines of the first trainings price the bench long before one ends."""
    run, runs, data = bench
    monkeypatch.setenv("FAKE_teacher", "progress")  # trains 3 s
    status, logs = run(parallel=2, status_every=1800.0, first_status=0.5)
    assert status == {"teacher": "done", "baseline-s0": "done", "bevdistill-s0": "done"}
    running = [m for m in logs if m.startswith("[bench] training: ")]
    assert len(running) == 1 and "teacher epoch 3/6 (50 %)" in running[0], logs


def test_an_estimate_that_fails_is_said_and_stops_nothing(bench, monkeypatch):
    run, runs, data = bench

    def broken(*args, **kwargs):
        raise ValueError("cannot convert float NaN to integer")

    monkeypatch.setattr(runner, "progress_line", broken)
    status, logs = run()
    assert status == {"teacher": "done", "baseline-s0": "done", "bevdistill-s0": "done"}
    assert logs[-1] == ("[bench] 3 of 3 jobs final (no estimate: "
                        "ValueError('cannot convert float NaN to integer'))")


# a stand-in for `bevkd pretrain`: says it runs (argv[1] + ".running") and writes a progress
# line as its LineBar does, waits until the file argv[2] exists (at most 20 s), then writes its
# backbone argv[1]; FAIL in the environment makes it fail instead
FAKE_PRETRAIN = r"""
import os, sys, time
out, wait = sys.argv[1], sys.argv[2]
print("pretrain backbone:  50% 5/10 [00:05<10:00,  1.00s/it, class=1.000]", flush=True)
open(out + ".running", "w").close()
deadline = time.monotonic() + 20
while wait != "-" and not os.path.exists(wait):
    if time.monotonic() > deadline:
        sys.exit("gave up waiting for " + wait)
    time.sleep(0.02)
if os.environ.get("FAIL"):
    sys.exit("pretraining failed")
open(out, "w").write("weights")
"""


def _pretraining(tmp_path, wait: str, slots: int) -> runner.Pretraining:
    script = tmp_path / "fake_pretrain.py"
    script.write_text(FAKE_PRETRAIN)
    out = tmp_path / "runs" / "backbone.pth"
    import sys

    return runner.Pretraining([sys.executable, str(script), str(out), wait], str(out),
                              str(tmp_path / "backbone.log"), slots)


def test_the_teacher_trains_while_the_backbone_pretrains_and_camera_jobs_wait(bench, tmp_path,
                                                                             monkeypatch):
    """The stand-in pretraining ends only once the teacher's run has finished: a bench that
    waited for it before starting the teacher would never get there. The camera models (the
    baseline, the distilled student) start after it: the stand-in training of one fails where
    the backbone is not there yet."""
    run, runs, _ = bench
    (runs).mkdir()
    monkeypatch.setenv("FAKE_BACKBONE", str(runs / "backbone.pth"))
    pre = _pretraining(tmp_path, str(runs / "teacher" / "timing.json"), slots=1)
    # 3 slots: one stays free beside the teacher and the pretraining, and the baseline (which
    # needs no teacher) must not take it
    status, logs = run(parallel=3, pretraining=pre)
    assert status == {"teacher": "done", "baseline-s0": "done", "bevdistill-s0": "done"}
    assert logs[0] == "[bench] start teacher"
    made = next(i for i, m in enumerate(logs) if m.startswith("[bench] done backbone pretraining"))
    assert logs.index("[bench] start baseline-s0") > made
    assert (runs / "backbone.pth").read_text() == "weights"


def test_the_estimate_counts_the_wait_for_the_pretraining(bench, tmp_path, monkeypatch):
    """The teacher trains beside the pretraining (10 min left by its log line); the camera
    jobs start after it. As in test_a_long_bench_says_where_its_trainings_stand, the teacher
    has 35 s left; no camera model has a pace, so the students are not priced (not at the
    LiDAR teacher's pace) and the line says so: 600 s of waiting, the teacher's 35 s beside
    it."""
    run, runs, _ = bench
    (runs).mkdir()
    monkeypatch.setenv("FAKE_teacher", "progress")
    pre = _pretraining(tmp_path, str(runs / "teacher" / "timing.json"), slots=1)
    status, logs = run(parallel=2, status_every=0.3, pretraining=pre)
    assert set(status.values()) == {"done"}
    # (the pretraining's line is a second or so old by then: 0:09:59 left, or 0:10:00)
    said = [i for i, m in enumerate(logs) if re.fullmatch(
        r"\[bench\] training: backbone pretraining step 5/10 \(50 %\), 0:(10:00|09:5\d) left; "
        r"teacher epoch 3/6 \(50 %\), 0:00:35 left", m)]
    assert said, logs
    assert logs[said[0] + 1] == (
        "[bench] 0 of 3 jobs final; ~10 min to go and 2 camera-model jobs (not priced until a "
        "camera model has logged its pace)")


def test_a_pretraining_on_every_slot_runs_alone(bench, tmp_path):
    run, runs, _ = bench
    (runs).mkdir()
    status, logs = run(parallel=2, pretraining=_pretraining(tmp_path, "-", slots=2))
    assert set(status.values()) == {"done"}
    assert logs[0].startswith("[bench] done backbone pretraining")
    assert logs[1] == "[bench] start teacher"


def test_a_failed_pretraining_skips_the_camera_jobs_and_the_teacher_trains(bench, tmp_path,
                                                                          monkeypatch):
    run, runs, _ = bench
    (runs).mkdir()
    monkeypatch.setenv("FAIL", "1")
    status, logs = run(parallel=2, pretraining=_pretraining(tmp_path, "-", slots=1))
    assert status == {"teacher": "done", "baseline-s0": "skipped", "bevdistill-s0": "skipped"}
    failed = next(m for m in logs if "FAILED backbone pretraining" in m)
    assert failed.endswith(f"see {tmp_path / 'backbone.log'}")
    assert "pretraining failed" in (tmp_path / "backbone.log").read_text()
    assert "[bench] skip baseline-s0: the backbone pretraining failed" in logs


def test_stopping_the_bench_stops_its_pretraining(bench, tmp_path):
    """Stopped (SIGTERM, as a scheduler stops it) while the pretraining waits for a file that
    never comes: it is ended with the bench (`bevkd pretrain` saves its checkpoint then, which
    the next bench resumes: test_image_pretrain). (Not Ctrl-C's SIGINT: a process started in the
    background of a non-interactive shell ignores it, and so would this test.)"""
    run, runs, _ = bench
    (runs).mkdir()
    pre = _pretraining(tmp_path, str(tmp_path / "never"), slots=2)
    logs = []

    def log(message):
        logs.append(message)
        if message == "[bench] start teacher":
            raise AssertionError("the teacher waits for a pretraining on every slot")

    import signal
    import threading

    done = threading.Event()

    def stop():  # once the pretraining runs, the bench gets SIGTERM (at most 10 s on)
        deadline = time.monotonic() + 10
        while not os.path.exists(pre.out + ".running") and time.monotonic() < deadline:
            if done.wait(0.02):
                return
        if not done.is_set():
            os.kill(os.getpid(), signal.SIGTERM)

    stopper = threading.Thread(target=stop)
    stopper.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            run(parallel=2, log=log, pretraining=pre)
    finally:
        done.set()
        stopper.join()
    # ended by the bench (SIGTERM), not by its own 20 s wait running out
    assert logs == ["[bench] stopped backbone pretraining (resumable)"] and \
        time.monotonic() - t0 < 15


def test_a_run_trained_by_hand_with_its_command_gets_the_record_the_bench_writes(bench,
                                                                                 tmp_path):
    """E.g. a teacher trained again by hand to see whether it reproduces: reused, and given
    the job record (signature, inputs, made) without which its archived copy would name
    nothing it learned from; one that ran another command, or read an input made after it
    started, gets none, and never replaces an archived copy that has one."""
    import json
    import sys

    from bevkd.bench.command import _archiver

    run, runs, _ = bench
    archive = tmp_path / "archive"
    run(on_final=_archiver(str(archive)))
    recorded = {n: json.loads((runs / n / runner.JOB_FILE).read_text())
                for n in ("teacher", "baseline-s0")}

    def by_hand(name: str, *more: str, started: float | None = None,
                first: float | None = None) -> None:
        """A meta.json as a training writes it: ``first``, when its first attempt started,
        where given (older trainings record only this attempt's local time)."""
        (runs / name / runner.JOB_FILE).unlink(missing_ok=True)
        cmd = [sys.executable, "fake_train.py", "train", name, str(runs / name), *more]
        (runs / name / "meta.json").write_text(json.dumps(
            {"command": " ".join(cmd),
             "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
             **({} if first is None else {"started_unix": time.time(),
                                          "first_started_unix": first})}))

    by_hand("teacher")
    by_hand("baseline-s0", "--set", "x=1")  # another command than the job's
    status, logs = run(on_final=_archiver(str(archive)))
    assert set(status.values()) == {"reused"}
    assert "[bench] teacher was trained outside the bench with its command: recorded what " \
           "it read" in logs
    assert ("[bench] baseline-s0 has no job record and none can be written (it ran another "
            "command than this job's): an archive keeps its earlier copy") in logs
    made = runner.checkpoint_stamp(str(runs / "teacher"))
    assert json.loads((runs / "teacher" / runner.JOB_FILE).read_text()) == {
        **recorded["teacher"], "made": made}
    assert json.loads((archive / "teacher" / runner.JOB_FILE).read_text())["made"] == made
    assert not (runs / "baseline-s0" / runner.JOB_FILE).exists()
    assert json.loads((archive / "baseline-s0" / runner.JOB_FILE).read_text()) == \
        recorded["baseline-s0"]
    # started before the dataset it reads was made: which making it read is not known
    by_hand("teacher", started=time.time() - 86400)
    status, logs = run()
    assert status["teacher"] == "reused"
    assert ("[bench] teacher has no job record and none can be written (data was made after "
            "it started): an archive keeps its earlier copy") in logs
    # resumed now, but first started before the dataset was made: judged by its first start
    by_hand("teacher", "--resume", first=time.time() - 86400)
    assert "(data was made after it started)" in "\n".join(run()[1])
    # an older record of a resumed run says only when its last attempt started: refused
    by_hand("teacher", "--resume")
    assert ("teacher has no job record and none can be written (it was resumed, and its "
            "meta.json does not say when its first attempt started)") in "\n".join(run()[1])
    # its first attempt after every input: recorded
    by_hand("teacher", "--resume", first=time.time())
    assert "[bench] teacher was trained outside the bench with its command: recorded what " \
           "it read" in run()[1]

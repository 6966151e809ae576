"""Trainings made again and found the same (bevkd.bench.reproduced): their fingerprint, the
notes that two stamps name one training, and what the archive, the restore plan and the
report make of them."""

from __future__ import annotations

import json
import os
import shutil

from bevkd.bench.archive import archive_run, learned_apart, plan_restore, restore
from bevkd.bench.plan import plan
from bevkd.bench.report import TP_KEYS, collect
from bevkd.bench.reproduced import FILE, Reproduced, fingerprint, note_if_reproduced
from bevkd.bench.runner import JobResult
from bevkd.structures.classes import DETECTION_CLASSES

LOG = ("epoch,step,train/loss_step,train/heatmap_step,val/mAP\n"
       "0,0,63.34220886230469,29.386327743530273,\n"
       "0,1,64.79714965820312,29.618572235107422,\n"
       "0,1,,,0.125\n")
METRICS = {"mean_ap": 0.17302969133384627, "nd_score": 0.27603398496915643,
           "mean_dist_aps": {c: 0.5 for c in DETECTION_CLASSES}, "eval_time": 0.028,
           "tp_errors": {k: 0.7 for k in TP_KEYS}}


def _run(folder, name="teacher", log=LOG, metrics=None, made=(100, 1), inputs=None,
         parts=()) -> str:
    """A finished run folder as the bench leaves it: CSV logs (``parts``: earlier attempts'
    logs), an evaluation, a job record with ``made``."""
    run = folder / name
    (run / "logs").mkdir(parents=True)
    (run / "logs" / "metrics.csv").write_text(log)
    for i, part in enumerate(parts, 1):
        (run / "logs" / f"metrics.part{i}.csv").write_text(part)
    (run / "eval" / "synth_val").mkdir(parents=True)
    (run / "eval" / "synth_val" / "metrics.json").write_text(json.dumps(metrics or METRICS))
    (run / "timing.json").write_text(json.dumps({"step_seconds": 1.0}))
    record = {"signature": ["train", name], "inputs": inputs or {"data": [["t.json", 3, 9]]},
              "made": list(made)}
    (run / "bench_job.json").write_text(json.dumps(record))
    return str(run)


def test_the_fingerprint_is_the_logged_steps_and_measured_metrics(tmp_path):
    a = _run(tmp_path / "a")
    assert fingerprint(a) == fingerprint(_run(tmp_path / "b", made=(100, 2)))
    # another duration of the same evaluation is the same training
    assert fingerprint(a) == fingerprint(_run(tmp_path / "c", metrics={**METRICS,
                                                                       "eval_time": 9.0}))
    # one loss differing in its last digit, or one metric, is another
    assert fingerprint(a) != fingerprint(_run(tmp_path / "d", log=LOG.replace("469", "468")))
    assert fingerprint(a) != fingerprint(_run(tmp_path / "e", metrics={**METRICS,
                                                                       "mean_ap": 0.173}))
    # a validation differing is another
    assert fingerprint(a) != fingerprint(_run(tmp_path / "f", log=LOG.replace("0.125", "0.25")))
    # a resumed run that replayed step 1 after a checkpoint at step 0 reads as the same steps
    first = "epoch,step,train/loss_step,train/heatmap_step,val/mAP\n0,0,63.34220886230469," \
        "29.386327743530273,\n0,1,1.0,2.0,\n"
    assert fingerprint(a) == fingerprint(_run(tmp_path / "g", parts=(first,)))
    # nothing logged or no evaluation: no fingerprint
    assert fingerprint(_run(tmp_path / "h", log="epoch,step\n")) is None
    shutil.rmtree(os.path.join(a, "eval"))
    assert fingerprint(a) is None


def test_notes_join_stamps_into_trainings_and_name_each_by_its_oldest(tmp_path):
    notes = Reproduced()
    assert notes.add("teacher", [5, 30], [5, 10]) and not notes.add("teacher", [5, 10], [5, 30])
    assert notes.add("teacher", [5, 20], [5, 30])  # a third making joins the same training
    assert notes.classes == {"teacher": [[[5, 10], [5, 20], [5, 30]]]}
    assert notes.canonical("teacher", [5, 30]) == [5, 10]
    assert notes.same("teacher", [5, 20], [5, 30]) and not notes.same("teacher", [5, 20], None)
    # keys are apart: the same stamps under another key name nothing; unnoted stamps are
    # themselves
    assert not notes.same("fusion_teacher", [5, 20], [5, 30])
    assert notes.canonical("teacher", [6, 1]) == [6, 1] and notes.same("x", [1, 1], [1, 1])
    notes.add("teacher", [7, 1], [7, 2])
    notes.save(str(tmp_path))
    Reproduced({"teacher": [[[8, 1], [8, 2]]]}).save(str(tmp_path))  # merged with the file
    back = Reproduced.load(str(tmp_path), str(tmp_path / "none"))
    assert back.same("teacher", [5, 30], [5, 10]) and back.same("teacher", [8, 2], [8, 1])
    assert back.same("teacher", [7, 2], [7, 1]) and not back.same("teacher", [7, 1], [8, 1])
    (tmp_path / FILE).write_text("not json")
    assert Reproduced.load(str(tmp_path)).classes == {}


def test_a_run_trained_again_to_the_same_fingerprint_notes_itself_and_its_inputs(tmp_path):
    bb = "model.args.backbone_weights"
    old = _run(tmp_path / "archive", "fusion_teacher", made=(150, 1),
               inputs={bb: [44, 1], "data": [["t.json", 3, 1]]})
    new = _run(tmp_path / "runs", "fusion_teacher", made=(150, 2),
               inputs={bb: [44, 2], "data": [["t.json", 3, 2]]})
    notes = note_if_reproduced(new, old)
    assert notes.classes == {"fusion_teacher": [[[150, 1], [150, 2]]], bb: [[[44, 1], [44, 2]]]}
    # another training (one loss apart), the same making, or a record without one: nothing
    other = _run(tmp_path / "other", "fusion_teacher", made=(150, 3),
                 log=LOG.replace("469", "468"))
    assert note_if_reproduced(other, old) is None and note_if_reproduced(old, old) is None
    os.remove(os.path.join(new, "bench_job.json"))
    assert note_if_reproduced(new, old) is None


def test_archiving_a_reproduced_training_notes_it_beside_the_runs_and_in_the_archive(tmp_path):
    archive = tmp_path / "archive"
    _run(archive, made=(100, 1))
    new = _run(tmp_path / "runs", made=(100, 2))
    archive_run(new, str(archive))
    for folder in (archive, tmp_path / "runs"):
        assert Reproduced.load(str(folder)).same("teacher", [100, 1], [100, 2])
    assert json.loads((archive / "teacher" / "bench_job.json").read_text())["made"] == [100, 2]
    # a training that does not reproduce replaces the copy and notes nothing
    other = _run(tmp_path / "elsewhere", made=(100, 3), log=LOG.replace("469", "468"))
    archive_run(other, str(archive))
    assert not Reproduced.load(str(archive)).same("teacher", [100, 2], [100, 3])


def test_a_restored_student_of_a_reproduced_teacher_learned_from_this_one(tmp_path):
    """On a new machine the teacher trained again reproduced the archived one: the restored
    student is not apart (``--retrain-apart`` keeps it) and the report does not mark its pair
    with a student trained here; a teacher that did not reproduce leaves both apart."""
    jobs = plan(1, ("bevdistill",), False, ())  # teacher, baseline-s0, bevdistill-s0
    archive, runs = tmp_path / "archive", tmp_path / "runs"
    _run(archive, "bevdistill-s0", made=(9, 9), inputs={"teacher": [100, 1]})
    _run(archive, "baseline-s0", made=(8, 8))
    _run(runs, made=(100, 2))
    (runs / "teacher" / "checkpoints").mkdir()
    (runs / "teacher" / "checkpoints" / "last.ckpt").write_text("w")

    def apart():
        return plan_restore(jobs, str(runs), str(archive), "synth_val", training=False,
                            same_trainings=True).apart

    assert apart() == {"bevdistill-s0": ["teacher"]}
    Reproduced({"teacher": [[[100, 1], [100, 2]]]}).save(str(archive))
    assert apart() == {}
    assert learned_apart(str(archive / "bevdistill-s0"), jobs[2], str(runs),
                         lambda n: [100, 2]) == ["teacher"]  # without the notes: apart
    # restored, the notes come along for the report: the student read the table's teacher
    assert restore(jobs, str(runs), str(archive), training=False) == ["baseline-s0",
                                                                      "bevdistill-s0"]
    results = {j.name: JobResult(j, str(runs / j.name), "done") for j in jobs}
    rows = {r["model"]: r for r in collect(results, "synth_val")}
    assert rows["bevdistill"]["learned_from"] == [{"teacher": [100, 1]}]
    assert rows["teacher"]["made"] == [[100, 1]] and rows["bevdistill"]["teacher_apart"] == []
    os.remove(runs / FILE)  # without them the student learned from another training
    rows = {r["model"]: r for r in collect(results, "synth_val")}
    assert rows["teacher"]["made"] == [[100, 2]] and rows["bevdistill"]["teacher_apart"] == [0]

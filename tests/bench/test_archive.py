"""The bench archive: finished runs kept without checkpoints, restored on a new machine
(the runner's ``bench`` fixture of conftest.py trains stand-in runs)."""

from __future__ import annotations

import json
import os
import shutil

import torch

from bevkd.bench.archive import LEFT_OUT, archive_run, plan_restore, restore, timing_model
from bevkd.bench.command import _archiver
from bevkd.bench.picture import SAMPLE_FILE
from bevkd.bench.plan import plan
from bevkd.bench.runner import RESTORED, is_restored

JOBS = plan(1, ("bevdistill",), False, ())  # teacher, baseline-s0, bevdistill-s0 (needs teacher)


def _files(root) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}


def restorable(*args, **kwargs):
    return plan_restore(*args, **kwargs)[0]


def _new_machine(runs, data) -> None:
    """Every run lost; the dataset generated again (same tables, new modification times)."""
    shutil.rmtree(runs)
    table = data / "v1.0-synth" / "sample.json"
    text = table.read_text()
    table.unlink()
    table.write_text(text)


def test_finished_runs_are_archived_without_weights_and_restored_on_a_new_machine(bench,
                                                                                 tmp_path):
    run, runs, data = bench
    archive = tmp_path / "archive"
    status, _ = run(on_final=_archiver(str(archive)))
    assert set(status.values()) == {"done"}
    assert sorted(os.listdir(archive)) == ["baseline-s0", "bevdistill-s0", "teacher"]
    for name in os.listdir(archive):
        kept = _files(archive / name)
        assert kept == {"bench_job.json", "timing.json", "eval/synth_val/metrics.json",
                        "starts"}, kept  # no checkpoints/last.ckpt, no train.log
        assert _files(runs / name) - kept == {"checkpoints/last.ckpt", "train.log"}
    _new_machine(runs, data)
    logs: list[str] = []
    assert restore(JOBS, str(runs), str(archive), log=logs.append) == [j.name for j in JOBS]
    assert logs == [f"[bench] restored from {archive} (finished, no checkpoints): teacher, "
                    "baseline-s0, bevdistill-s0"]
    assert all(is_restored(str(runs / j.name)) for j in JOBS)
    # the restored runs are final: nothing trains (each run started once, on the old machine),
    # though the data's tables and the teacher's checkpoint are not the ones they recorded
    status, _ = run(on_final=_archiver(str(archive)))
    assert set(status.values()) == {"reused"}
    assert all((runs / j.name / "starts").read_text().split() == ["new"] for j in JOBS)
    # a restored run is not copied back over its archive (whose copy has no marker)
    assert not any(RESTORED in _files(archive / j.name) for j in JOBS)


def test_a_teacher_that_a_training_still_needs_is_trained_again(bench, tmp_path):
    run, runs, data = bench
    archive = tmp_path / "archive"
    run(on_final=_archiver(str(archive)))
    shutil.rmtree(archive / "bevdistill-s0")  # the student finished after the last copy
    _new_machine(runs, data)
    # the student trains again and needs the teacher's checkpoint: the teacher is not
    # restored but trained again; the baseline needs nothing and is restored
    assert [j.name for j in restorable(JOBS, str(runs), str(archive), "synth_val")] == \
        ["baseline-s0"]
    restore(JOBS, str(runs), str(archive))
    status, _ = run(on_final=_archiver(str(archive)))
    assert status == {"teacher": "done", "baseline-s0": "reused", "bevdistill-s0": "done"}
    assert (runs / "teacher" / "starts").read_text().split() == ["new"]  # a new training
    assert os.path.isdir(archive / "bevdistill-s0")  # archived as it finished
    # a report trains nothing, so every finished run in the archive is restored
    shutil.rmtree(runs)
    assert [j.name for j in restorable(JOBS, str(runs), str(archive), "synth_val",
                                       training=False)] == [j.name for j in JOBS]


def test_a_restored_run_still_refuses_another_dataset_and_a_run_folder_is_kept(bench,
                                                                              tmp_path):
    run, runs, data = bench
    archive = tmp_path / "archive"
    run(on_final=_archiver(str(archive)))
    shutil.rmtree(runs / "baseline-s0")
    # only what the runs folder lacks is restored; its own runs stay as they are
    assert restore(JOBS, str(runs), str(archive)) == ["baseline-s0"]
    assert not is_restored(str(runs / "teacher"))
    (data / "v1.0-synth" / "sample.json").write_text("[{}]")  # another dataset: other sizes
    status, logs = run()
    assert status["baseline-s0"] == "failed"
    assert any("FAILED baseline-s0" in m and "['data'] changed" in m for m in logs)


def test_archive_run_replaces_an_older_copy_and_leaves_out_the_weights(tmp_path):
    run = tmp_path / "runs" / "baseline-s0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_text("weights")
    (run / "eval" / "synth_val").mkdir(parents=True)
    (run / "eval" / "synth_val" / "metrics.json").write_text("{}")
    (run / "eval" / "synth_val" / "results.json").write_text("detections")
    (run / "train.log").write_text("console")
    (run / "meta.json").write_text("{}")
    (run / "logs" / "tb").mkdir(parents=True)
    (run / "logs" / "tb" / "events.out.tfevents.1.vm.2.0").write_text("scalars")
    (run / "logs" / "metrics.csv").write_text("step,loss\n")
    archive = tmp_path / "archive"
    archive_run(str(run), str(archive))
    (run / "meta.json").write_text('{"second": true}')
    (run / "timing.json").write_text("{}")
    dest = archive_run(str(run) + "/", str(archive))
    assert dest == str(archive / "baseline-s0")
    assert _files(dest) == {"meta.json", "timing.json", "eval/synth_val/metrics.json",
                            "logs/metrics.csv"}
    assert (archive / "baseline-s0" / "meta.json").read_text() == '{"second": true}'
    assert sorted(os.listdir(archive)) == ["baseline-s0"]  # no .tmp / .old left behind
    assert {"checkpoints", "results.json", "train.log", "events.out.tfevents.*"} == set(LEFT_OUT)
    # the BEV picture's sample named: of the results left out, its detections are kept
    boxes = {tok: [{"sample_token": tok, "detection_score": sc} for sc in (0.1, 0.8)]
             for tok in ("a", "s")}
    (run / "eval" / "synth_val" / "results.json").write_text(
        json.dumps({"meta": {"use_camera": True}, "results": boxes}))
    dest = archive_run(str(run), str(archive), picture="s")
    assert _files(dest) == {"meta.json", "timing.json", "eval/synth_val/metrics.json",
                            "logs/metrics.csv", f"eval/synth_val/{SAMPLE_FILE}"}
    with open(os.path.join(dest, "eval", "synth_val", SAMPLE_FILE)) as f:
        kept = json.load(f)
    assert kept == {"meta": {"use_camera": True}, "results": {"s": boxes["s"][::-1]}}  # best first


def test_timing_model_builds_a_restored_runs_network(trained_run, synth_root, tmp_path):
    from bevkd.data.nuscenes import NuScenesDataset
    from bevkd.engine.run import load_trained
    from bevkd.structures.batch import collate

    cfg, trained, has = timing_model(trained_run)
    assert has
    _, same = load_trained(trained_run)
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(),
                                                 same.state_dict().values()))
    restored = str(tmp_path / "pillars")
    shutil.copytree(trained_run, restored, ignore=shutil.ignore_patterns(*LEFT_OUT))
    cfg2, untrained, has = timing_model(restored)
    assert not has and cfg2 == cfg
    # the same network (every tensor's name and shape), not the same weights
    a, b = trained.state_dict(), untrained.state_dict()
    assert list(a) == list(b) and all(a[k].shape == b[k].shape for k in a)
    assert not all(torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())
    ds = NuScenesDataset(synth_root, cfg.train.version, cfg.train.val_split, cfg.data,
                         train=False)
    batch = collate([ds[0]])
    with torch.no_grad():
        out_a, out_b = trained.eval()(batch), untrained.eval()(batch)
    assert [{k: v.shape for k, v in p.items()} for p in out_a.preds] == \
        [{k: v.shape for k, v in p.items()} for p in out_b.preds]


def test_what_a_job_to_train_needs_is_not_restored_down_the_chain(tmp_path):
    """The label encoder's run is not archived: it trains again, so the LiDAR teacher it
    learns from is trained again too; LabelDistill's archived student needs neither
    checkpoint (it is final) and is restored with the baseline."""
    import json

    jobs = plan(1, ("labeldistill",), False, ())
    assert {j.name: j.needs for j in jobs}["label_encoder"] == ("teacher",)
    archive, runs = tmp_path / "archive", tmp_path / "runs"
    for job in jobs:
        if job.name == "label_encoder":
            continue
        (archive / job.name / "eval" / "synth_val").mkdir(parents=True)
        (archive / job.name / "eval" / "synth_val" / "metrics.json").write_text("{}")
        (archive / job.name / "timing.json").write_text(json.dumps({"step_seconds": 1.0}))
    got = restorable(jobs, str(runs), str(archive), "synth_val")
    assert sorted(j.name for j in got) == ["baseline-s0", "labeldistill-s0"]
    assert sorted(j.name for j in restorable(jobs, str(runs), str(archive), "synth_val",
                                             training=False)) == \
        ["baseline-s0", "labeldistill-s0", "teacher"]


def test_a_run_restored_without_weights_that_a_training_needs_trains_again(bench, tmp_path):
    """A report restored every archived run, the student's among them; the student's run is
    then deleted (say, to train it again): the bench that follows must train the teacher
    again rather than reuse a restored teacher without a checkpoint."""
    run, runs, data = bench
    archive = tmp_path / "archive"
    run(on_final=_archiver(str(archive)))
    _new_machine(runs, data)
    assert restore(JOBS, str(runs), str(archive), training=False) == [j.name for j in JOBS]
    shutil.rmtree(runs / "bevdistill-s0")
    shutil.rmtree(archive / "bevdistill-s0")
    logs: list[str] = []
    assert restore(JOBS, str(runs), str(archive), log=logs.append) == []
    assert logs == ["[bench] to train again (restored earlier without the checkpoint a "
                    "training needs): teacher"]
    assert not (runs / "teacher").exists() and (archive / "teacher").is_dir()
    status, _ = run(on_final=_archiver(str(archive)))
    assert status == {"teacher": "done", "baseline-s0": "reused", "bevdistill-s0": "done"}
    assert not is_restored(str(runs / "teacher"))


def test_extra_seeds_of_an_ablation_are_restored_but_never_make_work(tmp_path):
    import json

    jobs = plan(1, ("bevdistill",), False, ())
    extra = [j for j in plan(2, ("bevdistill",), False, ()) if j.name == "bevdistill-s1"]
    archive, runs = tmp_path / "archive", tmp_path / "runs"
    for name in ("teacher", "bevdistill-s1"):
        (archive / name / "eval" / "synth_val").mkdir(parents=True)
        (archive / name / "eval" / "synth_val" / "metrics.json").write_text("{}")
        (archive / name / "timing.json").write_text(json.dumps({"step_seconds": 1.0}))
    back, again, *_ = plan_restore(jobs, str(runs), str(archive), "synth_val", optional=extra)
    # baseline-s0 and bevdistill-s0 train, and the latter needs the teacher's checkpoint
    assert [j.name for j in back] == ["bevdistill-s1"] and again == []


def test_an_interrupted_copy_is_found_again(tmp_path):
    run = tmp_path / "runs" / "teacher"
    run.mkdir(parents=True)
    (run / "timing.json").write_text("{}")
    archive = tmp_path / "archive"
    (archive / "teacher.old").mkdir(parents=True)  # stopped between the two renames
    (archive / "teacher.old" / "meta.json").write_text("{}")
    shutil.copytree(archive / "teacher.old", archive / "teacher.tmp")
    dest = archive_run(str(run), str(archive))
    assert _files(dest) == {"timing.json"} and sorted(os.listdir(archive)) == ["teacher"]


def _twin_bench(bench, tmp_path, monkeypatch):
    """``(bench_of, again, runs, data, archive)``: the stand-in bench with a second job,
    ``again``, whose command is bevdistill-s0's but for its --out folder, so that
    bevdistill-s0's finished run serves it; ``bench_of(jobs)`` runs jobs, archiving each."""
    import sys

    from bevkd.bench import runner
    from bevkd.bench.plan import Job

    _, runs, data = bench
    script = tmp_path / "fake_train.py"

    def command(job, preset, data, runs, threads, extra=(), camera_extra=()):
        run = os.path.join(runs, job.name)
        name = "bevdistill-s0" if job.name == "again" else job.name
        return [sys.executable, str(script), "train", name, "--out", run]

    monkeypatch.setattr(runner, "command", command)
    archive = str(tmp_path / "archive")

    def bench_of(jobs):
        logs: list[str] = []
        res = runner.run_jobs(jobs, "tiny", str(data), str(runs), 2, log=logs.append,
                              poll=0.05, on_final=_archiver(archive))
        return {n: (r.status, os.path.basename(r.run)) for n, r in res.items()}, logs

    return bench_of, Job("again", "bevdistill", JOBS[2].config, 0, (), ("teacher",)), runs, \
        data, archive


def test_a_job_a_twin_served_is_restored_through_its_twin(bench, tmp_path, monkeypatch):
    """bevdistill-s0's finished run serves ``again`` (:func:`_twin_bench`). On a new machine
    the archive's note restores that run for it, so the job counts as final and does not
    hold its teacher back from being restored (which a job to train would: the teacher would
    train again for nothing)."""
    import json

    bench_of, again, runs, data, archive = _twin_bench(bench, tmp_path, monkeypatch)
    bench_of(JOBS)
    status, logs = bench_of([*JOBS, again])
    assert status["again"] == ("reused", "bevdistill-s0")
    assert "[bench] reuse bevdistill-s0 for again (the same training)" in logs
    note = os.path.join(archive, "again", "served_by.json")
    assert json.load(open(note)) == {"run": "bevdistill-s0"}
    assert sorted(os.listdir(archive)) == ["again", "baseline-s0", "bevdistill-s0", "teacher"]

    _new_machine(runs, data)
    jobs = [JOBS[0], again]  # the twin is no job of this plan: restored all the same
    assert [j.name for j in restorable(jobs, str(runs), archive, "synth_val")] == \
        ["teacher", "again"]
    said: list[str] = []
    restore(jobs, str(runs), archive, log=said.append)
    assert said == [f"[bench] restored from {archive} (finished, no checkpoints): teacher, "
                    "bevdistill-s0 (serving again)"]
    assert sorted(os.listdir(runs)) == ["bevdistill-s0", "teacher"]
    assert not (runs / "bevdistill-s0" / "served_by.json").exists()
    status, _ = bench_of(jobs)
    assert status == {"teacher": ("reused", "teacher"), "again": ("reused", "bevdistill-s0")}
    assert (runs / "teacher" / "starts").read_text().split() == ["new"]  # trained once, before

    # a note is not written over a run of the job's own, and one naming nothing restores nothing
    from bevkd.bench.archive import archive_served, served_by

    assert archive_served("baseline-s0", str(runs / "teacher"), archive) is None
    assert archive_served("teacher", str(runs / "teacher"), archive) is None
    with open(note, "w") as f:
        json.dump({"run": "../teacher"}, f)
    assert served_by(archive, "again", "synth_val") is None
    shutil.rmtree(runs)
    assert [j.name for j in restorable(jobs, str(runs), archive, "synth_val")] == []


def test_a_restored_run_is_read_under_the_paths_of_the_machine_it_lands_on(bench, tmp_path,
                                                                          monkeypatch):
    """The runs record absolute paths (--data, --out, the teachers' runs). Restored into
    another --runs folder beside another --data folder, they serve the same jobs: nothing
    trains again."""
    import sys

    from bevkd.bench import runner

    _, runs, data = bench
    script = tmp_path / "fake_train.py"

    def command(job, preset, data, runs, threads, extra=(), camera_extra=()):
        cmd = [sys.executable, str(script), "train", job.name, "--data", data,
               "--out", os.path.join(runs, job.name)]
        for need in job.needs:
            cmd += ["--set", f"distill.teachers.lidar={os.path.join(runs, need)}"]
        return cmd

    monkeypatch.setattr(runner, "command", command)
    archive = str(tmp_path / "archive")

    def bench_of(runs, data):
        res = runner.run_jobs(JOBS, "tiny", str(data), str(runs), 2, log=lambda m: None,
                              poll=0.05, on_final=_archiver(archive))
        return {n: r.status for n, r in res.items()}

    assert set(bench_of(runs, data).values()) == {"done"}
    runs2, data2 = tmp_path / "elsewhere" / "runs", tmp_path / "elsewhere" / "data"
    shutil.copytree(data, data2)  # the same tables, generated again
    assert restore(JOBS, str(runs2), archive) == [j.name for j in JOBS]
    assert bench_of(runs2, data2) == {j.name: "reused" for j in JOBS}
    # a run trained in place is held to the paths it records
    os.remove(runs2 / "teacher" / RESTORED)
    assert bench_of(runs2, data2)["teacher"] == "failed"


def test_rebased_moves_paths_under_a_folder_and_no_others():
    from bevkd.bench.runner import rebased, roots

    sig = ["train", "configs/distill/x.yaml", "--data", "/a/data", "--out", "/a/runs/x-s0",
           "--set", "distill.teachers.lidar=/a/runs/teacher", "--set", "train.seed=0"]
    assert roots(sig) == ("/a/runs", "/a/data")
    assert roots(["train", "x"]) is None and roots(None) is None
    moves = [("/a/runs", "/b/r"), ("/a/data", "/b/d")]
    assert rebased(sig, moves) == [
        "train", "configs/distill/x.yaml", "--data", "/b/d", "--out", "/b/r/x-s0",
        "--set", "distill.teachers.lidar=/b/r/teacher", "--set", "train.seed=0"]
    cfg = {"model": {"args": {"backbone_weights": "/a/runs/backbone.pth", "depth": 18}},
           "distill": {"teachers": {"lidar": "/a/runs/teacher", "fusion": "/a/runsX/t"}},
           "tags": ["/a/runs", "/a/run"]}
    assert rebased(cfg, moves) == {
        "model": {"args": {"backbone_weights": "/b/r/backbone.pth", "depth": 18}},
        "distill": {"teachers": {"lidar": "/b/r/teacher", "fusion": "/a/runsX/t"}},
        "tags": ["/b/r", "/a/run"]}
    # the bench's default data folder lies in its runs folder: the deeper move wins, and a
    # --set value is the text after its first "="
    nested = [("/a/runs", "/h/runs"), ("/a/runs/synth", "/s/synth")]
    assert rebased(["--data", "/a/runs/synth", "--out", "/a/runs/x-s0", "k=v=/a/runs/t",
                    "p=/a/runs/synth/v1.0"], nested) == \
        ["--data", "/s/synth", "--out", "/h/runs/x-s0", "k=v=/a/runs/t", "p=/s/synth/v1.0"]


def test_a_job_to_train_from_a_restored_run_without_weights_fails_with_what_to_do(bench,
                                                                                  tmp_path):
    run, runs, data = bench
    archive = tmp_path / "archive"
    run(on_final=_archiver(str(archive)))
    shutil.rmtree(runs / "teacher" / "checkpoints")  # as restored: no weights
    (runs / "teacher" / RESTORED).write_text("{}")
    shutil.rmtree(runs / "bevdistill-s0")  # a student still to train from it
    status, logs = run()
    assert status == {"teacher": "reused", "baseline-s0": "reused", "bevdistill-s0": "failed"}
    assert any("FAILED bevdistill-s0: it trains from teacher, restored from an archive "
               "without the checkpoint it needs; run the bench again with --archive" in m
               for m in logs)
    assert not (runs / "bevdistill-s0").exists()  # nothing started
    # and a bench with the archive does so (the student not in it either): the teacher
    # trains again, then the student
    shutil.rmtree(archive / "bevdistill-s0")
    restore(JOBS, str(runs), str(archive))
    status, _ = run()
    assert status == {"teacher": "done", "baseline-s0": "reused", "bevdistill-s0": "done"}


def _archived(archive, name: str, inputs: dict, made=None, sig=None) -> None:
    """A finished run in ``archive`` with the job record a bench writes."""
    import json

    run = archive / name
    (run / "eval" / "synth_val").mkdir(parents=True)
    (run / "eval" / "synth_val" / "metrics.json").write_text("{}")
    (run / "timing.json").write_text(json.dumps({"step_seconds": 1.0}))
    record = {"signature": sig or ["train", name], "inputs": inputs,
              **({"made": made} if made else {})}
    (run / "bench_job.json").write_text(json.dumps(record))


def test_retrain_apart_trains_again_what_learned_from_another_teacher_training(bench,
                                                                                tmp_path):
    """The teacher's archived run is lost and trained again on the new machine: the student
    restored beside it learned from the old training. ``same_trainings`` (--retrain-apart)
    trains it again instead; a student restored earlier is deleted and trained again."""
    from bevkd.bench.runner import checkpoint_stamp, read_record

    run, runs, data = bench
    archive = tmp_path / "archive"
    run(on_final=_archiver(str(archive)))
    old = read_record(str(archive / "teacher"))["made"]
    assert read_record(str(archive / "bevdistill-s0"))["inputs"]["teacher"] == old
    shutil.rmtree(archive / "teacher")
    _new_machine(runs, data)
    # without the flag the student is restored (it is final), the teacher trains for nothing
    # else; with it, the student needs the new teacher's checkpoint, so trains again too
    assert [j.name for j in restorable(JOBS, str(runs), str(archive), "synth_val")] == \
        ["baseline-s0", "bevdistill-s0"]
    back, again, apart, _ = plan_restore(JOBS, str(runs), str(archive), "synth_val",
                                         same_trainings=True)
    assert [j.name for j in back] == ["baseline-s0"] and again == []
    assert apart == {"bevdistill-s0": ["teacher"]}
    # restored earlier (a bench without the flag): the teacher trains, the student is kept
    restore(JOBS, str(runs), str(archive))
    status, _ = run(on_final=_archiver(str(archive)))
    assert status == {"teacher": "done", "baseline-s0": "reused", "bevdistill-s0": "reused"}
    new = checkpoint_stamp(str(runs / "teacher"))
    assert new != old and read_record(str(runs / "teacher"))["made"] == new
    # ... and the flag now trains it again from the new teacher, replacing its archived copy
    logs: list[str] = []
    assert restore(JOBS, str(runs), str(archive), log=logs.append, same_trainings=True) == []
    assert not (runs / "bevdistill-s0").exists()
    assert logs == [f"[bench] not restored from {archive}, trained again: learned from another "
                    f"training of what is named than {runs} holds: bevdistill-s0 (teacher)"]
    status, _ = run(on_final=_archiver(str(archive)))
    assert status == {"teacher": "reused", "baseline-s0": "reused", "bevdistill-s0": "done"}
    assert read_record(str(archive / "bevdistill-s0"))["inputs"]["teacher"] == new
    # once all learned from one training, the flag keeps what is restored
    _new_machine(runs, data)
    assert plan_restore(JOBS, str(runs), str(archive), "synth_val", training=False,
                        same_trainings=True) == (JOBS, [], {}, [])


def test_retrain_apart_follows_the_chain_and_reads_the_backbone_where_the_runs_are(tmp_path):
    """The label encoder learned from a teacher this runs folder does not hold, so it trains
    again; LabelDistill's student read that label encoder, so it trains again too, though it
    learned from this teacher. The pretrained backbone an override names is read under this
    runs folder, wherever the archived command had it."""
    import json

    jobs = plan(1, ("labeldistill",), False, ())
    archive, runs = tmp_path / "archive", tmp_path / "runs"
    teacher = runs / "teacher"
    (teacher / "checkpoints").mkdir(parents=True)
    (teacher / "checkpoints" / "last.ckpt").write_text("weights")
    _archived(runs, "teacher", {})  # trained here: a run of its own, not restored
    from bevkd.bench.runner import checkpoint_stamp

    here = checkpoint_stamp(str(teacher))
    backbone = runs / "backbone.pth"
    backbone.write_text("pretrained")
    os.utime(backbone, ns=(1, 5))
    old_runs = "/lost/machine/runs"
    sig = ["train", "cfg", "--data", "/lost/data", "--out", f"{old_runs}/x", "--set",
           f"model.args.backbone_weights={old_runs}/backbone.pth"]
    bb = "model.args.backbone_weights"
    _archived(archive, "label_encoder", {"teacher": [9, 9]}, made=[7, 7])
    _archived(archive, "labeldistill-s0", {"teacher": here, "label_encoder": [7, 7],
                                            bb: [len("pretrained"), 5]}, sig=sig)
    _archived(archive, "baseline-s0", {bb: [len("pretrained"), 5]}, sig=sig)
    back, again, apart, _ = plan_restore(jobs, str(runs), str(archive), "synth_val",
                                         same_trainings=True)
    assert [j.name for j in back] == ["baseline-s0"] and again == []
    assert apart == {"label_encoder": ["teacher"], "labeldistill-s0": ["label_encoder"]}
    # the backbone made again: every camera run learned from another one
    os.utime(backbone, ns=(1, 6))
    back, _, apart, _ = plan_restore(jobs, str(runs), str(archive), "synth_val",
                                     same_trainings=True)
    assert back == [] and apart["baseline-s0"] == [bb]
    assert apart["labeldistill-s0"] == ["label_encoder", bb]
    # a run without recorded inputs, or that recorded no training of one, cannot show what it
    # learned from
    (archive / "baseline-s0" / "bench_job.json").write_text(json.dumps({"signature": sig}))
    assert plan_restore(jobs, str(runs), str(archive), "synth_val",
                        same_trainings=True).apart["baseline-s0"] == ["inputs"]
    (archive / "baseline-s0" / "bench_job.json").write_text(json.dumps(
        {"signature": sig, "inputs": {bb: None}}))
    os.remove(backbone)  # no backbone here either: None against None is no match
    assert plan_restore(jobs, str(runs), str(archive), "synth_val",
                        same_trainings=True).apart["baseline-s0"] == [bb]


def test_retrain_apart_deletes_a_restored_twin_that_served_a_job_now_apart(bench, tmp_path,
                                                                          monkeypatch):
    """A twin restored earlier served ``again``; the teacher is trained again here since.
    The flag deletes the twin (else the runner would find it and reuse it) and ``again``
    trains in its own folder from the new teacher."""
    bench_of, again, runs, data, archive = _twin_bench(bench, tmp_path, monkeypatch)
    bench_of(JOBS)
    bench_of([*JOBS, again])
    _new_machine(runs, data)
    jobs = [JOBS[0], again]
    shutil.rmtree(os.path.join(archive, "teacher"))  # lost: it trains again here
    restore(jobs, str(runs), archive)
    assert bench_of(jobs)[0] == {"teacher": ("done", "teacher"),
                                 "again": ("reused", "bevdistill-s0")}
    said: list[str] = []
    assert restore(jobs, str(runs), archive, log=said.append, same_trainings=True) == []
    assert said == [f"[bench] not restored from {archive}, trained again: learned from another "
                    f"training of what is named than {runs} holds: again (teacher); deleted "
                    "the restored twin runs that served them: bevdistill-s0"]
    assert not (runs / "bevdistill-s0").exists() and (runs / "teacher").is_dir()
    assert bench_of(jobs)[0] == {"teacher": ("reused", "teacher"), "again": ("done", "again")}


def test_retrain_apart_needs_an_archive_and_a_training(tmp_path):
    import pytest

    from bevkd.bench.command import run_bench
    from bevkd.errors import BevkdError

    with pytest.raises(BevkdError, match="pass --archive too"):
        run_bench("tiny", str(tmp_path / "out"), str(tmp_path / "runs"), retrain_apart=True)
    with pytest.raises(BevkdError, match="a report .--report-only. trains nothing"):
        run_bench("tiny", str(tmp_path / "out"), str(tmp_path / "runs"), train=False,
                  archive=str(tmp_path / "archive"), retrain_apart=True)
    assert not (tmp_path / "runs").exists()


def test_the_bench_archiver_keeps_the_picture_sample_and_archives_without_one(bench, tmp_path,
                                                                              monkeypatch,
                                                                              capsys):
    """The bench's archiver looks the picture's sample up once; a dataset it cannot read
    it for costs the picture, never the copies."""
    from types import SimpleNamespace

    from bevkd.bench import command
    from bevkd.bench.runner import JobResult

    run, runs, data = bench
    archive = tmp_path / "archive"
    status, _ = run(on_final=_archiver(str(archive), str(data)))  # tables without samples
    assert set(status.values()) == {"done"}
    assert sorted(os.listdir(archive)) == ["baseline-s0", "bevdistill-s0", "teacher"]
    assert capsys.readouterr().out.count("the archive keeps no BEV picture sample") == 1
    looked = []
    monkeypatch.setattr(command, "picture_sample",
                        lambda d: looked.append(d) or SimpleNamespace(token="s"))
    keep = _archiver(str(archive), str(data))
    for job in JOBS:
        res = runs / job.name / "eval" / "synth_val" / "results.json"
        res.write_text(json.dumps({"meta": {}, "results": {"s": [{"detection_score": 0.5}]}}))
        keep(JobResult(job, str(runs / job.name), "done"))
        assert (archive / job.name / "eval" / "synth_val" / SAMPLE_FILE).is_file()
    assert looked == [str(data)]

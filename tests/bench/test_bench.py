"""`bevkd bench` planning and the table arithmetic (gap closed, ratios, seed spread)."""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pytest

from bevkd.bench.plan import ABLATIONS, plan
from bevkd.errors import BevkdError
from bevkd.bench.report import ablation_pairs, collect, markdown
from bevkd.bench.runner import JobResult, command, signature
from bevkd.structures.classes import DETECTION_CLASSES


def test_plan_orders_teachers_first_and_wires_dependencies():
    jobs = plan(seeds=2, methods=("bevdistill", "asd"), composite=False, ablations=())
    names = [j.name for j in jobs]
    # no method here needs the label encoder: it is not trained
    assert names[:2] == ["teacher", "fusion_teacher"] and "label_encoder" not in names
    assert {"baseline-s0", "baseline-s1", "bevdistill-s1", "asd-s0"} <= set(names)
    by = {j.name: j for j in plan(seeds=1, methods=("labeldistill",), composite=False,
                                  ablations=())}
    assert by["label_encoder"].needs == ("teacher",) and "fusion_teacher" not in by
    assert [j.name for j in plan(1, ("bevdistill",), False, ())] == [
        "teacher", "baseline-s0", "bevdistill-s0"]
    by = {j.name: j for j in jobs}
    assert set(by["asd-s0"].needs) == {"teacher", "fusion_teacher"}
    assert by["baseline-s1"].needs == () and "train.seed=1" in by["baseline-s1"].overrides
    # both seeds of the main rows come before the seed-0 ablation rows
    names2 = [j.name for j in plan(2, ("asd",), False, ("asd_gamma0",))]
    assert names2.index("asd-s1") < names2.index("asd_gamma0-s0")
    assert "asd_gamma0-s1" not in names2
    # ablation_seeds=2: both seeds of each ablation, after every main row, seed 0 first
    names3 = [j.name for j in plan(2, ("asd",), False, ("asd_gamma0", "asd_no_smoothing"),
                                   ablation_seeds=2)]
    assert names3[-4:] == ["asd_gamma0-s0", "asd_no_smoothing-s0", "asd_gamma0-s1",
                           "asd_no_smoothing-s1"]
    by3 = {j.name: j for j in plan(2, ("asd",), False, ("asd_gamma0",), ablation_seeds=2)}
    assert by3["asd_gamma0-s1"].seed == 1 and by3["asd_gamma0-s1"].overrides[0] == "train.seed=1"
    # more ablation seeds than the table has, or none: refused (nothing to pair a run with)
    for bad in (0, 3):
        with pytest.raises(BevkdError, match=r"bench.ablation_seeds\) must be between 1 and the "
                                             "table's 2"):
            plan(2, ("asd",), False, ("asd_gamma0",), ablation_seeds=bad)
    # ... unless no ablation row is planned
    assert [j.name for j in plan(1, ("asd",), False, (), ablation_seeds=3)][-1] == "asd-s0"
    # the composite's ablations come with the composite's row only
    with_composite = plan(1, ("asd",), True, ("composite_tuned_parts", "asd_gamma0"))
    assert [j.name for j in with_composite][-3:] == [
        "composite-s0", "composite_tuned_parts-s0", "asd_gamma0-s0"]
    tuned_parts = next(j for j in with_composite if j.name == "composite_tuned_parts-s0")
    assert tuned_parts.config.endswith("composite.yaml") and tuned_parts.overrides == (
        "train.seed=0", "distill.methods.1.args.smooth_kernel=1",
        "distill.methods.2.args.crd_temperature=0.5")
    assert set(tuned_parts.needs) == {"teacher", "label_encoder", "fusion_teacher"}
    assert "composite_tuned_parts-s0" not in [
        j.name for j in plan(1, ("asd",), False, ("composite_tuned_parts", "asd_gamma0"))]
    # every job comes after the jobs it needs
    for i, j in enumerate(jobs):
        assert all(n in names[:i] for n in j.needs)


def test_preset_overrides_reach_their_row_and_its_ablations_only():
    from bevkd.bench.command import BenchSpec, row_overrides
    from bevkd.errors import BevkdError

    tuned = row_overrides(BenchSpec(overrides={"asd": ["distill.methods.0.args.sim_weight=0.5"]}))
    jobs = {j.name: j for j in plan(2, ("asd", "bevdistill"), True, ("asd_gamma0",), tuned)}
    sim = "distill.methods.0.args.sim_weight=0.5"
    assert jobs["asd-s1"].overrides == ("train.seed=1", sim)
    # the ablation keeps the tuned value and changes only its own key after it
    assert jobs["asd_gamma0-s0"].overrides == ("train.seed=0", sim,
                                               "distill.methods.0.args.gamma=0.0")
    assert all(sim not in jobs[n].overrides
               for n in ("baseline-s0", "bevdistill-s0", "composite-s0"))
    # student_sets reach every student run, before the row's own, and no teacher
    jobs = {j.name: j for j in plan(1, ("asd",), False, ("asd_gamma0",), tuned,
                                    ("train.epochs=12",))}
    assert jobs["baseline-s0"].overrides == ("train.seed=0", "train.epochs=12")
    assert jobs["asd_gamma0-s0"].overrides == ("train.seed=0", "train.epochs=12", sim,
                                               "distill.methods.0.args.gamma=0.0")
    assert all("train.epochs=12" not in jobs[n].overrides
               for n in ("teacher", "fusion_teacher"))
    with pytest.raises(BevkdError, match="unknown row 'asdd'"):
        row_overrides(BenchSpec(overrides={"asdd": ["a=1"]}))
    # an ablation name is checked where the plan is made, for a caller from Python too (it
    # used to be a KeyError there; the CLI checked alone)
    with pytest.raises(BevkdError,
                       match="unknown ablation.*asd_gama0; choose from composite_tuned_parts"):
        plan(1, ("asd",), False, ("asd_gama0",))
    with pytest.raises(BevkdError, match="key=value"):
        row_overrides(BenchSpec(overrides={"asd": "a=1"}))


def test_the_demo_preset_is_tinys_models_on_a_small_world_and_a_short_schedule():
    """`make demo`'s preset inherits tiny's models, recipe and method weights (``base:``),
    with its own dataset, image size and epochs; its student builds for those images."""
    from bevkd.bench.command import bench_spec, row_overrides
    from bevkd.builder import build_model
    from bevkd.engine.config import load_experiment

    demo, tiny = bench_spec("demo"), bench_spec("tiny")
    assert (demo.scenes, demo.samples_per_scene, demo.seeds, demo.pretrain_steps) == (8, 10, 1,
                                                                                     150)
    assert demo.student_sets == ["train.epochs=4", "train.eval_every=4", "optim.lr=2.0e-3"]
    assert (demo.width, demo.height, demo.parallel, demo.threads) == (tiny.width, tiny.height,
                                                                      tiny.parallel, tiny.threads)
    assert row_overrides(demo) == row_overrides(tiny)  # e.g. BEVDistill's dense weight 0.1
    assert "benchmarks/tiny.md" in demo.about and not tiny.about  # the demo's table says so
    student = load_experiment("configs/student/bevdepth.yaml", "demo", demo.student_sets)
    same = load_experiment("configs/student/bevdepth.yaml", "tiny",
                           ["data.image.final_size=[64,176]", "data.image.resize_lim=[0.21,0.26]",
                            "train.epochs=4", "train.eval_every=4"])
    assert student == same  # tiny's student, learning rate included
    teacher = load_experiment("configs/teacher/pillars.yaml", "demo")
    assert (teacher.train.epochs, teacher.optim.lr) == (12, 8e-3)
    assert teacher.optim.schedule == "cosine" and teacher.optim.grad_clip == 5.0  # tiny's
    assert build_model(student).encoder.view.feature_size == (8, 22)  # 64x176 at stride 8


def test_every_open_asd_choice_has_an_ablation_row():
    """DESIGN §4.4: every ASD choice the abstract leaves open is a parameter with its row."""
    import inspect

    from bevkd.distill.asd import ASD

    open_choices = {"smooth_kernel", "alpha_scope", "fusion_weight", "gamma", "mask",
                    "response_teacher", "gt_agreement", "gcm_depth", "gate_bias_init",
                    "sim_lift"}
    ablated = {s.split("=", 1)[0].removeprefix("distill.methods.0.args.")
               for method, sets in ABLATIONS.values() if method == "asd" for s in sets}
    assert open_choices <= ablated
    assert ablated <= set(inspect.signature(ASD.__init__).parameters)
    # the batch-statistics row turns the smoothing on: with kernel 1 α weighs two equal terms
    assert "distill.methods.0.args.smooth_kernel=3" in ABLATIONS["asd_alpha_batch"][1]
    # and its two halves each switched off: every feature weight, every response weight
    weights = {n for n in inspect.signature(ASD.__init__).parameters if n.endswith("_weight")}
    zeroed = {n: {s.split("=")[0].rsplit(".", 1)[1] for s in ABLATIONS[n][1]
                  if s.endswith("=0.0")} for n in ("asd_features_only", "asd_response_only")}
    assert zeroed["asd_features_only"] | zeroed["asd_response_only"] == weights
    assert zeroed["asd_features_only"] == {w for w in weights if w.startswith("response_")}


def test_an_ablation_that_sets_its_methods_own_value_gets_no_row():
    from bevkd.bench.command import bench_spec, row_overrides
    from bevkd.bench.plan import ABLATIONS, redundant_ablations

    every = tuple(ABLATIONS)
    # the configs' own values
    published = ["composite_published_parts", "asd_smoothing_3x3", "dualdistill_T0.1"]
    # the tiny preset re-sets the composite's parts as it does their methods' rows'
    tuned_parts = ["composite_tuned_parts"]
    # the tiny preset starts DualDistill's head from the teacher's, so the own-head row differs
    tiny = redundant_ablations("tiny", every, row_overrides(bench_spec("tiny")))
    # the tiny preset sets CRD T = 0.5 and ASD's smoothing off for the rows: those ablations
    # are the rows, and the published values get ablation rows
    assert tiny == [*tuned_parts, "asd_no_smoothing", "dualdistill_T0.5"]
    # the small preset carries tiny's overrides over; the full preset keeps the published
    # values (its own head too: that ablation would retrain dualdistill)
    assert redundant_ablations("small", every, row_overrides(bench_spec("small"))) == tiny
    assert redundant_ablations("full", every, row_overrides(bench_spec("full"))) == [
        *published, "dualdistill_own_head"]
    # the control of the head's start is a row on both presets; on tiny, whose DualDistill
    # already starts from the teacher's head, it differs from the row by the method's weight
    assert "dualdistill_head_init_only" not in tiny
    from bevkd.bench.plan import _method_config
    from bevkd.config import to_dict
    from bevkd.engine.config import load_experiment

    row_sets = list(row_overrides(bench_spec("tiny"))["dualdistill"])
    row = to_dict(load_experiment(_method_config("dualdistill"), "tiny", row_sets))
    control = to_dict(load_experiment(_method_config("dualdistill"), "tiny",
                                      row_sets + list(ABLATIONS["dualdistill_head_init_only"][1])))
    assert control["distill"]["methods"][0]["weight"] == 0.0
    control["distill"]["methods"][0]["weight"] = row["distill"]["methods"][0]["weight"]
    assert control == row
    assert redundant_ablations("small", ("dualdistill_head_init_only",),
                               row_overrides(bench_spec("small"))) == []
    # a row that re-sets the temperature gets the published one as its ablation, and the
    # ablation that set the new value becomes the row itself
    tuned = {"dualdistill": ("distill.methods.0.args.crd_temperature=0.5",)}
    assert redundant_ablations("small", ("dualdistill_T0.5", "dualdistill_T0.1"), tuned) == [
        "dualdistill_T0.5"]
    # ... unless the bench's own --set changes the method row
    assert redundant_ablations("small", ("dualdistill_own_head",), {}, (
        "distill.methods.0.args.init_student_head_from_teacher=true",)) == []
    # a preset that re-sets the composite's parts gets the published parts as their row
    parts = {"composite": ABLATIONS["composite_tuned_parts"][1]}
    assert redundant_ablations("tiny", ("composite_tuned_parts", "composite_published_parts"),
                               parts) == ["composite_tuned_parts"]
    # a set that only respells the method's value counts as the same config
    assert redundant_ablations("tiny", ("asd_gamma0",), {"asd": ("distill.methods.0.args.gamma=0",)}
                               ) == ["asd_gamma0"]


def test_command_wires_teacher_runs_and_resumes(tmp_path):
    job = next(j for j in plan(1, ("asd",), False, ()) if j.name == "asd-s0")
    cmd = command(job, "tiny", "/data", str(tmp_path), threads=1)
    assert f"distill.teachers.lidar={tmp_path}/teacher" in cmd
    assert f"distill.teachers.fusion={tmp_path}/fusion_teacher" in cmd and "--resume" not in cmd
    os.makedirs(tmp_path / "asd-s0" / "checkpoints")
    (tmp_path / "asd-s0" / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert "--resume" in command(job, "tiny", "/data", str(tmp_path), threads=1)


def test_a_run_made_by_another_command_is_neither_reused_nor_resumed(tmp_path):
    from bevkd.bench.runner import JOB_FILE, mismatch, run_jobs, signature

    job = next(j for j in plan(1, ("bevdistill",), False, ()) if j.name == "baseline-s0")
    cmd = command(job, "tiny", "/data", str(tmp_path), threads=1)
    # threads and --resume do not change what a run is; an override does
    assert signature(cmd) == signature(command(job, "tiny", "/data", str(tmp_path), threads=4)
                                       + ["--resume"])
    other = command(job, "tiny", "/data", str(tmp_path), 1, extra=("optim.lr=1e-4",))
    assert signature(other) != signature(cmd)
    run = tmp_path / "baseline-s0"
    run.mkdir()
    assert mismatch(str(run), cmd) is None  # a run that records nothing is trusted
    (run / JOB_FILE).write_text(json.dumps({"signature": signature(cmd)}))
    assert mismatch(str(run), cmd) is None
    why = mismatch(str(run), other)
    assert "optim.lr=1e-4" in why and "another --runs" in why
    # the same command resolving to another config (an edited preset) is a mismatch too
    import yaml

    from bevkd.bench.runner import resolved_config
    from bevkd.config import to_dict

    saved = to_dict(resolved_config(cmd))
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    assert mismatch(str(run), cmd) is None
    saved["optim"]["lr"] = 0.5
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    why = mismatch(str(run), cmd)
    assert "another config" in why and "optim.lr" in why
    # ... also for a run that records no bench command (trained by hand or by an older bench)
    (run / JOB_FILE).unlink()
    assert "another config" in mismatch(str(run), cmd)
    (run / JOB_FILE).write_text(json.dumps({"signature": signature(cmd)}))
    (run / "config.yaml").unlink()
    # the runner fails that job without starting it, and skips what needs it
    logs = []
    results = run_jobs([job], "tiny", "/data", str(tmp_path), parallel=1,
                       extra=("optim.lr=1e-4",), log=logs.append)
    assert results["baseline-s0"].status == "failed" and "another command" in logs[0]
    assert not (run / "train.log").exists()


def test_a_run_is_the_same_job_from_another_checkout_of_the_repository(tmp_path):
    from bevkd.bench.plan import CONFIGS
    from bevkd.bench.runner import JOB_FILE, mismatch, portable

    job = next(j for j in plan(1, ("bevdistill",), False, ()) if j.name == "baseline-s0")
    cmd = command(job, "tiny", "/data", str(tmp_path), threads=1)
    assert cmd[cmd.index("train") + 1] == os.path.join(CONFIGS, "student", "bevdepth.yaml")
    # recorded as it is; compared by the config's place in the repository
    assert signature(cmd)[1] == cmd[cmd.index("train") + 1]
    assert portable(signature(cmd))[:2] == ["train", "configs/student/bevdepth.yaml"]
    run = tmp_path / "baseline-s0"
    run.mkdir()
    recorded = signature(cmd)
    # recorded by a bench in a clone of the repository at /elsewhere
    recorded[1] = "/elsewhere/bevkd/configs/student/bevdepth.yaml"
    (run / JOB_FILE).write_text(json.dumps({"signature": recorded}))
    assert mismatch(str(run), cmd) is None
    # recorded before the configs moved into the package (bevkd/configs), at the top of a
    # checkout: the archive's runs (benchmarks/archive/tiny) were
    recorded[1] = "/work/main/configs/student/bevdepth.yaml"
    (run / JOB_FILE).write_text(json.dumps({"signature": recorded}))
    assert mismatch(str(run), cmd) is None
    # another config file is another job, wherever it sits
    recorded[1] = "/elsewhere/bevkd/configs/student/other.yaml"
    (run / JOB_FILE).write_text(json.dumps({"signature": recorded}))
    why = mismatch(str(run), cmd)
    assert "another command" in why and "other.yaml" in why
    # what is not a checkout's config path stays as recorded
    for sig in (["train", "my.yaml", "--out"], ["train", "/x/my.yaml"], None, ["eval", "/a/b/c/d"],
                ["train", "/configs/x.yaml"]):
        assert portable(sig) == sig


def test_backbone_weights_go_to_camera_models_only(tmp_path):
    jobs = {j.name: j for j in plan(1, ("bevdistill",), True, ())}
    weights = ("model.args.backbone_weights=/w.pth",)
    for name, camera in (("teacher", False), ("label_encoder", False), ("fusion_teacher", True),
                         ("baseline-s0", True), ("bevdistill-s0", True)):
        cmd = command(jobs[name], "tiny", "/data", str(tmp_path), 1, camera_extra=weights)
        assert (weights[0] in cmd) == camera, name


def _fake_run(root, name, mAP, nds, step):
    run = root / name
    (run / "eval" / "synth_val").mkdir(parents=True)
    tp = {k: 0.5 for k in ("trans_err", "scale_err", "orient_err", "vel_err", "attr_err")}
    (run / "eval" / "synth_val" / "metrics.json").write_text(json.dumps(
        {"mean_ap": mAP, "nd_score": nds, "tp_errors": tp,
         "mean_dist_aps": {c: mAP for c in DETECTION_CLASSES}}))
    (run / "timing.json").write_text(json.dumps(
        {"step_seconds": step, "train_seconds": 60.0, "peak_rss_mb": 900.0}))
    return str(run)


def test_table_arithmetic(tmp_path):
    jobs = {j.name: j for j in plan(2, ("bevdistill",), False, ())}
    values = {"teacher": (0.60, 0.62, 1.0), "baseline-s0": (0.20, 0.30, 1.0),
              "baseline-s1": (0.22, 0.32, 1.2), "bevdistill-s0": (0.32, 0.40, 1.5),
              "bevdistill-s1": (0.34, 0.42, 1.8)}
    results = {n: JobResult(jobs[n], _fake_run(tmp_path, n, *v), "done") for n, v in values.items()}
    latency = {"latency_ratio": {"baseline": 1.0, "bevdistill": 1.01},
               "latency_ratio_with_decode": {"baseline": 1.0, "bevdistill": 0.9},
               "latency_ratio_wall": {"baseline": 1.0, "bevdistill": 1.1},
               "latency_ms": {"baseline": 163.4, "bevdistill": 165.0},
               "timing_device": {"baseline": "cpu"}}
    rows = {r["model"]: r for r in collect(results, "synth_val", latency,
                                           {"baseline": 0.8, "bevdistill": 1.0})}
    assert rows["baseline"]["timing_device"] == "cpu" and "timing_device" not in rows["teacher"]
    kd = rows["bevdistill"]
    assert kd["mAP"] == [0.32, 0.34]
    assert kd["delta_mAP"] == pytest.approx(0.33 - 0.21)
    assert kd["gap_closed"] == pytest.approx((0.33 - 0.21) / (0.60 - 0.21))
    # the table's ratio is the interleaved measurement's; the runs' own step times are kept
    assert kd["step_time_ratio"] == pytest.approx(1.25)
    assert kd["train_step_time_ratio"] == pytest.approx(1.65 / 1.1)
    assert "step_time_ratio" not in rows["teacher"] and "step_seconds" not in rows["teacher"]
    assert kd["latency_ratio"] == pytest.approx(1.01)
    assert kd["latency_ratio_with_decode"] == pytest.approx(0.9)
    assert kd["latency_ratio_wall"] == pytest.approx(1.1)
    assert kd["latency_ms"] == pytest.approx(165.0) and "latency_ratio" not in rows["teacher"]
    # each seed against the baseline's run of the same seed (same initial student, same batches)
    assert kd["paired_seeds"] == [0, 1]
    assert kd["paired_delta_mAP"] == pytest.approx([0.12, 0.12])
    assert kd["paired_delta_NDS"] == pytest.approx([0.10, 0.10])
    assert "paired_seeds" not in rows["baseline"] and "paired_seeds" not in rows["teacher"]
    md = markdown(list(rows.values()), "tiny", "abc", "bevkd bench", 2)
    assert "vs the baseline's same seed: mAP +12.0 / +12.0, NDS +10.0 / +10.0" in md
    assert "| bevdistill | 33.0 ± 1.0 | 41.0 ± 1.0 |" in md
    assert "the baseline's pass: 163 ms of CPU time here" in md
    assert "one thread" in md and "GPU" not in md.split("\n\n")[1]
    # timed on a GPU (the small preset's machine): the text names it and its clock
    on_gpu = [{**r, "timing_device": "cuda (NVIDIA H200)"} if r["model"] == "baseline" else r
              for r in rows.values()]
    head = markdown(on_gpu, "small", "abc", "bevkd bench", 2).split("\n\n")[1]
    assert "on cuda (NVIDIA H200), batch 1" in head and "CPU time" not in head
    assert "163 ms of wall time between CUDA synchronisations" in head
    assert "in the precision each run trained in" in head
    assert "31%" in md  # gap closed
    # a preset's `bench.about` goes under the title, before the command's paragraph
    about = markdown(list(rows.values()), "demo", "abc", "bevkd bench", 1,
                     about="**The demo**: not a comparison.\n").split("\n\n")
    assert about[1] == "**The demo**: not a comparison." and about[2].startswith("`bevkd bench`")
    assert about[2:] == markdown(list(rows.values()), "demo", "abc", "bevkd bench",
                                 1).split("\n\n")[1:]
    # gains in percentage points; +12.0 mAP and +10.0 NDS both exceed the 1.0 seed spread
    assert kd["beats_baseline"] is True and "| +12.0 | +10.0 | yes | 31% | 1.25 | 1.01 |" in md
    # one method of four: no verdict yet, only where the table stands
    assert "- **—**: every method beats the baseline" in md
    assert "- **—**: the best method closes >= 30% of the teacher-baseline mAP gap " \
           "(so far: bevdistill 31%)" in md
    # a gain inside the seed spread does not count: mAP 0.12 / 0.40 gains 0.05 over the
    # baseline's 0.21 with a spread of 0.14
    values["bevdistill-s0"] = (0.12, 0.20, 1.5)
    values["bevdistill-s1"] = (0.40, 0.60, 1.8)
    (tmp_path / "again").mkdir()
    results = {n: JobResult(jobs[n], _fake_run(tmp_path / "again", n, *v), "done")
               for n, v in values.items()}
    rows = {r["model"]: r for r in collect(results, "synth_val")}
    assert rows["bevdistill"]["beats_baseline"] is False and "beats_baseline" not in rows["teacher"]

    def beats(kd0, kd1, base0=(0.20, 0.30), base1=(0.22, 0.32), teacher=True) -> dict:
        vals = {"baseline-s0": (*base0, 1.0), "baseline-s1": (*base1, 1.0),
                "bevdistill-s0": (*kd0, 1.0), "bevdistill-s1": (*kd1, 1.0)}
        if teacher:
            vals["teacher"] = (0.6, 0.6, 1.0)
        root = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
        root.mkdir()
        res = {n: JobResult(jobs[n], _fake_run(root, n, *v), "done") for n, v in vals.items()}
        return {r["model"]: r for r in collect(res, "synth_val")}["bevdistill"]

    # mAP clears the spread, NDS does not: both are needed
    assert beats((0.40, 0.30), (0.42, 0.30))["beats_baseline"] is False
    # the gain (+0.05) exceeds the method's spread (0.01) but not the baseline's (0.10): no
    assert beats((0.30, 0.40), (0.32, 0.42), base0=(0.16, 0.20), base1=(0.36, 0.40)
                 )["beats_baseline"] is False
    # a gain equal to the spread is not more than it (values exact in binary): no; above: yes
    wide = {"base0": (0.25, 0.25), "base1": (0.75, 0.75)}  # mean 0.5, spread 0.25
    assert beats((0.75, 0.75), (0.75, 0.75), **wide)["beats_baseline"] is False
    assert beats((0.8125, 0.8125), (0.8125, 0.8125), **wide)["beats_baseline"] is True
    # the step-time ratios and the verdict do not need a teacher row (gap closed does);
    # without an interleaved measurement there is no table ratio, only the runs' own
    row = beats((0.40, 0.50), (0.42, 0.52), teacher=False)
    assert row["beats_baseline"] is True and row["train_step_time_ratio"] == pytest.approx(1.0)
    assert "gap_closed" not in row and "step_time_ratio" not in row
    # as many seeds as the baseline but another one (0, 2 against 0, 1): no verdict
    two = {j.name: j for j in plan(3, ("bevdistill",), False, ())}
    root = tmp_path / "other_seeds"
    root.mkdir()
    res = {n: JobResult(two[n], _fake_run(root, n, *v), "done") for n, v in {
        "baseline-s0": (0.20, 0.30, 1.0), "baseline-s1": (0.22, 0.32, 1.0),
        "bevdistill-s0": (0.40, 0.50, 1.0), "bevdistill-s2": (0.42, 0.52, 1.0)}.items()}
    row = {r["model"]: r for r in collect(res, "synth_val")}["bevdistill"]
    assert row["seeds"] == [0, 2] and "beats_baseline" not in row


def test_the_report_adds_up_where_top_detections_land_over_the_seeds(tmp_path):
    jobs = {j.name: j for j in plan(2, ("bevdistill",), False, ())}
    results = {n: JobResult(jobs[n], _fake_run(tmp_path, n, 0.2, 0.3, 1.0), "done")
               for n in ("baseline-s0", "baseline-s1", "bevdistill-s0", "bevdistill-s1")}
    found = {"baseline-s0": {"barrier": {"window": 10, "tp": 8, "duplicate": 1,
                                         "background": 0, "traffic_cone": 1}},
             "bevdistill-s0": {"barrier": {"window": 10, "tp": 4, "duplicate": 0,
                                           "background": 1, "traffic_cone": 4, "car": 1}},
             "bevdistill-s1": {"barrier": {"window": 10, "tp": 5, "duplicate": 1,
                                           "background": 0, "traffic_cone": 3, "car": 1}}}
    for name, sources in found.items():  # baseline-s1 predates confusion.json
        (tmp_path / name / "eval" / "synth_val" / "confusion.json").write_text(
            json.dumps(sources))
    rows = {r["model"]: r for r in collect(results, "synth_val")}
    assert rows["bevdistill"]["top_sources"]["barrier"] == {
        "window": 20, "tp": 9, "duplicate": 1, "background": 1, "traffic_cone": 7, "car": 2}
    assert rows["bevdistill"]["top_sources_runs"] == 2 and rows["baseline"]["top_sources_runs"] == 1
    md = markdown(list(rows.values()), "tiny", "abc", "bevkd bench", 2)
    cells = {line.split(" | ")[0][2:]: line.split(" | ") for line in md.splitlines()
             if line.startswith("| baseline | 1 |") or line.startswith("| bevdistill | 2 |")}
    barrier = 2 + DETECTION_CLASSES.index("barrier")
    # seeds added up: 9 of 20 on other classes, 7 of 20 on cones (10 % or more: named); the
    # baseline's one run: 1 of 10 on cones, at the 10 % bar, named
    assert cells["bevdistill"][barrier].rstrip(" |") == "45 (traffic_cone 35)"
    assert cells["baseline"][barrier].rstrip(" |") == "10 (traffic_cone 10)"
    assert cells["bevdistill"][2] == "—"  # car: no counts recorded


def test_pretrained_backbone_is_made_once_and_reused(tmp_path, capsys):
    from bevkd.bench.command import BenchSpec, backbone_pretraining

    from bevkd.bench.plan import CONFIGS
    from bevkd.engine.config import load_experiment

    preset_size = list(load_experiment(os.path.join(CONFIGS, "student", "bevdepth.yaml"),
                                       "tiny").data.image.final_size)
    assert preset_size != [64, 176]

    def make(pre):  # writes what `bevkd pretrain` records, from the command's own overrides
        cmd = pre.cmd
        open(pre.out, "wb").close()
        steps = int(cmd[cmd.index("--steps") + 1])
        size = [64, 176] if "data.image.final_size=[64,176]" in cmd else preset_size
        open(pre.out + ".json", "w").write(json.dumps(
            {"steps": steps, "image_size": size, "backbone_depth": 18,
             "threads": int(pre.cmd[-1].split("=")[1])}))

    spec = BenchSpec(pretrain_steps=7, threads=2, parallel=3, pretrain_threads=4)
    small = ("data.image.final_size=[64,176]", "data.image.resize_lim=[0.21,0.26]")
    path, pre = backbone_pretraining("tiny", "/data", str(tmp_path), spec, small, parallel=3)
    assert path == pre.out == str(tmp_path / "backbone.pth")
    # the preset's 4 threads, on two of the 3 slots (2 threads each): the third is free for
    # the LiDAR teacher
    assert pre.log == str(tmp_path / "backbone.log") and (pre.slots, pre.threads) == (2, 4)
    cmd = pre.cmd
    assert cmd[cmd.index("pretrain") - 2:cmd.index("pretrain")] == ["-m", "bevkd.cli"]
    assert cmd[cmd.index("--steps") + 1] == "7" and cmd[cmd.index("--out") + 1] == path
    # the bench's overrides reach the pretraining, and its thread count comes last
    sets = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--set"]
    assert sets == [*small, "train.threads=4"]
    # the thread count is the preset's whatever the slots: on one slot (--parallel 1) too;
    # without bench.pretrain_threads, one training's threads on one slot
    one = backbone_pretraining("tiny", "/data", str(tmp_path), spec, small, 1)[1]
    assert (one.slots, one.threads, one.cmd[-1]) == (1, 4, "train.threads=4")
    default = backbone_pretraining("tiny", "/data", str(tmp_path),
                                   BenchSpec(pretrain_steps=7, threads=2, parallel=3), small, 3)
    assert (default[1].slots, default[1].threads) == (1, 2)
    assert "--resume" not in cmd
    # a pretraining stopped with an earlier bench left its checkpoint: resumed
    open(path + ".ckpt", "wb").close()
    assert "--resume" in backbone_pretraining("tiny", "/data", str(tmp_path), spec, small, 2)[1].cmd
    os.remove(path + ".ckpt")
    make(pre)
    assert backbone_pretraining("tiny", "/data", str(tmp_path), spec, small, 2) == (path, None)
    # weights pretrained for another number of steps or another image size are neither reused
    # nor overwritten
    from dataclasses import replace

    from bevkd.errors import BevkdError

    with pytest.raises(BevkdError, match="pretrained for 7 steps, this bench asks for 9"):
        backbone_pretraining("tiny", "/data", str(tmp_path), replace(spec, pretrain_steps=9),
                             small, 2)
    with pytest.raises(BevkdError, match=re.escape(f"image_size [64, 176] (now {preset_size})")):
        backbone_pretraining("tiny", "/data", str(tmp_path), spec, (), 2)
    # nor pretrained with another thread count: its weights differ in their last bits
    with pytest.raises(BevkdError, match="pretrained with 4 threads, this preset pretrains "
                                         "with 2"):
        backbone_pretraining("tiny", "/data", str(tmp_path), replace(spec, pretrain_threads=2),
                             small, 2)
    # a GPU pretraining's weights do not depend on its CPU threads
    record = json.loads(open(path + ".json").read())
    open(path + ".json", "w").write(json.dumps({**record, "device": "cuda"}))
    assert backbone_pretraining("tiny", "/data", str(tmp_path), replace(spec, pretrain_threads=2),
                                small, 2) == (path, None)
    # a record from before the thread count was recorded is taken as made with the preset's,
    # and the bench says so
    capsys.readouterr()
    del record["threads"]
    open(path + ".json", "w").write(json.dumps(record))
    assert backbone_pretraining("tiny", "/data", str(tmp_path), replace(spec, pretrain_threads=2),
                                small, 2) == (path, None)
    assert "does not record the threads it was pretrained with" in capsys.readouterr().out


def test_bench_generates_the_dataset_where_data_names_none(tmp_path, monkeypatch):
    from bevkd.bench.command import BenchSpec, bench_dataset

    made = []

    def fake_generate(cfg, progress=True):
        made.append(cfg)
        os.makedirs(os.path.join(cfg.out, cfg.version))

    monkeypatch.setattr("bevkd.data.synth.writer.generate_dataset", fake_generate)
    spec = BenchSpec(scenes=3, samples_per_scene=4, width=160, height=90)
    # a --data folder that does not exist yet gets the preset's dataset, before any training
    where = tmp_path / "d"
    assert bench_dataset(str(where), str(tmp_path / "runs"), spec) == str(where)
    cfg = made[0]
    assert (cfg.out, cfg.scenes, cfg.samples_per_scene, cfg.width, cfg.height) == (
        str(where), 3, 4, 160, 90)
    # one that holds a dataset is read as it is, also by a relative path; none given: RUNS/synth
    monkeypatch.chdir(tmp_path)
    assert bench_dataset("d", str(tmp_path / "runs"), spec) == str(where) and len(made) == 1
    assert bench_dataset(None, str(tmp_path / "runs"), spec) == str(tmp_path / "runs" / "synth")
    assert made[1].out == str(tmp_path / "runs" / "synth")
    # a report never generates: it needs the data its runs were trained on
    with pytest.raises(BevkdError, match="no SynthScenes dataset at .*empty.*a report needs"):
        bench_dataset(str(tmp_path / "empty"), str(tmp_path / "runs"), spec, train=False)
    assert len(made) == 2


def test_bench_refuses_a_data_folder_that_holds_something_else(tmp_path, capsys):
    from bevkd.bench.command import BenchSpec, bench_dataset

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(BevkdError, match="exists and is not a SynthScenes dataset"):
        bench_dataset(str(tmp_path), str(tmp_path / "runs"), BenchSpec(scenes=1))
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]  # nothing written, nothing removed
    with pytest.raises(BevkdError, match="--data .*notes.txt is a file: give the dataset's "
                                         "folder"):
        bench_dataset(str(tmp_path / "notes.txt"), str(tmp_path / "runs"), BenchSpec(scenes=1))
    assert "generate" not in capsys.readouterr().out  # refused before it says it generates


def test_bench_generates_again_a_dataset_whose_generation_was_cut_short(tmp_path, monkeypatch,
                                                                        capsys):
    from bevkd.bench.command import BenchSpec, bench_dataset
    from bevkd.data.synth.writer import INCOMPLETE

    made = []

    def fake_generate(cfg, progress=True):
        made.append(cfg.out)
        os.remove(os.path.join(cfg.out, INCOMPLETE))

    monkeypatch.setattr("bevkd.data.synth.writer.generate_dataset", fake_generate)
    cut = tmp_path / "d"
    (cut / "samples").mkdir(parents=True)
    (cut / "v1.0-synth").mkdir()  # even with tables: the marker says they are not the last
    (cut / INCOMPLETE).write_text("")
    with pytest.raises(BevkdError, match="its generation cut short"):
        bench_dataset(str(cut), str(tmp_path / "runs"), BenchSpec(scenes=1), train=False)
    assert bench_dataset(str(cut), str(tmp_path / "runs"), BenchSpec(scenes=1)) == str(cut)
    assert made == [str(cut)] and "was cut short: generating it again" in capsys.readouterr().out


def test_report_only_trains_nothing_and_names_the_rows_not_trained(tmp_path, monkeypatch,
                                                                   capsys):
    import subprocess

    from bevkd.bench import command
    from bevkd.errors import BevkdError

    def no_process(*args, **kwargs):
        raise AssertionError("a report must not start a training or a pretraining")

    monkeypatch.setattr(command, "git_commit", lambda: "abc")
    monkeypatch.setattr(subprocess, "run", no_process)
    monkeypatch.setattr(subprocess, "Popen", no_process)
    data, runs, out = tmp_path / "data", tmp_path / "runs", tmp_path / "out"
    with pytest.raises(BevkdError, match="no SynthScenes dataset"):
        command.run_bench("tiny", str(out), str(runs), str(data), 1, ("bevdistill",), False, (),
                          train=False)
    (data / "v1.0-synth").mkdir(parents=True)
    res = command.run_bench("tiny", str(out), str(runs), str(data), 1, ("bevdistill",), False,
                            (), train=False)
    assert res["missing"] == ["teacher", "baseline-s0", "bevdistill-s0"] and res["rows"] == []
    assert res["ablation_seeds"] == 1  # the preset's, capped at this table's one seed
    assert res["pretrain_threads"] == 2  # the tiny preset's, which its backbone's bits hold
    with pytest.raises(BevkdError, match="unknown ablation.*asd_gama0"):  # not a KeyError
        command.run_bench("tiny", str(out), str(runs), str(data), 1, ("asd",), False,
                          ("asd_gama0",), train=False)
    md = (out / "tiny.md").read_text()
    assert "Not trained yet (a table of the runs finished so far): teacher, baseline-s0, " \
           "bevdistill-s0." in md
    # the note names the preset's student-only overrides themselves
    sets = command.bench_spec("tiny").student_sets
    assert sets and f"`bench.student_sets`: {', '.join(sets)}." in md
    # the preset's method overrides, of the rows this table has only
    tuned = command.bench_spec("tiny").overrides
    assert f"`bench.overrides`: bevdistill: {', '.join(tuned['bevdistill'])}." in md
    assert "dualdistill:" not in md and "crd_temperature" not in md
    assert not runs.exists()
    # a table there already is not replaced by a report of no run (a mistyped --runs)
    (out / "tiny.md").write_text("the table of an earlier bench")
    with pytest.raises(BevkdError, match=r"no finished run of this table in .*runs_typo: "
                                         r".*tiny.md is left as it is"):
        command.run_bench("tiny", str(out), str(tmp_path / "runs_typo"), str(data), 1,
                          ("bevdistill",), False, (), train=False)
    assert (out / "tiny.md").read_text() == "the table of an earlier bench"
    # an --archive that does not exist is said (a report makes it, of the finished runs)
    with pytest.raises(BevkdError, match="no finished run"):
        command.run_bench("tiny", str(out), str(runs), str(data), 1, ("bevdistill",), False, (),
                          train=False, archive=str(tmp_path / "archive_new"))
    assert "archive_new does not exist: nothing to restore" in capsys.readouterr().out


def test_a_preset_file_of_ones_own_names_the_table_by_its_stem(tmp_path, monkeypatch):
    """``--preset my/wide.yaml`` (a user's preset beside the shipped ones): the table is
    ``wide.md`` / ``.json``, the default runs folder ``runs/bench_wide``, and the trainings'
    commands name the file by its absolute path."""
    from bevkd import cli
    from bevkd.bench import command
    from bevkd.bench.runner import command as train_command
    from bevkd.engine.config import preset_name

    tiny = os.path.abspath("configs/presets/tiny.yaml")
    (tmp_path / "my").mkdir()
    (tmp_path / "my" / "wide.yaml").write_text(f"base: {tiny}\nbench: {{seeds: 1}}\n")
    (tmp_path / "data" / "v1.0-synth").mkdir(parents=True)
    monkeypatch.setattr(command, "git_commit", lambda: "abc")
    monkeypatch.chdir(tmp_path)
    assert preset_name("my/wide.yaml") == "wide" and preset_name("tiny") == "tiny"
    res = command.run_bench("my/wide.yaml", "out", "runs", "data", None, ("bevdistill",), False,
                            (), train=False)
    assert res["seeds"] == 1 and res["preset"] == str(tmp_path / "my" / "wide.yaml")
    assert sorted(os.listdir("out")) == ["wide.json", "wide.md"]
    assert (tmp_path / "out" / "wide.md").read_text().startswith("# bevkd bench --preset wide")
    job = next(j for j in plan(1, ("bevdistill",), False, ()) if j.name == "baseline-s0")
    cmd = train_command(job, res["preset"], "data", "runs", 1)
    assert cmd[cmd.index("--preset") + 1] == str(tmp_path / "my" / "wide.yaml")
    seen = {}
    monkeypatch.setattr(command, "run_bench", lambda *a, **k: seen.update(runs=a[2]) or {
        "failed": []})
    (tmp_path / "out2").mkdir()
    (tmp_path / "out2" / "wide.md").write_text("# table")
    assert cli.main(["bench", "--preset", "my/wide.yaml", "--out", "out2", "--report-only"]) == 0
    assert seen["runs"] == os.path.join("runs", "bench_wide")


def test_finished_ablation_runs_of_more_seeds_join_the_table(tmp_path):
    """A table of 2 seeds with ablations on seed 0: asd_gamma0's seed-1 run, finished in the
    runs folder, is read; asd_box_mask's seed-1 run, not finished, is not; nothing of seed 2."""
    from bevkd.bench.command import finished_ablation_seeds
    from bevkd.bench.plan import plan

    names = ("asd_gamma0", "asd_box_mask")
    jobs = plan(2, ("asd",), False, names, ablation_seeds=1)
    every = plan(2, ("asd",), False, names, ablation_seeds=2)
    for name, done in (("asd_gamma0-s1", True), ("asd_box_mask-s1", False),
                       ("asd-s1", True)):
        run = tmp_path / name
        (run / "eval" / "synth_val").mkdir(parents=True)
        if done:
            (run / "eval" / "synth_val" / "metrics.json").write_text("{}")
            (run / "timing.json").write_text("{}")
    more = finished_ablation_seeds(jobs, every, str(tmp_path))
    assert [j.name for j in more] == ["asd_gamma0-s1"]
    assert more[0] == next(j for j in every if j.name == "asd_gamma0-s1")  # the bench's job
    assert more[0].seed == 1 and "train.seed=1" in more[0].overrides
    assert finished_ablation_seeds(every, every, str(tmp_path)) == []


def test_student_sets_note_names_what_a_command_line_set_replaced():
    from bevkd.bench import command

    sets = ("train.epochs=12", "train.eval_every=4")
    assert command.student_sets_note(sets, ()) == (
        "Every student run (baseline, methods, ablations), not the teachers, also takes the "
        "preset's `bench.student_sets`: train.epochs=12, train.eval_every=4.")
    # a --set train.epochs=4 comes later on every command line and wins
    note = command.student_sets_note(sets, ("train.epochs=4", "data.image.final_size=[64,176]"))
    assert note == ("Every student run (baseline, methods, ablations), not the teachers, also "
                    "takes the preset's `bench.student_sets`: train.eval_every=4. This "
                    "command's `--set` replaces the preset's `bench.student_sets` "
                    "train.epochs=12 for every run.")
    assert command.student_sets_note(sets, ("train.epochs=4", "train.eval_every=1")) == (
        "This command's `--set` replaces the preset's `bench.student_sets` train.epochs=12, "
        "train.eval_every=4 for every run.")


def _row(model, maps, ndss, base=(0.20, 0.30), beats=True, gap=None, latency=1.0):
    return {"model": model, "mAP": list(maps), "NDS": list(ndss),
            "delta_mAP": float(np.mean(maps)) - base[0],
            "delta_NDS": float(np.mean(ndss)) - base[1],
            "beats_baseline": beats, "gap_closed": gap, "latency_ratio": latency}


def test_acceptance_checks_the_table():
    from bevkd.bench.plan import METHODS
    from bevkd.bench.report import acceptance

    base = {"model": "baseline", "mAP": [0.19, 0.21], "NDS": [0.29, 0.31], "latency_ratio": 1.0}
    methods = [_row(m, [0.25 + 0.01 * i] * 2, [0.35] * 2, gap=0.05 * (i + 1))
               for i, m in enumerate(METHODS)]                       # best single: mAP 0.28
    composite = _row("composite", [0.30, 0.30], [0.36, 0.36], gap=0.45, latency=1.03)
    checks = {c["check"].split(" ")[1]: c for c in acceptance([base, *methods, composite])}
    assert [c["passed"] for c in checks.values()] == [True] * 5
    assert "+2.0 mAP, +1.0 NDS" in checks["composite"]["detail"]
    # the best single method's share beside it (gaps 5..20 %: the last method's 20 %)
    assert checks["best"]["detail"] == f"composite 45% (best single method: {METHODS[-1]} 20%)"

    # a method inside the spread, a composite below the best single on NDS, a gap under 30 %
    # and a latency ratio out of tolerance each fail their check, not the others
    methods[0]["beats_baseline"] = False
    composite.update(NDS=[0.34, 0.34], gap_closed=0.29, latency_ratio=1.08)
    checks = {c["check"].split(" ")[1]: c for c in acceptance([base, *methods, composite])}
    assert [c["passed"] for c in checks.values()] == [True, False, False, False, False]
    assert "-1.0 NDS" in checks["composite"]["detail"]

    # the composite's second seed not trained yet: every verdict waits, the numbers show
    checks = acceptance([base, *methods, dict(composite, mAP=[0.30], NDS=[0.34])])
    assert checks[0]["passed"] is False
    assert checks[0]["detail"] == "2 seed(s); not all of seeds 0, 1 for composite"
    assert [c["passed"] for c in checks[1:]] == [None] * 4
    # as many seeds but other ones (seeds 0, 2 against the baseline's 0, 1): the means hold
    # other seeds' luck, so no verdict either
    rows = [dict(base, seeds=[0, 1]), *(dict(r, seeds=[0, 1]) for r in methods),
            dict(composite, seeds=[0, 2])]
    checks = acceptance(rows)
    assert checks[0]["detail"] == ("2 seed(s); not all of seeds 0, 1, 2 for "
                                   + ", ".join([*METHODS, "composite", "baseline"]))
    assert [c["passed"] for c in checks[1:]] == [None] * 4
    # a teacher no better than the baseline leaves no gap: the gap check fails, saying why
    flat = [dict(r, gap_closed=None) for r in (base, *methods, composite)]
    (gap,) = [c for c in acceptance([{"model": "teacher", "mAP": [0.18], "NDS": [0.3]}, *flat])
              if c["check"].startswith("the best method closes")]
    assert gap["passed"] is False and "the teacher's mAP 18.0 is not above" in gap["detail"]
    assert checks[2]["detail"].startswith("so far: vs the best single method")

    # the control (the baseline loaded again) at 0.91: that measurement's noise is 0.09, and a
    # student at 1.08 is within it; one at 1.10 is not
    base.update(latency_control_ratio=0.91)
    checks = acceptance([base, *methods, composite])
    assert checks[4]["passed"] is True and "the baseline loaded again 0.91, so ± 0.09" in (
        checks[4]["detail"])
    assert acceptance([base, *methods, dict(composite, latency_ratio=1.10)])[4]["passed"] is False
    # a control closer to 1.00 than the tolerance leaves the tolerance
    assert acceptance([dict(base, latency_control_ratio=0.99), *methods, composite]
                      )[4]["passed"] is False
    # the counted forward cost: equal passes it, one student's other FLOPs fail it whatever
    # the timing says
    cost = {"params": 12_383_028, "forward_flops": 15_374_490_612}
    base.update(cost)
    rows = [base, *[dict(r, **cost) for r in methods], dict(composite, **cost)]
    check = acceptance(rows)[4]
    assert check["passed"] is True
    assert check["detail"].endswith("the baseline's for all (12.38 M parameters, 15.37 GFLOPs)")
    rows[1] = dict(rows[1], forward_flops=15_374_490_613)
    check = acceptance(rows)[4]
    assert check["passed"] is False and check["detail"].endswith(
        f"forward cost differs from the baseline's for {METHODS[0]}")
    del base["latency_control_ratio"], base["params"], base["forward_flops"]

    # one seed, a method not trained yet, no latency: unknown, not passed
    one = [dict(base, mAP=[0.2], NDS=[0.3]), *[dict(r, beats_baseline=None) for r in methods[:2]]]
    checks = acceptance(one)
    assert checks[0]["passed"] is False and checks[1]["passed"] is None
    assert checks[2]["passed"] is None


def test_curves_plot_the_seed0_students_with_their_last_validation(tmp_path, monkeypatch):
    from bevkd.bench import command
    from bevkd.bench.plan import Job

    results, drawn = {}, {}
    for name, val in (("baseline-s0", "0.0508,0.2143"), ("asd-s0", "0.0596,0.2155"),
                      ("asd-s1", "0.07,0.25"), ("teacher", "0.17,0.28")):
        run = tmp_path / name
        (run / "logs").mkdir(parents=True)
        (run / "logs" / "metrics.csv").write_text(
            "epoch,step,train/heatmap_step,val/mAP,val/NDS\n0,0,9.0,,\n0,1,8.0,,\n"
            f"0,1,,{val}\n")
        results[name] = JobResult(Job(name, name.split("-")[0], "c.yaml"), str(run), "done")
    monkeypatch.setattr("bevkd.viz.curves.loss_curves",
                        lambda runs, out, title, subtitles: drawn.update(runs=runs, sub=subtitles))
    command._curves(results, set(results), str(tmp_path / "c.png"))
    # seed 0 of the students only, the baseline first; the teacher and seed 1 are not drawn
    assert list(drawn["runs"]) == ["baseline", "asd"]
    assert drawn["sub"] == {"baseline": "final val mAP 5.08 / NDS 21.43",
                            "asd": "final val mAP 5.96 / NDS 21.55"}
    assert drawn["runs"]["asd"]["heatmap"][0].tolist() == [0, 1]


def test_bev_picture_draws_the_lowest_seed_with_detections_and_names_what_it_cannot(tmp_path):
    """A run is drawn from its detections of the picture's sample: its evaluation's results,
    or the archive's copy of that sample (bevkd.bench.picture); a checkpoint alone is not."""
    from bevkd.bench import command
    from bevkd.bench.picture import SAMPLE_FILE
    from bevkd.bench.plan import Job

    def results(weights: set[str], status: dict[str, str] | None = None, more=()):
        out, root = {}, tmp_path / str(len(list(tmp_path.iterdir())))
        for i, name in enumerate(("teacher", "baseline-s0", "baseline-s1", "asd-s0",
                                  "composite-s0", "composite-s1", "composite_response_bbox-s0",
                                  *more)):
            run = root / name
            (run / "checkpoints").mkdir(parents=True, exist_ok=True)  # weights count for nothing
            (run / "checkpoints" / "last.ckpt").write_text("w")
            if name in weights:  # both sources of the sample's detections
                (run / "eval" / "synth_val").mkdir(parents=True)
                (run / "eval" / "synth_val" / ("results.json", SAMPLE_FILE)[i % 2]).write_text(
                    "{}")
            model, _, seed = name.partition("-s")
            out[name] = JobResult(Job(name, model, "c.yaml", int(seed or 0)), str(run),
                                  (status or {}).get(name, "done"))
        return out

    # a bench that trained everything on this machine: seed 0 of each, the composite first
    every = {"teacher", "baseline-s0", "baseline-s1", "asd-s0", "composite-s0", "composite-s1",
             "composite_response_bbox-s0"}
    picks, undrawn = command.bev_picks(results(every))
    assert list(picks) == ["teacher", "baseline-s0", "composite-s0"] and undrawn == []
    assert picks["composite-s0"] == str(tmp_path / "0" / "composite-s0")
    # seeds 0 restored from an archive that kept no sample: seed 1 is drawn; the baseline
    # restored so on both seeds is named, not drawn; an ablation sharing the prefix is no seed
    picks, undrawn = command.bev_picks(results({"teacher", "composite-s1",
                                                "composite_response_bbox-s0"}))
    assert list(picks) == ["teacher", "composite-s1"] and undrawn == ["baseline"]
    # a failed composite run is not drawn, and the next method with a finished run is
    picks, undrawn = command.bev_picks(results(
        every, {"composite-s0": "failed", "composite-s1": "missing"}))
    assert list(picks) == ["teacher", "baseline-s0", "asd-s0"] and undrawn == []
    # the composite without detections on every seed: a method that has them is drawn
    # in its place, and the composite named
    picks, undrawn = command.bev_picks(results({"teacher", "baseline-s1", "asd-s0"}))
    assert list(picks) == ["teacher", "baseline-s1", "asd-s0"] and undrawn == ["composite"]
    # ... the method of the best mean mAP in the table among those with detections (without
    # the table's means, the first of METHODS)
    weights = {"teacher", "baseline-s1", "asd-s0", "bevdistill-s0"}
    for means, drawn in (({"asd": 0.05, "bevdistill": 0.09, "composite": 0.12}, "bevdistill-s0"),
                         ({"asd": 0.09, "bevdistill": 0.05, "composite": 0.12}, "asd-s0"),
                         (None, "bevdistill-s0")):
        picks, undrawn = command.bev_picks(results(weights, more=("bevdistill-s0",)), means)
        assert list(picks) == ["teacher", "baseline-s1", drawn] and undrawn == ["composite"]
    # a better method without detections here is named beside the composite
    picks, undrawn = command.bev_picks(results({"teacher", "baseline-s1", "asd-s0"},
                                               more=("bevdistill-s0",)),
                                       {"asd": 0.05, "bevdistill": 0.09})
    assert list(picks)[-1] == "asd-s0" and undrawn == ["composite", "bevdistill"]
    # no distilled run with detections at all: the preferred one is named
    picks, undrawn = command.bev_picks(results({"teacher", "baseline-s1"}))
    assert list(picks) == ["teacher", "baseline-s1"] and undrawn == ["composite"]


def test_timing_takes_each_rows_lowest_seed_with_weights_else_its_lowest_seed(tmp_path):
    """A distillation step's cost depends on the weights: a row whose seed 0 was restored
    without a checkpoint is timed on a later seed trained here."""
    from bevkd.bench import command
    from bevkd.bench.plan import Job

    weights = {"teacher", "baseline-s1", "baseline-s2", "composite-s0", "composite-s1",
               "dualdistill-s2"}
    results = {}
    for name in ("teacher", "baseline-s0", "baseline-s1", "baseline-s2", "asd-s0", "asd-s1",
                 "composite-s0", "composite-s1", "dualdistill-s0", "dualdistill-s1",
                 "dualdistill-s2", "dualdistill_T1.0-s0"):
        run = tmp_path / name
        (run / "checkpoints").mkdir(parents=True)
        if name in weights:
            (run / "checkpoints" / "last.ckpt").write_text("w")
        model, _, seed = name.partition("-s")
        status = "failed" if name == "dualdistill-s0" else "done"
        results[name] = JobResult(Job(name, model, "c.yaml", int(seed or 0)), str(run), status)
    timed = command.timing_runs(results)
    assert {m: os.path.basename(r) for m, r in timed.items()} == {
        "baseline": "baseline-s1", "asd": "asd-s0", "composite": "composite-s0",
        "dualdistill": "dualdistill-s2", "dualdistill_T1.0": "dualdistill_T1.0-s0"}
    note = command.timing_note(timed)
    assert "with their trained weights: baseline-s1, composite-s0, dualdistill-s2;" in note
    assert note.endswith("the teachers' trained ones (those here): asd-s0, dualdistill_T1.0-s0.")


def test_ablations_are_paired_with_their_methods_run_of_the_same_seed(tmp_path):
    jobs = {j.name: j for j in plan(2, ("dualdistill",), False, ("dualdistill_T1.0",))}
    values = {"baseline-s0": (0.20, 0.30, 1.0), "baseline-s1": (0.24, 0.30, 1.0),
              "dualdistill-s0": (0.30, 0.40, 1.5), "dualdistill-s1": (0.20, 0.36, 1.5),
              "dualdistill_T1.0-s0": (0.27, 0.43, 1.5)}
    # seed 1 finishes first: the row still lists the seeds in order and pairs by seed
    results = {n: JobResult(jobs[n], _fake_run(tmp_path, n, *values[n]), "done")
               for n in sorted(values, key=lambda n: not n.endswith("s1"))}
    rows = collect(results, "synth_val")
    assert {r["model"]: r["seeds"] for r in rows}["dualdistill"] == [0, 1]
    (a,) = ablation_pairs(rows)
    assert a["ablation"] == "dualdistill_T1.0" and a["method"] == "dualdistill"
    assert a["setting"] == ["distill.methods.0.args.crd_temperature=1.0"] and a["seeds"] == [0]
    # against dualdistill-s0 (0.30 / 0.40), not the method's mean (0.25 / 0.38)
    assert a["delta_mAP"] == pytest.approx(-0.03) and a["delta_NDS"] == pytest.approx(0.03)
    assert a["method_spread_mAP"] == pytest.approx(0.05)
    assert a["beyond_spread"] == {"mAP": False, "NDS": True}
    md = markdown(rows, "tiny", "abc", "bevkd bench", 2)
    assert ("| dualdistill_T1.0 | dualdistill with `distill.methods.0.args.crd_temperature=1.0` "
            "| 0 | 27.0 | 43.0 | -3.0 | +3.0 | 5.0 / 2.0 |") in md
    # an ablation seed its method lacks stays out of the Δ: only seed 1 pairs here
    two = [dict(r, seeds=[0, 1], mAP=[0.27, 0.18], NDS=[0.43, 0.38])
           if r["model"] == "dualdistill_T1.0" else
           dict(r, seeds=[1], mAP=[0.20], NDS=[0.36]) if r["model"] == "dualdistill" else r
           for r in rows]
    (c,) = ablation_pairs(two)
    assert c["delta_mAP"] == pytest.approx(-0.02) and c["delta_NDS"] == pytest.approx(0.02)
    assert c["mAP"] == pytest.approx(0.225)  # the row itself: the mean of its own seeds
    # no run of the method on that seed: the ablation is listed without a paired Δ
    (b,) = ablation_pairs([r for r in rows if r["model"] != "dualdistill"])
    assert "delta_mAP" not in b
    assert "Ablations" not in markdown([r for r in rows if r["model"] != "dualdistill_T1.0"],
                                       "tiny", "abc", "bevkd bench", 2)


def test_pairs_whose_runs_learned_from_other_teacher_trainings_are_marked(tmp_path):
    """A run restored from an archive learned from teachers since trained again: the report
    reads which checkpoints each run recorded and marks a pair whose two runs differ."""
    jobs = {j.name: j for j in plan(2, ("dualdistill",), False, ("dualdistill_T1.0",),
                                    ablation_seeds=2)}
    old, new = {"teacher": [6380038, 1]}, {"teacher": [6379974, 2]}
    backbone = {"model.args.backbone_weights": [44, 1]}
    read = {"baseline-s0": backbone, "baseline-s1": backbone,
            "dualdistill-s0": {**old, **backbone}, "dualdistill-s1": {**new, **backbone},
            "dualdistill_T1.0-s0": {**new, **backbone}, "dualdistill_T1.0-s1": {**new,
                                                                             **backbone}}
    results = {}
    for name, inputs in read.items():
        run = _fake_run(tmp_path, name, 0.3, 0.4, 1.0)
        (tmp_path / name / "bench_job.json").write_text(json.dumps(
            {"signature": ["train"], "inputs": {"data": [["a.json", 1, 3]], **inputs}}))
        results[name] = JobResult(jobs[name], run, "done")
    rows = collect(results, "synth_val")
    by = {r["model"]: r for r in rows}
    assert by["dualdistill"]["learned_from"] == [{**old, **backbone}, {**new, **backbone}]
    (a,) = ablation_pairs(rows)
    assert a["seeds"] == [0, 1] and a["apart"] == [0]  # seed 1: the same teacher training
    # the baseline reads the same backbone as both: no seed apart from it
    assert by["dualdistill"]["paired_apart"] == []
    md = markdown(rows, "tiny", "abc", "bevkd bench", 2)
    assert "| 0†, 1 |" in md and "†: the ablation's run of that seed and its method's" in md
    # another backbone pretraining sets the baseline's pair apart too, and the table says so
    (tmp_path / "baseline-s1" / "bench_job.json").write_text(json.dumps(
        {"inputs": {"model.args.backbone_weights": [44, 9]}}))
    by = {r["model"]: r for r in collect(results, "synth_val")}
    assert by["dualdistill"]["paired_apart"] == [1]
    assert "(seed 1: the two runs learned from different trainings" in markdown(
        list(by.values()), "tiny", "abc", "bevkd bench", 2)
    # runs without the record (older benches) are never marked
    for name in read:
        (tmp_path / name / "bench_job.json").unlink()
    (a,) = ablation_pairs(collect(results, "synth_val"))
    assert a["apart"] == [] and "†" not in markdown(collect(results, "synth_val"), "tiny",
                                                    "abc", "bevkd bench", 2)


def test_cli_passes_ablation_seeds_and_the_archive_to_the_bench(tmp_path, monkeypatch):
    from bevkd import cli
    from bevkd.bench import command as bench_command

    seen = {}

    def fake_run_bench(preset, out, runs, data, seeds, methods, composite, ablations, parallel,
                       extra, pretrain_steps, train, ablation_seeds, archive, retrain_apart,
                       timing_device):
        seen.update(seeds=seeds, ablation_seeds=ablation_seeds, train=train, archive=archive,
                    retrain_apart=retrain_apart, ablations=ablations, timing=timing_device)
        os.makedirs(out, exist_ok=True)
        open(os.path.join(out, f"{preset}.md"), "w").write("table\n")
        return {"failed": []}

    monkeypatch.setattr(bench_command, "run_bench", fake_run_bench)
    out = str(tmp_path / "out")
    assert cli.main(["bench", "--out", out, "--seeds", "3", "--ablation-seeds", "2",
                     "--report-only"]) == 0
    assert seen.pop("ablations") == tuple(ABLATIONS)
    assert seen == {"seeds": 3, "ablation_seeds": 2, "train": False, "archive": None,
                    "retrain_apart": False, "timing": "auto"}
    assert cli.main(["bench", "--out", out, "--report-only", "--timing-device", "cpu"]) == 0
    assert seen["timing"] == "cpu"
    with pytest.raises(SystemExit):  # argparse: invalid choice
        cli.main(["bench", "--out", out, "--timing-device", "tpu"])
    assert cli.main(["bench", "--out", out, "--archive", "keep", "--report-only"]) == 0
    assert seen["archive"] == "keep" and not seen["retrain_apart"]
    assert cli.main(["bench", "--out", out, "--archive", "keep", "--retrain-apart"]) == 0
    assert seen["retrain_apart"] and seen["train"]
    assert cli.main(["bench", "--out", out]) == 0 and seen["ablation_seeds"] is None
    with pytest.raises(SystemExit):  # argparse: "--ablation-seeds must be at least 1, got 0"
        cli.main(["bench", "--out", out, "--ablation-seeds", "0"])
    # a chosen set of ablation rows trains in the order given, a repeat once
    assert cli.main(["bench", "--out", out, "--ablations",
                     "dualdistill_T0.1,asd_gamma0,dualdistill_T0.1"]) == 0
    assert seen["ablations"] == ("dualdistill_T0.1", "asd_gamma0")
    assert cli.main(["bench", "--out", out, "--no-ablations"]) == 0 and seen["ablations"] == ()
    seen.clear()
    assert cli.main(["bench", "--out", out, "--ablations", "asd_gama0"]) == 2  # a typo
    assert cli.main(["bench", "--out", out, "--no-ablations", "--ablations", "asd_gamma0"]) == 2
    assert seen == {}  # neither reached the bench


def test_a_row_adopting_an_ablations_setting_reads_that_ablations_run(tmp_path):
    """Once a preset adopts an ablation's setting for the method's row, the ablation's finished
    run is the row's training (same command but for --out, same inputs): it is read, not
    retrained; a different input, command or an own folder of the job rules that out."""
    from bevkd.bench.runner import JOB_FILE, inputs, run_jobs, twin

    runs, data = tmp_path / "runs", tmp_path / "data"
    data.mkdir()
    t05 = "distill.methods.0.args.crd_temperature=0.5"
    old = {"dualdistill": ("distill.methods.0.args.fg_weight=6e-4",)}
    new = {"dualdistill": (*old["dualdistill"], t05)}
    abl = next(j for j in plan(1, ("dualdistill",), False, ("dualdistill_T0.5",), old)
               if j.name == "dualdistill_T0.5-s0")
    row = next(j for j in plan(1, ("dualdistill",), False, (), new) if j.name == "dualdistill-s0")
    assert abl.overrides == row.overrides
    done = _fake_run(runs, abl.name, 0.3, 0.4, 1.5)
    cmd = command(abl, "tiny", str(data), str(runs), threads=1)
    (runs / abl.name / JOB_FILE).write_text(json.dumps(
        {"signature": signature(cmd), "inputs": inputs(abl, cmd, str(runs), str(data))}))
    row_cmd = command(row, "tiny", str(data), str(runs), threads=1)
    stamps = inputs(row, row_cmd, str(runs), str(data))
    assert twin(row, row_cmd, stamps, str(runs), "synth_val") == done
    # the report (and a bench) takes it as the row's run
    res = run_jobs([row], "tiny", str(data), str(runs), 1, train=False, log=lambda m: None)
    assert res["dualdistill-s0"].status == "reused" and res["dualdistill-s0"].run == done
    # a folder whose bench record does not read is passed over, not a crash
    for bad in ({"signature": None}, {"signature": {"a": 1}}, {"signature": ["--out"]}):
        junk = runs / f"a_junk{len(str(bad))}"  # listed before the twin
        _fake_run(runs, junk.name, 0.1, 0.1, 1.0)
        (junk / JOB_FILE).write_text(json.dumps(bad))
    (runs / "a_file").write_text("x")
    assert twin(row, row_cmd, stamps, str(runs), "synth_val") == done
    # another setting (T = 1.0) is not the same training
    t10 = next(j for j in plan(1, ("dualdistill",), False, ("dualdistill_T1.0",), old)
               if j.name == "dualdistill_T1.0-s0")
    t10_cmd = command(t10, "tiny", str(data), str(runs), threads=1)
    assert twin(t10, t10_cmd, inputs(t10, t10_cmd, str(runs), str(data)), str(runs),
                "synth_val") is None
    # nor is it once the teacher it read was retrained
    (runs / "teacher" / "checkpoints").mkdir(parents=True)
    (runs / "teacher" / "checkpoints" / "last.ckpt").write_bytes(b"new")
    assert twin(row, row_cmd, inputs(row, row_cmd, str(runs), str(data)), str(runs),
                "synth_val") is None
    (runs / "teacher" / "checkpoints" / "last.ckpt").unlink()
    # a job with a folder of its own (e.g. half trained) keeps it: reported missing, not served
    (runs / "dualdistill-s0").mkdir()
    res = run_jobs([row], "tiny", str(data), str(runs), 1, train=False, log=lambda m: None)
    assert res["dualdistill-s0"].status == "missing"


def test_a_report_reads_the_runs_an_archive_holds(tmp_path, monkeypatch):
    """A new machine with the committed archive and no runs: `--report-only --archive`
    restores the finished runs and tabulates them, naming them in a note."""
    from bevkd.bench import command

    monkeypatch.setattr(command, "git_commit", lambda: "abc")
    data, runs, out, archive = (tmp_path / n for n in ("data", "runs", "out", "archive"))
    (data / "v1.0-synth").mkdir(parents=True)
    archive.mkdir()
    _fake_run(archive, "teacher", 0.60, 0.62, 1.0)
    _fake_run(archive, "bevdistill-s0", 0.30, 0.40, 1.5)
    # the teacher made twice, the second reproducing the first (bevkd.bench.reproduced)
    (archive / "reproduced.json").write_text(json.dumps({"teacher": [[[5, 1], [5, 2]]]}))
    out.mkdir()  # an earlier table's picture, of other models, is not left beside this one
    (out / "tiny_bev.png").write_bytes(b"an earlier table's")
    res = command.run_bench("tiny", str(out), str(runs), str(data), 1, ("bevdistill",), False,
                            (), train=False, archive=str(archive))
    assert res["reproduced"] == {"teacher": [[[5, 1], [5, 2]]]}
    assert [r["model"] for r in res["rows"]] == ["teacher", "bevdistill"]
    assert res["rows"][1]["mAP"] == [0.30]
    assert res["restored"] == ["teacher", "bevdistill-s0"] and res["missing"] == ["baseline-s0"]
    md = (out / "tiny.md").read_text()
    assert f"Restored from the archive `{archive}`" in md and ": teacher, bevdistill-s0." in md
    # runs archived before the archive kept the picture's sample: the report says so
    assert ("The BEV picture (`tiny_bev.png`) is not drawn (it needs two models' detections): "
            "no finished run of teacher, bevdistill holds its detections of the picture's "
            "sample here (restored from an archive made before it kept them, or trained before "
            "a training wrote them; `bevkd eval --ckpt RUN --data DATA` writes them for a run "
            "with weights).") in md
    assert not (out / "tiny_bev.png").exists()
    assert "reproduced an earlier making step for step" in md and ": teacher (2 makings)." in md
    assert sorted(os.listdir(runs)) == [".bench.lock", "bevdistill-s0", "reproduced.json",
                                        "teacher"]


def test_a_report_draws_the_bev_picture_from_the_samples_an_archive_kept(tmp_path, monkeypatch,
                                                                         synth_root):
    """Runs restored without weights or results are drawn from the archive's copy of their
    detections on the picture's sample (the val split's first), in that sample's ego frame."""
    from bevkd.bench import command
    from bevkd.bench.picture import SAMPLE_FILE, picture_sample
    from bevkd.structures.boxes import Boxes3D
    from bevkd.viz import bench as viz

    monkeypatch.setattr(command, "git_commit", lambda: "abc")
    runs, out, archive = (tmp_path / n for n in ("runs", "out", "archive"))
    info = picture_sample(synth_root)
    for name, x in (("teacher", 10.0), ("bevdistill-s0", 20.0)):
        _fake_run(archive, name, 0.3, 0.4, 1.0)
        ego = Boxes3D(np.array([[x, 0.0, 1.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0]]))
        t, size, rot, vel = ego.transform(info.global_T_ego).to_nuscenes()
        box = {"sample_token": info.token, "translation": t[0].tolist(),
               "size": size[0].tolist(), "rotation": rot[0].tolist(), "velocity": vel[0].tolist(),
               "detection_name": "car", "detection_score": 0.7, "attribute_name": ""}
        (archive / name / "eval" / "synth_val" / SAMPLE_FILE).write_text(
            json.dumps({"meta": {}, "results": {info.token: [box]}}))
    drawn = {}
    real = viz.bev_predictions
    monkeypatch.setattr(viz, "bev_predictions", lambda dets, *a, **k: (
        drawn.update(dets), real(dets, *a, **k))[1])
    res = command.run_bench("tiny", str(out), str(runs), synth_root, 1, ("bevdistill",), False,
                            (), train=False, archive=str(archive))
    assert res["restored"] == ["teacher", "bevdistill-s0"]
    assert list(drawn) == ["teacher", "bevdistill-s0"]
    for name, x in (("teacher", 10.0), ("bevdistill-s0", 20.0)):
        np.testing.assert_allclose(np.asarray(drawn[name].boxes.tensor)[0, :3], [x, 0, 1],
                                   atol=1e-6)
    assert (out / "tiny_bev.png").stat().st_size > 10_000
    assert "BEV picture" not in (out / "tiny.md").read_text()  # nothing it could not draw


def test_a_report_beside_a_running_bench_restores_nothing_into_its_folder(tmp_path,
                                                                          monkeypatch, capsys):
    from bevkd.bench import command, runner

    monkeypatch.setattr(command, "git_commit", lambda: "abc")
    data, runs, out, archive = (tmp_path / n for n in ("data", "runs", "out", "archive"))
    (data / "v1.0-synth").mkdir(parents=True)
    archive.mkdir()
    _fake_run(archive, "teacher", 0.60, 0.62, 1.0)
    runs.mkdir()
    with runner._lock(str(runs)):  # the running bench
        res = command.run_bench("tiny", str(out), str(runs), str(data), 1, ("bevdistill",),
                                False, (), train=False, archive=str(archive))
    assert res["restored"] == [] and res["rows"] == [] and not (runs / "teacher").exists()
    assert "another bench is using" in capsys.readouterr().out


def test_the_backbone_is_pretrained_only_when_a_camera_model_is_left_to_train(tmp_path,
                                                                             monkeypatch,
                                                                             capsys):
    """A new machine with every run in the archive: the bench restores them and spends no
    quarter hour pretraining a backbone no training will read; with a camera run left to
    train, it pretrains."""
    import subprocess

    from bevkd.bench import command

    def no_process(*args, **kwargs):
        raise AssertionError("nothing is left to train or pretrain")

    passed = []

    def run_jobs(jobs, *args, camera_extra=(), **kwargs):
        passed.append(camera_extra)
        return {}

    monkeypatch.setattr(command, "git_commit", lambda: "abc")
    monkeypatch.setattr(subprocess, "run", no_process)
    monkeypatch.setattr(command, "run_jobs", run_jobs)
    data, runs, out, archive = (tmp_path / n for n in ("data", "runs", "out", "archive"))
    (data / "v1.0-synth").mkdir(parents=True)
    for name in ("teacher", "baseline-s0", "bevdistill-s0"):
        _fake_run(archive, name, 0.3, 0.4, 1.0)

    def bench():
        return command.run_bench("tiny", str(out), str(runs), str(data), 1, ("bevdistill",),
                                 False, (), archive=str(archive))

    bench()
    weights = str(runs / "backbone.pth")
    assert passed == [(f"model.args.backbone_weights={weights}",)]
    assert command.camera_to_train(plan(1, ("bevdistill",), False, ()), str(runs)) == []
    shutil.rmtree(runs / "bevdistill-s0")  # to train again (say, its run was deleted)
    shutil.rmtree(archive / "bevdistill-s0")
    made = []
    monkeypatch.setattr(command, "backbone_pretraining",
                        lambda *a, **k: made.append(a) or (weights, None))
    bench()
    assert len(made) == 1 and passed[-1] == passed[0]
    # bevdistill-s0 reads the teacher's checkpoint, which the archive lacks: the teacher is
    # trained again too; the pretraining is offered tiny's 2 slots (it takes as many as its
    # threads need: backbone_pretraining)
    assert "to train again (restored earlier without the checkpoint a training needs): " \
           "teacher" in capsys.readouterr().out
    assert made[0][5] == 2
    # the baseline alone to train again (no training reads the teacher): the same offer
    shutil.rmtree(runs)
    _fake_run(archive, "bevdistill-s0", 0.3, 0.4, 1.0)
    shutil.rmtree(archive / "baseline-s0")
    bench()
    assert len(made) == 2 and made[1][5] == 2


def test_gap_closed_is_marked_where_runs_learned_from_another_teacher_training(tmp_path):
    """The gap closed divides by the teacher row's mAP: one training of the LiDAR teacher,
    which the runs record at the end (``made``, kept in an archive without the checkpoint).
    A row whose runs learned from another training (restored from a lost machine's archive)
    is marked, and the composite's check names the methods its runs differ from."""
    from bevkd.bench.runner import checkpoint_stamp, record_made

    jobs = {j.name: j for j in plan(2, ("dualdistill",), True, ())}
    teacher = _fake_run(tmp_path, "teacher", 0.40, 0.45, 1.0)
    os.makedirs(os.path.join(teacher, "checkpoints"))
    with open(os.path.join(teacher, "checkpoints", "last.ckpt"), "wb") as f:
        f.write(b"weights")
    (tmp_path / "teacher" / "bench_job.json").write_text(json.dumps(
        {"signature": ["train"], "inputs": {"data": []}}))
    record_made(teacher)
    stamp = checkpoint_stamp(teacher)
    assert stamp is not None and json.loads(
        (tmp_path / "teacher" / "bench_job.json").read_text())["made"] == stamp
    results = {"teacher": JobResult(jobs["teacher"], teacher, "done")}
    read = {"baseline": {}, "dualdistill": {"teacher": [7, 1]}, "composite": {"teacher": stamp}}
    for model, inputs in read.items():
        for seed, m in enumerate((0.10, 0.12)):
            name = f"{model}-s{seed}"
            run = _fake_run(tmp_path, name, m + 0.05 * (model != "baseline"), 0.3, 1.0)
            (tmp_path / name / "bench_job.json").write_text(json.dumps(
                {"signature": ["train"], "inputs": {"data": [], **inputs}}))
            results[name] = JobResult(jobs[name], run, "done")
    by = {r["model"]: r for r in collect(results, "synth_val")}
    assert by["teacher"]["made"] == [stamp]
    assert by["dualdistill"]["teacher_apart"] == [0, 1] and by["composite"]["teacher_apart"] == []
    md = markdown(list(by.values()), "tiny", "abc", "bevkd bench", 2)
    line = {}
    for ln in md.splitlines():  # the main table's line of each model (the first)
        if ln.startswith("| "):
            line.setdefault(ln.split(" | ")[0][2:], ln)
    # (0.16 - 0.11) / (0.40 - 0.11)
    assert "| 17%‡ |" in line["dualdistill"] and "| 17% |" in line["composite"]
    assert "a training of the LiDAR teacher these runs did not learn from" in md
    assert "dualdistill (seed 0, 1)." in md
    assert "its runs learned from other trainings of a teacher or the backbone than those of " \
           "dualdistill (seed 0, 1)" in md
    # a run finished before the bench recorded ``made``: its checkpoint tells
    (tmp_path / "teacher" / "bench_job.json").write_text(json.dumps({"inputs": {}}))
    assert collect(results, "synth_val")[0]["made"] == [stamp]
    # restored without the record or the checkpoint: nothing to compare, nothing marked
    os.remove(os.path.join(teacher, "checkpoints", "last.ckpt"))
    rows = collect(results, "synth_val")
    assert rows[0]["made"] == [None] and not any(r.get("teacher_apart") for r in rows)
    assert "‡" not in markdown(rows, "tiny", "abc", "bevkd bench", 2)


def _val_log(run, validations: list[tuple[int, float, float]]) -> None:
    """A run's CSV log with a training step and then each ``(epoch (0-based), mAP, NDS)``."""
    lines = ["epoch,step,train/heatmap_step,val/mAP,val/NDS"]
    for e, m, n in validations:
        lines += [f"{e},{10 * e},9.0,,", f"{e},{10 * e + 9},,{m},{n}"]
    (run / "logs").mkdir(parents=True, exist_ok=True)
    (run / "logs" / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_the_report_shows_whether_each_model_still_rose_at_its_end(tmp_path):
    """The validations during training: per run as logged, per row the mean over the seeds
    at each epoch all of them validated, with the last interval's rise; a row without two
    such epochs has no line."""
    from bevkd.bench.report import convergence

    jobs = {j.name: j for j in plan(2, ("bevdistill", "labeldistill"), False, ())}
    results = {}
    for name, vals in {"teacher": [(1, 0.10, 0.2), (3, 0.145, 0.25), (5, 0.173, 0.27)],
                       "baseline-s0": [(3, 0.04, 0.2), (7, 0.06, 0.21), (11, 0.07, 0.22)],
                       "baseline-s1": [(3, 0.02, 0.2), (7, 0.07, 0.21), (11, 0.05, 0.22)],
                       "labeldistill-s0": [(3, 0.03, 0.2), (11, 0.09, 0.23)],  # lost epoch 8
                       "labeldistill-s1": [(3, 0.05, 0.2), (7, 0.06, 0.21), (11, 0.07, 0.22)],
                       "bevdistill-s0": [(11, 0.08, 0.23)]}.items():
        run = _fake_run(tmp_path, name, vals[-1][1], vals[-1][2], 1.0)
        _val_log(tmp_path / name, vals)
        results[name] = JobResult(jobs[name], run, "done")
    rows = {r["model"]: r for r in collect(results, "synth_val")}
    assert rows["teacher"]["val_curve"] == [[[2, 0.10, 0.2], [4, 0.145, 0.25], [6, 0.173, 0.27]]]
    c = convergence(rows["teacher"])
    assert c["epochs"] == [2, 4, 6] and c["interval"] == 2 and c["seeds"] == 1
    assert c["last_rise"] == pytest.approx(0.028)
    base = convergence(rows["baseline"])  # seeds' mean: 3.0, 6.5, 6.0 -> fell 0.5 at the end
    assert base["mAP"] == pytest.approx([0.03, 0.065, 0.06]) and base["seeds"] == 2
    assert base["last_rise"] == pytest.approx(-0.005) and base["interval"] == 4
    assert convergence(rows["bevdistill"]) is None  # one validation: no rise to tell
    # a seed that misses a validation leaves that epoch out of the row, not the seed
    ld = convergence(rows["labeldistill"])
    assert ld["epochs"] == [4, 12] and ld["seeds"] == 2
    assert ld["mAP"] == pytest.approx([0.04, 0.08]) and ld["interval"] == 8
    md = markdown(list(rows.values()), "tiny", "abc", "bevkd bench", 2)
    assert "| teacher | 1 | 2: 10.0 · 4: 14.5 · 6: 17.3 | +2.8 in 2 epochs |" in md
    assert "| baseline | 2 | 4: 3.0 · 8: 6.5 · 12: 6.0 | -0.5 in 4 epochs |" in md
    assert "| bevdistill |" not in md.split("Validation mAP during training")[1]
    assert "`tiny_convergence.png`" in md


def test_a_method_of_ones_own_is_a_row_of_the_bench(tmp_path, monkeypatch):
    """Registered in DISTILLERS with its config beside the others', a new method is planned,
    ordered and checked as a row like the published four; registered without a config, the
    bench says which file it lacks."""
    import shutil

    from bevkd.bench import plan as plan_module
    from bevkd.bench.plan import METHODS, all_methods
    from bevkd.bench.report import acceptance, row_order
    from bevkd.config import CONFIGS_DIR
    from bevkd.distill.bevdistill import BEVDistill
    from bevkd.distill.methods import DISTILLERS
    from bevkd.errors import BevkdError

    configs = tmp_path / "configs"
    shutil.copytree(CONFIGS_DIR, configs)
    monkeypatch.setattr(plan_module, "CONFIGS", str(configs))
    monkeypatch.setitem(DISTILLERS, "mykd", BEVDistill)  # a LiDAR-teacher method of one's own
    with pytest.raises(BevkdError, match=r"method 'mykd' has no config .*distill/mykd\.yaml"):
        plan(1, ablations=())
    (configs / "distill" / "mykd.yaml").write_text(
        (configs / "distill" / "bevdistill.yaml").read_text().replace("type: bevdistill",
                                                                      "type: mykd"))
    assert all_methods() == (*METHODS, "mykd")
    jobs = {j.name: j for j in plan(1, ablations=())}
    assert jobs["mykd-s0"].needs == ("teacher",)
    assert jobs["mykd-s0"].config == str(configs / "distill" / "mykd.yaml")
    assert list(jobs).index("mykd-s0") == list(jobs).index("asd-s0") + 1
    assert row_order()[-3:] == ("asd", "mykd", "composite")
    # the acceptance waits for its row, and then counts it among the methods
    base = {"model": "baseline", "mAP": [0.19, 0.21], "NDS": [0.29, 0.31], "latency_ratio": 1.0}
    rows = [base, *(_row(m, [0.25] * 2, [0.35] * 2, gap=0.3) for m in METHODS),
            _row("composite", [0.30] * 2, [0.36] * 2, gap=0.45)]
    assert acceptance(rows)[1]["passed"] is None  # so far: mykd not trained yet
    checks = acceptance([*rows, _row("mykd", [0.2] * 2, [0.3] * 2, beats=False, gap=0.0)])
    assert checks[1]["passed"] is False and "mykd +0.0 / +0.0" in checks[1]["detail"]
    # registered under the name of another row of the table: refused
    for taken in ("composite", "baseline", "asd_gamma0"):
        monkeypatch.setitem(DISTILLERS, taken, BEVDistill)
        with pytest.raises(BevkdError, match=rf"DISTILLERS registers \['{taken}'\]"):
            all_methods()
        del DISTILLERS[taken]


def test_a_bench_that_cannot_run_says_so_before_it_generates_data(tmp_path, monkeypatch):
    """A method registered without its config (or a bad preset row) stops the bench before
    SynthScenes is generated for it, which takes minutes."""
    from bevkd.bench import command
    from bevkd.distill.bevdistill import BEVDistill
    from bevkd.distill.methods import DISTILLERS
    from bevkd.errors import BevkdError

    made = []
    monkeypatch.setattr(command, "bench_dataset", lambda *a, **k: made.append(a) or "data")
    monkeypatch.setitem(DISTILLERS, "mykd", BEVDistill)
    with pytest.raises(BevkdError, match="method 'mykd' has no config"):
        command.run_bench("tiny", str(tmp_path / "out"), str(tmp_path / "runs"), None, 1,
                          ("mykd",), False, ())
    with pytest.raises(BevkdError, match=r"unknown method\(s\) \['nope'\]"):
        command.run_bench("tiny", str(tmp_path / "out"), str(tmp_path / "runs"), None, 1,
                          ("nope",), False, ())
    assert made == [] and not (tmp_path / "runs").exists()


def test_a_report_of_restored_runs_with_latency_is_named_by_its_preset(tmp_path, monkeypatch):
    """Runs restored without weights (the committed archive on a new machine), the baseline
    among them: latency and step time are timed on their untrained networks, the decoding
    ratios, which depend on trained weights, are dropped, and the table is ``tiny.md`` (a loop
    over those ratios once renamed it after the last model it dropped, and the command then
    failed reading ``tiny.md`` after all the timing)."""
    from types import SimpleNamespace

    import torch

    from bevkd import cli
    from bevkd.bench import command, latency, steptime

    monkeypatch.setattr(command, "git_commit", lambda: "abc")
    data, runs, out, archive = (tmp_path / n for n in ("data", "runs", "out", "archive"))
    (data / "v1.0-synth").mkdir(parents=True)
    for name, v in (("teacher", 0.6), ("baseline-s0", 0.2), ("bevdistill-s0", 0.3)):
        _fake_run(archive, name, v, v, 1.0)
    timed = SimpleNamespace(passes={}, cost=None, device="cpu", trained=set())
    monkeypatch.setattr(latency, "timing_device", lambda wanted: torch.device("cpu"))
    monkeypatch.setattr(latency, "measure", lambda students, data, device: timed)
    real_fields = latency.latency_fields
    monkeypatch.setattr(latency, "latency_fields", lambda passes, cost, device, trained: {
        **real_fields({"forward": {"baseline": np.ones((1, 1)), "bevdistill": np.ones((1, 1))},
                       "total": {"baseline": np.ones((1, 1)),
                                 "bevdistill": 1.4 * np.ones((1, 1))}}, trained=trained),
        "latency_ratio": {"baseline": 1.0, "bevdistill": 1.01}})
    monkeypatch.setattr(latency, "load_note", lambda: None)
    monkeypatch.setattr(steptime, "measure", lambda students, data, device: {
        "baseline": 1.0, "bevdistill": 1.3})
    assert cli.main(["bench", "--preset", "tiny", "--seeds", "1", "--methods", "bevdistill",
                     "--no-composite", "--no-ablations", "--data", str(data), "--runs",
                     str(runs), "--out", str(out), "--archive", str(archive),
                     "--report-only"]) == 0
    assert sorted(p.name for p in out.glob("*.md")) == ["tiny.md"]
    rows = {r["model"]: r for r in json.loads((out / "tiny.json").read_text())["rows"]}
    assert rows["bevdistill"]["latency_ratio"] == 1.01
    assert rows["bevdistill"]["step_time_ratio"] == pytest.approx(1.3)
    assert "latency_ratio_with_decode" not in rows["bevdistill"]


def test_a_misspelt_key_of_any_job_is_refused_before_data_is_made(tmp_path, monkeypatch):
    """A --set or a preset's student set that no training would accept is named with its job
    before the dataset is generated or anything trains (not after the teachers trained)."""
    from bevkd.bench import command

    def no_data(*args, **kwargs):
        raise AssertionError("the dataset must not be made for a bench that cannot run")

    monkeypatch.setattr(command, "bench_dataset", no_data)
    with pytest.raises(BevkdError, match="the teacher job's config does not resolve: unknown "
                                         "config key 'train.epoch'"):
        command.run_bench("demo", str(tmp_path / "o"), str(tmp_path / "r"), None, 1,
                          ("dualdistill",), False, (), extra=("train.epoch=1",))
    preset = tmp_path / "mine.yaml"
    preset.write_text("base: configs/presets/demo.yaml\n"
                      "bench: {student_sets: [optim.lr=-1]}\n")
    with pytest.raises(BevkdError, match="the baseline-s0 job's config does not resolve: "
                                         "optim: lr must be a positive number"):
        command.run_bench(str(preset), str(tmp_path / "o"), str(tmp_path / "r"), None, 1,
                          ("dualdistill",), False, ())


def test_a_second_bench_on_a_runs_folder_is_told_so_before_it_makes_data(tmp_path, monkeypatch):
    """The runs folder's lock is taken before the dataset is generated: a second bench started
    while the first generates is told another bench holds the folder (not that the half-made
    dataset is no dataset)."""
    from bevkd.bench import command
    from bevkd.bench.runner import runs_lock

    def no_data(*args, **kwargs):
        raise AssertionError("the second bench must not touch the dataset")

    monkeypatch.setattr(command, "bench_dataset", no_data)
    with runs_lock(str(tmp_path / "r")):
        with pytest.raises(BevkdError, match=r"another bevkd bench \(pid \d+\) is using"):
            command.run_bench("demo", str(tmp_path / "o"), str(tmp_path / "r"), None, 1,
                              ("dualdistill",), False, ())


def test_a_dataset_other_than_the_presets_is_said(tmp_path):
    import json

    from bevkd.bench.command import BenchSpec, dataset_mismatch

    (tmp_path / "v1.0-synth").mkdir()
    spec = BenchSpec(scenes=8, samples_per_scene=10, width=320, height=180)
    made = {"scenes": 2, "samples_per_scene": 10, "width": 320, "height": 180, "seed": 0}
    (tmp_path / "v1.0-synth" / "synth_config.json").write_text(json.dumps(made))
    assert dataset_mismatch(str(tmp_path), spec) == "scenes 2 (the preset's 8)"
    made.update(scenes=8)
    (tmp_path / "v1.0-synth" / "synth_config.json").write_text(json.dumps(made))
    assert dataset_mismatch(str(tmp_path), spec) == ""
    os.remove(tmp_path / "v1.0-synth" / "synth_config.json")  # real nuScenes: nothing said
    assert dataset_mismatch(str(tmp_path), spec) == ""


def test_runs_of_another_command_refuse_the_bench_before_anything_starts(tmp_path, monkeypatch):
    """The same --runs with another --data (or preset, or override): every run there would
    fail in its turn while the rest of the bench, the backbone pretraining included, went on
    for hours. The bench now names them and stops before it makes data or starts anything."""
    from bevkd.bench import command as bench_command
    from bevkd.bench.runner import JOB_FILE, signature

    class Reached(Exception):
        pass

    def no_data(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(bench_command, "bench_dataset", no_data)
    runs, out = tmp_path / "runs", str(tmp_path / "out")
    spec = bench_command.bench_spec("demo")
    jobs = plan(1, ("dualdistill",), False, (), bench_command.row_overrides(spec),
                tuple(spec.student_sets), 1)
    camera = (f"model.args.backbone_weights={runs / 'backbone.pth'}",)
    old = str(tmp_path / "d1")
    for job in jobs[:2]:  # the teacher's and the baseline's, trained on d1
        (runs / job.name).mkdir(parents=True)
        (runs / job.name / JOB_FILE).write_text(json.dumps({"signature": signature(
            command(job, "demo", old, str(runs), 1, (), camera))}))
    assert [j.name for j in jobs[:2]] == ["teacher", "baseline-s0"]

    def bench(data):
        bench_command.run_bench("demo", out, str(runs), data, 1, ("dualdistill",), False, ())

    with pytest.raises(BevkdError) as err:
        bench(str(tmp_path / "d2"))
    said = str(err.value)
    assert said.startswith(f"2 run folders in {runs} cannot serve this bench (nothing was "
                           "started):")
    assert f"{runs / 'teacher'} was trained by another command" in said
    assert f"{runs / 'baseline-s0'} was trained by another command" in said
    assert old in said and "--data" in said
    assert not (runs / "backbone.log").exists()
    with pytest.raises(Reached):  # the runs' own data: the bench goes on to its dataset
        bench(old)
    # another override on the command line refuses them too, one line each
    with pytest.raises(BevkdError, match=r"(?s)2 run folders.*optim\.lr=0\.001.*optim\.lr"):
        bench_command.run_bench("demo", out, str(runs), old, 1, ("dualdistill",), False, (),
                                extra=("optim.lr=0.001",))


def test_runs_that_read_other_dataset_tables_refuse_the_bench_before_anything_starts(tmp_path):
    """Same command, but the dataset at that path made again since (its tables other files),
    or, for a run restored from an archive (whose folders are read as this bench's, so its
    command cannot tell datasets apart), tables of other names or sizes; a dataset the bench
    is about to generate is not judged (its runs are, at their turns)."""
    from bevkd.bench import command as bench_command
    from bevkd.bench.runner import JOB_FILE, RESTORED, data_stamps, refused_runs, signature

    runs, data = tmp_path / "runs", tmp_path / "data"
    (data / "v1.0-synth").mkdir(parents=True)
    table = data / "v1.0-synth" / "sample.json"
    table.write_text("[1, 2]")
    jobs = plan(1, ("bevdistill",), False, ())[:2]  # teacher, baseline-s0
    configs = bench_command.check_job_configs(jobs, "tiny", str(runs), ())
    for job in jobs:
        (runs / job.name).mkdir(parents=True)
        (runs / job.name / JOB_FILE).write_text(json.dumps({
            "signature": signature(command(job, "tiny", str(data), str(runs), 1)),
            "inputs": {"data": data_stamps(str(data))}}))

    def refused(made=True):
        return refused_runs(jobs, "tiny", str(data), str(runs), 1, configs=configs,
                            data_made=made)

    assert refused() == []
    os.utime(table, ns=(1, 1))  # made again: same name and size, another making
    why = refused()
    assert len(why) == 2 and why[0].startswith(f"{runs / 'teacher'} was trained on other data "
                                               f"than {data} holds")
    # the dataset gone (to be generated again): another making than the runs trained on
    why = refused(made=False)
    assert len(why) == 2 and "was trained on the dataset" in why[0] and "held before" in why[0]
    # a restored run is judged by the tables' names and sizes: the time does not count, and
    # a dataset generated again may match
    for job in jobs:
        (runs / job.name / RESTORED).write_text("{}")
    assert refused() == [] and refused(made=False) == []
    table.write_text("[1, 2, 3]")
    assert len(refused()) == 2


def test_a_restored_run_that_the_bench_trains_again_does_not_refuse_it(tmp_path, monkeypatch):
    """A run restored earlier without its checkpoint (by a report with --archive, or a bench
    of fewer jobs), of another command, that a job left to train needs: restore() deletes it
    and it trains again, as before the bench judged runs up front. Not a refusal."""
    from bevkd.bench import command as bench_command
    from bevkd.bench.runner import JOB_FILE, RESTORED, signature

    class Reached(Exception):
        pass

    def no_data(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(bench_command, "bench_dataset", no_data)
    runs, data, archive = tmp_path / "runs", str(tmp_path / "data"), tmp_path / "archive"
    archive.mkdir()
    teacher = plan(1, ("bevdistill",), False, ())[0]
    (runs / "teacher").mkdir(parents=True)
    (runs / "teacher" / JOB_FILE).write_text(json.dumps({"signature": signature(
        command(teacher, "tiny", data, str(runs), 1, ("train.epochs=3",)))}))
    (runs / "teacher" / RESTORED).write_text("{}")

    def bench(archive_arg):
        bench_command.run_bench("tiny", str(tmp_path / "out"), str(runs), data, 1,
                                ("bevdistill",), False, (), pretrain_steps=0,
                                archive=archive_arg)

    with pytest.raises(Reached):
        bench(str(archive))
    # without an archive nothing deletes it: refused, as it would fail in its turn
    with pytest.raises(BevkdError, match="teacher was trained by another command"):
        bench(None)

"""Fault injection: kills, damaged checkpoints, bad data, bad configs, bad results, a stopped
pretraining, a bench on another's runs, DDP.

    .venv/bin/python benchmarks/reliability.py [--work DIR]

Every scenario runs the real command line (``python -m bevkd.cli ...``, a fresh process) on a
small generated SynthScenes dataset (or a damaged copy of it) with a shrunk ``tiny`` model, and
records the exit code, the one-line error and what survived. Writes benchmarks/reliability.md
and .json. The same behaviours are pinned by tests (tests/engine/test_resume.py, test_ddp.py,
test_guards.py, test_run.py, test_student_only.py, test_config.py, tests/data/test_bad_tables.py,
test_nuscenes.py, tests/eval/test_results.py, tests/test_cli.py); this table shows them end to
end in one place.
"""

from __future__ import annotations

import _pinned  # noqa: F401  (first: numpy's BLAS kernels pinned before numpy loads)
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import torch

from bevkd.engine.history import step_series, training_log, validations
from bevkd.provenance import git_commit

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SHRINK = ["grid.cell=6.4", "data.lidar_sweeps=1", "train.batch_size=1", "train.num_workers=1",
          "model.args.head_channels=8", "model.args.trunk_channels=[8, 16]"]
NECK = {"pillars": "model.args.neck_channels=8", "bevdepth": "model.args.bev_neck_channels=8"}
STUDENT = "configs/student/bevdepth.yaml"
PILLARS = "configs/teacher/pillars.yaml"


def bevkd(*args: str, timeout: float = 900) -> tuple[int, str]:
    """Runs the CLI in a fresh process; returns (exit code, last line of stderr)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "bevkd.cli", *args], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip() and "it/s]" not in ln
             and "s/it]" not in ln]
    return p.returncode, (lines[-1].strip() if lines else "")


def train_args(config: str, kind: str, data: str, out: str, *sets: str) -> list[str]:
    return ["train", config, "--preset", "tiny", "--data", data, "--out", out,
            *[f"--set={s}" for s in (*SHRINK, NECK[kind], *sets)]]


def final_weights(run: str) -> dict[str, torch.Tensor]:
    ckpt = torch.load(os.path.join(run, "checkpoints", "last.ckpt"), map_location="cpu",
                      weights_only=True)
    out = dict(ckpt["state_dict"])
    for name, state in ckpt["callbacks"].items():
        if name.startswith("EMA"):
            out.update({f"ema.{k}": v for k, v in state["shadow"].items()})
    return out


def same(a: str, b: str) -> bool:
    wa, wb = final_weights(a), final_weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def interrupt_after(args: list[str], out: str, step: int, sig: int) -> int:
    """Starts ``bevkd train`` and sends ``sig`` once the checkpoint of ``step`` exists."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    child = subprocess.Popen([sys.executable, "-m", "bevkd.cli", *args], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = os.path.join(out, "checkpoints", f"step-{step}.ckpt")
    while not os.path.isfile(target) and child.poll() is None:
        time.sleep(0.02)
    child.send_signal(sig)
    return child.wait()


def stop_in_first_validation(args: list[str], out: str, sig: int,
                             timeout: float = 900) -> tuple[int, str]:
    """Starts ``bevkd train`` and sends ``sig`` when it prints the first epoch's last step (the
    validation of that epoch comes next). Returns the exit code and what went wrong with the
    stop itself: "" when it landed before that validation ended (no epoch checkpoint, no
    validation line), else why not (the training's fault or not: the caller may try again)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    child = subprocess.Popen([sys.executable, "-m", "bevkd.cli", *args], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    watchdog = threading.Timer(timeout, child.kill)  # a hung training ends the wait
    watchdog.start()
    sent, validated = False, False
    try:
        for line in child.stdout:  # read to the end: a full pipe would block the training
            if not sent and re.match(r"epoch 1/\d+\s+100%", line):
                child.send_signal(sig)
                sent = True
            validated |= sent and line.startswith("validation after epoch 1/")
        code = child.wait()
    finally:
        watchdog.cancel()
    if not sent:
        return code, "the first epoch's last step was never printed"
    if validated or os.path.isfile(os.path.join(out, "checkpoints", "epoch-00.ckpt")):
        return code, "the stop landed after the validation"
    return code, ""


def copy_data(src: str, dst: str) -> str:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".bevkd_cache"))
    return dst


def edit_table(root: str, table: str, fn) -> None:
    path = os.path.join(root, "v1.0-synth", f"{table}.json")
    rows = json.load(open(path))
    fn(rows)
    json.dump(rows, open(path, "w"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="bevkd_reliability_")
    os.makedirs(work, exist_ok=True)
    data = os.path.join(work, "data")
    if not os.path.isdir(data):
        rc, msg = bevkd("synth", "--out", data, "--scenes", "2", "--samples-per-scene", "4",
                        "--width", "320", "--height", "180", "--workers", "2")
        assert rc == 0, msg
    rows: list[dict] = []

    def row(area: str, fault: str, outcome: str, ok: bool, detail: str = "") -> None:
        rows.append({"area": area, "fault": fault, "outcome": outcome, "ok": bool(ok),
                     "detail": detail})
        print(f"[{'ok' if ok else 'FAIL'}] {area}: {fault} -> {outcome} {detail}", flush=True)

    ema = ("train.ema_decay=0.9", "train.checkpoint_every=2", "train.epochs=2")
    # --- kills and checkpoints ------------------------------------------------------------
    ref = os.path.join(work, "ref")
    rc, msg = bevkd(*train_args(STUDENT, "bevdepth", data, ref, *ema))
    assert rc == 0, msg
    teacher = os.path.join(work, "teacher")
    rc, msg = bevkd(*train_args(PILLARS, "pillars", data, teacher, "train.epochs=1"))
    assert rc == 0, msg
    # a teacher folder whose config says trunk 8/16 but whose weights are 16/32
    wide = os.path.join(work, "teacher_wide")
    rc, msg = bevkd(*train_args(PILLARS, "pillars", data, wide, "train.epochs=1",
                                "model.args.trunk_channels=[16, 32]"))
    assert rc == 0, msg
    shutil.copy(os.path.join(teacher, "config.yaml"), os.path.join(wide, "config.yaml"))
    for kind, config, extra in (("baseline", STUDENT, ()),
                                ("bevdistill", "configs/distill/bevdistill.yaml",
                                 (f"distill.teachers.lidar={teacher}",))):
        whole = ref if kind == "baseline" else os.path.join(work, "ref_kd")
        if kind != "baseline":
            rc, msg = bevkd(*train_args(config, "bevdepth", data, whole, *ema, *extra))
            assert rc == 0, msg
        step = int(np.random.default_rng().choice([2, 4, 6]))  # a random step of 2 epochs
        killed = os.path.join(work, f"killed_{kind}")
        code = interrupt_after(train_args(config, "bevdepth", data, killed, *ema, *extra),
                               killed, step, signal.SIGKILL)
        rc, msg = bevkd(*train_args(config, "bevdepth", data, killed, *ema, *extra), "--resume")
        ok = code == -signal.SIGKILL and rc == 0 and same(whole, killed)
        row("resume", f"SIGKILL of a {kind} run (EMA on) right after step {step}, then "
            "`--resume`", "final weights, EMA and metrics bit-identical to the uninterrupted "
            "run" if ok else f"differs (rc {rc}: {msg})", ok)
    sigint = os.path.join(work, "sigint")
    code = interrupt_after(train_args(STUDENT, "bevdepth", data, sigint, *ema), sigint, 2,
                           signal.SIGINT)
    rc, msg = bevkd(*train_args(STUDENT, "bevdepth", data, sigint, *ema), "--resume")
    ok = code == 130 and rc == 0 and same(ref, sigint)
    row("resume", "Ctrl-C (SIGINT) after step 2, then `--resume`",
        f"exit {code}, checkpoint kept; resumed run bit-identical" if ok else f"rc {rc}: {msg}",
        ok)
    # a stop while the first epoch is validated (its last step has no step checkpoint: the
    # state there would resume into the next epoch and skip the validation)
    every = (*ema, "train.eval_every=1", "train.checkpoint_every=1")
    ref_val = os.path.join(work, "ref_val")
    rc, msg = bevkd(*train_args(STUDENT, "bevdepth", data, ref_val, *every))
    assert rc == 0, msg
    for sig, how in ((signal.SIGKILL, "SIGKILL (nothing saved on the way out)"),
                     (signal.SIGTERM, "SIGTERM (a scheduler's preemption)")):
        stopped = os.path.join(work, f"val_{sig.name.lower()}")
        # a stop can miss the window (a validation of 4 samples is short; Lightning lets a
        # SIGTERM during the last validation batch finish it): that is no fault, try again
        for _ in range(3):
            shutil.rmtree(stopped, ignore_errors=True)
            code, missed = stop_in_first_validation(
                train_args(STUDENT, "bevdepth", data, stopped, *every), stopped, sig)
            if not missed:
                break
        landed = not missed
        rc, msg = bevkd(*train_args(STUDENT, "bevdepth", data, stopped, *every), "--resume")
        same_vals = (validations(training_log(stopped)) == validations(training_log(ref_val)))
        ok = landed and code != 0 and rc == 0 and same(ref_val, stopped) and same_vals
        row("resume", f"{how} while the first epoch is validated, then `--resume`",
            "that validation run again, every validation and the final weights equal to the "
            "uninterrupted run's" if ok else
            f"{missed + ' (3 tries); ' if missed else ''}exit {code}, "
            f"resume rc {rc}, same weights {same(ref_val, stopped) if rc == 0 else '?'}, "
            f"same validations {same_vals}", ok, msg if rc else "")
    damaged = os.path.join(work, "damaged")
    interrupt_after(train_args(STUDENT, "bevdepth", data, damaged, *ema), damaged, 4,
                    signal.SIGKILL)
    last = os.path.join(damaged, "checkpoints", "last.ckpt")
    blob = open(last, "rb").read()
    open(last, "wb").write(blob[: len(blob) // 3])  # a full disk / a cut copy
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "bevkd.cli",
                        *train_args(STUDENT, "bevdepth", data, damaged, *ema), "--resume"],
                       cwd=REPO, env=env, capture_output=True, text=True)
    warn = next((ln for ln in p.stderr.splitlines() if "resuming from" in ln), "")
    ok = p.returncode == 0 and "resuming from" in warn and same(ref, damaged)
    row("checkpoint", "last.ckpt truncated to a third, then `--resume`",
        "skipped with a warning, resumed from the newest whole checkpoint, final weights "
        "bit-identical" if ok else f"rc {p.returncode}", ok, warn.replace(work, "WORK"))

    # --- numerical guard ------------------------------------------------------------------
    nan = os.path.join(work, "nan")
    rc, msg = bevkd(*train_args(PILLARS, "pillars", data, nan, "optim.lr=1e30",
                                "optim.grad_clip=0", "train.checkpoint_every=1",
                                "train.epochs=2"))
    kept = os.path.join(nan, "checkpoints", "last.ckpt")
    good = os.path.isfile(kept) and all(
        torch.isfinite(v).all() for v in torch.load(kept, weights_only=True)["state_dict"].values()
        if v.is_floating_point())
    row("numerics", "learning rate 1e30 (diverges to a non-finite loss)",
        "stopped with the step and the loss terms; last checkpoint finite and loadable"
        if rc == 2 and "non-finite loss at step" in msg and good else f"rc {rc}",
        rc == 2 and "non-finite loss at step" in msg and good, msg)

    # --- bad data -------------------------------------------------------------------------
    from bevkd.data.infos import load_infos

    infos = load_infos(data, "v1.0-synth", "synth_train", 1, os.path.join(work, "cache"))

    def bad_data(fault: str, damage, expect: str, split_arg=(), camera: bool = False) -> None:
        root = copy_data(data, os.path.join(work, f"bad{len(rows)}"))
        damage(root)
        config, kind = (STUDENT, "bevdepth") if camera else (PILLARS, "pillars")
        rc, msg = bevkd(*train_args(config, kind, root, os.path.join(root, "run"),
                                    "train.epochs=1", "train.num_workers=0", *split_arg))
        row("bad input", fault, "one-line error, exit 2" if rc == 2 and expect in msg
            else f"rc {rc}", rc == 2 and expect in msg, msg.replace(work, "WORK"))

    cam = infos[1].cams[0].path
    bad_data("truncated JPEG", lambda r: open(os.path.join(r, cam), "r+b").truncate(300),
             "corrupt or truncated image", camera=True)
    bad_data("missing JPEG", lambda r: os.remove(os.path.join(r, cam)), "missing image",
             camera=True)
    pts = infos[2].sweeps[0].path
    bad_data("truncated LiDAR file", lambda r: open(os.path.join(r, pts), "r+b").truncate(
        os.path.getsize(os.path.join(r, pts)) - 7), "truncated point file")
    bad_data("LiDAR file of 1003 random bytes", lambda r: open(os.path.join(r, pts), "wb").write(
        os.urandom(1003)), "1003 bytes is not a whole number")
    bad_data("LiDAR file with NaN coordinates", lambda r: open(os.path.join(r, pts), "wb").write(
        np.full((100, 5), np.nan, np.float32).tobytes()), "corrupt point file")
    bad_data("sample_data row pointing at a missing calibrated_sensor",
             lambda r: edit_table(r, "sample_data", lambda t: t[0].update(
                 calibrated_sensor_token="deadbeef")), "missing token 'deadbeef'")
    bad_data("annotation with a NaN size", lambda r: edit_table(
        r, "sample_annotation", lambda t: t[0].update(size=[float("nan"), 1.0, 1.0])),
        "non-finite or non-positive box")
    bad_data("annotation with a negative size", lambda r: edit_table(
        r, "sample_annotation", lambda t: t[0].update(size=[1.0, -2.0, 1.0])),
        "non-finite or non-positive box")

    def empty_split(r: str) -> None:
        path = os.path.join(r, "v1.0-synth", "splits.json")
        s = json.load(open(path))
        s["synth_empty"] = []
        json.dump(s, open(path, "w"))

    bad_data("empty split", empty_split, "has no samples", ("train.train_split=synth_empty",))
    root = copy_data(data, os.path.join(work, "skip"))
    open(os.path.join(root, cam), "r+b").truncate(300)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "bevkd.cli",
                        *train_args(STUDENT, "bevdepth", root, os.path.join(root, "run"),
                                    "train.epochs=1", "train.num_workers=0",
                                    "data.skip_bad=true")],
                       cwd=REPO, env=env, capture_output=True, text=True)
    skipped = [ln for ln in p.stderr.splitlines() if "skipping sample" in ln]
    row("bad input", "truncated JPEG with `--set data.skip_bad=true`",
        f"trained; {len(skipped)} skip(s) logged with a running count" if p.returncode == 0
        and skipped else f"rc {p.returncode}", p.returncode == 0 and bool(skipped),
        skipped[0].split("WARNING")[-1].strip()[:160] if skipped else "")

    # --- bad configs and checkpoints ------------------------------------------------------
    def bad_cli(area: str, fault: str, argv: list[str], expect: str) -> None:
        rc, msg = bevkd(*argv)
        row(area, fault, "one-line error, exit 2" if rc == 2 and expect in msg else f"rc {rc}",
            rc == 2 and expect in msg, msg.replace(work, "WORK"))

    out = os.path.join(work, "cfg")
    bad_cli("config", "misspelled key `train.epoch`",
            train_args(PILLARS, "pillars", data, out, "train.epoch=3"), "did you mean 'epochs'")
    bad_cli("config", "misspelled model argument `pilar_channels`",
            train_args(PILLARS, "pillars", data, out, "model.args.pilar_channels=3"),
            "did you mean 'pillar_channels'")
    bad_cli("config", "unknown preset `tinyy`",
            ["train", PILLARS, "--preset", "tinyy", "--data", data, "--out", out],
            "did you mean 'tiny'")
    kd = ["train", "configs/distill/bevdistill.yaml", "--preset", "tiny", "--data", data,
          "--out", out, *[f"--set={s}" for s in (*SHRINK, NECK["bevdepth"])]]
    bad_cli("checkpoint", "a camera student's run given as the LiDAR teacher",
            [*kd, f"--set=distill.teachers.lidar={ref}"], "teacher")
    bad_cli("checkpoint", "LiDAR teacher run whose weights are another width (trunk 8/16 "
            "config, 16/32 weights)", [*kd, f"--set=distill.teachers.lidar={wide}"],
            "does not fit")
    bad_cli("config", "a negative learning rate (`optim.lr=-1`)",
            train_args(PILLARS, "pillars", data, out, "optim.lr=-1"),
            "lr must be a positive number")
    bad_cli("config", "a batch of 0 (`train.batch_size=0`)",
            train_args(PILLARS, "pillars", data, out, "train.batch_size=0"),
            "batch_size must be at least 1")
    bad_cli("config", "a method's override on a config without methods",
            train_args(STUDENT, "bevdepth", data, out, "distill.methods.0.args.x=1"),
            "distill.methods is empty in this config")
    bad_cli("config", "a distillation config trained without `--set distill.teachers.lidar`",
            kd, "placeholder RUN")
    if not torch.cuda.is_available():
        bad_cli("config", "`--accelerator gpu` on a machine without CUDA",
                [*train_args(PILLARS, "pillars", data, out), "--accelerator", "gpu"],
                "torch sees no CUDA device")
    bad_data("a table cut short (sample_annotation.json, 1000 bytes)",
             lambda r: open(os.path.join(r, "v1.0-synth", "sample_annotation.json"),
                            "r+b").truncate(1000), "sample_annotation.json is not valid JSON")
    # --- resuming onto other data, resuming a finished run ---------------------------------
    other = copy_data(data, os.path.join(work, "other_data"))
    path = os.path.join(other, "v1.0-synth", "splits.json")
    splits = json.load(open(path))
    splits["synth_train"] = splits["synth_val"]  # another scene under the split's name
    json.dump(splits, open(path, "w"))
    bad_cli("resume", "`--resume` of a run on another dataset (its training split's scene "
            "swapped)", [*train_args(STUDENT, "bevdepth", other, ref, *ema), "--resume"],
            "are not those")
    meta = open(os.path.join(ref, "meta.json")).read()
    rc, msg = bevkd(*train_args(STUDENT, "bevdepth", data, ref, *ema), "--resume")
    ok = rc == 0 and "nothing to do" in msg and open(os.path.join(ref, "meta.json")).read() == meta
    row("resume", "`--resume` of a finished run", "nothing trained, validated or written"
        if ok else f"rc {rc}", ok, msg.replace(work, "WORK"))
    # --- a distilled run without its teacher's folder; exported students; damage ------------
    orphan = os.path.join(work, "kd_orphan")
    shutil.copytree(os.path.join(work, "ref_kd"), orphan,
                    ignore=shutil.ignore_patterns("eval"))
    cfg_path = os.path.join(orphan, "config.yaml")
    with open(cfg_path) as f:
        text = f.read()
    with open(cfg_path, "w") as f:  # as if the teacher's folder had been deleted
        f.write(text.replace(os.path.abspath(teacher),
                             os.path.abspath(os.path.join(work, "deleted_teacher"))))
    rc1, msg1 = bevkd("eval", "--ckpt", orphan, "--data", data)
    exported = os.path.join(work, "orphan_student.pt")
    rc2, msg2 = bevkd("export", "--ckpt", orphan, "--out", exported)
    rc3, msg3 = bevkd("eval", "--ckpt", exported, "--data", data)
    # the training's own evaluation, made with the whole model (teachers and adapters built)
    folders = (os.path.join(work, "ref_kd", "eval", "synth_val"),
               os.path.join(orphan, "eval", "synth_val"),
               os.path.join(work, "orphan_student_eval", os.path.basename(data), "synth_val"))

    def scored(folder: str) -> str:  # every metric but the time it took
        m = json.load(open(os.path.join(folder, "metrics.json")))
        return json.dumps({k: v for k, v in m.items() if k != "eval_time"}, sort_keys=True)

    found = [scored(f) for f in folders] if rc1 == rc2 == rc3 == 0 else []
    ok = len(found) == 3 and len(set(found)) == 1
    nds = json.loads(found[0])["nd_score"] if found else float("nan")
    row("checkpoint", "eval and export of a distilled run whose teacher's folder is gone, "
        "then eval of the exported student", f"both score every metric as the training's own "
        f"evaluation with the whole model did (NDS {nds:.4f})" if ok else
        f"rc {rc1}/{rc2}/{rc3}, same metrics {ok}", ok,
        "" if ok else " / ".join((msg1, msg2, msg3)))
    bad_cli("checkpoint", "`export` onto an existing file",
            ["export", "--ckpt", orphan, "--out", exported], "exists; choose another file")
    cut = os.path.join(work, "eval_damaged")
    shutil.copytree(ref, cut, ignore=shutil.ignore_patterns("eval"))
    last = os.path.join(cut, "checkpoints", "last.ckpt")
    blob = open(last, "rb").read()
    open(last, "wb").write(blob[: len(blob) // 3])
    bad_cli("checkpoint", "`eval` of a run whose last.ckpt is truncated to a third",
            ["eval", "--ckpt", cut, "--data", data], "the newest whole one beside it is")
    # --- bad results files ----------------------------------------------------------------
    rc, msg = bevkd("eval", "--ckpt", teacher, "--data", data)
    good = json.load(open(os.path.join(teacher, "eval", "synth_val", "results.json")))
    token = next(iter(good["results"]))
    for fault, edit, expect in (
            ("a box with a NaN translation",
             lambda r: r["results"][token][0].update(translation=[float("nan"), 0, 0])
             if r["results"][token] else r["results"][token].append(
                 {"sample_token": token, "translation": [float("nan"), 0, 0],
                  "size": [1, 1, 1], "rotation": [1, 0, 0, 0], "velocity": [0, 0],
                  "detection_name": "car", "detection_score": 0.5, "attribute_name": ""}),
             "translation"),
            ("a sample missing", lambda r: r["results"].pop(token), "missing"),
            ("a box without its sample_token", lambda r: r["results"][token].append(
                {"translation": [0, 0, 0], "size": [1, 1, 1], "rotation": [1, 0, 0, 0],
                 "velocity": [0, 0], "detection_name": "car", "detection_score": 0.5,
                 "attribute_name": ""}), "no 'sample_token'"),
            ("an unknown class", lambda r: r["results"][token].append(
                {"sample_token": token, "translation": [0, 0, 0], "size": [1, 1, 1],
                 "rotation": [1, 0, 0, 0], "velocity": [0, 0], "detection_name": "dragon",
                 "detection_score": 0.5, "attribute_name": ""}), "dragon")):
        bad = json.loads(json.dumps(good))
        edit(bad)
        path = os.path.join(work, f"results{len(rows)}.json")
        json.dump(bad, open(path, "w"))
        bad_cli("results", fault, ["metrics", "--data", data, "--split", "synth_val",
                                   "--results", path, "--out", os.path.join(work, "m")], expect)

    # --- pretraining and the bench --------------------------------------------------------
    def pretrain_args(out: str) -> list[str]:
        return ["pretrain", STUDENT, "--preset", "tiny", "--data", data, "--out", out,
                "--steps", "10", "--accelerator", "cpu", "--set", "train.batch_size=1",
                "--set", "train.num_workers=1"]

    whole_bb, stopped_bb = (os.path.join(work, f"{n}.pth") for n in ("bb_whole", "bb_stopped"))
    rc, msg = bevkd(*pretrain_args(whole_bb))
    assert rc == 0, msg
    # SIGTERM once its first progress line is out (after a tenth of its steps, before its
    # first timed checkpoint): it ends the step under way, saves and exits
    child = subprocess.Popen([sys.executable, "-m", "bevkd.cli", *pretrain_args(stopped_bb)],
                             cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    said, sent = "", False
    for line in child.stderr:  # read to the end: a full pipe would block it
        if not sent and line.startswith("pretrain backbone:"):
            child.send_signal(signal.SIGTERM)
            sent = True
        said += line
    child.wait()
    at = re.search(r"stopped at step (\d+) of 10", said)
    rc, msg = bevkd(*pretrain_args(stopped_bb), "--resume")
    got, want = (torch.load(p, weights_only=True) for p in (stopped_bb, whole_bb))
    ok = (child.returncode == 130 and at is not None and rc == 0 and got.keys() == want.keys()
          and all(torch.equal(got[k], want[k]) for k in want)
          and not os.path.exists(stopped_bb + ".ckpt"))
    row("resume", "SIGTERM of `bevkd pretrain` (10 steps) after its first step, then "
        "`--resume`", (f"stopped after step {at.group(1)} (exit 130), resumed: backbone weights "
                       "bit-identical to the uninterrupted pretraining")
        if ok else f"rc {child.returncode}/{rc}: {said[-300:]} {msg}", ok)
    # a bench stopped once its teacher started, then run again on the same --runs with another
    # --data: every run there would fail in its turn while the bench went on
    bench_runs = os.path.join(work, "bench_runs")
    bench = ["bench", "--preset", "demo", "--methods", "dualdistill", "--no-composite",
             "--no-ablations", "--pretrain-steps", "0", "--runs", bench_runs, "--out",
             os.path.join(work, "bench_out"), *[f"--set={s}" for s in SHRINK]]
    child = subprocess.Popen([sys.executable, "-m", "bevkd.cli", *bench, "--data", data],
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    job = os.path.join(bench_runs, "teacher", "bench_job.json")
    while not os.path.isfile(job) and child.poll() is None:
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    child.wait()
    other = os.path.join(work, "other_bench_data")
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bevkd.cli", *bench, "--data", other],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - t0
    rc, msg = done.returncode, done.stderr.strip()  # the error's lines, every run named
    ok = (rc == 2 and "cannot serve this bench (nothing was started)" in msg
          and not os.path.exists(other))
    row("bench", "`bevkd bench` again on the same `--runs` with another `--data` (the first "
        "bench stopped once its trainings started)", f"refused in {seconds:.0f} s naming its "
        "runs, before the new dataset was generated or anything trained" if ok else f"rc {rc}",
        ok, msg.replace(work, "WORK").replace("\n", " "))

    # --- DDP ------------------------------------------------------------------------------
    def losses(run: str) -> np.ndarray:
        return step_series(training_log(run), "train/loss_step")[1]

    one, two = os.path.join(work, "ddp1"), os.path.join(work, "ddp2")
    rc1, _ = bevkd(*train_args(PILLARS, "pillars", data, one, "train.batch_size=2",
                               "train.num_workers=0", "train.epochs=2"), "--accelerator", "cpu")
    rc2, msg = bevkd(*train_args(PILLARS, "pillars", data, two, "train.batch_size=1",
                                 "train.num_workers=0", "train.epochs=2"),
                     "--accelerator", "cpu", "--devices", "2")
    if rc1 == rc2 == 0:
        a, b = losses(one), losses(two)
        rel = np.abs(a - b) / a if len(a) == len(b) else np.array([np.inf])
        ok = len(a) == len(b) and rel.max() < 0.15
        row("scale", "`--devices 2` (DDP, gloo, 2 CPU processes, batch 1 each) vs 1 process "
            "batch 2", f"{len(b)} steps; loss within {100 * rel.mean():.1f} % mean, "
            f"{100 * rel.max():.1f} % worst step", ok)
    else:
        row("scale", "`--devices 2`", f"rc {rc1}/{rc2}", False, msg)

    result = {"commit": git_commit(), "command": "python benchmarks/reliability.py",
              "rows": rows, "passed": sum(r["ok"] for r in rows), "total": len(rows)}
    with open(os.path.join(HERE, "reliability.json"), "w") as f:
        json.dump(result, f, indent=1)
    lines = ["# Reliability: faults injected and bad inputs tried", "",
             f"`{result['command']}` at commit `{result['commit']}`: "
             f"{result['passed']}/{result['total']} behave as intended. Each row is a fresh "
             "`python -m bevkd.cli` process on a generated SynthScenes dataset (2 scenes x 4 "
             "samples) or a damaged copy of it; WORK is the scratch folder.", "",
             "| area | fault | outcome | message / detail |", "|---|---|---|---|"]
    for r in rows:
        detail = r["detail"].replace("|", "\\|")
        lines.append(f"| {r['area']} | {r['fault']} | {'✔' if r['ok'] else '✘'} "
                     f"{r['outcome']} | {detail} |")
    with open(os.path.join(HERE, "reliability.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{result['passed']}/{result['total']} ok; wrote benchmarks/reliability.md")


if __name__ == "__main__":
    main()

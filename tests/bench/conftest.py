"""Fixtures of the bench's tests: `bevkd bench`'s job runner with a stand-in for `bevkd train`
(a few lines of Python that write what a finished run holds)."""

from __future__ import annotations

import os
import sys

import pytest

from bevkd.bench import runner
from bevkd.bench.plan import plan

FAKE_TRAIN = r'''
import json, os, signal, sys, time
name = sys.argv[2]
run = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else sys.argv[3]
mode = os.environ.get("FAKE_" + name.replace("-", "_"), "ok")
# FAKE_BACKBONE: a file every camera model reads (all but the LiDAR teacher and label encoder)
backbone = os.environ.get("FAKE_BACKBONE")
if backbone and name.split("-")[0] not in ("teacher", "label_encoder") \
        and not os.path.isfile(backbone):
    sys.exit(f"{name} started before {backbone} was made")
os.makedirs(os.path.join(run, "checkpoints"), exist_ok=True)
with open(os.path.join(run, "starts"), "a") as f:
    f.write("resume\n" if "--resume" in sys.argv else "new\n")
if not os.path.isfile(os.path.join(run, "checkpoints", "last.ckpt")):
    open(os.path.join(run, "checkpoints", "last.ckpt"), "w").write(name)
if mode == "fail":
    sys.exit(1)
if mode == "progress":  # one line as LineProgress writes it, then a while training
    print("epoch 3/6   50% (10/20)  loss 1.234  0.50 s/step  epoch left 0:00:05  "
          "run left 0:00:35", flush=True)
    time.sleep(3.0)
if mode == "slow":
    def stop(*_):
        open(os.path.join(run, "stopped"), "w").close()
        sys.exit(143)
    signal.signal(signal.SIGTERM, stop)
    open(os.path.join(run, "running"), "w").close()
    time.sleep(60)
os.makedirs(os.path.join(run, "eval", "synth_val"), exist_ok=True)
json.dump({"mean_ap": 0.1}, open(os.path.join(run, "eval", "synth_val", "metrics.json"), "w"))
json.dump({"step_seconds": 1.0}, open(os.path.join(run, "timing.json"), "w"))
'''


@pytest.fixture
def bench(tmp_path, monkeypatch):
    """(jobs, run_jobs with the stand-in trainer, runs folder)."""
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    data = tmp_path / "data"
    (data / "v1.0-synth").mkdir(parents=True)
    (data / "v1.0-synth" / "sample.json").write_text("[]")
    runs = tmp_path / "runs"

    def command(job, preset, data, runs, threads, extra=(), camera_extra=()):
        run = os.path.join(runs, job.name)
        cmd = [sys.executable, str(script), "train", job.name, run]
        if os.path.isfile(os.path.join(run, "checkpoints", "last.ckpt")):
            cmd.append("--resume")
        return cmd

    monkeypatch.setattr(runner, "command", command)
    jobs = plan(1, ("bevdistill",), False, ())  # teacher, baseline-s0, bevdistill-s0

    def run(parallel=2, log=None, train=True, status_every=1800.0, on_final=None,
            pretraining=None, first_status=1800.0):
        logs = [] if log is None else log
        res = runner.run_jobs(jobs, "tiny", str(data), str(runs), parallel,
                              log=logs.append if log is None else log, poll=0.05, train=train,
                              status_every=status_every, first_status=first_status,
                              on_final=on_final,
                              pretraining=pretraining)
        return {n: r.status for n, r in res.items()}, logs

    return run, runs, data

"""Every model of the bench trained and evaluated on a GPU, short: does the pipeline run on CUDA.

    python benchmarks/gpu_smoke.py --data DIR --runs DIR [--preset small] [--epochs 1]
        [--precision-epochs 3] [--out benchmarks] [--timeout 900] [--commit SHA]

The bench's jobs and command lines (``bevkd.bench.plan.plan``, ``bevkd.bench.runner.command``),
without a preset's ``bench.overrides``, ``bench.student_sets`` or a pretrained backbone (it
checks that each model runs on CUDA, not the table's recipe; ``benchmarks/gpu_bench.py`` runs
the bench itself): the LiDAR teacher, the fusion teacher, the label encoder,
the baseline, each method and the composite, one seed, ``--epochs`` each, in that order, each a
``bevkd train`` process in a new ``--runs`` folder (a run there already would be resumed, not
trained), at the preset's precision (``auto``: 16-bit mixed on a GPU); then the baseline again
at each precision (``32-true``, ``16-mixed``, ``bf16-mixed``) for ``--precision-epochs``.
A short training says that a model trains, evaluates and keeps its weights on CUDA, not how
good it gets: its mAP is not a table's. Writes ``gpu_smoke_<preset>.md`` / ``.json`` in
``--out`` after every job, so that a run stopped at its limit leaves what it measured; a
failed job keeps the end of its log there.
"""

from __future__ import annotations

import _pinned  # noqa: F401  (first: numpy's BLAS kernels pinned before numpy loads)
import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import replace

import torch

from bevkd.bench.plan import METHODS, plan
from bevkd.bench.runner import command
from bevkd.provenance import git_commit

PRECISIONS = ("32-true", "16-mixed", "bf16-mixed")


def _read(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _run(name: str, cmd: list[str], run: str, timeout: float) -> dict:
    """One training; its status, wall time, what its run folder recorded."""
    os.makedirs(run, exist_ok=True)
    log = os.path.join(run, "console.log")
    start = time.perf_counter()
    try:
        with open(log, "w") as f:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    row = {"model": name, "status": "done" if rc == 0 else f"failed ({rc})",
           "wall_s": round(time.perf_counter() - start, 1)}
    ok = rc == 0  # a failed training's folder may hold an earlier attempt's numbers
    timing = _read(os.path.join(run, "timing.json")) if ok else {}
    metrics = _read(os.path.join(run, "eval", "synth_val", "metrics.json")) if ok else {}
    row.update(steps=timing.get("steps"), step_s=timing.get("step_seconds"),
               peak_cuda_mb=timing.get("peak_cuda_mb"), mAP=metrics.get("mean_ap"),
               NDS=metrics.get("nd_score"))
    if rc != 0:
        with open(log, errors="replace") as f:
            row["log_tail"] = f.read()[-3000:]
    return row


def _write(out: str, preset: str, result: dict) -> None:
    rows = result["rows"]
    base = next((r["step_s"] for r in rows if r["model"] == "baseline-s0" and r["step_s"]), None)
    lines = [f"# GPU smoke: every bench model on {result['device']}", "",
             f"`{result['command']}` at commit `{result['commit']}`; torch {result['torch']}, "
             f"numpy {result['numpy']}. Preset `{preset}`, {result['epochs']} epoch(s) per model "
             f"(the precision rows: {result['precision_epochs']}), one seed, on a short "
             "SynthScenes: a check that each model trains, evaluates and keeps its weights on "
             "CUDA; its mAP is not a table's. Step time: the training's mean (warm-up "
             "included); ratio to the baseline's of the same run.", "",
             "| model | status | wall s | steps | step s | ratio vs baseline | peak CUDA MB | "
             "mAP | NDS |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        def f(x, fmt):
            return "" if x is None else format(x, fmt)
        ratio = f(r["step_s"] / base, ".2f") if base and r["step_s"] else ""
        lines.append(f"| {r['model']} | {r['status']} | {r['wall_s']:.0f} | {f(r['steps'], 'd')} "
                     f"| {f(r['step_s'], '.3f')} | {ratio} | {f(r['peak_cuda_mb'], '.0f')} | "
                     f"{f(r['mAP'] and 100 * r['mAP'], '.2f')} | "
                     f"{f(r['NDS'] and 100 * r['NDS'], '.2f')} |")
    for r in rows:
        if "log_tail" in r:
            lines += ["", f"## {r['model']}: end of its log", "", "```", r["log_tail"], "```"]
    os.makedirs(out, exist_ok=True)
    name = os.path.join(out, f"gpu_smoke_{preset}")
    with open(name + ".json", "w") as f:
        json.dump(result, f, indent=1)
    with open(name + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--runs", required=True)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--precision-epochs", type=int, default=3)
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per training")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--commit", default=None,
                    help="the commit to record, where the copy run has no git history")
    args = ap.parse_args()
    import numpy

    result = {"commit": args.commit or git_commit(), "command": "python " + " ".join(sys.argv),
              "device": (torch.cuda.get_device_name() if torch.cuda.is_available()
                         else "CPU (no CUDA device)"),
              "torch": torch.__version__, "numpy": numpy.__version__, "epochs": args.epochs,
              "precision_epochs": args.precision_epochs, "rows": []}
    runs, data = os.path.abspath(args.runs), os.path.abspath(args.data)
    if os.path.isdir(runs) and os.listdir(runs):
        sys.exit(f"{runs} is not empty: its runs would be resumed, not trained; "
                 "give a new folder")
    epochs = (f"train.epochs={args.epochs}", "train.eval_every=0")
    for job in plan(1, METHODS, True, ()):
        cmd = command(job, args.preset, data, runs, args.threads, epochs)
        result["rows"].append(_run(job.name, cmd, os.path.join(runs, job.name), args.timeout))
        _write(args.out, args.preset, result)
    base = next(j for j in plan(1, (), False, ()) if j.model == "baseline")
    for precision in PRECISIONS:
        # a job of its own name: its own run folder (the baseline's would be resumed)
        job = replace(base, name=f"baseline@{precision}")
        sets = (f"train.epochs={args.precision_epochs}", "train.eval_every=0",
                f"train.precision={precision}")
        cmd = command(job, args.preset, data, runs, args.threads, sets)
        result["rows"].append(_run(job.name, cmd, os.path.join(runs, job.name), args.timeout))
        _write(args.out, args.preset, result)


if __name__ == "__main__":
    main()

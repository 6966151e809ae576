"""Table of trained runs (teacher, baseline, ...) through the benchmark's own report code.

    .venv/bin/python benchmarks/detectors_tiny.py teacher=RUN baseline=RUN [...] \
        [--name detectors_tiny] [--command "how the runs were trained"]

Reads each run's eval/synth_val/metrics.json and timing.json and writes
benchmarks/<name>.md and .json in the layout of `bevkd bench`.
"""

from __future__ import annotations

import _pinned  # noqa: F401  (first: numpy's BLAS kernels pinned before numpy loads)
import argparse

from _results import save
from bevkd.bench.plan import Job
from bevkd.bench.report import collect, markdown
from bevkd.bench.runner import JobResult
from bevkd.provenance import git_commit

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="MODEL=RUN_FOLDER")
    ap.add_argument("--name", default="detectors_tiny")
    ap.add_argument("--command", default="")
    ap.add_argument("--split", default="synth_val")
    ap.add_argument("--title", default="Teachers and baseline student on the tiny preset "
                                       "(single runs)")
    args = ap.parse_args()
    results = {}
    for item in args.runs:
        model, run = item.split("=", 1)
        results[model] = JobResult(Job(model, model, ""), run, "done")
    rows = collect(results, args.split)
    commit = git_commit()
    cmd = args.command or "python benchmarks/detectors_tiny.py " + " ".join(args.runs)
    save(args.name, {"commit": commit, "command": cmd, "rows": rows},
         markdown(rows, "tiny", commit, cmd, 1, title=args.title))


if __name__ == "__main__":
    main()

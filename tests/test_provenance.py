"""Provenance: the commit and the machine a result came from."""

from __future__ import annotations

import json

import numpy as np
import torch

from bevkd.bench.command import run_machines
from bevkd.bench.plan import Job
from bevkd.bench.runner import JobResult
from bevkd.provenance import machine, machine_label


def test_machine_names_the_cpu_and_the_libraries():
    m = machine()
    assert isinstance(m["cpu"], str) and m["cpu"] not in ("", "unknown")
    assert m["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert m["torch"] == torch.__version__ and m["numpy"] == np.__version__
    assert m["cores"] >= 1
    assert machine_label(m) == f"{m['cpu']} ({m['cpu_capability']}), torch {m['torch']}"
    assert machine_label(None) == "unrecorded"


def test_bench_groups_its_runs_by_machine(tmp_path):
    a = {"cpu": "Xeon A", "cpu_capability": "AVX512", "torch": "2.13.0+cpu"}
    b = {**a, "cpu": "Xeon B", "cpu_capability": "AVX2"}
    results = {}
    for name, meta in (("teacher", {"machine": a}), ("baseline-s0", {"machine": b}),
                       ("baseline-s1", {"machine": a, "machines": [a]}),
                       ("old-s0", {"commit": "x"}),
                       ("resumed-s0", {"machine": a, "machines": [None, a]})):
        run = tmp_path / name
        run.mkdir()
        (run / "meta.json").write_text(json.dumps(meta))
        results[name] = JobResult(Job(name, name, "c.yaml"), str(run), "reused")
    results["late-s0"] = JobResult(Job("late-s0", "late", "c.yaml"), str(tmp_path / "x"),
                                   "missing")
    assert run_machines(results) == {
        "Xeon A (AVX512), torch 2.13.0+cpu": ["teacher", "baseline-s1"],
        "Xeon B (AVX2), torch 2.13.0+cpu": ["baseline-s0"], "unrecorded": ["old-s0"],
        "unrecorded + Xeon A (AVX512), torch 2.13.0+cpu": ["resumed-s0"]}

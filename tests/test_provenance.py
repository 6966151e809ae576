"""Provenance: the commit and the machine a result came from."""

from __future__ import annotations

import json

import numpy as np
import torch

from bevkd.bench.command import run_commits, run_machines
from bevkd.bench.plan import Job
from bevkd.bench.runner import JobResult
from bevkd.blas import openblas_core
from bevkd.provenance import machine, machine_label


def test_machine_names_the_cpu_and_the_libraries():
    m = machine()
    assert isinstance(m["cpu"], str) and m["cpu"] not in ("", "unknown")
    assert m["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert m["torch"] == torch.__version__ and m["numpy"] == np.__version__
    assert m["cores"] >= 1 and len(m["cpu_flags"]) == 10
    assert "gpu" not in m  # a CPU result: no GPU named, even where there is one
    # numpy's OpenBLAS kernels: pinned by instruction set in the tests as in `bevkd`
    # (tests/conftest.py, bevkd.blas), else OpenBLAS's own choice
    assert m["blas"] == (openblas_core() or "unknown")
    assert machine_label(m) == (f"{m['cpu']} {m['cpu_id']} flags {m['cpu_flags']} "
                                f"({m['cpu_capability']}), OpenBLAS {m['blas']}, "
                                f"torch {m['torch']}")
    if torch.cuda.is_available():
        assert machine(gpu=True)["gpu"] == torch.cuda.get_device_name(0)
    assert machine_label(None) == "unrecorded"
    # two VMs with the same generic model name but other CPUs are told apart
    assert machine_label({**m, "cpu_id": "6/106/6"}) != machine_label(m)
    assert machine_label({**m, "cpu_flags": "0123456789"}) != machine_label(m)
    # on one CPU, other BLAS kernels are another machine; a run recorded before numpy's
    # kernels were (no "blas") is named as it was
    assert machine_label({**m, "blas": "Prescott"}) != machine_label(m)
    assert "OpenBLAS" not in machine_label({k: v for k, v in m.items() if k != "blas"})


def test_a_gpu_training_names_its_gpu():
    m = {"cpu": "EPYC", "cpu_id": "25/17/1", "cpu_flags": "abc", "cpu_capability": "AVX2",
         "torch": "2.11.0+cu130"}
    on_gpu = {**m, "gpu": "NVIDIA H200", "cuda": "13.0"}
    assert machine_label(on_gpu) == ("EPYC 25/17/1 flags abc (AVX2), NVIDIA H200 (CUDA 13.0), "
                                     "torch 2.11.0+cu130")
    assert machine_label(on_gpu) != machine_label(m)


def test_a_copy_without_git_history_takes_its_commit_from_the_environment(monkeypatch):
    from bevkd.provenance import COMMIT_ENV, git_commit

    monkeypatch.delenv(COMMIT_ENV, raising=False)
    here = git_commit()
    monkeypatch.setenv(COMMIT_ENV, "94914e9")
    assert git_commit() == "94914e9"
    monkeypatch.setenv(COMMIT_ENV, "")  # empty: not set
    assert git_commit() == here


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
    la, lb = machine_label(a), machine_label(b)
    assert la == "Xeon A ? flags ? (AVX512), torch 2.13.0+cpu"
    assert run_machines(results) == {la: ["teacher", "baseline-s1"], lb: ["baseline-s0"],
                                     "unrecorded": ["old-s0"],
                                     f"unrecorded + {la}": ["resumed-s0"]}


def test_bench_groups_runs_of_other_commits_by_commit(tmp_path):
    """run_commits: the finished runs whose meta.json names another commit than the table's,
    grouped by that commit in run order; no readable commit is "unknown"; runs that did not
    finish are not listed."""
    results = {}
    for name, meta, status in (("teacher", '{"commit": "c0ffee"}', "reused"),
                               ("baseline-s0", '{"commit": "aaaa"}', "reused"),
                               ("baseline-s1", '{"commit": "bbbb"}', "done"),
                               ("old-s0", '{"machine": null}', "reused"),
                               ("broken-s0", "{", "reused"),
                               ("ablation-s0", '{"commit": "aaaa"}', "done"),
                               ("crashed-s0", '{"commit": "dddd"}', "failed"),
                               ("late-s0", '{"commit": "eeee"}', "missing")):
        run = tmp_path / name
        run.mkdir()
        (run / "meta.json").write_text(meta)
        results[name] = JobResult(Job(name, name, "c.yaml"), str(run), status)
    results["gone-s0"] = JobResult(Job("gone-s0", "gone", "c.yaml"), str(tmp_path / "x"), "done")
    assert run_commits(results, "c0ffee") == {"aaaa": ["baseline-s0", "ablation-s0"],
                                              "bbbb": ["baseline-s1"],
                                              "unknown": ["old-s0", "broken-s0", "gone-s0"]}
    assert run_commits(results, "aaaa") == {"c0ffee": ["teacher"], "bbbb": ["baseline-s1"],
                                            "unknown": ["old-s0", "broken-s0", "gone-s0"]}
    assert run_commits({k: results[k] for k in ("teacher",)}, "c0ffee") == {}
    # a run resumed across commits is listed under its attempts' commits, unless every one of
    # them is the table's
    for name, meta in (("resumed-s0", '{"commit": "c0ffee", "commits": ["aaaa", "c0ffee"]}'),
                       ("again-s0", '{"commit": "c0ffee", "commits": ["c0ffee", "c0ffee"]}')):
        (tmp_path / name).mkdir()
        (tmp_path / name / "meta.json").write_text(meta)
        results[name] = JobResult(Job(name, name, "c.yaml"), str(tmp_path / name), "reused")
    got = run_commits(results, "c0ffee")
    assert got["aaaa + c0ffee"] == ["resumed-s0"] and "again-s0" not in str(got)

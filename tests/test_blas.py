"""numpy's BLAS kernels pinned by instruction set (bevkd.blas)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bevkd import blas
from bevkd.cli import main

AVX512 = {"fpu", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512cd",
          "avx512vl", "avx512_vnni"}


def test_the_kernels_follow_the_instruction_set_not_the_cpu_model():
    assert blas.core_for(AVX512) == "SkylakeX"
    # AVX-512 without its vector-length extension (Xeon Phi) is not SkylakeX's set
    assert blas.core_for(AVX512 - {"avx512vl"}) == "Haswell"
    assert blas.core_for({"sse4_2", "avx", "avx2", "fma"}) == "Haswell"
    assert blas.core_for({"sse4_2", "avx", "avx2"}) is None  # no FMA: OpenBLAS chooses
    assert blas.core_for(set()) is None  # no /proc/cpuinfo (macOS): OpenBLAS chooses


def test_pinning_sets_the_variable_once_and_keeps_the_users():
    env: dict[str, str] = {}
    assert blas.pin_openblas(env, AVX512) == "SkylakeX"
    assert env == {blas.CORE_ENV: "SkylakeX"}
    env = {blas.CORE_ENV: "Zen"}  # the user's choice wins
    assert blas.pin_openblas(env, AVX512) == "Zen" and env == {blas.CORE_ENV: "Zen"}
    env = {}
    assert blas.pin_openblas(env, {"sse2"}) is None and env == {}  # nothing to pin
    env = {blas.CORE_ENV: ""}  # set but empty: not a choice
    assert blas.pin_openblas(env, AVX512) == "SkylakeX"


def test_importing_the_command_does_not_load_numpy():
    """main() can pin only if nothing it imports on the way has loaded numpy already (asked in
    a new process: this one's numpy is loaded)."""
    code = ("import sys, bevkd.cli, bevkd.blas, bevkd.provenance; "
            "print('numpy' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]


def test_the_bevkd_command_pins_the_kernels(monkeypatch, tmp_path):
    monkeypatch.delenv(blas.CORE_ENV, raising=False)
    missing = ["export", "--ckpt", str(tmp_path / "none"), "--out", str(tmp_path / "out")]
    assert main(missing) == 2  # (an error: no such run)
    want = blas.core_for(blas.cpu_flags())
    assert os.environ.get(blas.CORE_ENV) == want
    monkeypatch.setenv(blas.CORE_ENV, "Haswell")
    main(missing)
    assert os.environ[blas.CORE_ENV] == "Haswell"


def test_a_process_pinned_before_numpy_loads_runs_the_pinned_kernels():
    """What `bevkd` relies on: OpenBLAS reads the variable when numpy loads it. Asked in a new
    process (this one's numpy is loaded): pinned there, then after numpy, and a user's value."""
    want = blas.core_for(blas.cpu_flags())
    if want is None or blas.openblas_core() is None:
        pytest.skip("no kernels to pin on this CPU, or numpy's BLAS is not OpenBLAS")
    ask = "import bevkd.blas as b; {}; print(b.openblas_core())"
    env = {k: v for k, v in os.environ.items() if k != blas.CORE_ENV}

    def core(code: str, **extra: str) -> str:
        return subprocess.run([sys.executable, "-c", ask.format(code)], env={**env, **extra},
                              capture_output=True, text=True, check=True).stdout.strip()

    assert core("b.pin_openblas()") == want
    assert core("b.pin_openblas()", **{blas.CORE_ENV: "Prescott"}) == "Prescott"
    # pinned after numpy has loaded: too late for this process (its kernels are OpenBLAS's
    # own choice, which on some CPUs is the same)
    assert core("import numpy; b.pin_openblas()") == core("pass")
    # this test process was pinned by tests/conftest.py before torch loaded numpy
    assert blas.openblas_core() == want

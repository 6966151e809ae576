"""numpy's BLAS kernels, chosen by instruction set rather than by CPU model, so that the same
inputs give the same bits on every CPU of one instruction set.

numpy's wheels bundle OpenBLAS, which picks its kernels when it loads by the CPU *model* it
recognises. A model it does not know gets its generic ``Prescott`` (SSE3) kernels: numpy
1.26's OpenBLAS 0.3.23 on an Intel Xeon 6/207 (Emerald Rapids) runs Prescott, where a Xeon
6/167 with the same AVX-512 instructions runs ``SkylakeX``. The two round a float64 matrix
product differently, and bevkd's geometry is numpy: SynthScenes generated on the 6/207
differed from the 6/167's in a camera rotation's last bits (``calibrated_sensor.json``, one
byte longer) and in 7 of its 2,880 camera images (its LiDAR sweeps and annotations were the
same), so a camera model trained on it reads other inputs than the 6/167's. Pinned to ``SkylakeX`` (``OPENBLAS_CORETYPE``), the 6/207 generated the 6/167's
dataset (every table the same size), and the tiny LiDAR teacher trained on it logged the
6/167 training's loss at all 570 steps and its metrics, to the bit: torch's own kernels
(oneDNN, MKL) dispatch by instruction set already. (That teacher trained with Prescott
kernels on the pinned dataset logged the same first 47 steps: where the kernels showed was
the data.)

So the ``bevkd`` command pins the kernels by instruction set before anything imports numpy
(:func:`pin_openblas`, from :func:`bevkd.cli.main`; the trainings a bench starts inherit it):
``SkylakeX`` where the CPU has the AVX-512 foundation, byte/word, double/quad word,
conflict-detection and vector-length instructions, ``Haswell`` where it has AVX2 and FMA,
OpenBLAS's own choice elsewhere. A value the user set is kept. Code that imports bevkd as a
library calls :func:`pin_openblas` before numpy's first import, or sets the variable itself:
the tests do (``tests/conftest.py``), and so does every script under ``benchmarks/`` that
computes in its own process (it imports ``benchmarks/_pinned.py`` first).
The kernels a process runs are recorded with each run (:func:`openblas_core`,
:func:`bevkd.provenance.machine`).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

CORE_ENV = "OPENBLAS_CORETYPE"
"""The environment variable OpenBLAS reads, once, when it loads, to run the kernels it names
instead of those it would pick for the CPU model."""

_AVX512 = frozenset({"avx512f", "avx512bw", "avx512dq", "avx512cd", "avx512vl"})
_AVX2 = frozenset({"avx2", "fma"})


def core_for(flags: set[str] | frozenset[str]) -> str | None:
    """The OpenBLAS kernels for a CPU with the instruction-set ``flags`` of ``/proc/cpuinfo``:
    ``SkylakeX`` (AVX-512), ``Haswell`` (AVX2 and FMA), or None (OpenBLAS's own choice)."""
    if _AVX512 <= flags:
        return "SkylakeX"
    if _AVX2 <= flags:
        return "Haswell"
    return None


def cpu_flags() -> frozenset[str]:
    """The first processor's instruction-set flags in ``/proc/cpuinfo`` (none where there is
    no such file: macOS, Windows)."""
    from .provenance import cpuinfo

    return frozenset(cpuinfo().get("flags", "").split())


def pin_openblas(environ: MutableMapping[str, str] | None = None,
                 flags: set[str] | frozenset[str] | None = None) -> str | None:
    """Set :data:`CORE_ENV` in ``environ`` (``os.environ``) to :func:`core_for` this CPU's
    ``flags`` unless it is set already. Takes effect only where numpy has not been imported
    yet in this process, and in the processes it starts. Returns the kernels pinned (the
    user's, where set), or None (none: OpenBLAS chooses)."""
    environ = os.environ if environ is None else environ
    if environ.get(CORE_ENV):
        return environ[CORE_ENV]
    core = core_for(cpu_flags() if flags is None else flags)
    if core is not None:
        environ[CORE_ENV] = core
    return core


def openblas_core() -> str | None:
    """The kernels numpy's OpenBLAS runs in this process (``SkylakeX``, ``Haswell``,
    ``Prescott``, ...), or None where numpy links another BLAS or threadpoolctl cannot say."""
    import importlib

    importlib.import_module("numpy")  # loads its BLAS, which threadpoolctl then finds
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    for lib in threadpool_info():
        if lib.get("internal_api") == "openblas" and "numpy" in str(lib.get("filepath", "")):
            return lib.get("architecture")
    return None

"""Imported first by every benchmark script that computes in its own process: numpy's BLAS
kernels pinned by instruction set before anything imports numpy, as every ``bevkd`` command
runs them (:mod:`bevkd.blas`), so that a script's data and geometry are the bits the CLI's
trainings read on the same machine kind. ``tests/benchmarks/test_pinned.py`` checks the order."""

from bevkd.blas import pin_openblas

pin_openblas()

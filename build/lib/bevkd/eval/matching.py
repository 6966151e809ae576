"""Greedy centre-distance matching (numba) with the devkit's exact distances and tie-breaking.

The devkit (``eval/detection/algo.py: accumulate``) walks the predictions of a class in
descending score order and gives each the closest still-free GT box of its sample and class,
if closer than the threshold. Ties resolve as there: equal scores by *descending* position in
``EvalBoxes.all`` (it sorts ``(score, index)`` pairs ascending and reverses), equal distances
to the first GT box in ``sample['anns']`` order (strict ``<``).

Distances are ``np.linalg.norm(pred_xy - gt_xy)``, which numpy computes as ``sqrt(x.dot(x))``
through BLAS; OpenBLAS's kernels fuse the second product into the sum (an FMA) on CPUs that
have one, so the result can differ by one ulp from ``sqrt(dx*dx + dy*dy)``. A match decision
at a threshold or between two GT boxes can hinge on that ulp, so :func:`dot_mode` finds out
once per process which formula this machine's numpy uses and the kernel uses the same one.
"""

from __future__ import annotations

from functools import lru_cache

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

PLAIN, FMA_YX, FMA_XY = 0, 1, 2  # dx*dx + dy*dy; fma(dy, dy, dx*dx); fma(dx, dx, dy*dy)


@intrinsic
def _fma(typingctx, a, b, c):  # noqa: ARG001 - numba's intrinsic signature
    """Correctly rounded ``a * b + c`` (LLVM's ``llvm.fma.f64``; libm where the CPU has none)."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        d = ir.DoubleType()
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(d, [d, d, d]),
                                            "llvm.fma.f64")
        return builder.call(fn, args)

    return sig, codegen


@numba.njit(cache=True, inline="always")
def _norm(dx: float, dy: float, mode: int) -> float:
    if mode == FMA_YX:
        return np.sqrt(_fma(dy, dy, dx * dx))
    if mode == FMA_XY:
        return np.sqrt(_fma(dx, dx, dy * dy))
    return np.sqrt(dx * dx + dy * dy)


@numba.njit(cache=True)
def _norms(dx: np.ndarray, dy: np.ndarray, mode: int) -> np.ndarray:
    out = np.empty(dx.shape[0])
    for i in range(dx.shape[0]):
        out[i] = _norm(dx[i], dy[i], mode)
    return out


def norm2(v: np.ndarray) -> np.ndarray:
    """``np.linalg.norm`` of each row of ``v (N, 2)``, bit for bit as this machine's numpy."""
    v = np.asarray(v, np.float64)
    return _norms(np.ascontiguousarray(v[:, 0]), np.ascontiguousarray(v[:, 1]), dot_mode())


@lru_cache(maxsize=None)
def dot_mode() -> int:
    """Which float formula ``np.linalg.norm`` of a 2-vector uses on this machine."""
    rng = np.random.default_rng(0)
    d = rng.normal(size=(512, 2)) * 30
    ref = np.array([np.linalg.norm(x) for x in d])
    for mode in (PLAIN, FMA_YX, FMA_XY):
        if np.array_equal(_norms(d[:, 0].copy(), d[:, 1].copy(), mode), ref):
            return mode
    return PLAIN  # an unknown BLAS summation order: distances may differ by an ulp


@numba.njit(cache=True)
def _greedy(order: np.ndarray, pred_sample: np.ndarray, pred_xy: np.ndarray,
            gt_ptr: np.ndarray, gt_xy: np.ndarray, thresholds: np.ndarray, mode: int,
            match: np.ndarray, dist: np.ndarray) -> None:
    taken = np.zeros(gt_xy.shape[0], np.bool_)
    for t in range(thresholds.shape[0]):
        th = thresholds[t]
        taken[:] = False
        for k in range(order.shape[0]):
            p = order[k]
            s = pred_sample[p]
            best = np.inf
            best_g = -1
            for g in range(gt_ptr[s], gt_ptr[s + 1]):
                if taken[g]:
                    continue
                d = _norm(pred_xy[p, 0] - gt_xy[g, 0], pred_xy[p, 1] - gt_xy[g, 1], mode)
                if d < best:
                    best = d
                    best_g = g
            if best < th:
                taken[best_g] = True
                match[t, k] = best_g
                dist[t, k] = best
            else:
                match[t, k] = -1
                dist[t, k] = np.nan


def score_order(scores: np.ndarray) -> np.ndarray:
    """Indices by descending score, ties by descending index: ``sorted((v, i))[::-1]``."""
    return np.argsort(scores, kind="stable")[::-1]


def greedy_match(scores: np.ndarray, pred_sample: np.ndarray, pred_xy: np.ndarray,
                 gt_sample: np.ndarray, gt_xy: np.ndarray, num_samples: int,
                 thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Match one class's predictions to its GT boxes at each threshold, as the devkit.

    Args:
        scores: ``(P,)`` confidences, predictions in ``EvalBoxes.all`` order.
        pred_sample: ``(P,)`` sample index of each prediction.
        pred_xy: ``(P, 2)`` global centres.
        gt_sample: ``(G,)`` sample index of each GT box, non-decreasing (grouped by sample,
            ``sample['anns']`` order inside).
        gt_xy: ``(G, 2)`` global centres.
        num_samples: number of samples ``S`` (indices are ``< S``).
        thresholds: ``(T,)`` match distances in metres.

    Returns:
        ``order (P,)`` the predictions in processing order, ``match (T, P)`` the matched GT
        index of ``order[k]`` or -1, ``dist (T, P)`` its centre distance (NaN if unmatched).
    """
    order = score_order(scores).astype(np.int64)
    gt_ptr = np.searchsorted(gt_sample, np.arange(num_samples + 1)).astype(np.int64)
    t = len(thresholds)
    match = np.empty((t, len(order)), np.int64)
    dist = np.empty((t, len(order)), np.float64)
    _greedy(order, np.ascontiguousarray(pred_sample, np.int64),
            np.ascontiguousarray(pred_xy, np.float64), gt_ptr,
            np.ascontiguousarray(gt_xy, np.float64), np.asarray(thresholds, np.float64),
            dot_mode(), match, dist)
    return order, match, dist

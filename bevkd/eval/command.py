"""``bevkd metrics``: score a results file, optionally against the devkit, with plots."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

from ..errors import BevkdError
from .config import CVPR_2019
from .groundtruth import GroundTruth
from ..data.infos import find_version
from .metrics import evaluate
from .report import comparison_table, max_abs_difference, summary_table
from .results import load_predictions, read_results

DEVKIT_TOLERANCE = 1e-9


def run_metrics(data_root: str, version: Optional[str], split: str, results_path: str,
                out_dir: str, check_devkit: bool = False, plots: bool = False,
                cache_dir: Optional[str] = None, confusion: bool = False,
                printer=print) -> dict[str, Any]:
    """Evaluate ``results_path`` on ``split``; write ``out_dir/metrics.json``; return it.

    ``metrics.json`` has exactly the devkit's ``metrics_summary.json`` layout;
    ``metrics_details.json`` its ``metrics_details.json`` layout. With ``check_devkit`` the
    devkit scores the same file too (``out_dir/devkit/``), both are printed side by side, and
    a difference above 1e-9 is an error. With ``confusion``, ``out_dir/confusion.json`` and a
    printed table say where each class's top predictions land (:mod:`bevkd.eval.confusion`).
    """
    start = time.perf_counter()
    version = find_version(data_root, version)
    # The results scan (numba, GIL released) runs beside the table reading: on a machine with
    # two free cores the slower of the two is the cost, not their sum.
    with ThreadPoolExecutor(max_workers=1) as pool:
        read = pool.submit(read_results, results_path)
        gt = GroundTruth.load(data_root, version, split, cache_dir=cache_dir)
        preds = load_predictions(results_path, gt.sample_tokens, gt.predefined, CVPR_2019,
                                 read=read.result())
    result = evaluate(gt, preds, CVPR_2019)
    summary = result.summary
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(out_dir, "metrics_details.json"), "w") as f:
        json.dump(result.details_json(), f, indent=2)
    took = time.perf_counter() - start
    printer(summary_table(summary))
    printer(f"\n{len(preds)} predictions, {len(gt)} GT boxes in {len(gt.sample_tokens)} samples; "
            f"total time (tables, results, metrics): {took:.2f}s")
    printer(f"wrote {os.path.join(out_dir, 'metrics.json')}")
    if confusion:
        from .confusion import CONFUSION_FILE, sources_table, top_detection_sources

        sources = top_detection_sources(gt, preds, CVPR_2019)
        with open(os.path.join(out_dir, CONFUSION_FILE), "w") as f:
            json.dump(sources, f, indent=2)
        printer("\nWhere each class's top predictions land (as many as its GT boxes; 2 m):")
        printer(sources_table(sources))
        printer(f"wrote {os.path.join(out_dir, CONFUSION_FILE)}")
    if plots:
        from .plots import draw_plots

        paths = draw_plots(result, os.path.join(out_dir, "plots"))
        printer(f"wrote {len(paths)} plots to {os.path.join(out_dir, 'plots')}")
    if check_devkit:
        from .devkit import run_devkit

        theirs, theirs_s, error = run_devkit(data_root, version, split, results_path,
                                             os.path.join(out_dir, "devkit"))
        printer("\nbevkd vs nuscenes-devkit (NuScenes + DetectionEval + evaluate):")
        printer(comparison_table(summary, theirs, took, theirs_s, error))
        if theirs is not None:
            diff, where, _ = max_abs_difference(summary, theirs)
            if diff > DEVKIT_TOLERANCE:
                raise BevkdError(f"metrics differ from the devkit by {diff:.3e} at {where} "
                                 f"(tolerance {DEVKIT_TOLERANCE:g})")
    return summary

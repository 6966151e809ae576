"""Run the official nuscenes-devkit evaluation on a results file (for cross-checks)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from typing import Any, Optional


def run_devkit(data_root: str, version: str, split: str, results_path: str,
               out_dir: str) -> tuple[Optional[dict[str, Any]], float, Optional[str]]:
    """``NuScenes(...)`` + ``DetectionEval(...)`` + ``evaluate()``, as its users do.

    Returns ``(summary, seconds, error)``: the devkit's ``metrics_summary.json`` dict (with
    ``meta``, JSON-normalised: float threshold keys become strings) or ``None`` and the
    exception text when it fails (it asserts when no sample has a prediction).
    """
    start = time.perf_counter()
    try:
        # its progress bars and prints would interleave with ours
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            from nuscenes import NuScenes
            from nuscenes.eval.detection.config import config_factory
            from nuscenes.eval.detection.evaluate import DetectionEval

            nusc = NuScenes(version=version, dataroot=data_root, verbose=False)
            ev = DetectionEval(nusc, config_factory("detection_cvpr_2019"), results_path, split,
                               out_dir, verbose=False)
            metrics, _ = ev.evaluate()
            summary = metrics.serialize()
            summary["meta"] = ev.meta.copy()
    except Exception as err:  # noqa: BLE001 - the devkit's failures are what we report
        return None, time.perf_counter() - start, f"{type(err).__name__}: {err}"
    seconds = time.perf_counter() - start
    summary = json.loads(json.dumps(summary))
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "metrics_summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary, seconds, None

"""Text reports of a ``metrics_summary`` dict, and comparison with the devkit's."""

from __future__ import annotations

import math
from typing import Any, Iterator, Optional

from .config import TP_SHORT_NAMES

_SKIP = ("eval_time", "meta")  # not metrics: run time and the user's own flags


def summary_table(summary: dict[str, Any]) -> str:
    """The devkit's printout (``DetectionEval.main``): means, NDS, eval time, per-class table."""
    lines = [f"mAP: {summary['mean_ap']:.4f}"]
    for name, value in summary["tp_errors"].items():
        lines.append(f"{TP_SHORT_NAMES[name]}: {value:.4f}")
    lines.append(f"NDS: {summary['nd_score']:.4f}")
    lines.append(f"Eval time: {summary['eval_time']:.1f}s")
    lines += ["", "Per-class results:",
              "%-20s\t%-6s\t%-6s\t%-6s\t%-6s\t%-6s\t%-6s" % ("Object Class", "AP", "ATE", "ASE",
                                                            "AOE", "AVE", "AAE")]
    tps = summary["label_tp_errors"]
    for name, ap in summary["mean_dist_aps"].items():
        t = tps[name]
        lines.append("%-20s\t%-6.3f\t%-6.3f\t%-6.3f\t%-6.3f\t%-6.3f\t%-6.3f" % (
            name, ap, t["trans_err"], t["scale_err"], t["orient_err"], t["vel_err"],
            t["attr_err"]))
    return "\n".join(lines)


def _leaves(d: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _leaves(v, f"{path}/{k}" if path else str(k))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from _leaves(v, f"{path}/{i}")
    else:
        yield path, d


def max_abs_difference(ours: dict[str, Any], theirs: dict[str, Any]) -> tuple[float, str, int]:
    """Largest ``|ours - theirs|`` over every metric value (NaN equals NaN).

    Returns ``(difference, path of the worst value, number of values compared)``;
    ``inf`` when the layouts differ or only one side is NaN.
    """
    a = {p: v for p, v in _leaves({k: v for k, v in ours.items() if k not in _SKIP})}
    b = {p: v for p, v in _leaves({k: v for k, v in theirs.items() if k not in _SKIP})}
    if set(a) != set(b):
        odd = sorted(set(a) ^ set(b))[0]
        return math.inf, odd, len(a)
    worst, where = 0.0, ""
    for p, x in a.items():
        y = b[p]
        if isinstance(x, (int, float)) and isinstance(y, (int, float)):
            if math.isnan(x) and math.isnan(y):
                continue
            diff = abs(x - y) if not (math.isnan(x) or math.isnan(y)) else math.inf
        else:
            diff = 0.0 if x == y else math.inf
        if diff > worst:
            worst, where = diff, p
    return worst, where, len(a)


def comparison_table(ours: dict[str, Any], theirs: Optional[dict[str, Any]],
                     ours_s: float, theirs_s: float, devkit_error: Optional[str] = None) -> str:
    """bevkd and devkit numbers side by side, with the max abs difference and both times."""
    rows: list[tuple[str, float, Optional[float]]] = [
        ("mAP", ours["mean_ap"], theirs["mean_ap"] if theirs else None)]
    for m, short in TP_SHORT_NAMES.items():
        rows.append((short, ours["tp_errors"][m], theirs["tp_errors"][m] if theirs else None))
    rows.append(("NDS", ours["nd_score"], theirs["nd_score"] if theirs else None))
    for name, ap in ours["mean_dist_aps"].items():
        rows.append((f"AP {name}", ap, theirs["mean_dist_aps"][name] if theirs else None))
    out = [f"{'metric':<26}{'bevkd':>14}{'devkit':>14}{'|diff|':>12}"]
    for label, x, y in rows:
        if y is None:
            out.append(f"{label:<26}{x:>14.8f}{'-':>14}{'-':>12}")
        else:
            d = abs(x - y) if not (math.isnan(x) and math.isnan(y)) else 0.0
            out.append(f"{label:<26}{x:>14.8f}{y:>14.8f}{d:>12.1e}")
    if theirs is None:
        out.append(f"devkit failed: {devkit_error}")
        out.append(f"time: bevkd {ours_s:.2f} s end to end")
        return "\n".join(out)
    diff, where, n = max_abs_difference(ours, theirs)
    out.append(f"max abs difference over all {n} metric values: {diff:.3e}"
               + (f" (at {where})" if diff > 0 else ""))
    speed = f" ({theirs_s / ours_s:.1f}x)" if ours_s > 0 else ""
    out.append(f"time end to end: bevkd {ours_s:.2f} s, devkit {theirs_s:.2f} s{speed}")
    return "\n".join(out)

"""The same bench job trained twice: each finished run in a bench archive against the version
of it an earlier commit of the archive held, where the two were trained apart (on another
machine, or from other trainings of their teachers and pretrained backbone).

    .venv/bin/python benchmarks/replication.py --before COMMIT [--before COMMIT ...] \
        [--archive benchmarks/archive/tiny] [--name replication_tiny]

E.g. ``--before`` a commit from before `bevkd bench --retrain-apart` trained the restored runs
of a lost machine again (and one from before the teachers were trained again, for theirs): each
job is compared with its version at the first of them where it differs. Same command (compared
with the runs and data folders each names read as one), same seed, same data: a CPU run
reproduces to the bit on one kind of machine, so what moves a result is the machine's arithmetic
and what the run learned from. The difference between the two trainings of one job is noise the
table's seed spread does not hold (each seed is trained once), and the difference of a method's
gain over the baseline's run of the same seed, between the two, is how far a single seed's gain
can be trusted. Writes ``benchmarks/<name>.md`` and ``.json``.
"""

from __future__ import annotations

import _pinned  # noqa: F401  (first: numpy's BLAS kernels pinned before numpy loads)
import argparse
import json
import os
import subprocess
import sys

import numpy as np

from _results import HERE, save
from bevkd.bench.report import learned_from
from bevkd.bench.reproduced import NOT_MEASURED, Reproduced
from bevkd.bench.runner import JOB_FILE, portable, rebased, roots
from bevkd.provenance import git_commit, machine_label

VAL = "synth_val"
REPO = os.path.dirname(HERE)


def _measured(metrics: dict | None) -> dict | None:
    """What an evaluation measured (its duration left out)."""
    return None if metrics is None else {k: v for k, v in metrics.items()
                                         if k not in NOT_MEASURED}


def _at(commit: str | None, path: str) -> dict | None:
    """The JSON file ``path`` (relative to the repository) at ``commit``, or in the working
    tree for None; None where it is not there."""
    if commit is None:
        full = os.path.join(REPO, path)
        if not os.path.isfile(full):
            return None
        with open(full) as f:
            return json.load(f)
    done = subprocess.run(["git", "-C", REPO, "show", f"{commit}:{path}"], capture_output=True,
                          text=True)
    return json.loads(done.stdout) if done.returncode == 0 else None


def _same_command(a: dict | None, b: dict | None) -> bool:
    """Two job records name one command, their runs and data folders read as the same."""
    sa, sb = (a or {}).get("signature"), (b or {}).get("signature")
    ra, rb = roots(sa), roots(sb)
    if ra is None or rb is None:
        return False
    return portable(rebased(sa, list(zip(ra, rb)))) == portable(sb)


def pairs(archive: str, befores: list[str]) -> list[dict]:
    """Every job finished in the working tree's ``archive`` and at one of ``befores`` (the
    first where the two differ: another training), made there by the same command."""
    out = []
    rel = os.path.relpath(archive, REPO)
    notes = Reproduced.load(archive)  # a teacher made again that reproduced is one training

    def read(job: dict | None) -> dict:
        return {k: notes.canonical(k, v) for k, v in learned_from(job).items()}

    for name in sorted(os.listdir(archive)):
        base = f"{rel}/{name}"
        now_m = _at(None, f"{base}/eval/{VAL}/metrics.json")
        found = ((c, _at(c, f"{base}/eval/{VAL}/metrics.json")) for c in befores)
        # another training measured something else (a training made again that reproduced,
        # e.g. on a machine of the same kind, differs only in how long its evaluation took)
        before, old_m = next(((c, m) for c, m in found
                              if m is not None and _measured(m) != _measured(now_m)),
                             (None, None))
        if now_m is None or old_m is None:
            continue
        now_j, old_j = _at(None, f"{base}/{JOB_FILE}"), _at(before, f"{base}/{JOB_FILE}")
        if not _same_command(old_j, now_j):
            print(f"{name}: another command at {before}; left out", file=sys.stderr)
            continue
        out.append({
            "job": name, "commit": before,
            "before": {"mAP": old_m["mean_ap"], "NDS": old_m["nd_score"],
                       "machine": machine_label(
                           (_at(before, f"{base}/meta.json") or {}).get("machine"))},
            "now": {"mAP": now_m["mean_ap"], "NDS": now_m["nd_score"],
                    "machine": machine_label(
                           (_at(None, f"{base}/meta.json") or {}).get("machine"))},
            "same_inputs": read(old_j) == read(now_j),
        })
    return out


def gains(found: list[dict]) -> list[dict]:
    """Each student job's gain over the baseline's run of its seed, in both trainings, where
    the baseline's run was trained twice too."""
    by = {p["job"]: p for p in found}
    out = []
    for p in found:
        model, _, seed = p["job"].rpartition("-s")
        base = by.get(f"baseline-s{seed}")
        if not model or model == "baseline" or base is None:
            continue
        out.append({"job": p["job"], **{
            f"{when}_{k}": p[when][k] - base[when][k]
            for when in ("before", "now") for k in ("mAP", "NDS")}})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", action="append", required=True,
                    help="a commit whose archive to compare with (repeatable: the first where "
                         "a job differs)")
    ap.add_argument("--archive", default=os.path.join(HERE, "archive", "tiny"))
    ap.add_argument("--name", default="replication_tiny")
    args = ap.parse_args()
    befores = [subprocess.run(["git", "-C", REPO, "rev-parse", "--short", c],
                              capture_output=True, text=True, check=True).stdout.strip()
               for c in args.before]
    found = pairs(os.path.abspath(args.archive), befores)
    if not found:
        raise SystemExit(f"no job of {args.archive} was trained again since {befores}")
    paired = gains(found)
    students = [p for p in found if "-s" in p["job"]]
    d_map = np.array([p["now"]["mAP"] - p["before"]["mAP"] for p in students])
    d_gain = np.array([g["now_mAP"] - g["before_mAP"] for g in paired])

    def rms(v: np.ndarray) -> float | None:
        return float(np.sqrt(np.mean(v ** 2))) if v.size else None

    summary = {"students": len(students), "rms_delta_mAP": rms(d_map),
               "rms_delta_gain_mAP": rms(d_gain),
               "gain_sign_flips": sum((g["now_mAP"] > 0) != (g["before_mAP"] > 0)
                                      for g in paired)}
    cmd = "python benchmarks/replication.py " + " ".join(sys.argv[1:])

    def pt(v: float) -> str:
        return f"{100 * v:+.2f}"

    lines = [f"# The same bench job trained twice ({os.path.relpath(args.archive, REPO)})", "",
             f"`{cmd}` at commit `{git_commit() or 'unknown'}`: each run of the archive against "
             "its version at the commit named, the same command and seed on the same data, "
             "trained apart. mAP / NDS in percent on `synth_val`. *Same inputs*: whether both "
             "read the same trainings of their teachers and backbone (a teacher reads none).",
             "",
             "| job | commit | before | machine | now | machine | Δ mAP / NDS | same inputs |",
             "|---|---|---|---|---|---|---|---|"]
    for p in found:
        b, n = p["before"], p["now"]
        lines.append(f"| {p['job']} | `{p['commit']}` | {100 * b['mAP']:.2f} / "
                     f"{100 * b['NDS']:.2f} | "
                     f"{b['machine']} | {100 * n['mAP']:.2f} / {100 * n['NDS']:.2f} | "
                     f"{n['machine']} | {pt(n['mAP'] - b['mAP'])} / {pt(n['NDS'] - b['NDS'])} "
                     f"| {'yes' if p['same_inputs'] else 'no'} |")
    if paired:
        lines += ["", "Each student's gain over the baseline's run of the same seed, in each "
                  "training (points):", "",
                  "| job | gain before (mAP / NDS) | gain now (mAP / NDS) |", "|---|---|---|"]
        lines += [f"| {g['job']} | {pt(g['before_mAP'])} / {pt(g['before_NDS'])} | "
                  f"{pt(g['now_mAP'])} / {pt(g['now_NDS'])} |" for g in paired]
    if summary["rms_delta_mAP"] is not None:
        lines += ["", f"Over {len(students)} student runs the root mean square of the mAP "
                  f"difference between the two trainings is {100 * summary['rms_delta_mAP']:.2f}"
                  " points" + (
                      f"; of a gain over the baseline's same seed, "
                      f"{100 * summary['rms_delta_gain_mAP']:.2f} points, its sign flipping "
                      f"in {summary['gain_sign_flips']} of {len(paired)}"
                      if paired else "") + "."]
    same = Reproduced.load(os.path.abspath(args.archive)).classes
    if same:
        lines += ["", "Trained again on a machine of the same kind and reproduced to the bit (the "
                  "same loss at every logged step, the same metrics; the archive's "
                  "`reproduced.json`): " + ", ".join(f"{k} ({len(g[0])} makings)"
                                                      for k, g in same.items()) + "."]
    save(args.name, {"command": cmd, "commit": git_commit(), "before": befores, "pairs": found,
                     "gains": paired, "reproduced": same, **summary}, lines)


if __name__ == "__main__":
    main()

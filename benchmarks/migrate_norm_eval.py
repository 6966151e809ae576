"""Correct the records of camera runs trained before ``norm_eval`` took effect.

Until commit d24818d nothing called ``train()`` on a model before Lightning fitted it, and a
freshly built ``ResNet`` left its BatchNorm layers in training mode: a run whose config said
``model.args.norm_eval: true`` normalised with each batch's statistics and updated the running
averages, exactly as ``norm_eval: false`` does. Checked: the bench's baseline-s0 ended with
all 20 of its backbone's BatchNorm layers' statistics other than backbone.pth's, its
convolution weights equal; and 3 steps of a narrow student from one backbone file give
bit-identical weights, statistics and optimiser state trained by b3a7ad2 with
``norm_eval=true`` and by the fix with ``norm_eval=false`` (by the fix with ``true``, all
BatchNorm statistics stay the file's). The tiny preset now says ``false``; this script makes such runs'
``config.yaml`` say what they did, so that ``bevkd bench`` reuses them and ``--resume``
continues them with the behaviour they started with.

For each run folder given (or each run folder directly inside a folder given) whose
``config.yaml`` has ``model.args.norm_eval: true`` and none of whose attempts' commits
(``meta.json``) contains the fix: the original goes to ``config.recorded.yaml``, ``config.yaml`` gets
``norm_eval: false``, and ``meta.json`` gains a ``migrations`` entry saying what and why.
Runs trained with the fix (in part or whole), or that record a commit this checkout does not
know or a dirty tree's, are left alone and listed. (Run on /work/runs/bench_tiny at 3fa2d0d,
the script then took a dirty tree for its commit: bevdistill-s1 and labeldistill-s1 were
begun from ``ee403b7-dirty``, before the fix; their ``epoch-00.ckpt`` hold backbone
BatchNorm statistics other than ``backbone.pth``'s, so migrating them was right.) An
attempt's commit is recorded when it starts, so one that failed at once still counts.

    python benchmarks/migrate_norm_eval.py /work/runs/bench_tiny [--dry-run]
"""

from __future__ import annotations

import _pinned  # noqa: F401  (first: numpy's BLAS kernels pinned before numpy loads)
import argparse
import datetime
import os
import subprocess
import sys

import yaml

from bevkd.engine.run import run_meta
from bevkd.fileio import atomic_write, write_json

FIX = "d24818d"
WHY = ("nothing called train() before fitting, so norm_eval never took effect: the backbone's "
       "BatchNorm layers trained as with norm_eval false (fixed in " + FIX + ")")


def _has_fix(commit: str, repo: str) -> bool | None:
    """Whether ``commit`` contains the fix; None when this checkout does not know it, or when
    the tree was dirty (it may have held the fix uncommitted)."""
    if commit.endswith("-dirty"):
        return None
    known = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=repo,
                           capture_output=True).returncode == 0
    if not known:
        return None
    return subprocess.run(["git", "merge-base", "--is-ancestor", FIX, commit], cwd=repo,
                          capture_output=True).returncode == 0


def _runs(paths: list[str]) -> list[str]:
    out = []
    for p in paths:
        if os.path.isfile(os.path.join(p, "config.yaml")):
            out.append(p)
        elif os.path.isdir(p):
            out += sorted(os.path.join(p, d) for d in os.listdir(p)
                          if os.path.isfile(os.path.join(p, d, "config.yaml")))
    return out


def migrate(run: str, repo: str, dry_run: bool) -> str:
    """What was done to ``run``, in a few words."""
    with open(os.path.join(run, "config.yaml")) as f:
        cfg = yaml.safe_load(f)
    args = (cfg.get("model") or {}).get("args") or {}
    if args.get("norm_eval") is not True:
        return "no norm_eval: true"
    meta = run_meta(run)
    if not meta:
        return "left: no readable meta.json"
    commits = [str(c) for c in (meta.get("commits") or [meta.get("commit", "")])]
    has_fix = [_has_fix(c, repo) for c in commits]
    if None in has_fix:
        c = commits[has_fix.index(None)]
        if c.endswith("-dirty"):  # decide from the data: see the module's docstring
            return (f"left: commit {c!r} (a dirty tree may have held the fix); compare the "
                    "backbone BatchNorm statistics of its first checkpoint with the backbone "
                    "file's: different means it trained without the fix")
        return f"left: commit {c!r} unknown to this checkout"
    if all(has_fix):
        return "left: trained with the fix (norm_eval took effect)"
    if any(has_fix):  # begun without the fix, resumed with it: neither setting describes it
        return "left: trained partly without the fix and partly with it; train it again"
    if dry_run:
        return "would migrate"
    recorded = os.path.join(run, "config.recorded.yaml")
    if not os.path.exists(recorded):
        os.replace(os.path.join(run, "config.yaml"), recorded)
    args["norm_eval"] = False
    atomic_write(os.path.join(run, "config.yaml"), yaml.safe_dump(cfg, sort_keys=False))
    meta.setdefault("migrations", []).append({
        "what": "config.yaml model.args.norm_eval true -> false (original: config.recorded.yaml)",
        "why": WHY, "by": "benchmarks/migrate_norm_eval.py",
        "when": datetime.datetime.now().isoformat(timespec="seconds")})
    write_json(os.path.join(run, "meta.json"), meta, indent=1)
    return "migrated"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", help="run folders, or folders of run folders")
    ap.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    args = ap.parse_args(argv)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    runs = _runs(args.paths)
    if not runs:
        print("no run folders found", file=sys.stderr)
        return 2
    for run in runs:
        print(f"{run}: {migrate(run, repo, args.dry_run)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How well each bench run's head reads an object's heading at its GT centre cell, per class.

    .venv/bin/python benchmarks/orientation.py RUNS DATA --name tiny_orientation \
        [--only RUN ...] [--teacher teacher] [--train-split]

LabelDistill's response term (DESIGN §4.2) pulls the student's regression code at every GT
centre cell towards the LiDAR teacher's code at that cell, ``rot = (sin, cos)`` included; the
composite inherits that term. This reads, for every finished run under RUNS, the yaw
``atan2(sin, cos)`` its head regresses at the centre cell of every GT box on the map (the very
cells that term uses) on the run's validation split, and compares it with the GT yaw: the mean
absolute error (wrapped to ``[0, π]``) and the share of boxes read *backwards* (error > π/2).
Because every run sees the same boxes in the same order, it also gives, per class, how often a
student reads a box backwards where the teacher does and where it does not; a student that
copies the teacher's reversals shows a gap between the two that the baseline does not have.
With ``--train-split`` the teacher is read on the training split too, without augmentation
(about what the response term hands the student during training; every GT box, also those
training drops for too few LiDAR points).

This is the cell read, not the detection: the official mAOE is over matched detections, whose
centre may sit one cell off. It is the quantity the response term moves. Traffic cones (no
orientation in the devkit) and barriers (orientation modulo π there) are left out of the
tables; the JSON has them.
"""

from __future__ import annotations

import _pinned  # noqa: F401  (first: numpy's BLAS kernels pinned before numpy loads)
import json
import math
import os
import sys

import numpy as np
import torch

from _results import save
from bevkd.data.nuscenes import NuScenesDataset
from bevkd.engine.run import epoch_loader, load_trained
from bevkd.models.heads.center_head import CenterHead, gather_code
from bevkd.provenance import git_commit
from top_detections import ORDER, finished_runs, runs_parser

BACKWARDS = math.pi / 2
# the devkit scores no orientation for cones and barriers' modulo π: no reversal to count
UNSCORED = ("traffic_cone", "barrier")


@torch.no_grad()
def headings(run: str, data: str, split: str | None = None) -> dict[str, np.ndarray]:
    """``{class: (N, 2) [gt yaw, read yaw]}`` at every GT centre cell of ``split`` (default: the
    run's validation split), in dataset order."""
    cfg, model = load_trained(run)
    model.eval()
    det = getattr(model, "student", model)
    head = next(m for m in det.modules() if isinstance(m, CenterHead))
    ds = NuScenesDataset(data, cfg.train.version, split or cfg.train.val_split, cfg.data,
                         train=False)
    acc: dict[str, list[np.ndarray]] = {c: [] for task in head.tasks for c in task}
    for batch in epoch_loader(ds, cfg, shuffle=False):
        preds = det(batch).preds
        shape = tuple(preds[0]["heatmap"].shape[-2:])
        for task, pred, tgt in zip(head.tasks, preds,
                                   head.targets(batch.targets.boxes, batch.targets.labels, shape)):
            if tgt.ind.shape[1] == 0:
                continue
            code = gather_code(pred, tgt.ind).float()
            read = torch.atan2(code[..., 6], code[..., 7])
            gt = torch.atan2(tgt.box[..., 6], tgt.box[..., 7])
            for local, name in enumerate(task):
                m = tgt.mask & (tgt.labels == local)
                acc[name].append(torch.stack([gt[m], read[m]], 1).cpu().numpy())
    return {c: (np.concatenate(v) if v else np.zeros((0, 2))) for c, v in acc.items()}


def angle_error(pairs: np.ndarray) -> np.ndarray:
    """``|gt − read|`` wrapped to ``[0, π]``."""
    d = np.abs(pairs[:, 0] - pairs[:, 1]) % (2 * math.pi)
    return np.minimum(d, 2 * math.pi - d)


def summarise(per_class: dict[str, np.ndarray], teacher: dict[str, np.ndarray] | None
              ) -> dict[str, dict[str, float]]:
    """Per class: ``n``, ``mean_err`` (rad), ``backwards`` share and, given the teacher's reads
    of the same boxes, the backwards share where the teacher reads backwards and where not."""
    out = {}
    for c, pairs in per_class.items():
        err = angle_error(pairs)
        row = {"n": int(len(err)), "mean_err": float(err.mean()) if len(err) else float("nan"),
               "backwards": float((err > BACKWARDS).mean()) if len(err) else float("nan")}
        if teacher is not None and len(teacher.get(c, ())) == len(err) and len(err):
            t_back = angle_error(teacher[c]) > BACKWARDS
            back = err > BACKWARDS
            row["n_teacher_backwards"] = int(t_back.sum())
            row["backwards_where_teacher_is"] = float(back[t_back].mean()) if t_back.any() \
                else float("nan")
            row["backwards_where_teacher_is_not"] = float(back[~t_back].mean()) \
                if (~t_back).any() else float("nan")
        out[c] = row
    return out


def _pct(x: float) -> str:
    return "–" if x != x else f"{100 * x:.0f} %"


def markdown(result: dict) -> list[str]:
    rows = result["rows"]
    classes = [c for c in rows[0]["val"] if rows[0]["val"][c]["n"] and c not in UNSCORED]
    lines = [f"# Headings read at GT centre cells ({result['name']})", "",
             f"`{result['command']}` at commit `{result['commit']}`.", "",
             __doc__.split("\n\n", 2)[2].strip(), "",
             "## Share of GT boxes read backwards (yaw error > 90°), validation split", "",
             "| run | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
    for r in rows:
        lines.append(f"| {r['run']} | " + " | ".join(_pct(r["val"][c]["backwards"])
                                                   for c in classes) + " |")
    lines += ["", "## Mean yaw error (rad), validation split", "",
              "| run | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
    for r in rows:
        lines.append(f"| {r['run']} | " + " | ".join(f"{r['val'][c]['mean_err']:.2f}"
                                                   for c in classes) + " |")
    teacher = result["teacher"]
    lines += ["", f"## Backwards where `{teacher}` reads the same box backwards / where it does "
              "not", "", "A student that copies the teacher's reversals has a large first "
              "number next to a small second one; the baseline's gap is what the box's own "
              "difficulty explains. Classes with fewer than 5 teacher reversals are left out.",
              ""]
    students = [r for r in rows if r["run"] != teacher]
    if not students:
        return lines
    counted = students[0]["val"]
    shown = [c for c in classes if counted[c].get("n_teacher_backwards", 0) >= 5]
    lines += ["| run | " + " | ".join(shown) + " |", "|---|" + "---|" * len(shown)]
    for r in students:
        lines.append(f"| {r['run']} | " + " | ".join(
            f"{_pct(r['val'][c].get('backwards_where_teacher_is', float('nan')))} / "
            f"{_pct(r['val'][c].get('backwards_where_teacher_is_not', float('nan')))}"
            for c in shown) + " |")
    lines += ["", "Teacher reversals counted: " + ", ".join(
        f"{c} {counted[c]['n_teacher_backwards']} of {counted[c]['n']}"
        for c in shown) + "."]
    if "train" in rows[0]:
        tr = rows[0]["train"]
        lines += ["", f"`{teacher}` on the training split (the targets the response term hands "
                  "the student), backwards share: " + ", ".join(
                      f"{c} {_pct(tr[c]['backwards'])}" for c in classes) + "."]
    return lines


def plot(result: dict, path: str) -> str:
    """Two panels over the classes, one bar per model (seeds averaged): the share of GT boxes
    read backwards, and that share on the boxes the teacher reads backwards. The models are
    ``result["drawn"]`` (every model of the runs named with ``--only``), else the table's main
    rows (a whole runs folder holds too many ablations for one bar each)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    classes = [c for c in rows[0]["val"] if rows[0]["val"][c]["n"] and c not in UNSCORED]
    models: dict[str, list[dict]] = {}
    drawn = result.get("drawn") or ORDER
    for r in rows:
        model = _model(r["run"])
        if model in drawn:
            models.setdefault(model, []).append(r["val"])
    fig, axes = plt.subplots(1, 2, figsize=(15, 4.2), sharey=True)
    width = 0.85 / len(models)
    cmap = plt.get_cmap("tab10")
    for ax, key, title in (
            (axes[0], "backwards", "all GT boxes"),
            (axes[1], "backwards_where_teacher_is", f"boxes {result['teacher']} reads backwards")):
        # the second panel: classes the teacher reverses at least 5 boxes of
        shown = classes if key == "backwards" else [
            c for c in classes if min(s[c].get("n_teacher_backwards", 0)
                                      for m, seeds in models.items() if m != result["teacher"]
                                      for s in seeds) >= 5]
        for i, (model, seeds) in enumerate(models.items()):
            if not shown or key not in seeds[0][shown[0]]:
                continue  # the teacher itself
            values = [np.mean([s[c][key] for s in seeds]) for c in shown]
            ax.bar(np.arange(len(shown)) + (i - len(models) / 2 + 0.5) * width, values, width,
                   label=f"{model} ({len(seeds)} run{'s' * (len(seeds) > 1)})",
                   color=cmap(i % 10))
        # anchored at their right end so long names (construction_vehicle) clear the next
        ax.set_xticks(range(len(shown)), shown, rotation=25, ha="right", rotation_mode="anchor")
        ax.set_title(f"heading read backwards (> 90°) at GT centres: {title}", fontsize=10)
    axes[0].set_ylabel("share of boxes (validation split)")
    axes[0].legend(fontsize=7, ncol=2, frameon=False, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _model(run: str) -> str:
    """A run folder's model (``asd-s0`` -> ``asd``)."""
    return run.rsplit("-s", 1)[0]


def _models(runs: list[str] | None) -> list[str] | None:
    """The models of run folder names, in order, or None."""
    return list(dict.fromkeys(map(_model, runs))) if runs else None


def main(argv: list[str] | None = None) -> None:
    p = runs_parser(__doc__, "tiny_orientation")
    p.add_argument("--teacher", default="teacher", help="the run whose reversals are compared")
    p.add_argument("--train-split", action="store_true",
                   help="read the teacher on its training split too")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite benchmarks/<name>.md and .png from benchmarks/<name>.json")
    args = p.parse_args(argv)
    png = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{args.name}.png")
    if args.report_only:
        with open(png[:-4] + ".json") as f:
            result = json.load(f)
        if args.only:  # redraw these runs' models (a JSON from before "drawn" has none)
            result["drawn"] = _models(args.only)
        save(args.name, result, markdown(result), echo=False)
        print(plot(result, png))
        return
    torch.set_num_threads(1)  # beside a running bench on two cores
    names = args.only or finished_runs(args.runs)
    if args.teacher not in names:
        sys.exit(f"orientation: the teacher run {args.teacher!r} is not among {names}")
    names = [args.teacher] + [n for n in names if n != args.teacher]
    reads = {}
    rows = []
    for i, name in enumerate(names):
        reads[name] = headings(os.path.join(args.runs, name), args.data)
        row = {"run": name, "val": summarise(reads[name], None if name == args.teacher
                                             else reads[args.teacher])}
        if name == args.teacher and args.train_split:
            cfg, _ = load_trained(os.path.join(args.runs, name))
            row["train"] = summarise(headings(os.path.join(args.runs, name), args.data,
                                              cfg.train.train_split), None)
        rows.append(row)
        print(f"[{i + 1}/{len(names)}] {name}: truck backwards "
              f"{_pct(row['val']['truck']['backwards'])}", file=sys.stderr, flush=True)
    command = (f"python benchmarks/orientation.py {args.runs} {args.data} --name {args.name}"
               + (" --only " + " ".join(args.only) if args.only else "")
               + (f" --teacher {args.teacher}" if args.teacher != "teacher" else "")
               + (" --train-split" if args.train_split else ""))
    result = {"name": args.name, "commit": git_commit(), "command": command,
              "teacher": args.teacher, "rows": rows,
              "drawn": _models(args.only)}
    save(args.name, result, markdown(result))
    print(plot(result, png))


if __name__ == "__main__":
    main()

"""Where the bench runs' top detections of a class land, and how their heatmaps tell it apart.

    .venv/bin/python benchmarks/top_detections.py RUNS DATA --name tiny_top_detections \
        [--only RUN ...] [--classes barrier traffic_cone] [--pair barrier traffic_cone]

(tiny_top_detections.md was made with ``--pair barrier traffic_cone``.)

For each finished run under RUNS (a `bevkd bench --runs` folder) this detects on the run's
validation split (`bevkd eval` into a temporary folder; the run's own result is not touched),
checks the mAP against the run's recorded one, and sorts each listed class's top predictions
(as many as the class has GT boxes) into TPs, duplicates, boxes of other classes and
background (`bevkd.eval.confusion`, the same as `bevkd metrics --confusion`). With ``--pair A
B`` it also reads the detector's heatmaps: the mean sigmoid of class A's channel, and of B's,
at the centre cell (3x3 max) of every GT box of A and of B within 30 m, so one sees whether the
network's A channel separates A's boxes from B's at all (the ratio column).
"""

from __future__ import annotations

import _pinned  # noqa: F401  (first: numpy's BLAS kernels pinned before numpy loads)
import argparse
import glob
import json
import os
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

from _results import save
from bevkd.bench.report import row_order
from bevkd.data.nuscenes import NuScenesDataset
from bevkd.engine.run import epoch_loader, evaluate_run, load_run_config, load_trained
from bevkd.eval.confusion import CONFUSION_FILE, other_classes, sources_table
from bevkd.fileio import write_json
from bevkd.models.heads.center_head import CenterHead
from bevkd.provenance import git_commit
from bevkd.structures.classes import CLASS_INDEX

ORDER = row_order()  # the bench table's main rows, a method of one's own among them


def finished_runs(root: str) -> list[str]:
    """Runs with a recorded validation result, main rows in table order, then the rest."""
    names = [n for n in sorted(os.listdir(root))
             if glob.glob(os.path.join(root, n, "eval", "*", "metrics.json"))]
    rank = lambda n: (ORDER.index(n.rsplit("-s", 1)[0]) if n.rsplit("-s", 1)[0] in ORDER  # noqa
                      else len(ORDER), n)
    return sorted(names, key=rank)


def runs_parser(doc: str, name: str) -> argparse.ArgumentParser:
    """The arguments of a script that measures the finished runs of a bench folder: RUNS DATA
    [--name NAME] [--only RUN ...]."""
    p = argparse.ArgumentParser(description=doc.split("\n", 1)[0])
    p.add_argument("runs", help="a `bevkd bench --runs` folder")
    p.add_argument("data", help="the dataset the runs trained on")
    p.add_argument("--name", default=name, help="benchmarks/<name>.md/.json/.png")
    p.add_argument("--only", nargs="*", default=None, help="these runs (default: all finished)")
    return p


@torch.no_grad()
def heat_at_gt(run: str, data: str, pair: tuple[str, str], radius: float = 30.0
               ) -> dict[str, dict[str, float]]:
    """``{gt_class: {channel_class: mean probability}}`` for the two classes of ``pair``."""
    cfg, model = load_trained(run)
    model.eval()
    det = getattr(model, "student", model)
    head = next(m for m in det.modules() if isinstance(m, CenterHead))
    where = {c: (int(head.class_to_task[CLASS_INDEX[c]]), int(head.class_to_local[CLASS_INDEX[c]]))
             for c in pair}
    ds = NuScenesDataset(data, cfg.train.version, cfg.train.val_split, cfg.data, train=False)
    acc: dict[str, dict[str, list]] = {g: {c: [] for c in pair} for g in pair}
    for batch in epoch_loader(ds, cfg, shuffle=False):
        preds = det(batch).preds
        maps = {c: F.max_pool2d(preds[t]["heatmap"][:, j:j + 1].float().sigmoid(), 3, 1, 1)[:, 0]
                for c, (t, j) in where.items()}
        h, w = next(iter(maps.values())).shape[1:]
        for b, (boxes, labels) in enumerate(zip(batch.targets.boxes, batch.targets.labels)):
            xy = boxes.tensor[:, :2]
            ij = head.grid.cell_index(xy, head.out_stride)
            ok = (xy.norm(dim=1) <= radius) & (ij[:, 0] >= 0) & (ij[:, 0] < w) \
                & (ij[:, 1] >= 0) & (ij[:, 1] < h)
            for g in pair:
                m = ok & (labels == CLASS_INDEX[g])
                for c in pair:
                    acc[g][c].append(maps[c][b, ij[m, 1], ij[m, 0]])
    return {g: {c: float(torch.cat(v).mean()) for c, v in row.items()} for g, row in acc.items()}


def measure(root: str, name: str, data: str, classes: list[str],
            pair: tuple[str, str] | None, write_confusion: bool = False) -> dict:
    run = os.path.join(root, name)
    split = load_run_config(run).train.val_split
    own = os.path.join(run, "eval", split)
    with open(os.path.join(own, "metrics.json")) as f:
        recorded = json.load(f)["mean_ap"]
    with tempfile.TemporaryDirectory() as tmp:
        # on the run's own validation split; writes confusion.json beside the metrics
        metrics, out = evaluate_run(run, data, out=tmp, progress=False)
        with open(os.path.join(out, CONFUSION_FILE)) as f:
            sources = json.load(f)
    # a run evaluated before training wrote confusion.json gets it now, from detections that
    # reproduce its recorded result exactly (its metrics.json stays as it is)
    if write_confusion and not os.path.exists(os.path.join(own, CONFUSION_FILE)):
        if metrics["mean_ap"] == recorded:
            write_json(os.path.join(own, CONFUSION_FILE), sources)  # atomic
        else:
            print(f"{name}: confusion.json not written (mAP {metrics['mean_ap']!r} here, "
                  f"{recorded!r} recorded)", file=sys.stderr)
    row = {"run": name, "mAP": metrics["mean_ap"], "recorded_mAP": recorded,
           "AP": {c: metrics["mean_dist_aps"][c] for c in classes},
           "sources": {c: sources[c] for c in classes}}
    if pair:
        row["heat"] = heat_at_gt(run, data, pair)
    return row


def markdown(result: dict, classes: list[str], pair: tuple[str, str] | None) -> list[str]:
    lines = [f"# Where the top detections land ({result['name']})", "",
             f"`{result['command']}` at commit `{result['commit']}`.", "",
             __doc__.split("\n\n", 2)[2].strip(), ""]
    rows = result["rows"]
    for c in classes:
        table = sources_table({r["run"]: r["sources"][c] for r in rows}, first="run",
                              columns={"AP %": {r["run"]: f"{100 * r['AP'][c]:.1f}"
                                                for r in rows}})
        lines += [f"## {c}", "", table, ""]
    if pair:
        a, b = pair
        lines += [f"## The {a} channel at GT centres of {a} and of {b}", "",
                  f"Mean sigmoid (3x3 max at the centre cell), GT within 30 m. The ratio is "
                  f"P({a} channel | {a} box) / P({a} channel | {b} box): how much more the "
                  f"{a} channel fires on its own boxes than on {b} boxes.", "",
                  f"| run | P({a}) at {a} | P({a}) at {b} | ratio | P({b}) at {b} | "
                  f"P({b}) at {a} |", "|---|---|---|---|---|---|"]
        for r in rows:
            h = r["heat"]
            lines.append(f"| {r['run']} | {h[a][a]:.3f} | {h[b][a]:.3f} | "
                         f"{h[a][a] / h[b][a]:.2f} | {h[b][b]:.3f} | {h[a][b]:.3f} |")
        lines.append("")
    lines.append("Every run's mAP here equals its recorded one to "
                 f"{max(abs(r['mAP'] - r['recorded_mAP']) for r in rows):.1e}.")
    return lines


KINDS = (("tp", "TP", "#2ca02c"), ("duplicate", "duplicate", "#98df8a"),
         ("background", "background", "#c7c7c7"))


def plot(result: dict, classes: list[str], path: str) -> str:
    """Per class, one stacked bar per run: the shares of its top detections that are TPs,
    duplicates, background, on the class it is confused with most over all runs, and on the
    rest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    fig, axes = plt.subplots(1, len(classes), figsize=(6.5 * len(classes), 0.42 * len(rows) + 2.0),
                             squeeze=False)
    for ax, c in zip(axes[0], classes):
        counts = [r["sources"][c] for r in rows]
        named = {k for s in counts for k in other_classes(s)}
        main_other = max(named, key=lambda k: sum(s.get(k, 0) for s in counts), default=None)
        left = np.zeros(len(rows))
        parts = [*KINDS] + ([(main_other, f"on {main_other}", "#d62728")] if main_other else [])
        for key, label, colour in parts:
            share = np.array([s.get(key, 0) / max(s["window"], 1) for s in counts])
            ax.barh(range(len(rows)), share, left=left, color=colour, label=label)
            left += share
        ax.barh(range(len(rows)), 1 - left, left=left, color="#ff9896", label="on other classes")
        ax.set_yticks(range(len(rows)), [r["run"] for r in rows])
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"share of the top {counts[0]['window']} {c} detections")
        ax.set_title(f"where the top {c} detections land")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=3, fontsize=7,
                  frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    p = runs_parser(__doc__, "tiny_top_detections")
    p.add_argument("--classes", nargs="+", default=["barrier", "traffic_cone"])
    p.add_argument("--pair", nargs=2, default=None, metavar=("A", "B"),
                   help="two classes whose heatmap channels to compare at GT centres "
                        "(e.g. barrier traffic_cone)")
    p.add_argument("--write-confusion", action="store_true",
                   help="give each run without RUN/eval/SPLIT/confusion.json (evaluated before "
                        "training wrote it) the one computed here, where its mAP reproduces "
                        "the recorded one exactly; a bench --archive run then archives it")
    p.add_argument("--plot-only", action="store_true",
                   help="redraw benchmarks/<name>.png from benchmarks/<name>.json")
    args = p.parse_args(argv)
    png = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{args.name}.png")
    if args.plot_only:
        with open(png[:-4] + ".json") as f:
            saved = json.load(f)
        print(plot(saved, list(saved["rows"][0]["sources"]), png))
        return
    torch.set_num_threads(1)  # beside a running bench on two cores
    names = args.only or finished_runs(args.runs)
    pair = tuple(args.pair) if args.pair else None
    rows = []
    for i, name in enumerate(names):
        rows.append(measure(args.runs, name, args.data, args.classes, pair, args.write_confusion))
        s = rows[-1]["sources"][args.classes[0]]
        print(f"[{i + 1}/{len(names)}] {name}: mAP {rows[-1]['mAP']:.4f} "
              f"({args.classes[0]}: {s})", file=sys.stderr, flush=True)
    command = (f"python benchmarks/top_detections.py {args.runs} {args.data} --name {args.name}"
               + (" --only " + " ".join(args.only) if args.only else "")
               + " --classes " + " ".join(args.classes)
               + (" --pair " + " ".join(args.pair) if args.pair else ""))
    result = {"name": args.name, "commit": git_commit(), "command": command, "rows": rows}
    save(args.name, result, markdown(result, args.classes, pair)
         + [f"![where the top detections land]({args.name}.png)"])
    plot(result, args.classes, png)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()

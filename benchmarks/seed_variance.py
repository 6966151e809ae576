"""How much one bench row varies between seeds: its runs over many seeds, the bench's commands.

    .venv/bin/python benchmarks/seed_variance.py --data DATA --runs RUNS --backbone PTH \
        [--rows baseline] [--seeds 0-3] [--read OTHER_RUNS ...] [--set KEY=VALUE ...] \
        [--report-only] [--name seed_variance_tiny]

A row's table entry rests on a few seeds; this trains (or reuses) ``<row>-s<seed>`` for more
of them with exactly the jobs `bevkd bench --preset tiny` plans (its ``bench.student_sets``,
its ``bench.overrides``, the pretrained backbone ``--backbone``, e.g. ``RUNS/backbone.pth`` of
a bench), so a finished run here is the run the bench would make and vice versa. ``--read``
folders (e.g. a bench's own ``--runs``, also while that bench is running) are only read: a
finished run there of the same command, config and inputs counts and is not trained again.
``--set`` changes every run (teachers included), e.g. a longer student schedule whose seed
variance is to be compared with the preset's: give it its own ``--runs`` and ``--name``.
Rows that distil need their teachers in ``--runs`` (trained there when missing) or finished in
a ``--read`` folder. Writes ``benchmarks/<name>.md`` and ``.json``: each seed's mAP / NDS on
synth_val and where it ran, and per row the mean, the sample standard deviation and half the
range (the bench's "seed spread").
"""

from __future__ import annotations

import _pinned  # noqa: F401  (first: numpy's BLAS kernels pinned before numpy loads)
import argparse
import os

import numpy as np

from _results import save
from bevkd.bench.command import bench_spec, checked_sets, row_overrides, run_machines
from bevkd.bench.plan import METHODS, TEACHER_ROWS, plan
from bevkd.bench.report import collect, seed_spread
from bevkd.bench.runner import JobResult, run_jobs
from bevkd.provenance import git_commit

VAL = "synth_val"


def seed_list(text: str) -> list[int]:
    """``"0-3"`` or ``"0,2,5"`` as a list of seeds."""
    if "-" in text:
        lo, hi = (int(t) for t in text.split("-", 1))
        return list(range(lo, hi + 1))
    return [int(t) for t in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--runs", required=True, help="where missing runs train")
    ap.add_argument("--backbone", required=True, help="the bench's pretrained backbone .pth")
    ap.add_argument("--rows", default="baseline", help="comma-separated bench rows")
    ap.add_argument("--seeds", default="0-3", help="e.g. 0-3 or 0,1,4")
    ap.add_argument("--read", action="append", default=[], help="runs folder only read")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--parallel", type=int, default=None)
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override for every run (a recipe to test; use its own --runs and "
                         "--name)")
    ap.add_argument("--name", default="seed_variance_tiny")
    args = ap.parse_args()
    rows, seeds = args.rows.split(","), seed_list(args.seeds)
    unknown = sorted(set(rows) - {"baseline", *METHODS, "composite"})
    if unknown:
        ap.error(f"unknown row(s) {unknown}")
    spec = bench_spec(args.preset)
    methods = tuple(m for m in METHODS if m in rows)
    jobs = plan(max(seeds) + 1, methods, "composite" in rows, (), row_overrides(spec),
                checked_sets(spec.student_sets, "bench.student_sets"))
    wanted = [j for j in jobs if j.model in rows and j.seed in seeds]
    teachers = [j for j in jobs if j.name in TEACHER_ROWS
                and any(j.name in w.needs for w in wanted)]
    common = dict(preset=args.preset, data=os.path.abspath(args.data),
                  threads=spec.threads, val_split=VAL, extra=tuple(args.set),
                  camera_extra=(f"model.args.backbone_weights={os.path.abspath(args.backbone)}",),
                  log=lambda m: print(m, flush=True))
    found = {}
    for folder in args.read:  # finished runs elsewhere, judged as the bench judges its own
        for name, r in run_jobs(wanted, runs=os.path.abspath(folder), parallel=1, train=False,
                                **common).items():
            if r.status == "reused" and name not in found:
                found[name] = r.run
    todo = [j for j in wanted if j.name not in found]
    # a teacher's run must sit where the jobs that need it look: --runs
    results = run_jobs(teachers + todo, runs=os.path.abspath(args.runs),
                       parallel=args.parallel or spec.parallel, train=not args.report_only,
                       **common)
    for j in todo:
        if results[j.name].status in ("done", "reused"):
            found[j.name] = results[j.name].run
    report(rows, seeds, wanted, found, args)


def report(rows, seeds, wanted, found, args) -> None:
    """The table of the finished runs ``found`` (job name -> run folder), read as the bench
    reads its own (``collect``, ``run_machines``)."""
    results = {j.name: JobResult(j, found[j.name], "reused") for j in wanted if j.name in found}
    collected = {r["model"]: r for r in collect(results, VAL)}
    out_rows = []
    for row in rows:
        c = collected.get(row, {"seeds": [], "mAP": [], "NDS": []})
        entry = {"model": row, "seeds": c["seeds"], "mAP": c["mAP"], "NDS": c["NDS"],
                 "runs": [found[f"{row}-s{s}"] for s in c["seeds"]],
                 "missing": [s for s in seeds if s not in c["seeds"]]}
        for k in ("mAP", "NDS"):
            v = np.array(c[k])
            entry[f"{k}_mean"] = float(v.mean()) if len(v) else None
            entry[f"{k}_sd"] = float(v.std(ddof=1)) if len(v) > 1 else None
            entry[f"{k}_half_range"] = seed_spread(c[k]) if len(v) else None
        out_rows.append(entry)
    command = ("python benchmarks/seed_variance.py --rows " + ",".join(rows)
               + f" --seeds {args.seeds} --runs {args.runs} "
               + " ".join(f"--read {r}" for r in args.read)
               + "".join(f" --set {x}" for x in args.set))
    machines = run_machines(results)
    result = {"commit": git_commit(), "command": command.strip(), "preset": args.preset,
              "rows": out_rows, "machines": machines}

    def pct(x):
        return "—" if x is None else f"{100 * x:.2f}"

    lines = [f"# Seed variance of bench rows ({args.preset})", "",
             f"`{result['command']}` at commit `{result['commit']}`. Each run is the bench's own "
             f"job (`bevkd bench --preset {args.preset}`: its student sets, overrides and "
             "pretrained backbone); mAP / NDS in percent on synth_val. sd: sample standard "
             "deviation over the seeds; half range: the bench's seed spread.", "",
             "| row | seeds | mAP per seed | NDS per seed | mAP mean ± sd | NDS mean ± sd | "
             "half range (mAP / NDS) |", "|---|---|---|---|---|---|---|"]
    for e in out_rows:
        lines.append(
            f"| {e['model']} | {', '.join(map(str, e['seeds'])) or '—'} | "
            f"{', '.join(pct(x) for x in e['mAP']) or '—'} | "
            f"{', '.join(pct(x) for x in e['NDS']) or '—'} | "
            f"{pct(e['mAP_mean'])} ± {pct(e['mAP_sd'])} | {pct(e['NDS_mean'])} ± "
            f"{pct(e['NDS_sd'])} | {pct(e['mAP_half_range'])} / {pct(e['NDS_half_range'])} |")
    lines += ["", "Runs: " + "; ".join(
        f"{e['model']}-s{s} `{r}`" for e in out_rows for s, r in zip(e["seeds"], e["runs"]))
        + "."]
    if len(machines) > 1:
        lines.append("Machines (a CPU run reproduces to the bit only on one kind of machine): "
                     + "; ".join(f"{m}: {', '.join(n)}" for m, n in machines.items()) + ".")
    missing = [f"{e['model']}-s{s}" for e in out_rows for s in e["missing"]]
    if missing:
        lines.append(f"Not finished: {', '.join(missing)}.")
    save(args.name, result, lines)


if __name__ == "__main__":
    main()

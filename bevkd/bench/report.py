"""The benchmark table: per model the metrics over seeds, gains, gap closed and cost ratios.

``gap closed = (mAP_kd − mAP_base) / (mAP_teacher − mAP_base)``; the step-time ratio is
measured by :mod:`bevkd.bench.steptime` on the trained models, one batch, interleaved (the
runs' own mean step times, which depend on the training that shared the cores, are kept as
``train_step_time_ratio``); the latency ratio is measured by :mod:`bevkd.bench.latency` on
the exported students.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any

import numpy as np

from ..eval.confusion import CONFUSION_FILE, other_classes
from ..structures.classes import DETECTION_CLASSES
from .plan import ABLATIONS, TEACHER_ROWS, all_methods
from .reproduced import Reproduced
from .runner import JOB_FILE, JobResult, made

TP_KEYS = ("trans_err", "scale_err", "orient_err", "vel_err", "attr_err")
TP_NAMES = {"trans_err": "mATE", "scale_err": "mASE", "orient_err": "mAOE", "vel_err": "mAVE",
            "attr_err": "mAAE"}


def row_order() -> tuple[str, ...]:
    """The table's main rows in order: teachers, baseline, every method
    (:func:`~bevkd.bench.plan.all_methods`), the composite; the ablations follow them."""
    return (*TEACHER_ROWS, "baseline", *all_methods(), "composite")


def _load(path: str) -> dict[str, Any] | None:
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def collect(results: dict[str, JobResult], val_split: str,
            latency: dict[str, dict[str, float]] | None = None,
            step_seconds: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """Rows of the table (benchmarks/<preset>.json ``rows``), one per model, seeds gathered.
    ``latency``: ``{row field: {model: value}}`` copied onto the rows, the latency ratios to
    the baseline and the forward pass's milliseconds
    (:func:`bevkd.bench.latency.latency_fields`); ``step_seconds``: one training step per
    model row, measured interleaved (:func:`bevkd.bench.steptime.measure`), which gives
    ``step_time_ratio``. The runs' own mean step times give ``train_step_seconds`` and
    ``train_step_time_ratio``."""
    by_model: dict[str, list[tuple]] = defaultdict(list)
    sources: dict[str, list[dict]] = defaultdict(list)
    # a training made again that reproduced an earlier one is named by the earlier's stamp
    notes = Reproduced.load(*sorted({os.path.dirname(os.path.abspath(r.run))
                                     for r in results.values()}))
    for res in sorted(results.values(), key=lambda r: r.job.seed):
        if res.status not in ("done", "reused"):
            continue
        metrics = _load(os.path.join(res.run, "eval", val_split, "metrics.json"))
        timing = _load(os.path.join(res.run, "timing.json")) or {}
        if metrics is not None:
            job = _load(os.path.join(res.run, JOB_FILE))
            read = {k: notes.canonical(k, v) for k, v in learned_from(job).items()}
            by_model[res.job.model].append((
                metrics, timing, res.job.seed, read,
                notes.canonical(os.path.basename(os.path.normpath(res.run)), made(job, res.run)),
                val_curve(res.run)))
            found = _load(os.path.join(res.run, "eval", val_split, CONFUSION_FILE))
            if found is not None:  # runs evaluated before bevkd wrote it have none
                sources[res.job.model].append(found)
    rows = []
    order = row_order()
    names = sorted(by_model, key=lambda m: (order.index(m) if m in order else len(order), m))
    for model in names:
        runs = by_model[model]
        row: dict[str, Any] = {
            "model": model,
            "seeds": [r[2] for r in runs],
            "mAP": [r[0]["mean_ap"] for r in runs],
            "NDS": [r[0]["nd_score"] for r in runs],
            **{TP_NAMES[k]: float(np.mean([r[0]["tp_errors"][k] for r in runs])) for k in TP_KEYS},
            "AP_per_class": {c: float(np.mean([r[0]["mean_dist_aps"][c] for r in runs]))
                             for c in DETECTION_CLASSES},
            "train_step_seconds": float(np.mean([r[1].get("step_seconds", np.nan)
                                                 for r in runs])),
            "train_minutes": float(np.mean([r[1].get("train_seconds", np.nan) for r in runs])) / 60,
            "peak_rss_mb": float(np.max([r[1].get("peak_rss_mb", np.nan) for r in runs])),
            "learned_from": [r[3] for r in runs],
            "made": [r[4] for r in runs],
            "val_curve": [r[5] for r in runs],
        }
        if sources[model]:
            row["top_sources"] = summed_sources(sources[model])
            row["top_sources_runs"] = len(sources[model])
        if model in (step_seconds or {}):
            row["step_seconds"] = float(step_seconds[model])
        for field, values in (latency or {}).items():
            if model in values:  # numbers as floats (from numpy); the timing device as it is
                value = values[model]
                row[field] = value if isinstance(value, str) else float(value)
        rows.append(row)
    _derived(rows)
    return rows


def val_curve(run: str) -> list[list[float]]:
    """A run's validations during training, ``[[epoch, mAP, NDS], ...]`` with epochs counted
    from 1 (the epoch each followed), from its CSV logs (kept in an archive too); empty for a
    run that logged none."""
    from ..engine.history import training_log, validations

    return [[e + 1, v["val/mAP"], v["val/NDS"]] for e, v in validations(training_log(run))
            if "val/mAP" in v and "val/NDS" in v]


def convergence(r: dict[str, Any]) -> dict[str, Any] | None:
    """Where a row's validation mAP stood at each epoch every one of its seeds validated (the
    mean over the seeds; a run resumed across a lost log may miss one) and how much it still
    rose over the last interval: ``{"epochs", "mAP", "seeds", "last_rise", "interval"}``;
    None with fewer than two such epochs. A model still rising at its end may gain from more
    epochs, and its final mAP depends on where training stopped (part of that rise can be
    the learning rate's decay to its end, which a longer run also ends with)."""
    curves = [{p[0]: p[1] for p in c} for c in r.get("val_curve") or [] if c]
    if not curves:
        return None
    epochs = sorted(set.intersection(*(set(c) for c in curves)))
    if len(epochs) < 2:
        return None
    mAP = [float(np.mean([c[e] for c in curves])) for e in epochs]
    return {"epochs": epochs, "mAP": mAP, "seeds": len(curves),
            "last_rise": mAP[-1] - mAP[-2], "interval": epochs[-1] - epochs[-2]}


def summed_sources(runs: list[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    """Several runs' :func:`bevkd.eval.confusion.top_detection_sources`, counts added up."""
    out: dict[str, dict[str, int]] = {}
    for run in runs:
        for name, counts in run.items():
            into = out.setdefault(name, {})
            for key, n in counts.items():
                into[key] = into.get(key, 0) + int(n)
    return out


def confusion_cells(counts: dict[str, int], at_least: float = 0.1) -> str:
    """One class's cell: the percent of its top detections on other classes' boxes, and the
    class they sit on most when that one alone takes ``at_least`` of them all."""
    w = counts.get("window", 0)
    if not w:
        return "—"
    others = other_classes(counts)
    cell = f"{100 * sum(others.values()) / w:.0f}"
    if others:
        top = max(others, key=others.get)
        if others[top] >= at_least * w:
            cell += f" ({top} {100 * others[top] / w:.0f})"
    return cell


def _derived(rows: list[dict[str, Any]]) -> None:
    """Fills each row's deltas, gap closed, step time ratios and seed-spread check."""
    by = {r["model"]: r for r in rows}
    base, teacher = by.get("baseline"), by.get("teacher")
    for r in rows:
        if base is None:
            break
        m, b = np.mean(r["mAP"]), np.mean(base["mAP"])
        r["delta_mAP"] = float(m - b)
        r["delta_NDS"] = float(np.mean(r["NDS"]) - np.mean(base["NDS"]))
        if r["model"] not in TEACHER_ROWS:
            if teacher is not None:
                gap = np.mean(teacher["mAP"]) - b
                r["gap_closed"] = float((m - b) / gap) if gap > 0 else None
                r["teacher_apart"] = teacher_apart(r, teacher)
            r["train_step_time_ratio"] = float(r["train_step_seconds"]
                                               / base["train_step_seconds"])
            if "step_seconds" in r and "step_seconds" in base:
                r["step_time_ratio"] = float(r["step_seconds"] / base["step_seconds"])
            if r["model"] != "baseline":
                _paired_deltas(r, base)
            if (r["model"] != "baseline" and len(r["mAP"]) > 1
                    and sorted(r["seeds"]) == sorted(base["seeds"])):
                # the acceptance test of a method: both mean gains exceed the seed spread
                # (half the range over seeds, the larger of the method's and the baseline's),
                # on means over the same seeds (others would compare their seeds' luck too)
                r["beats_baseline"] = all(
                    r[f"delta_{k}"] > max(seed_spread(r[k]), seed_spread(base[k]))
                    for k in ("mAP", "NDS"))


def same_seeds(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)`` with ``a["seeds"][i] == b["seeds"][j]``, in ``a``'s order: the
    runs of two rows that one seed pairs (the per-seed lists ``mAP``, ``NDS``, ... follow
    ``seeds``)."""
    where = {s: j for j, s in enumerate(b.get("seeds", []))}
    return [(i, where[s]) for i, s in enumerate(a.get("seeds", [])) if s in where]


def learned_from(job: dict[str, Any] | None) -> dict[str, Any]:
    """The checkpoints a run read, as its ``bench_job.json`` recorded them (``{"teacher":
    [size, mtime_ns], "model.args.backbone_weights": [...], ...}``; the dataset left out):
    which training of each teacher and of the pretrained backbone it learned from. ``{}``
    for a run without the record."""
    inputs = (job or {}).get("inputs")
    return {k: v for k, v in inputs.items() if k != "data"} if isinstance(inputs, dict) else {}


def teacher_apart(r: dict[str, Any], teacher: dict[str, Any]) -> list[int]:
    """The seeds of row ``r`` whose runs learned from another training of the LiDAR teacher
    than the table's ``teacher`` row (whose mAP its gap closed divides by); none where either
    record is missing."""
    ours = (teacher.get("made") or [None])[0]
    if ours is None:
        return []
    return [s for s, lf in zip(r["seeds"], r.get("learned_from") or [])
            if lf.get("teacher") is not None and lf["teacher"] != ours]


def apart(a: dict[str, Any], b: dict[str, Any], pairs: list[tuple[int, int]]) -> list[int]:
    """The seeds of ``pairs`` (:func:`same_seeds`) whose two runs learned from different
    trainings of a checkpoint both read (a teacher, the pretrained backbone): e.g. one run
    restored from an archive, trained on a machine since lost, and one trained after the
    teachers were trained again. Their difference then holds more than the row's setting."""
    la, lb = a.get("learned_from") or [], b.get("learned_from") or []
    out = []
    for i, j in pairs:
        x = la[i] if i < len(la) else {}
        y = lb[j] if j < len(lb) else {}
        if any(x[k] != y[k] for k in x.keys() & y.keys()):
            out.append(a["seeds"][i])
    return out


def _paired_deltas(r: dict[str, Any], base: dict[str, Any]) -> None:
    """``paired_seeds`` and, per seed, ``paired_delta_mAP`` / ``paired_delta_NDS``: the row's
    run minus the baseline's of the same seed. A seed fixes the student's initial weights
    and the order and augmentation of its batches in every row (the student is built first,
    right after seeding; the loader has its own seeded generator), so a same-seed pair
    differs by what the method adds (and, for a row that starts the head from the teacher's,
    that start). Beside the means, not in place of them: the acceptance compares means."""
    pairs = same_seeds(r, base)
    if not pairs:
        return
    r["paired_seeds"] = [r["seeds"][i] for i, _ in pairs]
    r["paired_apart"] = apart(r, base, pairs)
    for k in ("mAP", "NDS"):
        r[f"paired_delta_{k}"] = [float(r[k][i] - base[k][j]) for i, j in pairs]


def ablation_pairs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each ablation row against its method's runs of the same seeds (``collect``'s rows).

    An ablation changes one setting of a method and may train fewer seeds than the table's
    rows (``bench.ablation_seeds``; the tiny preset: seed 0), so its Δ against the baseline's
    mean mixes the setting with the seed. The paired Δ here holds the seed fixed; the method's
    own spread over seeds is beside it, as the scale a setting must beat to mean anything.
    Fields: ``ablation``, ``method``, ``setting`` (its ``--set`` strings), ``seeds``,
    ``mAP``/``NDS`` (means over those seeds), ``delta_mAP``/``delta_NDS`` (ablation − method,
    over the seeds both trained; absent when the method has none of them), ``method_spread_mAP``/
    ``method_spread_NDS``, ``beyond_spread``, ``apart`` (the paired seeds whose two runs
    learned from different teacher or backbone trainings, :func:`apart`).
    """
    by = {r["model"]: r for r in rows}
    out = []
    for name, (method, sets) in ABLATIONS.items():
        if name not in by:
            continue
        r, m = by[name], by.get(method)
        row: dict[str, Any] = {"ablation": name, "method": method, "setting": list(sets),
                               "seeds": r["seeds"], "mAP": float(np.mean(r["mAP"])),
                               "NDS": float(np.mean(r["NDS"]))}
        paired = same_seeds(r, m) if m else []
        if paired:
            row["apart"] = apart(r, m, paired)
            for k in ("mAP", "NDS"):
                # over the seeds both trained: a seed only one of them has would mix in its
                # seed's luck
                row[f"delta_{k}"] = float(np.mean([r[k][i] - m[k][j] for i, j in paired]))
                row[f"method_spread_{k}"] = seed_spread(m[k])
            if len(m["mAP"]) > 1:
                row["beyond_spread"] = {
                    k: abs(row[f"delta_{k}"]) > row[f"method_spread_{k}"] for k in ("mAP", "NDS")}
        out.append(row)
    return out


GAP_TARGET = 0.30          # the best published single method closes ~30 % on nuScenes
LATENCY_TOLERANCE = 0.05   # "1.00 up to noise": the least noise the check allows for


def acceptance(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The benchmark's acceptance checks on a table (``collect``'s rows), each
    ``{"check", "passed", "detail"}``; ``passed`` is ``None`` when the table lacks what the
    check needs (one seed, a row not trained yet, no latency measured)."""
    by = {r["model"]: r for r in rows}
    known = all_methods()
    methods = [by[m] for m in known if m in by]
    kd = methods + ([by["composite"]] if "composite" in by else [])
    students = kd + ([by["baseline"]] if "baseline" in by else [])
    counts = {r["model"]: len(r["mAP"]) for r in students}
    most = max(counts.values(), default=0)
    # means over different seeds compare the seeds' luck too: every row needs them all
    def seeds(r: dict[str, Any]) -> list[int]:
        return sorted(r.get("seeds") or range(len(r["mAP"])))

    every = sorted({s for r in students for s in seeds(r)})
    fewer = [r["model"] for r in students if seeds(r) != every]
    out = [{"check": "at least 2 seeds per student row",
            "passed": min(counts.values()) >= 2 if kd else None,
            "detail": f"{most} seed(s)" + (
                f"; not all of seeds {', '.join(map(str, every))} for {', '.join(fewer)}"
                if fewer else "")}]
    # a table with rows missing or seeds not trained yet gives no verdict, only where it stands
    complete = bool(kd) and not fewer and len(methods) == len(known) and "composite" in by

    def pts(r: dict[str, Any], k: str) -> str:
        return f"{100 * r[f'delta_{k}']:+.1f}"

    beats = [r.get("beats_baseline") for r in methods]
    out.append({
        "check": "every method beats the baseline on mean mAP and NDS by more than the seed "
                 "spread (half the range over seeds, the larger of the method's and the "
                 "baseline's)",
        "passed": None if None in beats else all(beats),  # None: one seed (rows missing: below)
        "detail": "; ".join(
            f"{r['model']} {pts(r, 'mAP')} / {pts(r, 'NDS')} "
            f"(spread {100 * max(seed_spread(r['mAP']), seed_spread(by['baseline']['mAP'])):.1f} / "
            f"{100 * max(seed_spread(r['NDS']), seed_spread(by['baseline']['NDS'])):.1f}"
            f"{_per_seed(r)})"
            for r in methods if "delta_mAP" in r) or "no method row"})
    composite = {"check": "the composite beats every single method (mean mAP and NDS)",
                 "passed": None, "detail": "no composite or method row"}
    if "composite" in by and methods:
        margins = {k: float(np.mean(by["composite"][k]) - max(np.mean(r[k]) for r in methods))
                   for k in ("mAP", "NDS")}
        mixed = [_with_seeds(r["model"], differ) for r in methods
                 if (differ := apart(by["composite"], r, same_seeds(by["composite"], r)))]
        composite.update(passed=all(v > 0 for v in margins.values()),
                         detail=f"vs the best single method: {100 * margins['mAP']:+.1f} mAP, "
                                f"{100 * margins['NDS']:+.1f} NDS" + (
                                    "; its runs learned from other trainings of a teacher or "
                                    f"the backbone than those of {', '.join(mixed)}"
                                    if mixed else ""))
    out.append(composite)
    gaps = [(r["gap_closed"], r["model"]) for r in kd if r.get("gap_closed") is not None]
    best = max(gaps, default=None)
    # the published reference (~30 %) is a single method's: say the best single one's too
    single = max(((g, m) for g, m in gaps if m != "composite"), default=None)
    def named(g: tuple[float, str]) -> str:
        return f"{g[1]} {g[0]:.0%}" + (OTHER_TEACHER if by[g[1]].get("teacher_apart") else "")

    detail = named(best) if best else "no gap measured"
    passed = None if best is None else best[0] >= GAP_TARGET
    if best and single and single != best:
        detail += f" (best single method: {named(single)})"
    if best is None and "teacher" in by and "baseline" in by and kd:
        # a teacher no better than the camera baseline leaves no gap to close: a failure
        passed = False
        detail = (f"the teacher's mAP {100 * np.mean(by['teacher']['mAP']):.1f} is not above "
                  f"the baseline's {100 * np.mean(by['baseline']['mAP']):.1f}")
    out.append({"check": f"the best method closes >= {GAP_TARGET:.0%} of the teacher-baseline "
                         "mAP gap", "passed": passed, "detail": detail})
    out.append(latency_check(kd, by.get("baseline", {})))
    if not complete:
        for c in out[1:]:
            c["passed"], c["detail"] = None, "so far: " + c["detail"]
    return out


APART = "†"  # marks a seed whose paired runs learned from different teacher trainings
OTHER_TEACHER = "‡"  # marks a gap closed whose runs learned from another teacher training


def _seeds(a: dict[str, Any]) -> str:
    """An ablation's seeds, each marked :data:`APART` where :func:`apart` names it."""
    return ", ".join(f"{s}{APART if s in a.get('apart', []) else ''}" for s in a["seeds"])


def _per_seed(r: dict[str, Any]) -> str:
    """``; vs the baseline's same seed: mAP +1.2 / -0.3, NDS ...`` where a row has
    more than one seed paired with the baseline's (:func:`_paired_deltas`), else ``""``."""
    if len(r.get("paired_seeds", [])) < 2:
        return ""
    out = "; vs the baseline's same seed: " + ", ".join(
        f"{k} " + " / ".join(f"{100 * d:+.1f}" for d in r[f"paired_delta_{k}"])
        for k in ("mAP", "NDS"))
    if r.get("paired_apart"):
        out += (f" (seed {', '.join(map(str, r['paired_apart']))}: the two runs learned from "
                "different trainings of the pretrained backbone or a teacher)")
    return out


def latency_check(kd: list[dict[str, Any]], base: dict[str, Any]) -> dict[str, Any]:
    """"Every distilled student's latency ratio is 1.00 ± noise": each measured ratio within
    :data:`LATENCY_TOLERANCE` of 1.00, or within the control's distance from 1.00 where that is
    larger (the baseline loaded again, timed in the same measurement:
    ``latency_control_ratio``; its true ratio is 1.00, so its distance is the noise of that
    measurement), and, where the forward cost was counted, each student's parameters and
    FLOPs equal to the baseline's (exact: the same network)."""
    ratios = [(r["model"], r.get("latency_ratio")) for r in kd]
    control = base.get("latency_control_ratio")
    tol = max(LATENCY_TOLERANCE, abs(control - 1)) if control is not None else LATENCY_TOLERANCE
    measured = bool(ratios) and all(v is not None for _, v in ratios)
    detail = ", ".join(f"{m} {v:.2f}" for m, v in ratios if v is not None) or "not measured"
    if control is not None:
        detail += f"; the baseline loaded again {control:.2f}, so ± {tol:.2f}"
    passed = measured and all(abs(v - 1) <= tol for _, v in ratios)
    cost = ("params", "forward_flops")
    if measured and all(k in base for k in cost):
        other = [r["model"] for r in kd if any(r.get(k) != base[k] for k in cost)]
        detail += ("; forward cost " + (f"differs from the baseline's for {', '.join(other)}"
                                        if other else
                                        f"the baseline's for all ({base['params'] / 1e6:.2f} M "
                                        f"parameters, {base['forward_flops'] / 1e9:.2f} GFLOPs)"))
        passed = passed and not other
    return {"check": "every distilled student's latency ratio is 1.00 ± noise (± "
                     f"{LATENCY_TOLERANCE:.2f}, or the baseline loaded again's distance from "
                     "1.00 where larger) on the baseline's network (same parameters and FLOPs)",
            "passed": passed if measured else None, "detail": detail}


def _with_seeds(model: str, seeds: list[int]) -> str:
    """``model (seed 0, 1)``."""
    return f"{model} (seed {', '.join(map(str, seeds))})"


def _apart_note(rows: list[dict[str, Any]]) -> list[str]:
    """Lines under the table naming the rows whose comparisons mix in other trainings of
    what they learned from: :func:`teacher_apart` (marked :data:`OTHER_TEACHER` at the gap
    closed) and the seeds paired with the baseline's that :func:`apart` names."""
    other = [_with_seeds(r["model"], r["teacher_apart"]) for r in rows if r.get("teacher_apart")]
    paired = [_with_seeds(r["model"], r["paired_apart"]) for r in rows if r.get("paired_apart")]
    lines = []
    if other:
        lines.append(f"{OTHER_TEACHER}: the gap closed divides by the teacher row's mAP, a "
                     "training of the LiDAR teacher these runs did not learn from (they read "
                     "another, e.g. one trained on a machine since lost, whose runs were "
                     f"restored from an archive): {', '.join(other)}.")
    if paired:
        lines.append("Learned from other trainings of a teacher or of the pretrained backbone "
                     "than the baseline's run of the same seed, so their Δ holds that "
                     f"difference too: {', '.join(paired)}.")
    return ["", *lines] if lines else []


def _yes_no(value: bool | None) -> str:
    return "—" if value is None else ("yes" if value else "no")


def seed_spread(values: list[float]) -> float:
    """Half the range over seeds: the spread the acceptance compares gains with."""
    return float(np.max(values) - np.min(values)) / 2


def _fmt(values: list[float]) -> str:
    """mean ± half the range over seeds (the spread the acceptance compares with)."""
    v = 100 * np.asarray(values)
    if len(v) == 1:
        return f"{v[0]:.1f}"
    return f"{v.mean():.1f} ± {(v.max() - v.min()) / 2:.1f}"


def _base_ms(rows: list[dict[str, Any]], clock: str) -> str:
    """The baseline's forward pass in milliseconds (on ``clock``) and its control's ratio,
    as a clause, where they were measured."""
    base = next((r for r in rows if r["model"] == "baseline"), {})
    said = []
    if base.get("latency_ms"):
        said.append(f"the baseline's pass: {base['latency_ms']:.0f} ms of {clock} here")
    if base.get("latency_control_ratio") is not None:
        said.append(f"the baseline loaded again, timed among them, reads "
                    f"{base['latency_control_ratio']:.2f}: this measurement's noise")
    return f" ({'; '.join(said)})" if said else ""


def _timing_text(rows: list[dict[str, Any]]) -> str:
    """How the latency and step time columns were measured: on the CPU (one thread, the
    latency in the thread's CPU time) or on a GPU (wall time between synchronisations), as
    the baseline row's ``timing_device`` says (:func:`bevkd.bench.latency.latency_fields`;
    absent: the CPU, as every table before it was measured)."""
    device = next((r.get("timing_device") for r in rows if r["model"] == "baseline"), None)
    gpu = bool(device) and device != "cpu"
    clock = "wall time between CUDA synchronisations" if gpu else "CPU time"
    where = (f"on {device}, batch 1, fp32" if gpu else "batch 1, one thread")
    step_where = ("on the GPU, in the precision each run trained in" if gpu
                  else "in one process, one thread")
    return ("Latency ratio: the exported student's forward "
            f"pass vs the baseline's in {clock}, {where}, the median over "
            "interleaved passes of each pass over the baseline's on the same sample and "
            f"round{_base_ms(rows, clock)}; "
            + ("" if gpu else "wall time gives `latency_ratio_wall` in the JSON, and ")
            + "with decoding and NMS, which cost more the more boxes a model scores high, "
            "`latency_ratio_with_decode` (wall time). Step time ratio: one training step of "
            "the timed run's model (student, frozen teachers, distillation terms; which run, "
            "below) vs the baseline's on one training batch, interleaved "
            f"{step_where}{'' if gpu else ', in CPU time'}; the runs' own mean "
            "step times, which depend on the trainings that shared the machine, give "
            "`train_step_time_ratio` in the JSON.")


def markdown(rows: list[dict[str, Any]], preset: str, commit: str, command: str,
             seeds: int, extra: str = "", title: str | None = None, about: str = "") -> str:
    """The table's markdown; ``about`` (a preset's ``bench.about``) says under the title what
    the table is, ``extra`` (notes) goes at the end."""
    lines = [f"# {title or f'bevkd bench --preset {preset}'}", "",
             *([about.strip(), ""] if about.strip() else []),
             f"`{command}` at commit `{commit}`; {seeds} seed(s) per student row (mean ± half "
             "the seed range). mAP / NDS and their Δ vs the baseline in percent (points) on "
             "`synth_val`; TP errors are means. " + _timing_text(rows), ""]
    head = ("| model | mAP | NDS | mATE | mASE | mAOE | mAVE | mAAE | ΔmAP | ΔNDS | beats spread "
            "| gap closed | step time ratio | latency ratio | train min | peak RSS MB |")
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        def opt(key: str, fmt: str, scale: float = 1.0) -> str:
            v = r.get(key)
            return fmt.format(scale * v) if isinstance(v, (int, float)) and v == v else "—"
        lines.append(
            f"| {r['model']} | {_fmt(r['mAP'])} | {_fmt(r['NDS'])} | "
            + " | ".join(f"{r[TP_NAMES[k]]:.3f}" for k in TP_KEYS)
            + f" | {opt('delta_mAP', '{:+.1f}', 100)} | {opt('delta_NDS', '{:+.1f}', 100)} | "
            f"{_yes_no(r.get('beats_baseline'))} | {opt('gap_closed', '{:.0%}')}"
            f"{OTHER_TEACHER if r.get('teacher_apart') else ''} | "
            f"{opt('step_time_ratio', '{:.2f}')} | {opt('latency_ratio', '{:.2f}')} | "
            f"{opt('train_minutes', '{:.1f}')} | {opt('peak_rss_mb', '{:.0f}')} |")
    lines += _apart_note(rows)
    distilled = (*all_methods(), "composite")
    if any(r["model"] in distilled for r in rows):  # not a teachers' table
        lines += ["", "Acceptance:", ""]
        lines += [f"- **{_yes_no(a['passed'])}**: {a['check']} ({a['detail']})"
                  for a in acceptance(rows)]
    paired = ablation_pairs(rows)
    if paired:
        lines += ["", "Ablations, each against its method's run with the same seed (the table's "
                  "rows above compare it with the baseline's mean instead); the method's seed "
                  "spread is the scale a setting has to beat:", "",
                  "| ablation | setting | seeds | mAP | NDS | ΔmAP vs method | ΔNDS vs method "
                  "| method's spread (mAP / NDS) |", "|---|---|---|---|---|---|---|---|"]
        for a in paired:
            def pt(key: str) -> str:
                return f"{100 * a[key]:+.1f}" if key in a else "—"
            spread = (f"{100 * a['method_spread_mAP']:.1f} / {100 * a['method_spread_NDS']:.1f}"
                      if "method_spread_mAP" in a else "—")
            lines.append(f"| {a['ablation']} | {a['method']} with "
                         f"{', '.join(f'`{s}`' for s in a['setting'])} | "
                         f"{_seeds(a)} | {100 * a['mAP']:.1f} | "
                         f"{100 * a['NDS']:.1f} | {pt('delta_mAP')} | {pt('delta_NDS')} | "
                         f"{spread} |")
        if any(a.get("apart") for a in paired):
            lines += ["", f"{APART}: the ablation's run of that seed and its method's learned "
                      "from different trainings of a teacher or of the pretrained backbone "
                      "(one of them restored from an archive, trained before the teachers were "
                      "trained again): its Δ holds that difference too, not the setting alone."]
    lines += ["", "Per-class AP (percent, mean over seeds):", "",
              "| model | " + " | ".join(DETECTION_CLASSES) + " |",
              "|---|" + "---|" * len(DETECTION_CLASSES)]
    for r in rows:
        lines.append(f"| {r['model']} | "
                     + " | ".join(f"{100 * r['AP_per_class'][c]:.1f}" for c in DETECTION_CLASSES)
                     + " |")
    confused = [r for r in rows if r.get("top_sources")]
    if confused:
        lines += ["", "Top detections on another class's box (percent): of each class's "
                  "best-scored predictions, as many as it has GT boxes (seeds added up), those "
                  "that match none of its own boxes and whose nearest GT box within 2 m is "
                  "another class's "
                  "(`bevkd metrics --confusion` gives the whole breakdown); in brackets the "
                  "class they sit on most, where it takes 10 % or more. Rows from runs that "
                  "recorded it (`confusion.json` beside their metrics):", "",
                  "| model | runs | " + " | ".join(DETECTION_CLASSES) + " |",
                  "|---|---|" + "---|" * len(DETECTION_CLASSES)]
        for r in confused:
            lines.append(f"| {r['model']} | {r['top_sources_runs']} | " + " | ".join(
                confusion_cells(r["top_sources"].get(c, {})) for c in DETECTION_CLASSES) + " |")
    lines += _convergence_lines(rows, preset)
    if extra:
        lines += ["", extra]
    return "\n".join(lines) + "\n"


def _convergence_lines(rows: list[dict[str, Any]], preset: str) -> list[str]:
    """The convergence table (:func:`convergence`) of the teachers, baseline, methods and
    composite."""
    order = row_order()
    found = [(r["model"], convergence(r)) for r in rows if r["model"] in order]
    found = [(model, c) for model, c in found if c is not None]
    if not found:
        return []
    lines = ["", "Validation mAP during training (percent, the mean over seeds after each "
             "epoch they all validated) and its rise over the last "
             "interval. A model still rising at its end may gain from more epochs, and its "
             "final mAP depends on where training stopped (part of a last rise can be the "
             "learning rate's decay to its end; a longer run tells). Plot: "
             f"`{preset}_convergence.png`.",
             "",
             "| model | seeds | mAP after epoch | last rise |", "|---|---|---|---|"]
    for model, c in found:
        steps = " · ".join(f"{e}: {100 * m:.1f}" for e, m in zip(c["epochs"], c["mAP"]))
        lines.append(f"| {model} | {c['seeds']} | {steps} | {100 * c['last_rise']:+.1f} in "
                     f"{c['interval']} epoch{'s' if c['interval'] != 1 else ''} |")
    return lines

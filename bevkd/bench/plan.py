"""What `bevkd bench` trains: teachers, the label encoder, the baseline, every method, the
composite and the ablation rows, as jobs with dependencies."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..config import CONFIGS_DIR as CONFIGS
from ..errors import BevkdError

# the published methods: the paper table's rows, in its order
METHODS = ("bevdistill", "labeldistill", "dualdistill", "asd")
# The job whose run serves each teacher role of a distillation config.
TEACHER_JOBS = {"lidar": "teacher", "fusion": "fusion_teacher", "label": "label_encoder"}
# the table's rows that are no camera student (no Δ, gap closed, step time or latency)
TEACHER_ROWS = tuple(TEACHER_JOBS.values())
# the table's other rows (a method of one's own cannot take these names)
RESERVED = (*TEACHER_ROWS, "baseline", "composite")


def all_methods() -> tuple[str, ...]:
    """Every method a bench can train as a row: :data:`METHODS`, then any other method
    registered in ``bevkd.distill.methods.DISTILLERS`` (one of one's own, registered in that
    file: the bench's trainings are processes of their own; its row trains
    ``bevkd/configs/distill/<name>.yaml``), in the registry's order. A name the table already
    gives another row is refused."""
    from ..distill.methods import DISTILLERS

    extra = tuple(m for m in DISTILLERS if m not in METHODS)
    taken = [m for m in extra if m in (*RESERVED, *ABLATIONS)]
    if taken:
        raise BevkdError(f"DISTILLERS registers {taken}, the name of another row of the bench "
                         f"table ({', '.join(RESERVED)} or an ablation): register the method "
                         "under another name")
    return METHODS + extra


def check_methods(methods: tuple[str, ...]) -> None:
    """Refuse a method that is not registered or has no config (before anything starts)."""
    known = all_methods()
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise BevkdError(f"unknown method(s) {unknown}; choose from {', '.join(known)}")
    for m in methods:
        _method_config(m)


# Ablation rows (DESIGN §4.4: every ASD choice the abstract leaves open; REFERENCE_RESULTS: the
# DualDistill CRD temperatures, and DESIGN §4.3's option of starting the student head from the
# teacher head or not, with that start alone as a control; the composite with the values a
# preset re-sets for its parts' rows): name -> (method or "composite", overrides). Each
# trains the first `ablation_seeds` seeds of the table (the preset's `bench.ablation_seeds`, by
# default seed 0 only) and is read against its method's run of the same seed, with the
# method's seed spread as the scale.
ABLATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    # first, as the row the acceptance leans on most: the composite with its ASD and CRD parts
    # at the values a preset re-sets for those methods' own rows (tiny: smoothing off, CRD at
    # T = 0.5), where the config keeps the published ones (method 1 is ASD, 2 DualDistill's CRD)
    "composite_tuned_parts": ("composite", ("distill.methods.1.args.smooth_kernel=1",
                                            "distill.methods.2.args.crd_temperature=0.5")),
    # the config's own (published) values: a row only where a preset's bench.overrides
    # re-sets them for the composite
    "composite_published_parts": ("composite", ("distill.methods.1.args.smooth_kernel=3",
                                                "distill.methods.2.args.crd_temperature=0.1")),
    # then ASD's, the method whose gain is least sure (the tiny table's seeds 0 / 1), and
    # first of them the reading before the second lift (the committed tables' ASD)
    "asd_shared_lift": ("asd", ("distill.methods.0.args.sim_lift=shared",)),
    "asd_no_smoothing": ("asd", ("distill.methods.0.args.smooth_kernel=1",)),
    "asd_smoothing_3x3": ("asd", ("distill.methods.0.args.smooth_kernel=3",)),
    "asd_no_fusion_path": ("asd", ("distill.methods.0.args.fusion_weight=0.0",)),
    # ASD's two halves apart, to tell which one its result comes from: the adaptive-smooth
    # feature terms alone, and the soft-weighted response alone
    "asd_features_only": ("asd", ("distill.methods.0.args.response_heatmap_weight=0.0",
                                  "distill.methods.0.args.response_reg_weight=0.0")),
    "asd_response_only": ("asd", ("distill.methods.0.args.sim_weight=0.0",
                                  "distill.methods.0.args.fusion_weight=0.0")),
    "asd_gamma0": ("asd", ("distill.methods.0.args.gamma=0.0",)),
    "asd_box_mask": ("asd", ("distill.methods.0.args.mask=box",)),
    "asd_lidar_response": ("asd", ("distill.methods.0.args.response_teacher=lidar",)),
    "asd_gt_agreement_none": ("asd", ("distill.methods.0.args.gt_agreement=none",)),
    "asd_no_gcm": ("asd", ("distill.methods.0.args.gcm_depth=0",)),
    "asd_gate_open": ("asd", ("distill.methods.0.args.gate_bias_init=0.0",)),
    # the granularity weight only acts with smoothing on (with kernel 1 both of its terms are
    # the same error), so this row sets the published 3x3 too: on a preset that turns the
    # smoothing off (tiny) it is read beside asd_smoothing_3x3, its per-sample twin
    "asd_alpha_batch": ("asd", ("distill.methods.0.args.smooth_kernel=3",
                                "distill.methods.0.args.alpha_scope=batch")),
    "dualdistill_T1.0": ("dualdistill", ("distill.methods.0.args.crd_temperature=1.0",)),
    "dualdistill_T0.5": ("dualdistill", ("distill.methods.0.args.crd_temperature=0.5",)),
    # the published values: rows only where a preset's bench.overrides re-sets them
    "dualdistill_T0.1": ("dualdistill", ("distill.methods.0.args.crd_temperature=0.1",)),
    # last: set against the tiny preset's DualDistill, which starts its head from the teacher's
    "dualdistill_own_head": ("dualdistill",
                             ("distill.methods.0.args.init_student_head_from_teacher=false",)),
    # its control: the teacher's head as the start and every DualDistill term weighted 0, so
    # the student learns from the detection loss alone: what the initialisation gives by itself
    "dualdistill_head_init_only": ("dualdistill", (
        "distill.methods.0.weight=0.0",
        "distill.methods.0.args.init_student_head_from_teacher=true")),
    # the composite with LabelDistill's regression response (its published weight), which its
    # config leaves out: that term hands on the LiDAR teacher's heading reversals
    # (benchmarks/tiny_orientation.md); last, as the composite's row already has its seeds
    "composite_response_bbox": ("composite", ("distill.methods.0.args.response_bbox_weight=0.25",)),
}

# jobs whose model has no camera backbone (the rest read the bench's pretrained backbone, and
# wait for its pretraining)
NO_CAMERA = ("teacher", "label_encoder")


@dataclass(frozen=True)
class Job:
    """One training: ``bevkd train CONFIG --preset P --out RUNS/name --set ...``."""

    name: str                      # run folder name, e.g. "baseline-s1"
    model: str                     # row of the table: teacher, baseline, bevdistill, ...
    config: str
    seed: int = 0
    overrides: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()    # job names whose runs must exist first


def _method_config(method: str) -> str:
    path = os.path.join(CONFIGS, "distill", f"{method}.yaml")
    if not os.path.isfile(path):  # e.g. a method registered without its config
        raise BevkdError(f"method {method!r} has no config {path}: its bench row trains that "
                         "file (a student config with the method under distill.methods)")
    return path


def check_ablations(ablations: tuple[str, ...]) -> None:
    """Refuse an ablation name :data:`ABLATIONS` does not hold (a typo would otherwise drop a
    row silently, or fail deep in the plan), naming the choices."""
    unknown = [a for a in ablations if a not in ABLATIONS]
    if unknown:
        raise BevkdError(f"unknown ablation(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(ABLATIONS)}")


def with_rows(ablations: tuple[str, ...], methods: tuple[str, ...], composite: bool
              ) -> tuple[str, ...]:
    """The ``ablations`` whose method's row the bench trains (``methods``, and the composite
    when ``composite``): an ablation is read against that row. An unknown name is an error
    (:func:`check_ablations`)."""
    check_ablations(ablations)
    rows = set(methods) | ({"composite"} if composite else set())
    return tuple(a for a in ablations if ABLATIONS[a][0] in rows)


def redundant_ablations(preset: str, ablations: tuple[str, ...],
                        overrides: dict[str, tuple[str, ...]] | None = None,
                        extra: tuple[str, ...] = ()) -> list[str]:
    """The ablations that resolve, on ``preset`` with the bench's ``overrides`` (row -> ``--set``
    strings) and ``extra`` sets, to the very config of their method's row (a method argument
    set to its default counts as left to it), so they would train that row again:
    ``dualdistill_own_head`` on a preset that keeps the published head."""
    from ..config import to_dict
    from ..engine.config import load_experiment

    overrides = overrides or {}
    rows: dict[str, dict] = {}  # method -> its row's resolved config, loaded once

    def resolved(method: str, sets: list[str]) -> dict:
        return _spelled_out(to_dict(load_experiment(_method_config(method), preset, sets)))

    same = []
    for name in ablations:
        method, sets = ABLATIONS[name]
        base = [*extra, *overrides.get(method, ())]
        if method not in rows:
            rows[method] = resolved(method, base)
        if rows[method] == resolved(method, [*base, *sets]):
            same.append(name)
    return same


def _spelled_out(cfg: dict) -> dict:
    """A resolved config (as a dict) with each distillation method's ``args`` completed by its
    class's defaults, so that a set that spells a default (the composite's config leaves its
    parts' arguments to them) reads as the same config."""
    import inspect

    from ..config import to_dict
    from ..distill.methods import DISTILLERS

    for m in (cfg.get("distill") or {}).get("methods") or []:
        params = inspect.signature(DISTILLERS[m["type"]].__init__).parameters.values()
        m["args"] = {**{p.name: to_dict(p.default) for p in params if p.default is not p.empty},
                     **(m.get("args") or {})}
    return cfg


def plan(seeds: int, methods: tuple[str, ...] | None = None, composite: bool = True,
         ablations: tuple[str, ...] = tuple(ABLATIONS),
         overrides: dict[str, tuple[str, ...]] | None = None,
         student_sets: tuple[str, ...] = (), ablation_seeds: int = 1) -> list[Job]:
    """The benchmark's jobs in an order that respects dependencies. The LiDAR teacher is
    always trained (it is the table's upper row); the fusion teacher and the label encoder
    only when a method needs them. ``student_sets`` (``--set`` strings) go to every student
    run, first; ``overrides`` (row -> ``--set`` strings) go to that row's runs and to the
    ablations of that method, before the ablation's own. Ablations train seeds
    ``0 .. ablation_seeds - 1``, each of which the main rows train too (``ablation_seeds <=
    seeds``), so every ablation run has its method's run of the same seed to be read against.
    ``methods``: the method rows (default: every one, :func:`all_methods`)."""
    methods = all_methods() if methods is None else methods
    overrides = overrides or {}
    teachers = [
        Job("teacher", "teacher", os.path.join(CONFIGS, "teacher", "pillars.yaml")),
        Job("fusion_teacher", "fusion_teacher", os.path.join(CONFIGS, "teacher", "fusion.yaml")),
        Job("label_encoder", "label_encoder", os.path.join(CONFIGS, "teacher",
                                                           "label_encoder.yaml"),
            needs=("teacher",)),
    ]
    rows: list[tuple[str, str, tuple[str, ...]]] = [
        ("baseline", os.path.join(CONFIGS, "student", "bevdepth.yaml"),
         overrides.get("baseline", ()))]
    rows += [(m, _method_config(m), overrides.get(m, ())) for m in methods]
    if composite:
        rows.append(("composite", _method_config("composite"), overrides.get("composite", ())))
    ablation_rows = [(name, _method_config(method), (*overrides.get(method, ()), *sets))
                     for name in with_rows(ablations, methods, composite)
                     for method, sets in [ABLATIONS[name]]]
    if ablation_rows and not 1 <= ablation_seeds <= seeds:
        raise BevkdError(f"ablation seeds (--ablation-seeds, or the preset's "
                         f"bench.ablation_seeds) must be between 1 and the table's {seeds} "
                         f"seed(s), got {ablation_seeds}: an ablation is read against its "
                         "method's run of the same seed")
    # every seed of the main rows before the ablations (seed 0 of every ablation first): a
    # bench cut short still has the main table with its seed spread
    runs = [(seed, row) for seed in range(seeds) for row in rows] + [
        (seed, r) for seed in range(ablation_seeds) for r in ablation_rows]
    students = []
    for seed, (model, config, extra) in runs:
        needs = tuple(TEACHER_JOBS[r] for r in teacher_roles(config))
        students.append(Job(f"{model}-s{seed}", model, config, seed,
                            (f"train.seed={seed}", *student_sets, *extra), needs))
    needed = {"teacher"} | {n for j in students for n in j.needs}
    return [j for j in teachers if j.name in needed] + students


def teacher_roles(config: str) -> tuple[str, ...]:
    """Teacher roles the distillation methods of a config need (from their classes'
    ``teacher_requires``), in a stable order."""
    from ..config import read_yaml
    from ..distill.methods import DISTILLERS

    methods = (read_yaml(config).get("distill") or {}).get("methods") or []
    roles = {r for m in methods for r in DISTILLERS[m["type"]].roles}
    return tuple(r for r in TEACHER_JOBS if r in roles)

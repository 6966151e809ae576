"""`bevkd bench`: SynthScenes -> teachers, label encoder, baseline, methods, composite, ablations
-> evaluation, latency -> benchmarks/<preset>.md, .json and plots."""

from __future__ import annotations

import json
import os
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field

from ..config import read_yaml
from ..engine.config import preset_name, resolve_preset, shipped_preset
from ..errors import BevkdError
from ..fileio import atomic_write, write_json
from ..provenance import git_commit, machine_label
from .plan import (ABLATIONS, NO_CAMERA, TEACHER_ROWS, Job, all_methods, check_ablations,
                   check_methods, plan, redundant_ablations, with_rows)
from .report import ablation_pairs, acceptance, collect, markdown, row_order
from .archive import archive_run, archive_served, plan_restore, restore
from .reproduced import FILE as REPRODUCED, Reproduced
from .picture import SCORE, TOP, drawable, picture_sample, sample_detections
from .runner import (JobResult, Pretraining, has_checkpoint, is_finished, is_restored, run_jobs,
                     runs_lock)


@dataclass(frozen=True)
class BenchSpec:
    """A preset's ``bench:`` section: the dataset and how many runs go in parallel."""

    scenes: int = 24
    samples_per_scene: int = 20
    width: int = 800
    height: int = 450
    seeds: int = 2
    ablation_seeds: int = 1     # seeds 0 .. n-1 of every ablation row (at most `seeds`)
    parallel: int = 2
    threads: int = 1
    pretrain_steps: int = 0     # >0: camera backbones start from `bevkd pretrain` weights
    # the pretraining's torch threads (0: `threads`), fixed by the preset and not by the slots
    # it finds free: its weights' bits depend on it (see backbone_pretraining)
    pretrain_threads: int = 0
    # row -> `--set` overrides for that row's runs (and its ablations): a method's documented
    # hyper-parameters re-set for this preset; the table lists them next to the rows
    overrides: dict[str, list[str]] = field(default_factory=dict)
    # `--set` overrides for every student run (baseline, methods, ablations), not the teachers:
    # e.g. a longer schedule for the camera students than for the LiDAR-side models
    student_sets: list[str] = field(default_factory=list)
    # what the table is, written under its title (e.g. the demo's: not a comparison of methods)
    about: str = ""


def row_overrides(spec: BenchSpec) -> dict[str, tuple[str, ...]]:
    """``spec.overrides`` checked: rows the bench knows, ``key=value`` strings."""
    known = ("baseline", *all_methods(), "composite")
    out = {}
    for row, sets in spec.overrides.items():
        if row not in known:
            raise BevkdError(f"bench.overrides: unknown row {row!r}; rows are {', '.join(known)}")
        out[row] = checked_sets(sets, f"bench.overrides.{row}")
    return out


def checked_sets(sets, where: str) -> tuple[str, ...]:
    """``sets`` as a tuple of ``key=value`` strings, or an error naming ``where``."""
    if isinstance(sets, str) or not all(isinstance(s, str) and "=" in s for s in sets):
        raise BevkdError(f"{where}: expected a list of key=value, got {sets!r}")
    return tuple(sets)


def check_job_configs(jobs: list[Job], preset: str, runs: str, extra: tuple[str, ...],
                      camera: tuple[str, ...] = ()) -> dict:
    """Resolve every job's config as its training will (its config, the preset, its row's
    overrides, ``bench.student_sets``, the ``--set``s ``extra`` and, for a camera model,
    ``camera``): a misspelt key or a value out of range is an error naming the job before
    data is generated or anything trains. Returns job name -> its resolved config (for
    :func:`check_existing_runs`; it does not depend on the data folder)."""
    from .runner import command, resolved_config

    out = {}
    for job in jobs:
        try:
            out[job.name] = resolved_config(command(job, preset, "DATA", runs, 1, extra,
                                                    camera))
        except BevkdError as e:
            raise BevkdError(f"the {job.name} job's config does not resolve: {e} (from its "
                             "config, a --set, or the preset's bench.student_sets or "
                             "bench.overrides)") from None
    return out


def check_existing_runs(jobs: list[Job], preset: str, data: str, runs: str, threads: int,
                        extra: tuple[str, ...], camera: tuple[str, ...],
                        configs: dict | None = None) -> None:
    """Refuses a training bench at once where run folders of ``runs`` were made by another
    command, config or dataset than its jobs now take (:func:`~bevkd.bench.runner.refused_runs`;
    ``configs``: :func:`check_job_configs`'): e.g. the same ``--runs`` with another
    ``--data``, whose every run would otherwise fail in turn while the rest of the bench went
    on for hours."""
    from .runner import ADVICE, refused_runs

    # the advice once, below, rather than on every line
    why = [w.removesuffix(ADVICE) for w in refused_runs(jobs, preset, data, runs, threads,
                                                        extra, camera, configs,
                                                        data_made=is_made(data))]
    if not why:
        return
    shown = 5
    more = (f"\n  ... and {len(why) - shown} more of the same kind" if len(why) > shown else "")
    raise BevkdError(f"{len(why)} run folder{'s' if len(why) != 1 else ''} in {runs} cannot "
                     "serve this bench (nothing was started):\n  - "
                     + "\n  - ".join(why[:shown]) + more
                     + "\nUse another --runs folder, delete those runs, or run the bench with "
                       "the command (--data, --preset, --set) they were trained with")


def student_sets_note(student_sets: tuple[str, ...], extra: tuple[str, ...]) -> str:
    """The table's note on ``bench.student_sets``. A command-line ``--set`` of the same key
    comes later on every training's command line and wins (e.g. ``--set train.epochs=4``),
    so the note names what it replaced instead of a value no run took."""
    def key(s: str) -> str:
        return s.split("=", 1)[0].strip()

    replaced = {key(s) for s in extra}
    kept = [s for s in student_sets if key(s) not in replaced]
    lost = [s for s in student_sets if key(s) in replaced]
    note = []
    if kept:
        note.append("Every student run (baseline, methods, ablations), not the teachers, also "
                    f"takes the preset's `bench.student_sets`: {', '.join(kept)}.")
    if lost:
        note.append(f"This command's `--set` replaces the preset's `bench.student_sets` "
                    f"{', '.join(lost)} for every run.")
    return " ".join(note)


def bench_spec(preset: str) -> BenchSpec:
    from ..config import from_dict

    return from_dict(BenchSpec, read_yaml(resolve_preset(preset)).get("bench") or {}, "bench")


def run_bench(preset: str, out: str, runs: str, data: str | None = None, seeds: int | None = None,
              methods: tuple[str, ...] | None = None, composite: bool = True,
              ablations: tuple[str, ...] = tuple(ABLATIONS), parallel: int | None = None,
              extra: tuple[str, ...] = (), pretrain_steps: int | None = None,
              train: bool = True, ablation_seeds: int | None = None,
              archive: str | None = None, retrain_apart: bool = False,
              timing_device: str = "auto") -> dict:
    """The whole bench; ``train=False`` writes the table of the runs finished so far (rows
    without one are left out and named in the table's note) and trains nothing. ``archive``
    (``--archive``): restore from it the finished runs the runs folder lacks, and copy there
    every run as it finishes, without checkpoints (:mod:`bevkd.bench.archive`);
    ``retrain_apart`` (``--retrain-apart``): train again, rather than restore, the archived
    runs that learned from another training of a teacher, the label encoder or the pretrained
    backbone than the runs folder holds (:func:`~bevkd.bench.archive.plan_restore`).
    ``timing_device`` (``--timing-device``): where latency and step time are measured
    (:func:`~bevkd.bench.latency.timing_device`: ``auto`` is the GPU where there is one)."""
    if retrain_apart and not archive:
        raise BevkdError("--retrain-apart decides which runs to restore from an archive: "
                         "pass --archive too")
    if retrain_apart and not train:
        raise BevkdError("--retrain-apart trains again the runs it does not restore; a report "
                         "(--report-only) trains nothing: leave one of them out")
    preset = shipped_preset(preset)  # configs/presets/tiny.yaml is "tiny"
    spec = bench_spec(preset)
    # a preset file (not one of configs/presets) names the table by its stem, and its runs'
    # commands by its absolute path (a bench resumed from another folder finds it)
    name = preset_name(preset)
    if os.path.isfile(preset):
        preset = os.path.abspath(preset)
    if pretrain_steps is not None:
        from dataclasses import replace

        spec = replace(spec, pretrain_steps=pretrain_steps)
    seeds = seeds or spec.seeds
    # a table of fewer seeds than the preset's ablation seeds (e.g. `--seeds 1`) keeps
    # its ablations to those seeds unless asked for more (which plan() then refuses)
    if ablation_seeds is None:
        ablation_seeds = min(spec.ablation_seeds, seeds)
    methods = all_methods() if methods is None else methods
    # before a dataset is generated for a bench that cannot run
    check_ablations(ablations)
    check_methods(methods)
    tuned = row_overrides(spec)
    student_sets = checked_sets(spec.student_sets, "bench.student_sets")
    runs = os.path.abspath(runs)  # a run's recorded command must not depend on the spelling
    # every camera model reads the pretrained backbone (made, or reused, below)
    camera = ((f"model.args.backbone_weights={os.path.join(runs, 'backbone.pth')}",)
              if spec.pretrain_steps > 0 else ())
    configs = check_job_configs(plan(seeds, methods, composite, ablations, tuned,
                                     student_sets, ablation_seeds), preset, runs, extra, camera)
    if not train and archive and not os.path.isdir(archive):  # a typo would look like one
        print(f"[bench] --archive {archive} does not exist: nothing to restore; it is made "
              "with the finished runs of --runs", flush=True)
    if not train and not archive and not os.path.isdir(runs):
        print(f"[bench] --runs {runs} does not exist: no run is finished there", flush=True)
    same = redundant_ablations(preset, with_rows(ablations, methods, composite), tuned, extra)
    if same:
        print(f"[bench] no row for {', '.join(same)}: on this preset it sets what its method's "
              "row already trains", flush=True)
    ablations = tuple(a for a in ablations if a not in same)
    jobs = plan(seeds, methods, composite, ablations, tuned, student_sets, ablation_seeds)
    # every ablation seed of the table (jobs has the first ablation_seeds)
    every = plan(seeds, methods, composite, ablations, tuned, student_sets, seeds)
    # one bench per runs folder, from generating its dataset and restoring runs into it to
    # the table; a report beside a running bench (held is None) reads the folder as it is,
    # and one without an archive writes nothing there (takes no lock)
    with runs_lock(runs, wait=train) if train or archive else nullcontext() as held:
        if train:  # before data is generated or anything trains
            # not the runs restore() below deletes to train again (restored earlier without
            # the checkpoint a training now needs)
            again = ({j.name for j in plan_restore(
                jobs, runs, archive, "synth_val", optional=[j for j in every
                                                            if j.model in ABLATIONS],
                same_trainings=retrain_apart).retrain} if archive else set())
            check_existing_runs([j for j in (*jobs, *finished_ablation_seeds(jobs, every, runs))
                                 if j.name not in again], preset, data_path(data, runs), runs,
                                spec.threads, extra, camera, configs)
        data = bench_dataset(data, runs, spec, train)
        other_data = dataset_mismatch(data, spec)
        if other_data:
            print(f"[bench] warning: {data} is not the preset's SynthScenes ({other_data}); "
                  "the table says so", flush=True)
        if archive and held:
            restore(jobs, runs, archive, training=train, log=lambda m: print(m, flush=True),
                    optional=[j for j in every if j.model in ABLATIONS],
                    same_trainings=retrain_apart)
        elif archive:
            print(f"[bench] another bench is using {runs}: nothing restored from {archive} into "
                  "it; the report reads the runs folder as it is", flush=True)
        more = finished_ablation_seeds(jobs, every, runs)
        jobs += more
        pretraining = None
        parallel = parallel or spec.parallel
        if spec.pretrain_steps > 0:  # once, shared by every camera model (as ImageNet weights)
            weights = os.path.join(runs, "backbone.pth")
            if train and (os.path.isfile(weights) or camera_to_train(jobs, runs)):
                # on the slots its threads take (the preset's: on tiny both, so it runs alone);
                # the LiDAR teacher (and the label encoder after it), where they are left to
                # train, on any others: no camera model can start before it ends (a slot
                # stays idle where they end first)
                _, pretraining = backbone_pretraining(preset, data, runs, spec, extra, parallel)
                if pretraining is not None:
                    again = (", resumes its checkpoint" if "--resume" in pretraining.cmd
                             else "")
                    print(f"[bench] pretrain the camera backbone ({spec.pretrain_steps} steps, "
                          f"{pretraining.slots} of {parallel} slots{again}) -> {weights}",
                          flush=True)
            elif train:  # e.g. every camera run restored from an archive onto a new machine
                print("[bench] every camera model is trained: the backbone is not pretrained",
                      flush=True)
        results = run_jobs(jobs, preset, data, runs, parallel, spec.threads,
                           extra=extra, camera_extra=camera, log=lambda m: print(m, flush=True),
                           train=train, on_final=_archiver(archive, data) if archive else None,
                           lock_held=train, pretraining=pretraining, configs=configs)
        table = os.path.join(out, f"{name}.md")
        if (not train and os.path.isfile(table)
                and not any(r.status in ("done", "reused") for r in results.values())):
            # a mistyped --runs must not replace a table with an empty one
            raise BevkdError(f"no finished run of this table in {runs}: {table} is left as it "
                             "is (a report of no run would replace it with an empty one)")
        students = timing_runs(results)
        latency, steps, busy = {}, {}, None
        if "baseline" in students:
            from . import latency as lat, steptime

            # on the GPU where there is one (auto): a GPU preset's students run there, and one
            # CPU thread would take minutes over their training steps
            device = lat.timing_device(timing_device)
            timed = lat.measure(students, data, device=device)
            latency = lat.latency_fields(timed.passes, cost=timed.cost, device=timed.device,
                                         trained=timed.trained)
            steps = steptime.measure(students, data, device=device)
            # the note's advice is the CPU clock's (trainings just stopped leave the load
            # average high for a minute, and a GPU pass is timed on the GPU)
            busy = lat.load_note() if device.type == "cpu" else None
        rows = collect(results, "synth_val", latency, steps)
        os.makedirs(out, exist_ok=True)
        command = "bevkd " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else \
            f"bevkd bench --preset {preset}"
        failed = [n for n, r in results.items() if r.status in ("failed", "skipped")]
        missing = [n for n, r in results.items() if r.status == "missing"]
        notes = []
        if student_sets:
            notes.append(student_sets_note(student_sets, extra))
        # only the rows this table trains (make demo's has DualDistill alone)
        planned = {j.model for j in jobs}
        shown = {row: sets for row, sets in tuned.items() if row in planned}
        if shown:
            notes.append("Hyper-parameters this preset sets in place of the published ones (the "
                         "configs' defaults), in the preset's `bench.overrides`: " + "; ".join(
                             f"{row}: {', '.join(sets)}" for row, sets in shown.items()) + ".")
        if more:
            notes.append("Ablation runs of seeds beyond the table's ablation seeds, finished in "
                         "the runs folder (each the bench's own job, trained by a bench with more "
                         f"`--ablation-seeds` or by hand), are read too: "
                         f"{', '.join(j.name for j in more)}.")
        if busy:
            notes.append(busy)
        if other_data:
            notes.append(f"Trained and evaluated on a SynthScenes other than the preset's "
                         f"`bench` section makes: {other_data}.")
        back = [n for n, r in results.items()
                if r.status in ("done", "reused") and is_restored(r.run)]
        if back:
            notes.append(f"Restored from the archive `{archive}` (finished runs kept without "
                         "their checkpoints; a run's inputs then checked by the dataset tables' "
                         "sizes, not by the teachers' checkpoints or the pretrained backbone, "
                         "which may have been trained again since; where such a run is "
                         "timed, on the network its config builds, below): "
                         + ", ".join(back) + ".")
        same = Reproduced.load(runs).classes
        if same:
            notes.append("Trainings made again that reproduced an earlier making step for step "
                         "(the same fingerprint: every logged step, validation and metric; "
                         f"`{REPRODUCED}` in the runs folder and the archive), so that the runs "
                         "that read either making learned from one training and are marked as "
                         "such: " + ", ".join(f"{k} ({' and '.join(str(len(g)) for g in gs)} "
                                              "makings)" for k, gs in same.items()) + ".")
        if pretraining is not None and not os.path.isfile(pretraining.out):
            notes.append(f"The camera backbone's pretraining failed (its log: "
                         f"`{pretraining.log}`): the camera models it was for did not train.")
        if failed:
            notes.append(f"Failed or skipped runs: {', '.join(failed)}.")
        if missing:
            notes.append(f"Not trained yet (a table of the runs finished so far): "
                         f"{', '.join(missing)}.")
        commit = git_commit()
        others = run_commits(results, commit)
        if others:
            def short(c: str) -> str:  # "a + b": a run resumed across commits
                return " + ".join(f"`{one[:12]}`" for one in c.split(" + "))

            notes.append("Runs trained, in part or whole, at another commit than this table's "
                         "(same resolved config; code changes that leave configs alone are not "
                         "detected): " + "; ".join(f"{short(c)}: {', '.join(names)}"
                                                   for c, names in others.items()) + ".")
        machines = run_machines(results)
        if len(set(machines) - {"unrecorded"}) > 1:
            notes.append("Runs trained on different machines (a CPU training reproduces to the "
                         "digit only on the same CPU and libraries): " + "; ".join(
                             f"{m}: {', '.join(names)}" for m, names in machines.items()) + ".")
        served = {n: os.path.basename(r.run) for n, r in results.items()
                  if r.status == "reused" and os.path.basename(r.run) != n}
        if served:
            notes.append("Jobs served by another run of the same command but for its folder (same "
                         "inputs, same resolved config): " + ", ".join(
                             f"{n} by {o}" for n, o in served.items()) + ".")
        if latency or steps:
            notes.append(timing_note(students))
        picture = _picture_sample(data) if rows else None
        picks, undrawn = bev_picks(results, {r["model"]: sum(r["mAP"]) / len(r["mAP"])
                                             for r in rows},
                                   picture.token if picture is not None else None)
        if undrawn:  # runs older than the detections kept beside their metrics
            drawn = (f"draws {', '.join(picks)}" if len(picks) >= 2 else
                     "is not drawn (it needs two models' detections)")
            notes.append(f"The BEV picture (`{name}_bev.png`) {drawn}: no finished run of "
                         f"{', '.join(undrawn)} holds its detections of the picture's sample here "
                         "(restored from an archive made before it kept them, or trained before "
                         "a training wrote them; `bevkd eval --ckpt RUN --data DATA` writes them "
                         "for a run with weights).")
        note = "\n\n".join(notes)
        result = {"commit": commit, "command": command, "preset": preset,
                  **({"about": spec.about} if spec.about else {}), "seeds": seeds,
                  "ablation_seeds": ablation_seeds,
                  "data": data, "pretrain_steps": spec.pretrain_steps,
                  "pretrain_threads": pretrain_threads(spec),
                  "overrides": {r: list(s) for r, s in tuned.items()}, "run_commits": others,
                  "served_by": served, "machines": machines, "restored": back,
                  "reproduced": same,
                  "timed_runs": {m: os.path.basename(r) for m, r in students.items()},
                  "rows": rows,
                  "acceptance": acceptance(rows), "ablations": ablation_pairs(rows),
                  "failed": failed, "missing": missing}
        base = os.path.join(out, name)
        write_json(base + ".json", result, strict=True)
        atomic_write(base + ".md", markdown(rows, name, commit, command, seeds, note,
                                            about=spec.about))
        _plots(rows, base, results, picture, name, picks)
        return result


def _archiver(archive: str, data: str | None = None):
    """The bench's ``on_final``: copy each finished run into ``archive`` (a restored one is
    there already), with its detections of the BEV picture's sample (of the dataset ``data``),
    and note under a job's name the twin run that served it. A copy that fails is said and
    stops nothing: the run itself is intact."""
    picture: list[str | None] = []  # the sample's token, looked up at the first copy

    def token() -> str | None:
        if not picture:
            try:
                picture.append(picture_sample(data).token if data else None)
            except Exception as e:  # noqa: BLE001 - the copy is worth more than the picture
                print(f"[bench] the archive keeps no BEV picture sample: {e}", flush=True)
                picture.append(None)
        return picture[0]

    def keep(res: JobResult) -> None:
        try:
            if not is_restored(res.run):
                archive_run(res.run, archive, token())
            archive_served(res.job.name, res.run, archive)  # when a twin run served it
        except Exception as e:  # noqa: BLE001 - keeping a copy must never stop the trainings
            print(f"[bench] could not archive {res.run} in {archive}: {e}", flush=True)
    return keep


def data_path(data: str | None, runs: str) -> str:
    """The bench's dataset folder, absolute: ``--data``, else ``RUNS/synth``."""
    return os.path.abspath(data or os.path.join(runs, "synth"))


def is_made(data: str) -> bool:
    """``data`` holds a whole SynthScenes dataset (else the bench generates one there)."""
    from ..data.synth.writer import is_incomplete

    return os.path.isdir(os.path.join(data, "v1.0-synth")) and not is_incomplete(data)


def bench_dataset(data: str | None, runs: str, spec: BenchSpec, train: bool = True) -> str:
    """The SynthScenes folder the bench trains and evaluates on, as an absolute path: ``data``
    (``--data``) or ``RUNS/synth``. Where it holds no dataset yet, a training bench generates
    the preset's (``bench.scenes`` x ``bench.samples_per_scene``, ``bench.width`` x
    ``bench.height``) there before anything else runs, so a missing dataset is never found
    by the first training; a report (``train=False``) needs the dataset its runs were trained
    on and is an error without it."""
    from ..data.synth.writer import is_incomplete

    path = data_path(data, runs)
    if os.path.isfile(path):
        raise BevkdError(f"--data {path} is a file: give the dataset's folder (or a new one, "
                         "where the bench generates the preset's)")
    if is_made(path):
        return path
    cut = is_incomplete(path)
    if not train:
        raise BevkdError(f"no SynthScenes dataset at {path} (v1.0-synth/"
                         f"{', its generation cut short' if cut else ''}): a report needs the "
                         "dataset the runs were trained on")
    from ..data.synth.generator import SynthConfig
    from ..data.synth.writer import generate_dataset, validate_config

    if cut:
        print(f"[bench] {path} holds a generation that was cut short: generating it again",
              flush=True)

    cfg = SynthConfig(out=path, scenes=spec.scenes, samples_per_scene=spec.samples_per_scene,
                      width=spec.width, height=spec.height)
    # refuses a file, or a folder that is neither empty nor an earlier SynthScenes dataset
    validate_config(cfg)
    print(f"[bench] generate SynthScenes ({spec.scenes} scenes x {spec.samples_per_scene} "
          f"samples, {spec.width}x{spec.height}) -> {path}", flush=True)
    generate_dataset(cfg)
    return path


def dataset_mismatch(data: str, spec: BenchSpec) -> str:
    """How the SynthScenes at ``data`` (its ``synth_config.json``) differs from the one the
    preset's ``bench`` section makes (scenes, samples per scene, image size), in words; ``""``
    where it does not or says nothing (a dataset of another making)."""
    try:
        with open(os.path.join(data, "v1.0-synth", "synth_config.json")) as f:
            made = json.load(f)
    except (OSError, ValueError):
        return ""
    if not isinstance(made, dict):
        return ""
    keys = {"scenes": "scenes", "samples_per_scene": "samples per scene", "width": "width",
            "height": "height"}
    return ", ".join(f"{words} {made.get(k)} (the preset's {getattr(spec, k)})"
                     for k, words in keys.items() if k in made and made[k] != getattr(spec, k))


def finished_ablation_seeds(jobs: list[Job], every: list[Job], runs: str,
                            val_split: str = "synth_val") -> list[Job]:
    """The ablation jobs of ``every`` (the plan with every seed of the table for the
    ablations) that ``jobs`` leaves out and whose run in ``runs`` is finished: a seed of one
    ablation trained beyond the table's ``ablation_seeds`` (to check a finding on more
    seeds without training every ablation again) joins the table rather than being ignored.
    Only read, never trained: the runner still checks each is the job it claims to be."""
    planned = {j.name for j in jobs}
    return [j for j in every if j.model in ABLATIONS and j.name not in planned
            and is_finished(os.path.join(runs, j.name), val_split)]


def _finished_meta(results: dict):
    """``(name, meta.json contents or {})`` of each finished run of ``results``."""
    from ..engine.run import run_meta

    for name, r in results.items():
        if r.status in ("done", "reused"):
            yield name, run_meta(r.run)


def run_commits(results: dict, commit: str) -> dict[str, list[str]]:
    """``{commit: [run names]}`` of the finished runs trained, in any of their attempts, at
    another commit than ``commit`` (runs reused from an earlier bench, or resumed across
    commits: those are keyed by their attempts' commits joined by " + ")."""
    out: dict[str, list[str]] = {}
    for name, meta in _finished_meta(results):
        commits = list(dict.fromkeys(c or "unknown" for c in meta.get("commits")
                                     or [meta.get("commit")]))
        if commits != [commit]:
            out.setdefault(" + ".join(commits), []).append(name)
    return out


def run_machines(results: dict) -> dict[str, list[str]]:
    """``{machine: [run names]}`` of the finished runs (``provenance.machine_label`` of their
    ``meta.json``; a run resumed on other machines: theirs joined by " + "). More than one
    recorded key means the table mixes CPUs, across which a training does not reproduce to
    the digit; runs older than the record are ``unrecorded``."""
    out: dict[str, list[str]] = {}
    for name, meta in _finished_meta(results):
        label = " + ".join(machine_label(m) for m in meta.get("machines")
                           or [meta.get("machine")])
        out.setdefault(label, []).append(name)
    return out


def camera_to_train(jobs: list[Job], runs: str, val_split: str = "synth_val",
                    camera: bool = True) -> list[str]:
    """The jobs with a camera model whose run in ``runs`` is not finished: those the pretrained
    backbone is for (``camera=False``: those without one, the LiDAR teacher and the label
    encoder, which train beside the pretraining). (A job a twin run will serve counts too:
    pretraining is then spared only where nothing at all is left to train.)"""
    return [j.name for j in jobs if (j.model not in NO_CAMERA) == camera
            and not is_finished(os.path.join(runs, j.name), val_split)]


def pretrain_threads(spec: BenchSpec) -> int:
    """The backbone pretraining's torch threads: the preset's ``bench.pretrain_threads``, else
    one training's ``bench.threads``."""
    return spec.pretrain_threads or spec.threads


def backbone_pretraining(preset: str, data: str, runs: str, spec: BenchSpec,
                         extra: tuple[str, ...], parallel: int) -> tuple[str, Pretraining | None]:
    """``RUNS/backbone.pth``, and the :class:`~bevkd.bench.runner.Pretraining` that makes it
    with ``bevkd pretrain`` of the student config and the bench's ``--set`` overrides
    (``extra``), or None where it was made earlier with the same number of steps, for the same
    image size and ResNet depth, with as many threads (reused); made otherwise, an error (it
    is never overwritten: the runs that used it record its identity).

    Its thread count is the preset's (:func:`pretrain_threads`), never the slots it finds
    free: a CPU pretraining's weights differ in their last bits with the thread count, and
    every camera model learns from them. (The bench gave it the slots left beside the LiDAR
    teacher, 1 thread where the tiny archive's backbone had pretrained alone on 2: on the
    same machine kind its fusion teacher then logged another loss from step 0.) It holds one
    of the bench's ``parallel`` slots per ``bench.threads`` of its threads, at most all."""
    from ..engine.config import load_experiment
    from ..engine.pretrain import checkpoint_path
    from .plan import CONFIGS

    config = os.path.join(CONFIGS, "student", "bevdepth.yaml")
    cfg = load_experiment(config, preset, list(extra))
    threads = pretrain_threads(spec)
    want = {"steps": spec.pretrain_steps, "image_size": list(cfg.data.image.final_size),
            "backbone_depth": cfg.model.args.get("backbone_depth", 50)}
    path = os.path.join(runs, "backbone.pth")
    if os.path.isfile(path + ".json"):
        with open(path + ".json") as f:
            made = json.load(f)
        if made.get("steps") != want["steps"]:
            raise BevkdError(f"{path} was pretrained for {made.get('steps')} steps, this bench "
                             f"asks for {want['steps']}; pass --pretrain-steps "
                             f"{made.get('steps')}, use another --runs folder or delete it (and "
                             "the runs that used it)")
        other = [f"{k} {made.get(k)} (now {v})" for k, v in want.items() if made.get(k) != v]
        if other:
            raise BevkdError(f"{path} was pretrained for another camera model: "
                             f"{', '.join(other)}; use another --runs folder or delete it (and "
                             "the runs that used it)")
        # a CPU pretraining's weights differ in their last bits with its thread count (a
        # GPU's do not); a record from before the count was recorded is reused, said
        cpu = made.get("device", "cpu") == "cpu"
        if cpu and "threads" not in made:
            print(f"[bench] {path} does not record the threads it was pretrained with (made "
                  f"before they were recorded): reused as made with {threads}, the preset's; "
                  "delete it (and the runs that used it) where it was not", flush=True)
        elif cpu and made["threads"] != threads:
            raise BevkdError(f"{path} was pretrained with {made['threads']} threads, this "
                             f"preset pretrains with {threads} (bench.pretrain_threads), whose "
                             "weights differ in their last bits; use another --runs folder or "
                             "delete it (and the runs that used it)")
        print(f"[bench] reuse {path} (pretrained earlier)", flush=True)
        return path, None
    os.makedirs(runs, exist_ok=True)
    cmd = [sys.executable, "-m", "bevkd.cli", "pretrain", config, "--preset", preset,
           "--data", data, "--out", path, "--steps", str(spec.pretrain_steps),
           "--overwrite"]  # weights without their record (.json): a pretraining cut short
    if os.path.isfile(checkpoint_path(path)):  # a bench stopped while it pretrained
        cmd.append("--resume")
    # the bench's overrides first, so the pretraining's thread count is the preset's
    for s in (*extra, f"train.threads={threads}"):
        cmd += ["--set", s]
    slots = min(max(-(-threads // max(spec.threads, 1)), 1), max(parallel, 1))
    return path, Pretraining(cmd, path, os.path.join(runs, "backbone.log"), slots, threads)


def timing_runs(results: dict[str, JobResult]) -> dict[str, str]:
    """``{model: run}``: the run of each student row (not the teachers') whose model the
    latency and step-time columns time: its lowest seed whose run holds a checkpoint here
    (trained weights, teachers' included), else its lowest seed's finished run (restored
    without one: :func:`~bevkd.bench.archive.timing_model` builds its network and loads its
    teachers' checkpoints). A distillation step's cost depends on the weights
    (:func:`~bevkd.bench.archive.timing_model` says how much), so a table whose seed-0 runs
    were restored times the trained seed of a later bench where there is one."""
    finished = sorted((r.job.seed, n) for n, r in results.items()
                      if r.status in ("done", "reused") and r.job.model not in TEACHER_ROWS)
    picked: dict[str, str] = {}
    for _, name in finished:  # lowest seed first: the first with a checkpoint wins
        model, run = results[name].job.model, results[name].run
        if model not in picked or (not has_checkpoint(picked[model]) and has_checkpoint(run)):
            picked[model] = run
    return picked


def timing_note(timed: dict[str, str]) -> str:
    """The table's note on which run of each row the latency and step time timed
    (:func:`timing_runs`)."""
    trained = [os.path.basename(r) for r in timed.values() if has_checkpoint(r)]
    other = [os.path.basename(r) for r in timed.values() if not has_checkpoint(r)]
    said = []
    if trained:
        said.append(f"with their trained weights: {', '.join(trained)}")
    if other:
        said.append(f"restored without a checkpoint, so on their configs' networks with the "
                    f"student's initial weights and the teachers' trained ones (those here): "
                    f"{', '.join(other)}")
    return ("Latency and step time timed on each row's lowest seed whose run holds a checkpoint "
            "here, else its lowest seed (a distillation step's cost depends on the weights: "
            "its terms build targets from the teacher's detections); " + "; ".join(said) + ".")


def _picture_sample(data: str):
    """The BEV picture's sample (:func:`~bevkd.bench.picture.picture_sample`), or None, said,
    where the dataset gives none: the table is written all the same."""
    try:
        return picture_sample(data)
    except BevkdError as e:
        print(f"[bench] no BEV picture: {e}", flush=True)
        return None


def _plots(rows: list[dict], base: str, results: dict, picture, preset: str,
           picks: dict[str, str]) -> None:
    """The table's plots; the BEV picture draws ``picks`` (:func:`bev_picks`) on the sample
    ``picture`` (a ``SampleInfo``)."""
    from ..viz.bench import bars, bev_predictions, convergence, per_class

    if not rows:
        return
    bars(rows, base + "_map_nds.png", f"bevkd bench --preset {preset}: mAP / NDS on synth_val")
    per_class(rows, base + "_per_class.png", "AP per class (synth_val)")
    order = row_order()
    main = [r for r in rows if r["model"] in order and any(r.get("val_curve") or [])]
    if main:  # runs that logged validations (every bench run does)
        convergence(main, base + "_convergence.png", "validation mAP during training")
    ok = {n for n, r in results.items() if r.status in ("done", "reused")}
    _curves(results, ok, base + "_curves.png")
    drawn = False
    if len(picks) >= 2 and picture is not None:  # what each evaluation scored on the sample
        try:
            bev_predictions({n: sample_detections(run, picture) for n, run in picks.items()},
                            picture.gt_boxes, picture.gt_labels, base + "_bev.png", SCORE,
                            top=TOP)
            drawn = True
        except BevkdError as e:  # a damaged results file costs the picture, not the table
            print(f"[bench] the BEV picture is not drawn: {e}", flush=True)
    if not drawn and os.path.exists(base + "_bev.png"):
        os.remove(base + "_bev.png")  # no picture of an earlier table's models stays beside it


def bev_picks(results: dict[str, JobResult], mean_map: dict[str, float] | None = None,
              token: str | None = None) -> tuple[dict[str, str], list[str]]:
    """``(picks, undrawn)`` for the BEV picture of teacher vs baseline vs distilled student:
    ``picks`` maps a panel's title (``teacher``, ``baseline-s0``, ``composite-s0``) to the run
    it draws, ``undrawn`` names the models it cannot draw. Every finished run qualifies that
    holds its detections of the picture's sample (:func:`~bevkd.bench.picture.drawable`: its
    evaluation's results, or the archive's copy of that sample), the lowest seed first: a run
    restored from an archive made before the archive kept that sample has none, so the picture
    takes another seed, or leaves the model out and says so. The distilled panel is the first
    model with a finished run that has them: the composite, else the method of the best mean
    mAP in ``mean_map`` (model -> the table's mean mAP; without it, the first method).
    One preferred to it whose finished runs here have none is named in ``undrawn``. With
    ``token`` (the picture's sample), a run qualifies only if its files hold that sample."""
    finished = sorted((r.job.seed, n) for n, r in results.items()
                      if r.status in ("done", "reused"))

    def seeds(model: str) -> list[str]:  # the model's finished runs, lowest seed first
        return [n for _, n in finished if results[n].job.model == model]

    def drawn_seed(model: str) -> str | None:  # its lowest seed with detections to draw
        return next((n for n in seeds(model) if drawable(results[n].run, token)), None)

    # ties: the methods' order
    methods = sorted(all_methods(), key=lambda m: -(mean_map or {}).get(m, 0.0))
    finished_distilled = [m for m in ("composite", *methods) if seeds(m)]
    # the first with detections, and the distilled models preferred to it, whose runs have none
    distilled = next(((i, run) for i, m in enumerate(finished_distilled)
                      if (run := drawn_seed(m))), None)
    picks, undrawn = {}, []
    for model in ("teacher", "baseline"):
        if run := drawn_seed(model):
            picks[run] = results[run].run
        elif seeds(model):
            undrawn.append(model)
    if distilled:
        i, run = distilled
        undrawn += finished_distilled[:i]
        picks[run] = results[run].run
    else:
        undrawn += finished_distilled[:1]
    return picks, undrawn


def _curves(results: dict, ok: set[str], out: str) -> None:
    """Seed-0 training curves of the baseline, each method and the composite: every
    distillation term beside the detection loss (``<out>``)."""
    from ..viz.curves import loss_curves, run_panel

    runs, subtitles = {}, {}
    for model in ("baseline", *all_methods(), "composite"):
        name = f"{model}-s0"
        if name not in ok:
            continue
        runs[model], subtitle = run_panel(results[name].run)
        if subtitle:
            subtitles[model] = subtitle
    if runs:
        loss_curves(runs, out, "training losses, seed 0 (weighted, 20-step means)", subtitles)



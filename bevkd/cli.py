"""`bevkd` command line: ``bevkd synth|show|metrics|train|eval|export ...``.

User errors (:class:`bevkd.errors.BevkdError`) print as one line on stderr with exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from .blas import pin_openblas
from .errors import BevkdError


def _int(name: str, minimum: int | None = None):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be at least {minimum}, got {value}")
        return value
    return parse


def _positive(name: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"{name} must be a positive number, got {text}")
        return value
    return parse


def _devices(text: str) -> int | str:
    """``--devices``: a count of at least 1, ``auto``, ``-1`` (every GPU) or GPU indices
    ``0,1`` (Lightning's spellings)."""
    if text in ("auto", "-1"):
        return text
    if "," in text:
        if not all(d.strip().isdigit() for d in text.split(",") if d.strip()):
            raise argparse.ArgumentTypeError(f"--devices: GPU indices are integers, got {text!r}")
        return text
    return _int("--devices", 1)(text)


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="generate a SynthScenes dataset (nuScenes format)",
                       description="Generate a procedural driving dataset in the nuScenes format "
                                   "(6 cameras, 32-beam LiDAR sweeps, 3D boxes, devkit tables).")
    p.add_argument("--out", required=True, help="output folder (created; must be empty or an "
                                                 "earlier SynthScenes dataset, which is replaced)")
    p.add_argument("--scenes", type=_int("--scenes"), default=10)
    p.add_argument("--samples-per-scene", type=_int("--samples-per-scene"), default=20,
                   help="key frames per scene (2 Hz)")
    p.add_argument("--seed", type=_int("--seed"), default=0)
    p.add_argument("--width", type=_int("--width"), default=800, help="image width")
    p.add_argument("--height", type=_int("--height"), default=450, help="image height")
    p.add_argument("--sweeps", type=_int("--sweeps"), default=10,
                   help="LiDAR sweeps per key frame, key sweep included (1..10)")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="fraction of scenes in synth_val (the last scenes)")
    p.add_argument("--workers", type=_int("--workers"), default=0,
                   help="parallel processes (0: one per CPU core)")
    p.add_argument("--debug-maps", action="store_true",
                   help="also write per-pixel / per-point object ids under synth_debug/")
    p.set_defaults(func=_cmd_synth)


def _cmd_synth(args: argparse.Namespace) -> None:
    from .data.synth.generator import SynthConfig
    from .data.synth.writer import generate_dataset

    cfg = SynthConfig(out=args.out, scenes=args.scenes, samples_per_scene=args.samples_per_scene,
                      seed=args.seed, width=args.width, height=args.height, sweeps=args.sweeps,
                      val_fraction=args.val_fraction, workers=args.workers,
                      debug_maps=args.debug_maps)
    start = time.perf_counter()
    splits = generate_dataset(cfg, progress=True)
    took = time.perf_counter() - start
    n = cfg.scenes * cfg.samples_per_scene
    print(f"wrote {n} samples in {cfg.scenes} scenes to {os.path.abspath(cfg.out)} "
          f"({took:.1f} s, {n / took:.2f} samples/s); synth_train: {len(splits['synth_train'])} "
          f"scenes, synth_val: {len(splits['synth_val'])} scenes")
    if cfg.scenes == 1:
        print("note: with one scene, synth_train and synth_val are the same scene")


def _add_show(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="draw one sample: 6 cameras with boxes + BEV with LiDAR",
                       description="Draw the six camera images of a sample with the GT boxes "
                                   "projected, and a bird's-eye view of the LiDAR points and "
                                   "boxes. Works on any nuScenes-format dataset.")
    p.add_argument("--data", required=True, help="dataset root (contains the version folder)")
    p.add_argument("--version", default=None,
                   help="table version (default: the only v1.0-* folder in --data)")
    p.add_argument("--sample", default="0",
                   help="sample index (in table order) or sample token")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--sweeps", type=_int("--sweeps"), default=1,
                   help="LiDAR sweeps to accumulate in the BEV view")
    p.add_argument("--augment", action="store_true",
                   help="draw the sample as the training loader gives it: augmented images, "
                        "boxes and LiDAR depth through the augmented camera matrices")
    p.add_argument("--depth", action="store_true",
                   help="draw the loader's LiDAR depth targets under each image")
    p.add_argument("--seed", type=_int("--seed"), default=0, help="augmentation seed")
    p.set_defaults(func=_cmd_show)


def _cmd_show(args: argparse.Namespace) -> None:
    if args.augment or args.depth:
        from .viz.augmented import draw_augmented

        path = draw_augmented(args.data, args.sample, args.out, version=args.version,
                              augment=args.augment, depth=args.depth, seed=args.seed)
    else:
        from .viz.sample import draw_sample

        path = draw_sample(args.data, args.sample, args.out, version=args.version,
                           sweeps=args.sweeps)
    print(f"wrote {path}")


def _add_metrics(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("metrics", help="nuScenes detection metrics of a results file",
                       description="Score an official nuScenes results JSON with the "
                                   "detection_cvpr_2019 benchmark (equal to nuscenes-devkit, "
                                   "much faster); writes metrics.json in the devkit's "
                                   "metrics_summary.json layout.")
    p.add_argument("--data", required=True, help="dataset root (contains the version folder)")
    p.add_argument("--version", default=None,
                   help="table version (default: the only v1.0-* folder in --data)")
    p.add_argument("--split", required=True,
                   help="a nuScenes split (val, mini_val, ...) or one of VERSION/splits.json")
    p.add_argument("--results", required=True, help="results JSON file")
    p.add_argument("--out", required=True, help="output folder for metrics.json (and plots)")
    p.add_argument("--check-devkit", action="store_true",
                   help="also run nuscenes-devkit on the same input and compare")
    p.add_argument("--plots", action="store_true",
                   help="draw PR curves and per-class AP / TP-error charts into OUT/plots")
    p.add_argument("--cache-dir", default=None,
                   help="keep the split's ground truth here to skip table parsing next time")
    p.add_argument("--confusion", action="store_true",
                   help="also say where each class's top predictions land (its own boxes, "
                        "other classes', background) into OUT/confusion.json")
    p.set_defaults(func=_cmd_metrics)


def _cmd_metrics(args: argparse.Namespace) -> None:
    from .eval.command import run_metrics

    run_metrics(args.data, args.version, args.split, args.results, args.out,
                check_devkit=args.check_devkit, plots=args.plots, cache_dir=args.cache_dir,
                confusion=args.confusion)


def _add_experiment_args(p: argparse.ArgumentParser, config_help: str, out_help: str) -> None:
    """CONFIG, --data, --out, --set and --preset: what makes an experiment config and its run."""
    p.add_argument("config", help=config_help)
    p.add_argument("--data", required=True, help="dataset root")
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=2 (repeatable)")
    p.add_argument("--preset", default=None,
                   help="size preset applied on top of CONFIG: tiny (CPU), small, full (GPU)")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a detector (or a distilled student) from a config",
                       description="Train the model of CONFIG on a nuScenes-format dataset with "
                                   "Lightning; writes checkpoints, logs, the resolved config "
                                   "and the git commit into --out.")
    _add_experiment_args(p, "YAML config, e.g. configs/student/bevdepth.yaml", "run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--devices", type=_devices, default=1,
                   help="devices per node (an int, 'auto', -1: every GPU, or GPU indices "
                        "0,1); >1 trains with DDP")
    p.add_argument("--nodes", type=_int("--nodes", 1), default=1,
                   help="machines (torchrun / SLURM set the rank variables Lightning reads)")
    p.add_argument("--accelerator", default="auto", help="cpu, gpu or auto")
    p.add_argument("--max-steps", type=_int("--max-steps", 1), default=-1,
                   help="stop after this many optimiser steps (smoke tests)")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> None:
    from .engine.config import load_experiment
    from .engine.run import train

    cfg = load_experiment(args.config, args.preset, args.overrides)
    module = train(cfg, args.data, args.out, resume=args.resume, devices=args.devices,
                   accelerator=args.accelerator, max_steps=args.max_steps, num_nodes=args.nodes)
    if module is None:  # --resume of a finished run
        return
    if module.last_metrics is not None and module.trainer.is_global_zero:
        m = module.last_metrics
        print(f"{args.out}: mAP {m['mean_ap']:.4f}  NDS {m['nd_score']:.4f} "
              f"({cfg.train.val_split})")


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="pretrain a camera model's ResNet on the training images",
                       description="Pretrain the camera backbone of CONFIG on the training "
                                   "split's images (class map of projected GT boxes + LiDAR "
                                   "depth bins, both per image cell) and save it with "
                                   "torchvision names; a student loads it with --set "
                                   "model.args.backbone_weights=OUT, as ImageNet weights.")
    _add_experiment_args(p, "camera model config, e.g. configs/student/bevdepth.yaml",
                         "weights file to write (.pth)")
    p.add_argument("--steps", type=_int("--steps", 1), default=600, help="optimiser steps")
    p.add_argument("--lr", type=_positive("--lr"), default=2e-3,
                   help="peak AdamW learning rate")
    p.add_argument("--accelerator", default="auto",
                   help="cpu, gpu or auto (the GPU where there is one)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out file (and start again over the checkpoint "
                        "of a stopped pretraining, OUT.ckpt)")
    p.add_argument("--resume", action="store_true",
                   help="continue the stopped pretraining that OUT.ckpt holds (it saves one "
                        "every 2 minutes, after its last step and when stopped by Ctrl-C or SIGTERM)")
    p.set_defaults(func=_cmd_pretrain)


def _cmd_pretrain(args: argparse.Namespace) -> None:
    from .engine.config import load_experiment
    from .engine.pretrain import pretrain_backbone

    cfg = load_experiment(args.config, args.preset, args.overrides)
    info = pretrain_backbone(cfg, args.data, args.out, args.steps, args.lr,
                             accelerator=args.accelerator, overwrite=args.overwrite,
                             resume=args.resume)
    print(f"{args.out}: held-out accuracy object cells {info['val_object_accuracy']:.3f}, "
          f"background {info['val_background_accuracy']:.3f}, depth within one bin "
          f"{info['val_depth_accuracy']:.3f} ({info['seconds'] / 60:.1f} min)")


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a trained run on a split",
                       description="Detect on a split with a trained run (EMA weights if kept) "
                                   "and write results.json and metrics.json: to "
                                   "RUN/eval/SPLIT for the final checkpoint on the data the run "
                                   "trained on (the run's own result, which `bevkd bench` "
                                   "reads), to RUN/eval/SPLIT@TAG for another dataset (TAG: "
                                   "its folder's name) or checkpoint (its file's stem), or to "
                                   "--out.")
    p.add_argument("--ckpt", required=True,
                   help="run folder, a checkpoint file in one, or a `bevkd export` file")
    p.add_argument("--data", required=True, help="dataset root")
    p.add_argument("--split", default=None, help="split (default: the run's validation split)")
    p.add_argument("--batch-size", type=_int("--batch-size", 1), default=None)
    p.add_argument("--out", default=None, help="folder for results.json and metrics.json")
    p.set_defaults(func=_cmd_eval)


def _run_and_ckpt(path: str) -> tuple[str | None, str | None]:
    """``(run folder, checkpoint or None)`` of ``--ckpt``: a run folder, or a checkpoint file
    in one (``RUN/checkpoints/x.ckpt``); ``run`` is None for an exported student (``bevkd
    export``'s file, told by what it holds, wherever it lies)."""
    from .engine.run import is_exported

    if not os.path.exists(path):
        raise BevkdError(f"--ckpt {path} does not exist")
    if not os.path.isfile(path):
        return path, None
    if is_exported(path):
        return None, path
    run = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    if not os.path.isfile(os.path.join(run, "config.yaml")):
        raise BevkdError(f"--ckpt {path}: a checkpoint file is read in its run folder "
                         f"(RUN/checkpoints/{os.path.basename(path)} beside RUN/config.yaml), "
                         f"and {run} has no config.yaml; nor is it a `bevkd export` file")
    return run, path


def _cmd_eval(args: argparse.Namespace) -> None:
    from .engine.run import evaluate_exported, evaluate_run

    run, ckpt = _run_and_ckpt(args.ckpt)
    if run is None:
        m, out = evaluate_exported(ckpt, args.data, args.split, args.batch_size, out=args.out)
    else:
        m, out = evaluate_run(run, args.data, args.split, ckpt, args.batch_size, out=args.out)
    print(f"mAP {m['mean_ap']:.4f}  NDS {m['nd_score']:.4f}  "
          + "  ".join(f"{k} {v:.4f}" for k, v in m["tp_errors"].items()))
    print(f"wrote {os.path.join(out, 'metrics.json')} and results.json")


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a student-only checkpoint of a run",
                       description="Write the trained detector alone (no teachers, adapters or "
                                   "optimiser state; EMA weights if kept) with its config.")
    p.add_argument("--ckpt", required=True, help="run folder (or a checkpoint file in one)")
    p.add_argument("--out", required=True,
                   help="output .pt file (`bevkd eval --ckpt` evaluates it)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> None:
    from .engine.run import export_student

    run, ckpt = _run_and_ckpt(args.ckpt)
    if run is None:
        raise BevkdError(f"--ckpt {ckpt} is not in a run folder (RUN/checkpoints/*.ckpt)")
    print(f"wrote {export_student(run, args.out, ckpt, overwrite=args.overwrite)}")


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="the paper table on SynthScenes (teachers, baseline, methods)",
                       description="Generate (or reuse) SynthScenes, train the LiDAR and fusion "
                                   "teachers, the label encoder, the baseline student, every "
                                   "method, the composite and the ablation rows over seeds, "
                                   "evaluate them and write benchmarks/<preset>.md/.json/.png. "
                                   "Finished runs are reused: re-running resumes.")
    p.add_argument("--preset", default="tiny",
                   help="tiny (CPU), demo (make demo's), small or full (GPU)")
    p.add_argument("--seeds", type=_int("--seeds", 1), default=None, help="seeds per student row")
    p.add_argument("--ablation-seeds", type=_int("--ablation-seeds", 1), default=None,
                   help="seeds per ablation row, at most --seeds (default: the preset's, 1 for "
                        "tiny): an ablation is read against its method's run of the same seed")
    p.add_argument("--methods", default=None,
                   help="comma-separated methods (default: every registered one: bevdistill, "
                        "labeldistill, dualdistill, asd and any of one's own in "
                        "bevkd.distill.methods.DISTILLERS)")
    p.add_argument("--no-composite", action="store_true")
    p.add_argument("--no-ablations", action="store_true")
    p.add_argument("--ablations", default=None, metavar="NAME,...",
                   help="the ablation rows of this table, trained in the order given (default: "
                        "every one of bevkd.bench.plan.ABLATIONS, in its order), e.g. to train "
                        "first the rows a cut-short bench would otherwise leave out")
    p.add_argument("--data", default=None,
                   help="SynthScenes folder; generated there (the preset's) where it holds none "
                        "yet (default: RUNS/synth)")
    p.add_argument("--runs", default=None, help="run folders (default: runs/bench_<preset>)")
    p.add_argument("--out", default="benchmarks",
                   help="where the table and plots go (default: benchmarks, in the current "
                        "folder: from the repository's root, the committed tables)")
    p.add_argument("--parallel", type=_int("--parallel", 1), default=None,
                   help="trainings at once (default: the preset's); the backbone "
                        "pretraining, beside the first ones, takes the slots they leave")
    p.add_argument("--pretrain-steps", type=_int("--pretrain-steps", 0), default=None,
                   help="steps of camera-backbone pretraining (default: the preset's; 0: none)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override for every training, e.g. --set train.epochs=1")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: write the table of the runs finished so far (also while "
                        "a bench is running in the same --runs folder)")
    p.add_argument("--archive", default=None, metavar="DIR",
                   help="keep every finished run there without its checkpoints (about 100 "
                        "KB each, to commit beside the table), and restore from there the "
                        "finished runs the --runs folder lacks (e.g. on a new machine)")
    p.add_argument("--timing-device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where latency and training-step time are measured (default auto: "
                        "the GPU where there is one, else the CPU on one thread)")
    p.add_argument("--retrain-apart", action="store_true",
                   help="with --archive: train again, rather than restore, the archived runs "
                        "that learned from another training of a teacher, the label encoder or "
                        "the pretrained backbone than the --runs folder holds (e.g. teachers "
                        "trained on a machine since lost), so that the table is one set of "
                        "trainings; on a new machine, where the backbone is pretrained "
                        "again, that is the whole bench, teachers included, unless the archive "
                        "notes that they were trained again there and reproduced their "
                        "archived trainings step for step (ARCHIVE/reproduced.json: a first "
                        "bench without the flag notes it, on a machine of the kind that "
                        "trained them)")
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> None:
    from .bench.command import run_bench
    from .bench.plan import ABLATIONS, check_ablations
    from .engine.config import preset_name

    methods = None if args.methods is None else tuple(
        m.strip() for m in args.methods.split(",") if m.strip())
    if methods == ():
        raise BevkdError("--methods names no method: leave it out for every registered one, "
                         "or name some (e.g. --methods dualdistill,bevdistill)")
    for flag, path in (("--out", args.out), ("--archive", args.archive), ("--runs", args.runs)):
        if path and os.path.isfile(path):  # before any data is made or anything trains
            raise BevkdError(f"{flag} {path} is a file: the bench writes a folder there")
    runs = args.runs or os.path.join("runs", f"bench_{preset_name(args.preset)}")
    if args.no_ablations and args.ablations is not None:
        raise BevkdError("--no-ablations and --ablations contradict each other: pass one")
    ablations = tuple(ABLATIONS) if args.ablations is None else tuple(
        dict.fromkeys(a.strip() for a in args.ablations.split(",") if a.strip()))  # no repeats
    check_ablations(ablations)  # before anything starts (run_bench checks again, for Python)
    result = run_bench(args.preset, args.out, runs, args.data, args.seeds, methods,
                       not args.no_composite, () if args.no_ablations else ablations,
                       args.parallel, tuple(args.overrides), args.pretrain_steps,
                       not args.report_only, args.ablation_seeds, args.archive,
                       args.retrain_apart, args.timing_device)
    print(open(os.path.join(args.out, f"{preset_name(args.preset)}.md")).read())
    if result["failed"]:
        raise BevkdError(f"{len(result['failed'])} run(s) failed: {', '.join(result['failed'])}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bevkd", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_synth(sub)
    _add_show(sub)
    _add_metrics(sub)
    _add_train(sub)
    _add_pretrain(sub)
    _add_eval(sub)
    _add_export(sub)
    _add_bench(sub)
    return parser


def _os_error(err: OSError) -> str:
    """An OSError in words; a file standing where a folder is to be written (an --out or
    --cache-dir that names a file) is said so."""
    if isinstance(err, (FileExistsError, NotADirectoryError)):
        for path in (err.filename, err.filename2):
            while isinstance(path, str) and path and not os.path.exists(path):
                path = os.path.dirname(path.rstrip(os.sep))  # the first part that exists
            if isinstance(path, str) and os.path.isfile(path):
                return f"{path} is a file, where a folder is to be written (choose another path)"
    return str(err)


def main(argv: Sequence[str] | None = None) -> int:
    # before anything imports numpy: its BLAS kernels by instruction set, not by CPU model,
    # so that the data and the trainings are the same on every CPU of one (bevkd.blas)
    pin_openblas()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except BevkdError as err:
        print(f"bevkd {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # disk full, permissions, ...: the environment, not a bug
        print(f"bevkd {args.command}: error: {_os_error(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bevkd {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

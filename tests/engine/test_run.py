"""`bevkd train | eval | export` end to end on a tiny config."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from bevkd.cli import main
from bevkd.engine.run import eval_dir, load_strict
from bevkd.errors import BevkdError

def test_train_writes_a_complete_run_folder(trained_run):
    for rel in ("config.yaml", "meta.json", "checkpoints/last.ckpt", "checkpoints/epoch-01.ckpt",
                "logs/metrics.csv", "eval/synth_val/metrics.json"):
        assert os.path.isfile(os.path.join(trained_run, rel)), rel
    meta = json.load(open(os.path.join(trained_run, "meta.json")))
    assert len(meta["commit"]) >= 7
    # the machine: a CPU training reproduces to the digit only on the same CPU and libraries
    assert meta["machine"]["cpu"] and meta["machine"]["torch"] == meta["torch"]
    metrics = json.load(open(os.path.join(trained_run, "eval/synth_val/metrics.json")))
    assert {"mean_ap", "nd_score", "tp_errors", "label_aps"} <= set(metrics)
    # where each class's top detections land, from the same validation
    sources = json.load(open(os.path.join(trained_run, "eval/synth_val/confusion.json")))
    assert list(sources) == list(metrics["mean_dist_aps"])
    for name, counts in sources.items():
        assert sum(v for k, v in counts.items() if k != "window") == counts["window"], name
    assert sum(c["window"] for c in sources.values()) > 0


def test_eval_of_the_checkpoint_equals_the_evaluation_in_training(trained_run, synth_root):
    own = os.path.join(trained_run, "eval/synth_val")
    in_training = json.load(open(os.path.join(own, "metrics.json")))
    sources = json.load(open(os.path.join(own, "confusion.json")))
    # the detections that validation scored (what the bench's BEV picture draws)
    detections = json.load(open(os.path.join(own, "results.json")))
    from bevkd.data.infos import load_infos

    split = [i.token for i in load_infos(synth_root, "v1.0-synth", "synth_val", max_sweeps=0)]
    assert list(detections["results"]) == split  # every val sample, in the split's order
    assert detections["meta"]["use_lidar"] and not detections["meta"]["use_camera"]  # pillars
    # removed first, so that what is compared below is what `bevkd eval` wrote
    for name in ("metrics.json", "confusion.json", "results.json"):
        os.remove(os.path.join(own, name))
    assert main(["eval", "--ckpt", trained_run, "--data", synth_root]) == 0
    after = json.load(open(os.path.join(own, "metrics.json")))
    assert after["mean_ap"] == pytest.approx(in_training["mean_ap"], abs=1e-9)
    assert after["nd_score"] == pytest.approx(in_training["nd_score"], abs=1e-9)
    assert after["tp_errors"] == pytest.approx(in_training["tp_errors"], abs=1e-9)
    assert after["label_aps"].keys() == in_training["label_aps"].keys()
    for name, aps in in_training["label_aps"].items():
        assert after["label_aps"][name] == pytest.approx(aps, abs=1e-9), name
    assert json.load(open(os.path.join(own, "results.json"))) == detections  # box for box
    assert json.load(open(os.path.join(own, "confusion.json"))) == sources


def test_eval_elsewhere_never_replaces_the_runs_own_result(trained_run, synth_root, tmp_path):
    """`bevkd bench` reads RUN/eval/SPLIT as the run's row: an evaluation of an earlier
    checkpoint or on another dataset goes beside it."""
    own = os.path.join(trained_run, "eval/synth_val/metrics.json")
    before = open(own).read()
    assert json.load(open(os.path.join(trained_run, "meta.json")))["data"] == \
        os.path.abspath(synth_root)
    epoch0 = os.path.join(trained_run, "checkpoints/epoch-00.ckpt")
    assert main(["eval", "--ckpt", epoch0, "--data", synth_root]) == 0
    other = tmp_path / "heldout"
    shutil.copytree(synth_root, other)
    assert main(["eval", "--ckpt", trained_run, "--data", str(other)]) == 0
    assert main(["eval", "--ckpt", epoch0, "--data", str(other)]) == 0
    for tag in ("epoch-00", "heldout", "heldout@epoch-00"):
        for name in ("metrics.json", "results.json"):
            assert os.path.isfile(os.path.join(trained_run, f"eval/synth_val@{tag}", name))
    assert main(["eval", "--ckpt", epoch0, "--data", str(other), "--out",
                 str(tmp_path / "chosen")]) == 0
    assert (tmp_path / "chosen" / "metrics.json").is_file()
    assert open(own).read() == before
    # the final checkpoint named as a file, the data through a link: the run's own result
    link = tmp_path / "link"
    link.symlink_to(synth_root)
    assert eval_dir(trained_run, str(link), "synth_val",
                    os.path.join(trained_run, "checkpoints/last.ckpt")) == \
        os.path.join(trained_run, "eval", "synth_val")


def test_eval_dir_of_a_run_that_recorded_only_its_command(tmp_path):
    run = tmp_path / "old"
    run.mkdir()
    (run / "meta.json").write_text(json.dumps(
        {"command": "bevkd/cli.py train c.yaml --data /d/synth --out /r/old"}))
    assert eval_dir(str(run), "/d/synth", "synth_val") == str(run / "eval" / "synth_val")
    assert eval_dir(str(run), "/d/other/", "synth_val") == str(run / "eval" / "synth_val@other")
    # nothing readable: the run's own folder, as before runs recorded their data
    (run / "meta.json").write_text("{")
    assert eval_dir(str(run), "/d/other", "synth_val") == str(run / "eval" / "synth_val")


def test_export_keeps_the_detector_only(trained_run, tmp_path):
    out = tmp_path / "student.pt"
    assert main(["export", "--ckpt", trained_run, "--out", str(out)]) == 0
    state = torch.load(out, weights_only=False)
    assert state["model"] == "pillars"
    from bevkd.engine.run import load_trained

    _, model = load_trained(trained_run)
    assert list(state["state_dict"]) == list(model.state_dict())


def test_existing_run_needs_resume_and_resume_needs_the_same_config(trained_run, synth_root,
                                                                     tiny_train_settings, capsys):
    assert main(["train", "configs/teacher/pillars.yaml", "--data", synth_root, "--out",
                 trained_run, *tiny_train_settings]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main(["train", "configs/teacher/pillars.yaml", "--data", synth_root, "--out",
                 trained_run, *tiny_train_settings, "--set", "optim.lr=0.5", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "config differs" in err and "(in optim.lr)" in err


def test_resume_refuses_another_dataset_and_leaves_a_finished_run_as_it_is(
        trained_run, synth_root, tiny_train_settings, tmp_path, capsys):
    """The run's samples are recorded: another dataset is refused, a moved copy of its own
    is the same; a finished run (trained to its last step, evaluated) is left as it is."""
    def before():
        return {n: os.path.getmtime(os.path.join(trained_run, n))
                for n in ("meta.json", "config.yaml", "logs")} | {
            "logs/": sorted(os.listdir(os.path.join(trained_run, "logs")))}

    seen = before()
    assert set(json.load(open(os.path.join(trained_run, "meta.json")))["samples"]) == \
        {"synth_train", "synth_val"}
    tables = shutil.ignore_patterns("samples", "sweeps", ".bevkd_cache")
    moved, other = tmp_path / "moved", tmp_path / "other"
    shutil.copytree(synth_root, moved, ignore=tables)  # the tables are what is compared
    shutil.copytree(synth_root, other, ignore=tables)
    splits = json.load(open(other / "v1.0-synth" / "splits.json"))
    splits["synth_train"] = splits["synth_val"]  # another scene under the same split's name
    json.dump(splits, open(other / "v1.0-synth" / "splits.json", "w"))
    args = ["train", "configs/teacher/pillars.yaml", "--out", trained_run, *tiny_train_settings,
            "--resume", "--data"]
    assert main([*args, str(other)]) == 2
    err = capsys.readouterr().err
    assert (f"the synth_train samples in {other} are not those {trained_run} trained on "
            f"({trained_run} trained on {synth_root})") in err
    assert main([*args, str(moved)]) == 0
    assert "has finished: 2 of 2 steps trained and evaluated; nothing to do" in \
        capsys.readouterr().err
    assert before() == seen  # no config, meta or log written again


def test_the_data_check_of_a_resume_reads_only_digests_of_its_own_format(tmp_path, capsys):
    from bevkd.engine.run import SAMPLES_FORMAT, check_resumed_data

    run, data = tmp_path / "run", tmp_path / "data"
    run.mkdir()
    data.mkdir()

    def meta(**kv):
        (run / "meta.json").write_text(json.dumps({"data": str(data), **kv}))

    meta(samples={"t": "a"}, samples_format=SAMPLES_FORMAT)
    check_resumed_data(str(run), str(data), {"t": "a"})  # the same samples
    with pytest.raises(BevkdError, match="the t samples in .* are not those .* \\(the data "
                                         "there has changed since"):
        check_resumed_data(str(run), str(data), {"t": "b"})
    # a digest of another format (or none) cannot be compared: the folder is, with a warning
    meta(samples={"t": "a"})
    check_resumed_data(str(run), str(data), {"t": "b"})
    assert capsys.readouterr().err == ""
    check_resumed_data(str(run), str(tmp_path), {"t": "b"})
    assert "recorded no samples this version can check" in capsys.readouterr().err


def test_checkpoint_of_another_architecture_names_the_mismatched_tensors(trained_run):
    from bevkd.engine.run import load_trained

    _, model = load_trained(trained_run)
    weights = dict(model.state_dict())
    conv = next(k for k, v in weights.items() if k.startswith("trunk.") and v.dim() == 4)
    weights[conv] = torch.zeros(3, 3, 3, 3)
    first = next(iter(weights))
    weights.pop(first)
    with pytest.raises(BevkdError) as err:
        load_strict(model, weights, "other.ckpt")
    msg = str(err.value)
    assert f"{conv}: checkpoint (3, 3, 3, 3)" in msg and f"missing {first}" in msg


def test_bad_config_keys_are_one_line_errors(synth_root, tmp_path, capsys):
    rc = main(["train", "configs/teacher/pillars.yaml", "--data", synth_root, "--out",
               str(tmp_path / "r"), "--preset", "tiny", "--set", "train.epoch=3"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown config key 'train.epoch'; did you mean 'epochs'?" in err
    rc = main(["train", "configs/teacher/pillars.yaml", "--data", synth_root, "--out",
               str(tmp_path / "r"), "--preset", "tiny", "--set", "model.args.pilar_channels=3"])
    assert rc == 2 and "did you mean 'pillar_channels'?" in capsys.readouterr().err
    assert main(["train", "configs/teacher/pillars.yaml", "--data", synth_root, "--out",
                 str(tmp_path / "r"), "--preset", "tinyy"]) == 2
    assert "did you mean 'tiny'?" in capsys.readouterr().err


def test_channels_last_trains_in_that_layout_and_its_checkpoint_loads_as_any(synth_root,
                                                                             tmp_path):
    from bevkd.data.nuscenes import NuScenesDataset
    from bevkd.engine.config import load_experiment
    from bevkd.engine.run import load_trained, train
    from bevkd.structures.batch import collate

    sets = ["grid.cell=6.4", "data.lidar_sweeps=1", "train.batch_size=2",
            "train.num_workers=0", "model.args.head_channels=8",
            "model.args.trunk_channels=[8, 16]", "model.args.bev_neck_channels=8",
            "train.channels_last=true"]
    cfg = load_experiment("configs/student/bevdepth.yaml", "tiny", sets)
    run = str(tmp_path / "cl")
    module = train(cfg, synth_root, run, progress=False, max_steps=1)
    convs = [m.weight for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs
                         if w.shape[-2:] != (1, 1))  # a 1x1 kernel is both layouts at once
    assert not all(w.is_contiguous() for w in convs if w.shape[-2:] != (1, 1))
    assert os.path.isfile(os.path.join(run, "checkpoints/last.ckpt"))
    # load_trained gives the model in the layout it trained in, which computes exactly what
    # the trained one does (an evaluation of the checkpoint repeats the one in training)
    _, model = load_trained(run)
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last)
               for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    # the checkpoint holds ordinary weights: the same model turned back to NCHW computes what
    # the trained one does, up to the layouts' float rounding
    _, nchw = load_trained(run)
    nchw.to(memory_format=torch.contiguous_format)
    assert all(m.weight.is_contiguous() for m in nchw.modules()
               if isinstance(m, torch.nn.Conv2d))
    ds = NuScenesDataset(synth_root, cfg.train.version, cfg.train.val_split, cfg.data,
                         train=False)
    batch = collate([ds[0]])
    trained = module.model.eval()
    with torch.no_grad():
        ours, theirs, plain = model.eval()(batch), trained(batch), nchw.eval()(batch)
    assert len(ours.preds) == len(theirs.preds) == len(plain.preds)
    for a, b, c in zip(ours.preds, theirs.preds, plain.preds):  # per task: heatmap, reg, ...
        assert a.keys() == b.keys() == c.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
            torch.testing.assert_close(c[key], b[key], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("epochs", [1, 3])
def test_the_weights_a_training_ends_with_are_the_ones_it_scores(epochs, synth_root, tmp_path):
    """With ``eval_every`` 2, Lightning validates epochs 2, 4, ... only: a run of 1 epoch
    ended without metrics, one of 3 wrote epoch 2's as its own. The end is validated too."""
    import csv

    from bevkd.engine.config import load_experiment
    from bevkd.engine.run import train

    sets = ["grid.cell=6.4", "data.lidar_sweeps=1", "model.args.head_channels=8",
            "model.args.trunk_channels=[8, 16]", "model.args.neck_channels=8",
            "train.batch_size=3", "train.num_workers=0", f"train.epochs={epochs}",
            "train.eval_every=2"]
    cfg = load_experiment("configs/teacher/pillars.yaml", "tiny", sets)
    run = str(tmp_path / "r")
    module = train(cfg, synth_root, run, progress=False)
    steps = module.trainer.global_step
    assert steps == epochs and module.last_metrics_step == steps  # 3 samples, batch 3
    assert os.path.isfile(os.path.join(run, "eval", "synth_val", "metrics.json"))
    with open(os.path.join(run, "logs", "metrics.csv")) as f:
        validated = [int(r["step"]) for r in csv.DictReader(f) if r.get("val/mAP")]
    # every second epoch (epoch 2's logged at its last step, 1, as Lightning logs an epoch's
    # end), and the end, once, at the final step
    assert validated == ([1] if epochs == 1 else [1, 3]) and validated[-1] == steps


def test_the_notes_silenced_during_a_fit_are_those_and_no_other_warning():
    """torch's own warning of a scheduler stepped before its optimiser (what 16-bit mixed
    precision's skipped first steps make it say) is hidden while Lightning fits in 16-bit
    precision, and shown in any other (a fault there); a warning of anything else is shown."""
    import warnings
    from contextlib import nullcontext

    from bevkd.engine.run import _notes_silenced

    def said(within) -> list[str]:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with within:
                sched.step()  # before any opt.step()
                warnings.warn("a warning of one's own")
        return [str(w.message) for w in seen]

    plain = said(nullcontext())
    assert len(plain) == 2 and plain[0].startswith("Detected call of `lr_scheduler.step()`")
    assert said(_notes_silenced(False, "16-mixed")) == ["a warning of one's own"]
    assert said(_notes_silenced(False, "bf16-mixed")) == plain
    assert said(_notes_silenced(False, "32-true")) == plain

"""``bevkd metrics`` end to end: files, printout, devkit cross-check, plots."""

from __future__ import annotations

import contextlib
import io
import json
import os

import pytest
from nuscenes.eval.detection.config import config_factory
from nuscenes.eval.detection.evaluate import DetectionEval

from bevkd.cli import main
from bevkd.errors import BevkdError
from bevkd.eval import devkit
from bevkd.eval.command import find_version, run_metrics
from bevkd.eval.report import max_abs_difference

from .conftest import VERSION, assert_same_metrics, perturbed_results, split_samples, write


@pytest.fixture(scope="module")
def run(root, nusc, tmp_path_factory):
    """One CLI run with --check-devkit --plots --confusion, and the devkit's own main() on the
    same file."""
    tmp = tmp_path_factory.mktemp("cmd")
    path = write(tmp, perturbed_results(nusc, split_samples(nusc, "synth_val"), 0))
    out = tmp / "out"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["metrics", "--data", root, "--split", "synth_val", "--results", path,
                     "--out", str(out), "--check-devkit", "--plots", "--confusion"])
    dk_out = tmp / "devkit_main"
    dk_buf = io.StringIO()
    with contextlib.redirect_stdout(dk_buf), contextlib.redirect_stderr(io.StringIO()):
        DetectionEval(nusc, config_factory("detection_cvpr_2019"), path, "synth_val",
                      str(dk_out), verbose=False).main(plot_examples=0, render_curves=False)
    return code, buf.getvalue(), out, dk_out, dk_buf.getvalue()


def _keys(d):
    return {k: _keys(v) for k, v in d.items()} if isinstance(d, dict) else None


def test_metrics_json_has_the_devkit_layout_and_values(run):
    code, _, out, dk_out, _ = run
    assert code == 0
    with open(out / "metrics.json") as f:
        ours = json.load(f)
    with open(dk_out / "metrics_summary.json") as f:
        theirs = json.load(f)
    assert _keys(ours) == _keys(theirs)  # recursively, every key of every level
    assert list(ours) == list(theirs)
    assert_same_metrics(ours, theirs)
    with open(out / "metrics_details.json") as f:
        ours_d = json.load(f)
    with open(dk_out / "metrics_details.json") as f:
        theirs_d = json.load(f)
    assert _keys(ours_d) == _keys(theirs_d)
    assert_same_metrics(ours_d, theirs_d)


def test_printout_matches_the_devkits(run):
    _, text, _, _, dk_text = run
    ours = text.splitlines()
    theirs = dk_text.splitlines()
    eval_line = next(i for i, line in enumerate(theirs) if line.startswith("Eval time"))
    # same lines in the same format, eval time aside
    assert ours[:eval_line] == theirs[:eval_line]
    assert ours[eval_line + 1:len(theirs)] == theirs[eval_line + 1:]


def test_devkit_comparison_and_plots(run):
    _, text, out, _, _ = run
    assert "bevkd vs nuscenes-devkit" in text
    line = next(x for x in text.splitlines() if x.startswith("max abs difference"))
    assert float(line.split(": ")[1].split()[0]) <= 1e-9
    assert os.path.isfile(out / "devkit" / "metrics_summary.json")
    plots = sorted(os.listdir(out / "plots"))
    assert "ap_per_class.png" in plots and "tp_errors_per_class.png" in plots
    assert sum(p.startswith("pr_") for p in plots) == 10
    assert all(os.path.getsize(out / "plots" / p) > 5000 for p in plots)


def test_confusion_sorts_every_top_prediction_and_is_printed(run):
    _, text, out, dk_out, _ = run
    with open(out / "confusion.json") as f:
        sources = json.load(f)
    with open(dk_out / "metrics_details.json") as f:
        details = json.load(f)
    assert list(sources) == list(details_classes(details))
    for name, c in sources.items():
        assert sum(v for k, v in c.items() if k != "window") == c["window"] > 0, name
    # the file holds all four kinds: noisy copies of GT boxes (TPs), extra copies (duplicates),
    # relabelled copies (on another class's box) and random boxes (mostly background)
    total = lambda key: sum(c.get(key, 0) for c in sources.values())  # noqa: E731
    others = sum(v for c in sources.values() for k, v in c.items()
                 if k not in ("window", "tp", "duplicate", "background"))
    assert min(total("tp"), total("duplicate"), total("background"), others) > 0
    assert total("tp") > others
    assert "Where each class's top predictions land" in text
    assert text.count("| car |") == 1 and "| barrier |" in text


def details_classes(details: dict) -> list[str]:
    """Class names of the devkit's metrics_details keys ('car:0.5', ...) in their order."""
    return list(dict.fromkeys(k.split(":")[0] for k in details))


def test_devkit_crash_is_reported_not_fatal(root, nusc, tmp_path, capsys):
    data = {"meta": {}, "results": {t: [] for t in split_samples(nusc, "synth_val")}}
    path = write(tmp_path, data)
    code = main(["metrics", "--data", root, "--version", VERSION, "--split", "synth_val",
                 "--results", path, "--out", str(tmp_path / "o"), "--check-devkit"])
    text = capsys.readouterr().out
    assert code == 0 and "mAP: 0.0000" in text and "devkit failed: Exception" in text


def test_check_devkit_fails_on_a_difference_above_1e_9(root, nusc, tmp_path, monkeypatch):
    """--check-devkit: a devkit summary that differs from ours in one value by 1e-6 is a
    BevkdError naming the difference, where it is and the tolerance (after the comparison is
    printed); a difference of 1e-12 passes."""
    path = write(tmp_path, perturbed_results(nusc, split_samples(nusc, "synth_val"), 0))
    offset = {"by": 1e-6}

    def fake_devkit(data_root, version, split, results_path, out_dir):
        with open(os.path.join(os.path.dirname(out_dir), "metrics.json")) as f:
            theirs = json.load(f)  # ours, as written before the devkit runs
        assert theirs["label_aps"]["car"]["2.0"] > 0.1
        theirs["label_aps"]["car"]["2.0"] += offset["by"]
        return theirs, 0.5, None

    monkeypatch.setattr(devkit, "run_devkit", fake_devkit)
    printed = []
    with pytest.raises(BevkdError) as err:
        run_metrics(root, VERSION, "synth_val", path, str(tmp_path / "o"), check_devkit=True,
                    printer=printed.append)
    assert str(err.value) == ("metrics differ from the devkit by 1.000e-06 at label_aps/car/2.0 "
                              "(tolerance 1e-09)")
    assert any("max abs difference" in p for p in printed)
    offset["by"] = 1e-12
    summary = run_metrics(root, VERSION, "synth_val", path, str(tmp_path / "o2"),
                          check_devkit=True, printer=printed.append)
    assert summary["label_aps"]["car"]["2.0"] > 0.1


def test_max_abs_difference():
    a = {"x": 1.0, "y": {"z": float("nan")}, "eval_time": 3.0}
    assert max_abs_difference(a, {"x": 1.5, "y": {"z": float("nan")}, "eval_time": 1.0})[:2] == \
        (0.5, "x")
    assert max_abs_difference(a, {"x": 1.0, "y": {"z": 0.0}})[0] == float("inf")
    assert max_abs_difference(a, {"x": 1.0})[0] == float("inf")


def test_version_is_found_or_asked_for(root, tmp_path):
    assert find_version(root, None) == VERSION
    with pytest.raises(BevkdError, match="holds no v1.0-\\* table folder"):
        find_version(str(tmp_path), None)
    (tmp_path / "v1.0-a").mkdir()
    (tmp_path / "v1.0-b").mkdir()
    with pytest.raises(BevkdError,
                       match=r"several table folders \(v1.0-a, v1.0-b\); pass --version"):
        find_version(str(tmp_path), None)
    with pytest.raises(BevkdError, match="dataset root .*/nope does not exist"):
        find_version(str(tmp_path / "nope"), None)
    (tmp_path / "f").write_text("x")
    with pytest.raises(BevkdError, match="is a file, not a folder"):
        find_version(str(tmp_path / "f"), "v1.0-a")
    with pytest.raises(BevkdError, match="version folder .*v1.0-c does not exist"):
        find_version(str(tmp_path), "v1.0-c")

"""The benchmark's pictures: the BEV view (confident boxes solid, else the best few dashed), the
mAP / NDS bars and validation mAP over the epochs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bevkd.structures.boxes import Boxes3D
from bevkd.structures.detections import Detections
from bevkd.viz import bench


def _detections(scores) -> Detections:
    """Boxes 5 m apart along x, in the order given (not sorted by score)."""
    n = len(scores)
    boxes = torch.zeros(n, 9)
    boxes[:, 0] = torch.arange(n, dtype=torch.float32) * 5
    boxes[:, 3:6] = 2.0
    return Detections("t", Boxes3D(boxes), torch.tensor(scores, dtype=torch.float32),
                      torch.zeros(n, dtype=torch.long))


def test_panels_title_confident_boxes_or_fall_back_to_the_best(tmp_path, monkeypatch):
    titles = []
    real = bench.plt.Axes.set_title
    monkeypatch.setattr(bench.plt.Axes, "set_title",
                        lambda self, t, *a, **k: (titles.append(t), real(self, t, *a, **k))[1])
    gt = np.array([[10.0, 0, 0, 4, 2, 1.5, 0, 0, 0]])
    out = bench.bev_predictions({"sure": _detections([0.5, 0.1, 0.9]),
                                 "early": _detections([0.1, 0.2])},
                                gt, np.array([0]), str(tmp_path / "bev.png"), top=1)
    # the best are found whatever the detections' order
    assert titles == ["sure: 2 boxes ≥ 0.3", "early: none ≥ 0.3; best 1 (≥ 0.20) dashed"]
    assert (tmp_path / "bev.png").stat().st_size > 10_000 and out.endswith("bev.png")


def test_bars_put_the_students_on_their_own_scale_with_the_baseline_seed_range(tmp_path,
                                                                               monkeypatch):
    spans, titles = [], []
    real_span, real_title = bench.plt.Axes.axhspan, bench.plt.Axes.set_title
    monkeypatch.setattr(bench.plt.Axes, "axhspan",
                        lambda self, lo, hi, **k: (spans.append((lo, hi)),
                                                   real_span(self, lo, hi, **k))[1])
    monkeypatch.setattr(bench.plt.Axes, "set_title",
                        lambda self, t, *a, **k: (titles.append(t), real_title(self, t, *a, **k))[1])
    rows = [{"model": "teacher", "mAP": [0.12], "NDS": [0.22]},
            {"model": "baseline", "mAP": [0.009, 0.003], "NDS": [0.17, 0.04]},
            {"model": "bevdistill", "mAP": [0.016, 0.009], "NDS": [0.17, 0.13]}]
    out = bench.bars(rows, str(tmp_path / "bars.png"), "t")
    assert titles == ["t", "camera students: mAP (dots = seeds)",
                      "camera students: NDS (dots = seeds)"]
    np.testing.assert_allclose(spans, [(0.3, 0.9), (4.0, 17.0)])  # percent, per metric
    assert (tmp_path / "bars.png").stat().st_size > 10_000 and out.endswith("bars.png")
    titles.clear()
    bench.bars(rows[:1], str(tmp_path / "teacher_only.png"), "t")  # no student: one panel
    assert titles == ["t"]


def test_the_convergence_plot_puts_teachers_and_students_apart(tmp_path, monkeypatch):
    titles, lines = [], []
    real_title, real_plot = bench.plt.Axes.set_title, bench.plt.Axes.plot
    monkeypatch.setattr(bench.plt.Axes, "set_title", lambda self, t, *a, **k: (
        titles.append(t), real_title(self, t, *a, **k))[1])
    monkeypatch.setattr(bench.plt.Axes, "plot",
                        lambda self, x, y, *a, **k: (lines.append((k["label"], list(x), list(y))),
                                                     real_plot(self, x, y, *a, **k))[1])
    rows = [{"model": "teacher", "seeds": [0], "val_curve": [[[2, 0.1, 0.2], [6, 0.17, 0.3]]]},
            {"model": "baseline", "seeds": [0, 1],
             "val_curve": [[[4, 0.04, 0.2], [12, 0.07, 0.2]], []]}]
    out = bench.convergence(rows, str(tmp_path / "conv.png"), "val")
    assert titles == ["val: teachers", "val: camera students"]
    assert lines == [("teacher (seed 0)", [2, 6], pytest.approx([10.0, 17.0])),
                     ("baseline (seed 0)", [4, 12], pytest.approx([4.0, 7.0]))]
    assert (tmp_path / "conv.png").stat().st_size > 10_000 and out.endswith("conv.png")
    titles.clear()
    bench.convergence(rows[1:], str(tmp_path / "students.png"), "val")  # one group: one panel
    assert titles == ["val: models"]
    with pytest.raises(ValueError, match="no row has validations"):
        bench.convergence([{"model": "teacher", "seeds": [0], "val_curve": [[]]}],
                          str(tmp_path / "none.png"), "val")

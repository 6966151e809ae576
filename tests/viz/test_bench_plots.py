"""The benchmark's BEV picture: confident boxes solid, else the best few dashed."""

from __future__ import annotations

import numpy as np
import torch

from bevkd.structures.boxes import Boxes3D
from bevkd.structures.detections import Detections
from bevkd.viz import bench


class _Fake:
    def __init__(self, scores):
        self.scores = np.asarray(scores, np.float32)

    def __call__(self, batch):
        return None

    def decode(self, out, batch):
        n = len(self.scores)
        boxes = torch.zeros(n, 9)
        boxes[:, 0] = torch.arange(n, dtype=torch.float32) * 5
        boxes[:, 3:6] = 2.0
        return [Detections("t", Boxes3D(boxes), torch.from_numpy(self.scores),
                           torch.zeros(n, dtype=torch.long))]


def test_panels_title_confident_boxes_or_fall_back_to_the_best(tmp_path, monkeypatch):
    titles = []
    real = bench.plt.Axes.set_title
    monkeypatch.setattr(bench.plt.Axes, "set_title",
                        lambda self, t, *a, **k: (titles.append(t), real(self, t, *a, **k))[1])
    gt = np.array([[10.0, 0, 0, 4, 2, 1.5, 0, 0, 0]])
    out = bench.bev_predictions({"sure": _Fake([0.9, 0.5, 0.1]), "early": _Fake([0.2, 0.1])},
                                None, gt, np.array([0]), str(tmp_path / "bev.png"), top=1)
    assert titles == ["sure: 2 boxes ≥ 0.3", "early: none ≥ 0.3; best 1 (≥ 0.20) dashed"]
    assert (tmp_path / "bev.png").stat().st_size > 10_000 and out.endswith("bev.png")

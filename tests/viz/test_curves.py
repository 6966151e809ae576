"""Training-curve panels: trailing means, one panel per run, method terms in colour."""

from __future__ import annotations

import numpy as np
import pytest

from bevkd.viz import curves


def test_smooth_is_a_trailing_mean_that_is_shorter_at_the_start():
    v = np.array([1.0, 3.0, 5.0, 7.0])
    np.testing.assert_allclose(curves.smooth(v, 2), [1.0, 2.0, 4.0, 6.0])
    np.testing.assert_allclose(curves.smooth(v, 3), [1.0, 2.0, 3.0, 5.0])
    np.testing.assert_allclose(curves.smooth(v, 1), v)


def test_panels_draw_every_term_but_the_total(tmp_path, monkeypatch):
    drawn = []
    real = curves.plt.Axes.plot

    def plot(self, *a, **k):
        drawn.append(k.get("label"))
        return real(self, *a, **k)

    monkeypatch.setattr(curves.plt.Axes, "plot", plot)
    steps = np.arange(50)
    run = {"heatmap": (steps, np.linspace(18, 8, 50)), "loss": (steps, np.full(50, 30.0)),
           "distill/asd/sim": (steps, np.linspace(2, 1, 50)),
           "distill/asd/resp_heatmap": (steps, np.zeros(50))}  # weight 0: not drawn
    combined = {"distill/asd/sim": run["distill/asd/sim"],
                "distill/labeldistill/label": (steps, np.full(50, 40.0))}
    out = curves.loss_curves({"baseline": {"heatmap": run["heatmap"]}, "asd": run,
                              "composite": combined},
                             str(tmp_path / "c.png"), "t", subtitles={"asd": "mAP 5.96"})
    assert drawn == ["heatmap", "heatmap", "sim", "asd/sim", "labeldistill/label"]
    assert (tmp_path / "c.png").stat().st_size > 10_000 and out.endswith("c.png")
    with pytest.raises(ValueError, match="no runs"):
        curves.loss_curves({}, str(tmp_path / "d.png"), "t")


def test_a_run_panel_is_its_loss_terms_and_last_validation(tmp_path):
    logs = tmp_path / "run" / "logs"
    logs.mkdir(parents=True)
    head = "epoch,step,train/heatmap_step,val/mAP,val/NDS\n"
    (logs / "metrics.csv").write_text(head + "0,0,9.0,,\n0,0,,0.0123,0.2\n1,1,8.0,,\n"
                                      "1,1,,0.0508,0.21434\n")
    terms, subtitle = curves.run_panel(str(tmp_path / "run"))
    assert list(terms) == ["heatmap"] and terms["heatmap"][1].tolist() == [9.0, 8.0]
    assert subtitle == "final val mAP 5.08 / NDS 21.43"
    (logs / "metrics.csv").write_text(head + "0,0,9.0,,\n")  # not validated yet
    assert curves.run_panel(str(tmp_path / "run"))[1] is None

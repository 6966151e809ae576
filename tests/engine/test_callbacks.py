"""The training callbacks' checkpoint contract (their behaviour in a training: test_resume.py,
test_run.py)."""

from __future__ import annotations

from bevkd.engine.callbacks import Timing


def test_timing_reads_the_totals_of_checkpoints_written_before_it_moved(tmp_path):
    """Lightning files a callback's state by ``state_key``; runs trained while the class was
    run.py's ``_Timing`` (the committed bench's) must keep their time and peak on --resume."""
    old = {"seconds": 100.0, "steps": 10, "timed": 7, "timed_seconds": 70.0,
           "all_seconds": 95.0, "peak_rss_mb": 2048.0, "peak_cuda_mb": 0.0}
    checkpoint = {"callbacks": {"_Timing": old}}
    timing = Timing(str(tmp_path / "timing.json"))
    timing.load_state_dict(checkpoint["callbacks"][timing.state_key])
    totals = timing.state_dict()
    assert totals["seconds"] == 100.0 and totals["steps"] == 10 and totals["timed"] == 7
    assert totals["peak_rss_mb"] >= 2048.0

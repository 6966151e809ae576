"""Inference latency of the students: forward pass and forward + decode, interleaved."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from bevkd.bench.latency import (CONTROL, fastest_mean, forward_cost, latency_fields,
                                 paired_ratios, time_passes)


def time_students(students: dict, batches: list, rounds: int) -> dict:
    return fastest_mean(time_passes(students, batches, rounds))


class _Student(torch.nn.Module):
    """Same network for every instance; ``decode_seconds`` stands for an NMS over more or
    fewer confident boxes."""

    def __init__(self, decode_seconds: float):
        super().__init__()
        self.net = torch.nn.Linear(64, 64)
        self.decode_seconds = decode_seconds

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        time.sleep(0.01)
        return self.net(batch)

    def decode(self, out: torch.Tensor, batch: torch.Tensor) -> list:
        time.sleep(self.decode_seconds)
        return []


def test_forward_time_separates_the_network_from_decoding():
    students = {"baseline": _Student(0.0), "kd": _Student(0.02)}
    t = time_students(students, [torch.randn(1, 64)] * 2, rounds=2)
    assert set(t) == {"baseline", "kd"}
    # same network: forward times agree; the slower decode shows in the total only
    assert abs(t["kd"]["forward"] / t["baseline"]["forward"] - 1) < 0.3
    assert t["kd"]["total"] - t["kd"]["forward"] >= 0.02
    assert t["baseline"]["total"] >= t["baseline"]["forward"] >= 0.01
    # sleeping takes wall time, not the thread's CPU time
    assert t["baseline"]["forward_cpu"] < 0.5 * t["baseline"]["forward"]


class _Logged(torch.nn.Module):
    """Records which model each batch passes through, in order."""

    def __init__(self, name: str, log: list):
        super().__init__()
        self.name, self.log = name, log

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        self.log.append((self.name, int(batch)))
        return batch

    def decode(self, out: torch.Tensor, batch: torch.Tensor) -> list:
        return []


def test_interleaved_by_sample_with_the_first_model_rotating():
    log: list = []
    students = {n: _Logged(n, log) for n in "abc"}
    time_students(students, [torch.tensor(0), torch.tensor(1)], rounds=3)
    passes = log[3:]  # after one warm-up pass each
    assert passes[:6] == [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("b", 1), ("c", 1)]
    assert passes[6:9] == [("b", 0), ("c", 0), ("a", 0)]
    assert passes[12:15] == [("c", 0), ("a", 0), ("b", 0)]


def test_cpu_time_ignores_time_the_thread_is_not_running():
    """A forward pass that waits (as one descheduled by other processes would) costs wall
    time, not CPU time: the CPU-time ratio of two equal networks stays 1 where one of them
    is slowed down by waiting."""

    class Busy(_Student):
        def __init__(self, wait: float):
            super().__init__(0.0)
            self.wait = wait

        def forward(self, batch: torch.Tensor) -> torch.Tensor:
            t0 = time.thread_time()
            while time.thread_time() - t0 < 0.01:  # 10 ms of CPU work
                pass
            time.sleep(self.wait)
            return self.net(batch)

    t = time_students({"baseline": Busy(0.0), "kd": Busy(0.02)}, [torch.randn(1, 64)] * 2,
                      rounds=2)
    # every pass's wall time holds its CPU time and the 20 ms wait, so the fastest ones do
    assert t["kd"]["forward"] - t["kd"]["forward_cpu"] >= 0.02
    assert t["kd"]["forward_cpu"] / t["baseline"]["forward_cpu"] == pytest.approx(1, abs=0.3)


def test_paired_ratio_divides_out_a_slowdown_both_models_share():
    """Hand-made passes: ``kd`` costs 1.1x the baseline in every pair, while the machine
    runs 2x slower in round 1 for both and one burst hits a single ``kd`` pass."""
    base = np.array([[1.0, 2.0, 4.0], [2.0, 4.0, 8.0]])
    kd = 1.1 * base
    kd[1, 0] = 5.0  # a burst: 2.2 -> 5.0
    passes = {"forward_cpu": {"baseline": base, "kd": kd}}
    r = paired_ratios(passes)["forward_cpu"]
    assert r["baseline"] == 1.0
    assert r["kd"] == pytest.approx(1.1)  # median of five 1.1s and one 2.27
    # where the fastest pass per sample fails: the machine is 2x slower for both models in
    # rounds 0 and 1, and the slow spell ends between the baseline's and kd's pass in round 2
    base = np.array([[2.0], [2.0], [1.0]])
    kd = 1.1 * np.array([[2.0], [2.0], [2.0]])
    passes = {"forward_cpu": {"baseline": base, "kd": kd}}
    assert paired_ratios(passes)["forward_cpu"]["kd"] == pytest.approx(1.1)
    fastest = fastest_mean(passes)
    assert fastest["kd"]["forward_cpu"] / fastest["baseline"]["forward_cpu"] == pytest.approx(2.2)


def test_latency_fields_name_the_clocks():
    base = np.full((2, 2), 0.2)
    passes = {"forward": {"baseline": base, "kd": 1.5 * base},
              "forward_cpu": {"baseline": base, "kd": 1.02 * base},
              "total": {"baseline": 2 * base, "kd": 1.8 * base}}
    f = latency_fields(passes)
    assert f["latency_ratio"]["kd"] == pytest.approx(1.02)  # the CPU-time one
    assert f["latency_ratio_wall"]["kd"] == pytest.approx(1.5)
    assert f["latency_ratio_with_decode"]["kd"] == pytest.approx(0.9)
    assert f["latency_ms"] == pytest.approx({"baseline": 200.0, "kd": 204.0})
    # decoding ratios only between models timed with trained weights (runs restored from an
    # archive come without them); the forward ratios of every model stay
    passes["total"]["kd2"] = passes["forward"]["kd2"] = passes["forward_cpu"]["kd2"] = base
    assert latency_fields(passes, trained={"baseline", "kd"})["latency_ratio_with_decode"] == \
        pytest.approx({"baseline": 1.0, "kd": 0.9})
    untrained_base = latency_fields(passes, trained={"kd", "kd2"})
    assert untrained_base["latency_ratio_with_decode"] == {}
    assert set(untrained_base["latency_ratio"]) == {"baseline", "kd", "kd2"}


def test_without_a_cpu_clock_the_table_reads_the_wall_clock():
    """GPU passes have no CPU-time clock (it would time kernel launches): the table's ratio
    and milliseconds are then the synchronised wall time's, and the baseline's row says
    where the models were timed."""
    base = np.full((2, 2), 0.004)
    passes = {"forward": {"baseline": base, "kd": 1.25 * base, CONTROL: 0.98 * base},
              "total": {"baseline": 2 * base, "kd": 3 * base, CONTROL: 2 * base}}
    f = latency_fields(passes, device="cuda (NVIDIA H200)")
    assert f["latency_ratio"]["kd"] == pytest.approx(1.25)
    assert f["latency_ratio_wall"]["kd"] == pytest.approx(1.25)
    assert f["latency_ratio_with_decode"]["kd"] == pytest.approx(1.5)
    assert f["latency_ms"] == pytest.approx({"baseline": 4.0, "kd": 5.0})
    assert f["latency_control_ratio"] == {"baseline": pytest.approx(0.98)}
    assert f["timing_device"] == {"baseline": "cuda (NVIDIA H200)"}
    assert "timing_device" not in latency_fields(passes)  # not said: not claimed


def test_the_timing_device_is_the_gpu_where_there_is_one(monkeypatch):
    from bevkd.bench.latency import device_name, timing_device

    assert timing_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert timing_device() == torch.device("cpu") and device_name(timing_device()) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert timing_device() == torch.device("cuda")


def test_time_passes_keeps_every_pass():
    students = {"baseline": _Student(0.0), "kd": _Student(0.0)}
    p = time_passes(students, [torch.randn(1, 64)] * 3, rounds=2)
    assert set(p) == {"forward", "forward_cpu", "total"}
    for clock in p.values():
        for t in clock.values():
            assert t.shape == (2, 3) and np.isfinite(t).all()
    assert (p["forward"]["kd"] >= 0.01).all()  # each pass holds its 10 ms sleep


def test_load_note_flags_a_busy_machine_only():
    from bevkd.bench.latency import load_note

    assert load_note(1.2, threads=1) is None          # the measurement itself
    assert load_note(0.0, threads=1) is None
    note = load_note(3.1, threads=1)                  # two trainings beside it
    assert note is not None and "3.1" in note and "--report-only" in note
    assert load_note(2.3, threads=2) is None          # its own two threads


def test_latency_fields_put_the_control_on_the_baseline_row_and_add_the_cost():
    base = np.full((2, 2), 0.2)
    passes = {"forward": {"baseline": base, "kd": base, CONTROL: 0.9 * base},
              "forward_cpu": {"baseline": base, "kd": 1.01 * base, CONTROL: 0.96 * base},
              "total": {"baseline": base, "kd": base, CONTROL: base}}
    cost = {"baseline": {"params": 10, "flops": 400}, "kd": {"params": 10, "flops": 400},
            CONTROL: {"params": 10, "flops": 400}}
    f = latency_fields(passes, cost=cost)
    # the control is no row of the table: its ratios sit on the baseline's
    assert all(CONTROL not in values for values in f.values())
    assert f["latency_control_ratio"] == {"baseline": pytest.approx(0.96)}
    assert f["latency_control_ratio_wall"] == {"baseline": pytest.approx(0.9)}
    assert f["params"] == {"baseline": 10, "kd": 10}
    assert f["forward_flops"] == {"baseline": 400, "kd": 400}
    assert "latency_control_ratio" not in latency_fields({k: {n: v for n, v in c.items()
                                                              if n != CONTROL}
                                                          for k, c in passes.items()})


def test_forward_cost_counts_parameters_and_flops():
    """A 64 -> 32 linear layer on a batch of 3: 64 * 32 + 32 parameters, and 3 * 64 * 32
    multiply-adds, 2 FLOPs each."""
    net = torch.nn.Linear(64, 32)
    assert forward_cost(net, torch.randn(3, 64)) == {"params": 64 * 32 + 32,
                                                     "flops": 2 * 3 * 64 * 32}
    wider = torch.nn.Linear(64, 33)  # one more output: more of both
    c = forward_cost(wider, torch.randn(3, 64))
    assert c["params"] > 64 * 32 + 32 and c["flops"] > 2 * 3 * 64 * 32


def test_measure_times_each_runs_network_on_one_thread(trained_run, synth_root, tmp_path):
    import shutil

    from bevkd.bench.archive import LEFT_OUT
    from bevkd.bench.latency import measure

    # "again": the run as a bench archive restores it, without its checkpoint
    again = str(tmp_path / "again")
    shutil.copytree(trained_run, again, ignore=shutil.ignore_patterns(*LEFT_OUT))
    m = measure({"baseline": trained_run, "again": again}, synth_root, samples=2, rounds=1,
                device="cpu")
    assert m.trained == {"baseline", CONTROL}  # whose decoding time means something
    passes = m.passes
    assert set(passes) == {"forward", "forward_cpu", "total"}
    for clock in passes.values():  # the baseline loaded once more, as the control
        assert set(clock) == {"baseline", "again", CONTROL}
    for name in ("baseline", "again", CONTROL):
        # each pass's total holds its forward pass
        assert (0 < passes["forward"][name]).all()
        assert (passes["forward"][name] <= passes["total"][name]).all()
        assert (passes["forward_cpu"][name] > 0).all()
    # one network: the same cost for each copy (trained or not), and a real one
    assert m.cost["again"] == m.cost["baseline"] == m.cost[CONTROL]
    assert m.cost["baseline"]["params"] > 1000 and m.cost["baseline"]["flops"] > 1e6
    assert set(measure({"baseline": trained_run}, synth_root, samples=1, rounds=1,
                       control=False, device="cpu").cost) == {"baseline"}
    with pytest.raises(ValueError, match="one thread"):
        measure({"baseline": trained_run}, synth_root, threads=2, device="cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_measure_times_the_students_on_the_gpu(trained_run, synth_root):
    from bevkd.bench.latency import measure

    m = measure({"baseline": trained_run}, synth_root, samples=2, rounds=2, device="cuda")
    assert m.device.startswith("cuda (")
    assert set(m.passes) == {"forward", "total"}  # no CPU-time clock on a GPU
    for name in ("baseline", CONTROL):
        assert (0 < m.passes["forward"][name]).all()
        assert (m.passes["forward"][name] <= m.passes["total"][name]).all()
    f = latency_fields(m.passes, cost=m.cost, device=m.device)
    assert f["timing_device"]["baseline"] == m.device and f["latency_ms"]["baseline"] > 0

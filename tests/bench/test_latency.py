"""Inference latency of the students: forward pass and forward + decode, interleaved."""

from __future__ import annotations

import time

import torch

from bevkd.bench.latency import time_students


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


def test_load_note_flags_a_busy_machine_only():
    from bevkd.bench.latency import load_note

    assert load_note(1.2, threads=1) is None          # the measurement itself
    assert load_note(0.0, threads=1) is None
    note = load_note(3.1, threads=1)                  # two trainings beside it
    assert note is not None and "3.1" in note and "--report-only" in note
    assert load_note(2.3, threads=2) is None          # its own two threads

"""Inference latency of the trained students, measured in one process, interleaved.

Every student is timed on the same validation batches (batch size 1, one thread), interleaved
sample by sample (each sample through every model, the models' order rotated each round) so
that machine noise hits all of them alike. Three clocks per pass: the network's forward pass
in wall time and in the thread's CPU time, which depend on the architecture only
(distillation must add nothing: the ratio to the baseline is 1.00 up to noise), and forward +
decoding in wall time, whose circle NMS costs more the more boxes the weights score above the
threshold (so trained weights alone move it by several percent; reported as
``latency_ratio_with_decode``).

A ratio to the baseline is the median over (round, sample) of the model's pass over the
baseline's pass on the same sample in the same round (:func:`paired_ratios`), and the table's
"latency ratio" is the CPU-time one. CPU time leaves out the time the thread spends
descheduled while other processes use the cores; pairing divides out the slowdowns that last
longer than a few passes (cache, memory-bandwidth and clock contention), which CPU time still
counts. benchmarks/latency_noise.md measures the estimators beside two trainings on 2 cores,
with the same network loaded twice as the control (true ratio 1.00), 4 repetitions of 6
ratios: the root mean square of ratio - 1 was 0.023 paired, 0.043 for the fastest pass per
sample in CPU time (this module's estimator in session 15), 0.065 for the fastest pass timed
model after model in wall time (before that), and 2 of the 24 paired ratios were off by more than
0.05 (largest 0.074) against 7 (0.090). Better, not reliable: the load note stays, and the
table's latency check still wants an idle machine. On an idle machine, too, one measurement
put a student at 0.946 that another, 90 minutes earlier, put at 0.97-1.00; four copies of the
baseline timed together (session 17, beside two trainings) read 1.003 / 0.949 / 0.994 and, in
the next repetition with the same copies, 0.991 / 1.004 / 0.984: the error is in the time of
measuring, not in a loaded copy (memory placement would have repeated). So every measurement
now carries its own control, the baseline loaded again (:data:`CONTROL`), whose distance from
1.00 is that measurement's noise, and each model's exact forward cost (parameters and FLOPs,
:func:`forward_cost`), which says without noise whether a student runs the baseline's network.

On a GPU (:func:`timing_device`: where one is, as for the ``small`` preset, whose students
one CPU thread would take seconds per pass to run) the models and samples move there and a
pass is timed in wall time between two ``torch.cuda.synchronize()``: the thread's CPU time
would count the kernel launches only, so the CUDA passes have no ``forward_cpu`` clock and
the table's ratio is the wall-time one (:func:`table_clock`). The GPU runs one pass at a
time, so what the CPU clock guards against (other processes' threads) matters less there.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from ..data.nuscenes import NuScenesDataset
from ..structures.batch import collate

Passes = dict[str, dict[str, np.ndarray]]
"""``{clock: {model: seconds}}``, each a ``(rounds, batches)`` array of single passes; the
clocks are ``forward`` (wall), ``forward_cpu`` (the thread's CPU time; on the CPU only) and
``total`` (wall, forward + decode)."""


def timing_device(device: str | torch.device | None = None) -> torch.device:
    """Where the bench times its models: ``device`` where given, else (``None`` or ``"auto"``)
    the GPU where there is one (the models of a GPU preset are deployed there), else the
    CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def device_name(device: torch.device) -> str:
    """``"cpu"``, or ``"cuda (<GPU name>)"``: what a table says its timings ran on."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def table_clock(passes: Passes) -> str:
    """The clock of the table's latency ratio: the thread's CPU time where the passes have
    it (on the CPU), else the wall time (on a GPU, synchronised)."""
    return "forward_cpu" if "forward_cpu" in passes else "forward"


CONTROL = "baseline_again"
"""The control of a measurement: the baseline's run loaded a second time, timed as one more
model. Same network, same weights: its true ratio is 1.00, so its measured one is the noise
of that very measurement (the table's latency check allows a student as far from 1.00)."""


@dataclass
class Measurement:
    """What :func:`measure` gives: every pass of every model (:data:`Passes`, the control
    :data:`CONTROL` among them) and each model's forward-pass cost, ``{model: {"params":
    int, "flops": int}}`` (parameter count; FLOPs of one forward pass on the first sample as
    ``torch.utils.flop_counter`` counts them, a multiply-add as 2). The cost is exact and
    machine-independent: a student whose cost equals the baseline's runs the same network.
    ``trained``: the models timed with their trained weights (the others are restored runs
    without a checkpoint, timed on their config's network: :func:`~bevkd.bench.archive.
    timing_model`), whose decoding time says nothing. ``device``: where they were timed
    (:func:`device_name`)."""

    passes: Passes
    cost: dict[str, dict[str, int]]
    trained: set[str] = field(default_factory=set)
    device: str = "cpu"


@torch.no_grad()
def measure(runs: dict[str, str], data: str, samples: int = 8, rounds: int = 8,
            threads: int = 1, control: bool = True,
            device: str | torch.device | None = None) -> Measurement:
    """Every pass (:func:`time_passes`) of each run's student on ``device``
    (:func:`timing_device`: the GPU where there is one) on the first ``samples`` validation
    samples, ``rounds`` times, and each one's forward cost (:func:`forward_cost`). With
    ``control`` (and a ``baseline`` run), the baseline is loaded a second time and timed as
    :data:`CONTROL`."""
    device = timing_device(device)
    if device.type == "cpu" and threads != 1:  # thread_time() counts the calling thread only
        raise ValueError(f"latency is measured on one thread (threads={threads}): the CPU "
                         "time of torch's other intra-op threads would not be counted")
    torch.set_num_threads(threads)
    if control and "baseline" in runs:
        runs = {**runs, CONTROL: runs["baseline"]}
    from .archive import timing_model

    students, cfg, trained = {}, None, set()
    for name, run in runs.items():
        cfg, model, has_weights = timing_model(run, teacher_weights=False)  # the student alone
        students[name] = getattr(model, "student", model).eval().to(device)
        if has_weights:
            trained.add(name)
    ds = NuScenesDataset(data, cfg.train.version, cfg.train.val_split, cfg.data, train=False)
    batches = [collate([ds[i]]).to(device) for i in range(min(samples, len(ds)))]
    cost = {name: forward_cost(model, batches[0]) for name, model in students.items()}
    return Measurement(time_passes(students, batches, rounds, device), cost, trained,
                       device_name(device))


@torch.no_grad()
def forward_cost(model: torch.nn.Module, batch) -> dict[str, int]:
    """``{"params": int, "flops": int}``: the model's parameter count and the FLOPs of its
    forward pass on ``batch`` (matrix products and convolutions, a multiply-add as 2)."""
    with FlopCounterMode(display=False) as counter:
        model(batch)
    return {"params": sum(p.numel() for p in model.parameters()),
            "flops": int(counter.get_total_flops())}


def latency_fields(passes: Passes, reference: str = "baseline",
                   cost: dict[str, dict[str, int]] | None = None, device: str | None = None,
                   trained: set[str] | None = None) -> dict[str, dict[str, Any]]:
    """The table's latency fields, ``{row field: {model: value}}``: ``latency_ratio`` (forward
    pass, :func:`table_clock`: CPU time, or wall time on a GPU), ``latency_ratio_wall``
    (forward pass, wall time) and ``latency_ratio_with_decode`` (forward + decode, wall
    time), each paired with ``reference`` (:func:`paired_ratios`), and ``latency_ms``, the
    forward pass's milliseconds on the table's clock (:func:`fastest_mean`). The control
    (:data:`CONTROL`) is no row: its ratios go on ``reference``'s row as
    ``latency_control_ratio`` (the table's clock) and ``latency_control_ratio_wall``. ``cost``
    (:attr:`Measurement.cost`) adds ``params`` and ``forward_flops``; ``device``
    (:attr:`Measurement.device`) goes on ``reference``'s row as ``timing_device``.
    ``trained`` (:attr:`Measurement.trained`; None: every model): decoding's cost depends on
    the weights (how many boxes score high), so ``latency_ratio_with_decode`` is kept only for
    the models timed with their trained weights, and for none where ``reference`` was not (a
    ratio to an untrained network's decoding says nothing); runs restored from an archive
    come without weights."""
    clock = table_clock(passes)
    ratios = paired_ratios(passes, reference)
    fields: dict[str, dict[str, Any]] = {
        "latency_ratio": ratios[clock], "latency_ratio_wall": ratios["forward"],
        "latency_ratio_with_decode": ratios["total"],
        "latency_ms": {n: 1000 * t[clock] for n, t in fastest_mean(passes).items()}}
    if cost:
        fields["params"] = {n: c["params"] for n, c in cost.items()}
        fields["forward_flops"] = {n: c["flops"] for n, c in cost.items()}
    fields = {k: {n: v for n, v in values.items() if n != CONTROL} for k, values in fields.items()}
    if trained is not None:
        fields["latency_ratio_with_decode"] = {
            n: v for n, v in fields["latency_ratio_with_decode"].items()
            if reference in trained and n in trained}
    if CONTROL in ratios[clock]:
        fields["latency_control_ratio"] = {reference: ratios[clock][CONTROL]}
        fields["latency_control_ratio_wall"] = {reference: ratios["forward"][CONTROL]}
    if device is not None:
        fields["timing_device"] = {reference: device}
    return fields


@torch.no_grad()
def time_passes(students: dict[str, torch.nn.Module], batches: list, rounds: int = 5,
                device: str | torch.device = "cpu") -> Passes:
    """Every pass of every student, timed (see :data:`Passes`). Each round takes every batch
    through every model in turn, the first model moving on by ``len(students) / rounds`` each
    round (so starting positions spread over the models), so a model's pass on a batch is
    never more than ``len(students) - 1`` passes from the baseline's on the same batch and
    round. On the CPU, CPU time is the calling thread's: run torch on one thread. On a CUDA
    ``device`` (the models and batches already there) each clock reads after
    ``torch.cuda.synchronize()``, in wall time only: the thread's CPU time would count the
    kernel launches."""
    cuda = torch.device(device).type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    names = list(students)
    clocks = ("forward", "total") if cuda else ("forward", "forward_cpu", "total")
    times = {key: {n: np.full((rounds, len(batches)), np.inf) for n in names} for key in clocks}
    for name in names:  # warm-up (on a GPU also the kernels' first launches and autotuning)
        model = students[name]
        model.decode(model(batches[0]), batches[0])
    for r in range(rounds):
        first = r * len(names) // rounds
        order = names[first:] + names[:first]
        for i, b in enumerate(batches):
            for name in order:
                model = students[name]
                sync()
                t0, c0 = time.perf_counter(), time.thread_time()
                out = model(b)
                sync()
                t1, c1 = time.perf_counter(), time.thread_time()
                model.decode(out, b)
                sync()
                t2 = time.perf_counter()
                times["forward"][name][r, i] = t1 - t0
                if not cuda:
                    times["forward_cpu"][name][r, i] = c1 - c0
                times["total"][name][r, i] = t2 - t0
    return times


def fastest_mean(passes: Passes) -> dict[str, dict[str, float]]:
    """Seconds per batch, per student and clock: for each batch the fastest of the rounds'
    passes (other processes only ever add time), then the mean over batches."""
    names = next(iter(passes.values()))
    return {n: {key: float(t[n].min(0).mean()) for key, t in passes.items()} for n in names}


def paired_ratios(passes: Passes, reference: str = "baseline") -> dict[str, dict[str, float]]:
    """``{clock: {model: ratio}}``: the median over (round, batch) of a model's pass over
    ``reference``'s pass on the same batch in the same round. The two passes are close in
    time, so a slowdown that lasts longer than a few passes (another process's burst, a
    clock change) divides out of the pair, where the fastest-pass estimator of
    :func:`fastest_mean` keeps whatever slowdown persists over all of one model's rounds;
    the median drops the pairs a burst split."""
    return {key: {n: float(np.median(t[n] / t[reference])) for n in t}
            for key, t in passes.items()}


def load_note(load: float | None = None, threads: int = 1) -> str | None:
    """A table note when other processes shared the CPUs while latency and then step time
    (:mod:`bevkd.bench.steptime`) were measured, else ``None``. ``load``: the 1-minute load
    average just after measuring (read from the system when ``None``); the measuring
    process itself accounts for ``threads`` of it. Taking the fastest of interleaved passes
    absorbs short bursts, not a machine busy with trainings: there the ratio of two models
    moved to 0.55 (bench of session 6)."""
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:  # not available on this platform: nothing to report
            return None
    others = load - threads
    if others < 0.5:
        return None
    return (f"Latency and step time were measured while other processes used the CPUs "
            f"(1-minute load {load:.1f} on {os.cpu_count()} cores, {threads} of it the "
            "measurement): their ratios are unreliable, the paired CPU-time latency ratio less "
            "so but still by several percent (benchmarks/latency_noise.md); rerun "
            "`bevkd bench ... --report-only` on an idle machine.")

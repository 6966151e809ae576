"""How long a running bench has left, and where each of its trainings stands.

A tiny bench on 2 CPU cores runs for a day (`README`), so its log says more than "started"
and "done": every ``status_every`` seconds :mod:`bevkd.bench.runner` writes where each
running training is (read from the last progress line of its ``RUN/train.log``, which
:class:`bevkd.engine.progress.LineProgress` writes) and an estimate of the time left.

The estimate prices work per epoch, since a bench's runs train different numbers of epochs
(on the tiny preset 6 for the teachers, 12 for the students):

- a finished run gives its config's pace: training seconds (``timing.json``, its
  validations included) per epoch; not one restored from an archive (trained elsewhere);
- a running one, until its config has a finished run, the step time of its last progress
  line times the epoch's steps (validation not counted), and its own time left is the one
  that line gives (only the current attempt's lines count: a resumed run's log also holds
  the stopped attempt's, which may be ahead of the checkpoint it resumed from);
- a job whose config has neither takes the mean pace of its kind (:func:`kind`), finished
  runs first: the LiDAR models (teacher, label encoder); the fusion teacher; the baseline;
  distilled students (every method and ablation: their teachers' forward passes and their
  terms make them slower than the baseline, 1.3-2.7x its step on the tiny preset); then a
  camera model borrows another camera kind's, scaled by :data:`BORROW`'s ratio of the two
  kinds' epochs on the tiny preset (a method before any distilled run has a pace is priced
  at twice the baseline's: at the baseline's own, the demo said "~1 min to go" with
  DualDistill 2.8 min from its end). Never a LiDAR model's: on the tiny preset the LiDAR
  teacher's epoch takes 90 s, the baseline's 123 s, a distilled student's 160-350 s and the
  fusion teacher's 236 s, so a camera model priced at it came out up to 4x short. Until a
  camera model has a pace (its first progress line comes a tenth of an epoch in), the camera
  jobs are left out of the estimate and the line says how many.

Jobs run ``parallel`` at a time. While the camera backbone's pretraining runs (its time left
read from the last line of its log, :func:`pretrain_progress`), the jobs with a camera model
wait for it and the others have the slots it leaves; the estimate counts that wait (not the
held-out evaluation after its last step). Before that line (a tenth of its steps) its time is
not known: the estimate leaves it out and says so. Start-up, the final evaluation, the order
jobs wait in (a student for its teacher) and one method's cost over another's whose pace it
borrows are not counted: a rough guide that gets better as runs finish.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..progress import hms
from .plan import NO_CAMERA, TEACHER_ROWS, Job

if TYPE_CHECKING:
    from .runner import JobResult

# LineProgress's line: "epoch 5/12   31% (29/95)  loss 18.43  3.89 s/step  epoch left
# 0:04:17  run left 0:47:23"
_LINE = re.compile(r"^epoch (\d+)/(\d+)\s+\d+% \((\d+)/(\d+)\)\s+loss \S+\s+([0-9.]+) s/step"
                   r"\s+epoch left \S+\s+run left (\d+):(\d\d):(\d\d)\s*$")
# LineBar's line of `bevkd pretrain` (bevkd.progress): "pretrain backbone:  70% 105/150
# [01:53<00:45,  1.01s/it, class=1.035, depth=1.897]" (tqdm's times: M:SS or H:MM:SS)
_BAR = re.compile(r"^pretrain backbone:\s+\d+% (\d+)/(\d+) \[\d+(?::\d\d){1,2}<"
                  r"(\d+(?::\d\d){1,2}),")
_TAIL_BYTES = 16384  # the last progress line is within the log's last few lines


@dataclass(frozen=True)
class Live:
    """A training's last progress line: ``step`` of ``steps`` in ``epoch`` of ``epochs``
    (1-based), ``step_seconds`` per optimiser step and ``left`` seconds to the end of the
    run at that pace."""

    epoch: int
    epochs: int
    step: int
    steps: int
    step_seconds: float
    left: float

    @property
    def epoch_seconds(self) -> float:
        return self.step_seconds * self.steps

    def describe(self) -> str:
        """``epoch 5/12 (31 %), 0:47:23 left``."""
        return (f"epoch {self.epoch}/{self.epochs} ({100 * self.step / max(self.steps, 1):.0f} "
                f"%), {hms(self.left)} left")


@dataclass(frozen=True)
class PretrainLive:
    """The backbone pretraining's last progress line: ``step`` of ``steps``, ``left`` seconds
    to its last step (tqdm's estimate)."""

    step: int
    steps: int
    left: float

    def describe(self) -> str:
        """``step 105/150 (70 %), 0:00:45 left``."""
        return (f"step {self.step}/{self.steps} ({100 * self.step / max(self.steps, 1):.0f} %), "
                f"{hms(self.left)} left")


def _last_match(path: str, pattern: re.Pattern, start: int) -> re.Match | None:
    """The last line of the file ``path`` past byte ``start`` (within its tail) that
    ``pattern`` matches, or None (no file, no such line)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(start, f.tell() - _TAIL_BYTES))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        m = pattern.match(line.strip())
        if m:
            return m
    return None


def live_progress(run: str, start: int = 0) -> Live | None:
    """The last progress line of ``RUN/train.log`` written past byte ``start`` (where the log
    stood when this attempt began: the lines before it are an earlier attempt's), or None (no
    log yet, or no such line in its tail: a training starting up, validating at length or not
    logging lines)."""
    m = _last_match(os.path.join(run, "train.log"), _LINE, start)
    if m is None:
        return None
    e, es, s, ss = (int(g) for g in m.group(1, 2, 3, 4))
    h, mi, se = (int(g) for g in m.group(6, 7, 8))
    return Live(e, es, s, ss, float(m.group(5)), float(h * 3600 + mi * 60 + se))


def pretrain_progress(log: str, start: int = 0) -> PretrainLive | None:
    """The last progress line of the backbone pretraining's ``log`` past byte ``start`` (where
    this bench's attempt began), or None (none yet: its first line comes after a tenth of its
    steps). Its time left is the line's less the time since the log was written: a line comes
    every tenth of the pretraining, and the estimate is made any time between two."""
    m = _last_match(log, _BAR, start)
    if m is None:
        return None
    left = 0
    for part in m.group(3).split(":"):  # M:SS or H:MM:SS
        left = left * 60 + int(part)
    try:
        age = max(time.time() - os.path.getmtime(log), 0.0)
    except OSError:
        age = 0.0
    return PretrainLive(int(m.group(1)), int(m.group(2)), max(left - age, 0.0))


def train_seconds(run: str) -> float | None:
    """A finished run's training time (``timing.json``), or None."""
    try:
        with open(os.path.join(run, "timing.json")) as f:
            return float(json.load(f)["train_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class Estimate:
    """:func:`estimate`'s answer: ``seconds`` the priced jobs left may still take, and the
    jobs left that no pace prices yet (``unpriced``: camera models before any camera model
    has a pace; the estimate leaves them out rather than price them at a LiDAR model's,
    several times faster)."""

    seconds: float
    unpriced: tuple[str, ...] = ()


def kind(job: Job) -> str:
    """Which runs' pace says most of ``job``'s: ``lidar`` (no camera: the LiDAR teacher, the
    label encoder), ``fusion`` (the fusion teacher), ``baseline``, ``distilled`` (every method,
    ablation and the composite)."""
    if job.model in NO_CAMERA:
        return "lidar"
    if job.model in TEACHER_ROWS:
        return "fusion"
    return "baseline" if job.model == "baseline" else "distilled"


# Where a camera model of a kind without a pace of its own borrows one, nearest first, and
# the factor on the pace it borrows: the ratio of the two kinds' epochs on the tiny preset
# (2 CPU cores, benchmarks/tiny.md). A distilled student runs its teachers' forward passes
# and its terms on top of the baseline's step (the main methods' step time ratios 1.28-2.63,
# mean 1.97; ablations up to 2.72), the fusion teacher a camera and a LiDAR branch (its
# epoch 236 s, the baseline's 123 s). A guess that holds until the kind logs its own pace:
# on a GPU the teachers' share of a step is smaller.
BORROW: dict[str, tuple[tuple[str, float], ...]] = {
    "baseline": (("distilled", 0.5), ("fusion", 0.5)),
    "distilled": (("baseline", 2.0), ("fusion", 1.0)),
    "fusion": (("distilled", 1.0), ("baseline", 1.9)),
}


def estimate(jobs: list[Job], results: Mapping[str, JobResult], elapsed: Mapping[str, float],
             parallel: int, epochs: Mapping[str, int] | None = None,
             live: Mapping[str, Live] | None = None,
             pretraining: tuple[float | None, int] | None = None) -> Estimate | None:
    """How long the jobs without a result may still take, ``parallel`` at once (see the
    module's docstring); never less than the longest of them. ``elapsed``: running job ->
    seconds of this attempt (used where its log has no progress line); ``epochs``: job ->
    epochs it trains (1 where missing: then a pace is per run); ``live``: running job -> its
    :func:`live_progress`; ``pretraining``: the running backbone pretraining's seconds left
    (None: not known yet, then counted as none) and the slots it holds (the camera jobs start
    after it). None before any run gives a pace."""
    epochs, live = epochs or {}, live or {}
    kinds = ("lidar", "fusion", "baseline", "distilled")
    # paces per epoch: by config, and by kind, from finished runs and from the running
    # trainings' last progress lines
    finished: dict[str, list[float]] = {}
    running: dict[str, list[float]] = {}
    kind_finished: dict[str, list[float]] = {k: [] for k in kinds}
    kind_running: dict[str, list[float]] = {k: [] for k in kinds}
    from .runner import is_restored  # (runner imports this module)

    for r in results.values():
        # a run restored from an archive trained on another machine, maybe twice as fast
        t = (train_seconds(r.run) if r.status in ("done", "reused")
             and not is_restored(r.run) else None)
        if t is not None:
            pace = t / max(epochs.get(r.job.name, 1), 1)
            finished.setdefault(r.job.config, []).append(pace)
            kind_finished[kind(r.job)].append(pace)
    for job in jobs:
        if job.name in live and job.name not in results:
            pace = live[job.name].epoch_seconds
            running.setdefault(job.config, []).append(pace)
            kind_running[kind(job)].append(pace)
    every = [p for ps in finished.values() for p in ps] or [
        p for ps in running.values() for p in ps]
    if not every:
        return None

    def mean(ps: list[float]) -> float:
        return sum(ps) / len(ps)

    def pace_of(job: Job) -> float | None:
        k = kind(job)
        paces = finished.get(job.config) or running.get(job.config) or kind_finished[k] \
            or kind_running[k]
        if paces:
            return mean(paces)
        for other, factor in BORROW.get(k, ()):  # a camera model: never a LiDAR model's pace
            paces = kind_finished[other] or kind_running[other]
            if paces:
                return factor * mean(paces)
        # (the LiDAR teacher trains first: rarely needed)
        return mean(every) if k == "lidar" else None

    camera: list[float] = []  # seconds left per job, those that wait for a pretraining
    other: list[float] = []
    unpriced: list[str] = []
    for job in jobs:
        if job.name in results:
            continue
        each = camera if job.model not in NO_CAMERA else other
        if job.name in live:
            each.append(live[job.name].left)
            continue
        pace = pace_of(job)
        if pace is None:
            unpriced.append(job.name)
            continue
        each.append(max(pace * max(epochs.get(job.name, 1), 1) - elapsed.get(job.name, 0.0),
                        0.0))
    parallel = max(parallel, 1)
    if pretraining is None:
        every_left = camera + other
        # fewer jobs than slots leave slots idle: the longest job bounds the time from below
        seconds = max(sum(every_left) / parallel, max(every_left, default=0.0))
        return Estimate(seconds, tuple(unpriced))
    # the other jobs have the slots the pretraining leaves until it ends (each job at most
    # that long), then every job all of them; bounded from below as above, the camera jobs
    # (and the others too where it holds every slot) starting when it ends
    wait, slots = pretraining
    wait = wait or 0.0
    free = max(parallel - slots, 0)
    beside = min(sum(min(o, wait) for o in other), wait * free)
    seconds = max(wait + (sum(other) - beside + sum(camera)) / parallel,
                  (wait if free == 0 else 0.0) + max(other, default=0.0),
                  wait + max(camera, default=0.0))
    return Estimate(seconds, tuple(unpriced))


def time_left(jobs: list[Job], results: Mapping[str, JobResult], elapsed: Mapping[str, float],
              parallel: int, epochs: Mapping[str, int] | None = None,
              live: Mapping[str, Live] | None = None,
              pretraining: tuple[float | None, int] | None = None) -> float | None:
    """:func:`estimate`'s seconds, of the jobs it prices (arguments as its); None before any
    run gives a pace."""
    got = estimate(jobs, results, elapsed, parallel, epochs, live, pretraining)
    return None if got is None else got.seconds


def _jobs(n: int) -> str:
    return f"{n} camera-model job{'s' if n != 1 else ''}"


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def progress_line(jobs: list[Job], results: Mapping[str, JobResult],
                  elapsed: Mapping[str, float], parallel: int,
                  epochs: Mapping[str, int] | None = None,
                  live: Mapping[str, Live] | None = None,
                  pretraining: tuple[float | None, int] | None = None) -> str:
    """``[bench] 12 of 27 jobs final; ~5 h 10 min to go`` (the estimate once there is one,
    with what it leaves out; arguments as :func:`estimate`'s)."""
    got = estimate(jobs, results, elapsed, parallel, epochs, live, pretraining)
    eta = ""
    if got is not None and len(results) < len(jobs):
        left = len(jobs) - len(results)
        if len(got.unpriced) == left and got.seconds < 30:  # nothing priced, no wait known
            eta = (f"; the time left is not known until a camera model has logged its pace "
                   f"({_jobs(left)} left)")
        else:
            eta = f"; ~{_duration(got.seconds)} to go"
            missing = []
            if got.unpriced:
                missing.append(f"{_jobs(len(got.unpriced))} (not priced until a camera model "
                               "has logged its pace)")
            if pretraining is not None and pretraining[0] is None:
                missing.append("the backbone pretraining's time left (not known yet)")
            if missing:
                eta += " and " + " and ".join(missing)
    return f"[bench] {len(results)} of {len(jobs)} jobs final{eta}"


def running_line(live: Mapping[str, Live | PretrainLive | None]) -> str:
    """``[bench] training: baseline-s0 epoch 5/12 (31 %), 0:47:23 left; fusion_teacher ...``
    (``starting`` for a training with no progress line yet; the backbone pretraining's as
    ``step 105/150 (70 %), ...``)."""
    parts = [f"{name} {p.describe() if p is not None else 'starting'}"
             for name, p in live.items()]
    return "[bench] training: " + "; ".join(parts)

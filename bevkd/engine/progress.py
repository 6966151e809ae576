"""Training progress: a tqdm bar on a terminal, plain lines in a log file.

``bevkd bench`` (and any ``bevkd train … > train.log``) writes the training's output to a
file. Lightning's tqdm bar there is one carriage-return-separated redraw per step, ~0.5 MB a
run that ``less`` and ``grep`` cannot read (:mod:`bevkd.progress` does the same for any
other bar). :class:`LineProgress` writes a line every tenth of an epoch instead, with the
mean loss since the line before, the step time and the time left, and one line per
validation with its mAP and NDS::

    epoch 4/12   40% (38/95)  loss 112.3  6.41 s/step  epoch left 0:06:05  run left 1:03:25
    validation after epoch 4/12: mAP 0.0712  NDS 0.2311  (0:00:41)
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from lightning.pytorch.trainer.states import TrainerFn

from ..progress import check_every, hms, is_terminal, next_mark


def _reentered_at(trainer: L.Trainer) -> int:
    """Steps of the current epoch done before this attempt: > 0 on a mid-epoch ``--resume``
    (Lightning does not call ``on_train_epoch_start`` for the epoch it re-enters)."""
    if not trainer.fit_loop.restarted_mid_epoch:
        return 0
    ready = trainer.fit_loop.epoch_loop.batch_progress.current.ready
    # a checkpoint of an epoch's last batch re-enters the next epoch at its start
    return ready if ready < trainer.num_training_batches else 0


class BarProgress(TQDMProgressBar):
    """Lightning's tqdm bar, which on a mid-epoch ``--resume`` also names the epoch and its
    length (Lightning's own would read ``Training: 58/?`` with no ETA until the next epoch)."""

    def on_train_start(self, trainer: L.Trainer, *args: Any) -> None:
        super().on_train_start(trainer, *args)
        if not trainer.fit_loop.restarted_mid_epoch:  # Lightning starts the epoch's bar
            return
        done = _reentered_at(trainer)
        self.on_train_epoch_start(trainer)
        self.train_progress_bar.initial = done  # the rate counts this attempt's steps
        self.train_progress_bar.n = done
        self.train_progress_bar.refresh()


class LineProgress(ProgressBar):
    """Progress as whole lines (for a log file): every ``every`` of an epoch's steps and at
    its end, and after each validation; rank 0 only. The step time is this attempt's mean
    over the epoch so far, so a resumed run's first line does not count the steps it skipped.
    The loss is rank 0's (the logged ``train/loss`` is the mean over ranks). A run that
    ``--max-steps`` ends inside an epoch has no line at that step.
    ``stream``: where to write (``sys.stdout`` at the time of writing when None, where
    Lightning's bar writes)."""

    def __init__(self, every: float = 0.1, stream: TextIO | None = None):
        super().__init__()
        self.every, self._stream = check_every(every), stream
        self._enabled = True
        self._epoch_t0 = self._val_t0 = 0.0
        self._first = 0  # the epoch's first step of this attempt (batch index)
        self._next = 0  # the step count at which the next line is due
        self._losses: list[float] = []

    # ProgressBar's interface
    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _say(self, trainer: L.Trainer, line: str) -> None:
        if self._enabled and trainer.is_global_zero:
            print(line, file=self._stream if self._stream is not None else sys.stdout,
                  flush=True)

    @staticmethod
    def _epoch(trainer: L.Trainer) -> str:
        return f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"

    def _begin_epoch(self, trainer: L.Trainer, done: int) -> None:
        self._epoch_t0, self._first, self._losses = time.perf_counter(), done, []
        self._next = next_mark(done, trainer.num_training_batches, self.every)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.fit_loop.restarted_mid_epoch:  # no on_train_epoch_start for this epoch
            done = _reentered_at(trainer)
            self._begin_epoch(trainer, done)
            if done > 0:  # (0: the checkpoint of an epoch's last step, the next one begins)
                self._say(trainer, f"{self._epoch(trainer)}: resumed at step {done} of "
                                   f"{trainer.num_training_batches}")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._begin_epoch(trainer, 0)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._losses.append(float(loss))
        n, total = batch_idx + 1, trainer.num_training_batches
        if n < self._next:
            return
        self._next = next_mark(n, total, self.every)
        per_step = (time.perf_counter() - self._epoch_t0) / max(n - self._first, 1)
        steps_left = total - n + total * (trainer.max_epochs - trainer.current_epoch - 1)
        if trainer.max_steps > 0:  # --max-steps may end the run first
            steps_left = min(steps_left, trainer.max_steps - trainer.global_step)
        mean = sum(self._losses) / len(self._losses) if self._losses else float("nan")
        self._losses = []
        self._say(trainer, f"{self._epoch(trainer)}  {100 * n / total:3.0f}% ({n}/{total})  "
                           f"loss {_loss(mean)}  {per_step:.2f} s/step  "
                           f"epoch left {hms(per_step * (total - n))}  "
                           f"run left {hms(per_step * steps_left)}")

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val_t0 = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        got = trainer.callback_metrics
        scores = "  ".join(f"{name} {float(got[key]):.4f}"
                           for name, key in (("mAP", "val/mAP"), ("NDS", "val/NDS"))
                           if key in got)
        # trainer.validate() after a finished fit (a resumed run whose metrics were never
        # written): the epoch counter has moved past the last epoch
        what = ("validation of the trained weights" if trainer.state.fn == TrainerFn.VALIDATING
                else f"validation after {self._epoch(trainer)}")
        took = hms(time.perf_counter() - self._val_t0)
        self._say(trainer, f"{what}: {scores or 'no metrics'}  ({took})")


def _loss(value: float) -> str:
    """4 significant digits without exponent: ``112.3``, ``0.5312``, ``12345``."""
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"


def progress_callback(stream: TextIO | None = None) -> ProgressBar:
    """The bar when ``stream`` (``sys.stdout`` by default, where Lightning's bar writes) is a
    terminal, lines otherwise."""
    stream = stream if stream is not None else sys.stdout
    if is_terminal(stream):
        return BarProgress(refresh_rate=1)
    return LineProgress()

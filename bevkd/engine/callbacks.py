"""The training's own Lightning callbacks: exact resume (data position and RNGs), a clean
stop on Ctrl-C with a resumable checkpoint, step checkpoints that never skip a validation on
resume, and the run's timing and peak memory
(``RUN/timing.json``). :func:`bevkd.engine.run.train` installs them."""

from __future__ import annotations

import sys
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from ..data.sampler import EpochSampler
from ..errors import BevkdError
from ..fileio import write_json


class ResumableData(L.Callback):
    """Makes ``--resume`` continue exactly where the checkpoint was taken, also mid-epoch.

    A checkpoint records the epoch, how many of this rank's items of it were consumed, and the
    global RNG states; loading it points the :class:`EpochSampler` at the first unconsumed item
    (before Lightning builds the data iterator) and restores the RNGs.
    """

    KEY = "bevkd_data"

    def __init__(self, sampler: EpochSampler, batch_size: int):
        self.sampler, self.batch_size = sampler, batch_size

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        epoch = trainer.current_epoch
        if done >= trainer.num_training_batches:  # saved at the end of the epoch
            epoch, done = epoch + 1, 0
        checkpoint[self.KEY] = {"epoch": epoch, "consumed": done * self.batch_size,
                                "rng": _rng_states()}

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get(self.KEY)
        if state is None:
            raise BevkdError("--resume: the checkpoint has no data-loader position (written by "
                             "another version of bevkd?); start a new run")
        self.sampler.resume(state["epoch"], state["consumed"])
        _set_rng_states(state["rng"])


def _rng_states() -> dict[str, Any]:
    """Global RNG states as tensors and plain values: checkpoints stay loadable with
    ``torch.load(weights_only=True)`` (Lightning's default), which refuses numpy arrays."""
    import random

    import numpy as np

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
            "python": random.getstate()}


def _set_rng_states(states: dict[str, Any]) -> None:
    import random

    import numpy as np

    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(states["python"])


class Interrupted(Exception):
    """Raised at a step boundary after a Ctrl-C and its checkpoint (see StopOnInterrupt)."""


class StopOnInterrupt(L.Callback):
    """Ctrl-C stops training cleanly at the end of the running step: a resumable
    ``last.ckpt`` of exactly that step is written and the run ends "interrupted" (exit 130).

    A KeyboardInterrupt raised wherever the main thread happens to be can be swallowed (inside
    a ``__del__``, a checkpoint write), so the first Ctrl-C only sets a flag that the step
    boundary reads; a second Ctrl-C interrupts at once as usual. An exception that stops
    training anyway (SIGTERM from a scheduler) still leaves a checkpoint; one that stops the
    validation at an epoch's end leaves it to be made whole by the resumed run.
    """

    def __init__(self, path: str):
        self.path = path
        self.requested = False
        self._stop_at_validation = False  # decided by every rank together (DDP)
        self._previous = None

    def _handler(self, signum, frame) -> None:
        import signal

        self.requested = True
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)
        print("\nCtrl-C: stopping after this step (press again to stop now)", file=sys.stderr)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def _restore(self) -> None:
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        # DDP: every rank must stop (and join the checkpoint's barrier) at the same step
        if trainer.strategy.reduce_boolean_decision(self.requested, all=False):
            if _validation_follows(trainer):
                # the epoch's last step: stop as its validation starts (below). A flag of its
                # own, set on every rank here: ``requested`` is one rank's, and a Ctrl-C that
                # reaches some ranks only before validation would split them at the barrier
                self._stop_at_validation = True
                return
            self._save(trainer)
            # not ``trainer.should_stop``: that ends the epoch as if it were complete, so
            # validation and the epoch-end checkpoint would run and overwrite last.ckpt with
            # a state whose resume skips the rest of the epoch
            raise Interrupted

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a stop at the step that ends an epoch: saved as at a SIGTERM in its validation, so
        # that the resumed run validates that epoch before it trains on (a checkpoint of the
        # step alone resumes into the next epoch: Lightning would skip the validation)
        if self._stop_at_validation and trainer.state.fn == "fit":
            _validation_not_begun(trainer)
            self._save(trainer)
            raise Interrupted

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        self._restore()
        if isinstance(exception, (KeyboardInterrupt, SIGTERMException)) and trainer.global_step > 0:
            if trainer.validating and trainer.state.fn == "fit":
                _validation_not_begun(trainer)
            self._save(trainer)

    def _save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path)  # atomic: temporary file + rename
        print(f"\ninterrupted: checkpoint of step {trainer.global_step} saved to "
              f"{self.path}; continue with --resume", file=sys.stderr)


class StepCheckpoint(ModelCheckpoint):
    """A checkpoint (and ``last.ckpt``) every ``every_n_train_steps`` steps, bar the last step
    of a validated epoch: the state there resumes into the next epoch, so a run killed outright
    (SIGKILL, a lost machine) during that validation would skip it. The epoch-end checkpoint
    written after the validation stands in for it; a kill during the validation resumes from
    the step checkpoint before and trains the rest of the epoch again."""

    @property
    def state_key(self) -> str:
        # filed under ModelCheckpoint's key, as before this class: a checkpoint written then
        # resumes with its step checkpoint's state (the newest step file, which it replaces)
        key = super().state_key
        return "ModelCheckpoint" + key[len(type(self).__qualname__):]

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if not _validation_follows(trainer):
            super().on_train_batch_end(trainer, *args, **kwargs)

    def on_train_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        """Nothing. ModelCheckpoint writes ``last.ckpt`` when the training ends if it never
        saved (a run shorter than ``every_n_train_steps``); the epoch checkpoint has written
        that same final state to ``last.ckpt`` already, so a second copy would only cost a
        write of the whole checkpoint."""


def _validation_follows(trainer: L.Trainer) -> bool:
    """Whether the training step that just ended is its epoch's last and the epoch is
    validated: every ``check_val_every_n_epoch``-th epoch (any epoch when it is None; our
    trainings set it and never a step interval), with a validation loop at all. Public trainer
    attributes only; ``tests/engine/test_callbacks.py`` holds it to Lightning's own (private)
    test of the epoch."""
    loop = trainer.fit_loop.epoch_loop
    last = loop.batch_progress.current.processed >= trainer.num_training_batches
    every = trainer.check_val_every_n_epoch
    epoch = every is None or (trainer.current_epoch + 1) % every == 0
    return bool(last and trainer.enable_validation and epoch)


def _validation_not_begun(trainer: L.Trainer) -> None:
    """Rewind the progress of the validation running at an epoch's end to "started, no batch
    done", before the checkpoint is written. Lightning's evaluation loop stops at the next
    batch after a SIGTERM; resumed as it stands, the run would either skip that validation
    (the state it was written in matches none of Lightning's restart stages) or finish it from
    the batch it stopped at, without the detections of the batches before. From this state
    Lightning's restart goes back to the validation and runs every batch of it."""
    progress = trainer.fit_loop.epoch_loop.val_loop.batch_progress
    for tracker in (progress.total, progress.current):
        tracker.ready = tracker.started = 1
        tracker.processed = tracker.completed = 0


class Timing(L.Callback):
    """Writes RUN/timing.json: training wall time, mean optimiser-step time (the first
    ``skip`` steps of each process are warm-up and left out), peak resident memory (and peak
    CUDA memory on GPU).

    The totals travel in the checkpoints, so a run continued with ``--resume`` reports the
    whole training (time up to its last checkpoint plus the resumed part; work lost to a kill
    after that checkpoint is not counted) and the peak over its processes, not only the last
    process's share.
    """

    def __init__(self, path: str, skip: int = 3):
        self.path, self.skip = path, skip
        self.before = {"seconds": 0.0, "steps": 0, "timed": 0, "timed_seconds": 0.0,
                       "all_seconds": 0.0, "peak_rss_mb": 0.0, "peak_cuda_mb": 0.0}
        self.steps: list[float] = []  # this process's step times
        self._t0 = self._start = 0.0

    @property
    def state_key(self) -> str:
        # Lightning files a callback's state under its class name: checkpoints written while
        # this class was run.py's ``_Timing`` keep their totals on --resume
        return "_Timing"

    def state_dict(self) -> dict[str, float]:
        return self._totals()

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.before.update(state)

    @staticmethod
    def _peaks() -> tuple[float, float]:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        return rss, (torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available()
                     else 0.0)

    def _totals(self) -> dict[str, float]:
        b, timed = self.before, self.steps[self.skip:]
        rss, cuda = self._peaks()
        return {"seconds": b["seconds"] + (time.perf_counter() - self._start if self._start
                                           else 0.0),
                "steps": b["steps"] + len(self.steps), "timed": b["timed"] + len(timed),
                "timed_seconds": b["timed_seconds"] + sum(timed),
                "all_seconds": b["all_seconds"] + sum(self.steps),
                "peak_rss_mb": max(b["peak_rss_mb"], rss),
                "peak_cuda_mb": max(b["peak_cuda_mb"], cuda)}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.steps.append(time.perf_counter() - self._t0)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        t = self._totals()
        # too few steps outside warm-up (a short resume): the mean of all steps
        step = (t["timed_seconds"] / t["timed"] if t["timed"]
                else t["all_seconds"] / max(1, t["steps"]))
        write_json(self.path, {
            "train_seconds": t["seconds"], "steps": t["steps"], "step_seconds": step,
            "peak_rss_mb": t["peak_rss_mb"],
            "peak_cuda_mb": t["peak_cuda_mb"] if torch.cuda.is_available() else None})

"""Trainings made again and found to be the same training.

A run that reads another run's checkpoint (a student reading a teacher, the label encoder
reading the LiDAR teacher) or the pretrained backbone records *which* making of that file it
read by the file's stamp, ``[size, mtime_ns]`` (:func:`~bevkd.bench.runner.inputs`). A stamp
changes with every making of the file: on a new machine, where the teachers are trained
again, every restored run learned from "another training", and the report marks each pair of
runs that read different stamps as apart.

Yet a CPU training is deterministic on one kind of machine (the same CPU model and
instruction set, torch build and thread count): the tiny bench's LiDAR teacher and fusion
teacher, trained again on a second Intel Xeon of the kind that trained the archived ones, logged
the same loss at every step, to the last bit. A training made again that way holds the same
weights, and a run restored beside it learned from exactly what the new one reads.

So before :func:`~bevkd.bench.archive.archive_run` replaces an archived run with a new
training of the same job, it compares the two trainings' :func:`fingerprint` (every logged
per-step training value and every validation, and the final evaluations' metrics). Where they
are equal it notes that the two stamps name one training: the run's own ``made`` stamps, and
the stamps of each input both records name (a training that reproduced its every step read
the same teachers and backbone: a different teacher changes the distillation loss from step 0,
a different backbone the first forward pass). The notes (:class:`Reproduced`) are kept in the
runs folder and in the archive (:data:`FILE`); :func:`~bevkd.bench.archive.learned_apart` and
the report read stamps through them. A training that did not reproduce (another kind of
machine) is noted nowhere, and its pairs stay apart.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from typing import Any

from ..fileio import write_json
from .runner import read_record

# RUNS/reproduced.json and ARCHIVE/reproduced.json: {key: [[stamp, stamp, ...], ...]}, the
# stamps known to name one training, per key (a run's job name, or an override such as
# ``model.args.backbone_weights``); each inner list one training, its stamps oldest first
FILE = "reproduced.json"

# what an evaluation's metrics.json holds besides its measurements (the devkit's layout): its
# duration differs between two evaluations of the same detections
NOT_MEASURED = ("eval_time", "cfg", "meta")


def fingerprint(run: str) -> str | None:
    """A digest of what a finished run's training logged and its evaluations measured: each
    ``*_step`` quantity of its CSV logs by step (a step a resumed attempt logged again keeps
    the later value, :func:`~bevkd.engine.history.step_series`), each validation, and what
    every ``eval/*/metrics.json`` measured (not how long it took, :data:`NOT_MEASURED`). Two
    runs of one job with the same fingerprint made the same training. None for a run that
    logged no step or has no evaluation."""
    from ..engine.history import step_series, training_log, validations

    rows = training_log(run) if os.path.isdir(os.path.join(run, "logs")) else []
    keys = sorted({k for row in rows for k in row if k.endswith("_step")})
    evals = sorted(glob.glob(os.path.join(run, "eval", "*", "metrics.json")))
    if not keys or not evals:
        return None
    digest = hashlib.sha256()
    for key in keys:
        steps, values = step_series(rows, key)
        digest.update(key.encode())
        digest.update(steps.tobytes())
        digest.update(values.tobytes())
    digest.update(json.dumps(validations(rows), sort_keys=True).encode())
    for path in evals:
        with open(path) as f:
            metrics = json.load(f)
        measured = {k: v for k, v in metrics.items() if k not in NOT_MEASURED} \
            if isinstance(metrics, dict) else metrics
        digest.update(os.path.relpath(path, run).encode())
        digest.update(json.dumps(measured, sort_keys=True).encode())
    return digest.hexdigest()


class Reproduced:
    """Stamps known to name one training, per key; :meth:`same` compares two stamps through
    them and :meth:`canonical` names a training by its oldest stamp."""

    def __init__(self, classes: dict[str, list[list[list[int]]]] | None = None):
        self.classes: dict[str, list[list[list[int]]]] = {}
        for key, groups in (classes or {}).items():
            for group in groups:
                for stamp in group[1:]:
                    self.add(key, group[0], stamp)

    @classmethod
    def load(cls, *folders: str) -> "Reproduced":
        """The notes of ``folders`` together (a folder without :data:`FILE`, or whose file
        does not read, adds none)."""
        out = cls()
        for folder in folders:
            try:
                with open(os.path.join(folder, FILE)) as f:
                    found = json.load(f)
            except (OSError, ValueError):
                continue
            if not isinstance(found, dict):
                continue
            for key, groups in found.items():
                for group in groups if isinstance(groups, list) else ():
                    stamps = [s for s in group if _is_stamp(s)] if isinstance(group, list) \
                        else []
                    for stamp in stamps[1:]:
                        out.add(str(key), stamps[0], stamp)
        return out

    def _group(self, key: str, stamp: Any) -> list[list[int]] | None:
        return next((g for g in self.classes.get(key, ()) if stamp in g), None)

    def add(self, key: str, a: list[int], b: list[int]) -> bool:
        """Note that ``a`` and ``b`` name one training of ``key``; True when that is new."""
        a, b = list(a), list(b)
        ga, gb = self._group(key, a), self._group(key, b)
        if ga is not None and ga is gb or a == b:
            return False
        groups = self.classes.setdefault(key, [])
        merged = sorted({tuple(s) for s in (ga or [a]) + (gb or [b])}, key=lambda s: s[::-1])
        groups[:] = [g for g in groups if g is not ga and g is not gb] + [
            [list(s) for s in merged]]
        return True

    def canonical(self, key: str, stamp: Any) -> Any:
        """The oldest stamp (by modification time) of the training ``stamp`` names; the
        stamp itself where nothing is noted."""
        group = self._group(key, stamp) if _is_stamp(stamp) else None
        return group[0] if group else stamp

    def same(self, key: str, a: Any, b: Any) -> bool:
        """Whether stamps ``a`` and ``b`` of ``key`` name one training (None names none)."""
        return a is not None and b is not None and self.canonical(key, a) == \
            self.canonical(key, b)

    def save(self, folder: str) -> None:
        """Write the notes to ``folder``/:data:`FILE`, merged with what is there."""
        merged = Reproduced.load(folder)
        for key, groups in self.classes.items():
            for group in groups:
                for stamp in group[1:]:
                    merged.add(key, group[0], stamp)
        os.makedirs(folder, exist_ok=True)
        write_json(os.path.join(folder, FILE), dict(sorted(merged.classes.items())))


def _is_stamp(s: Any) -> bool:
    return isinstance(s, list) and len(s) == 2 and all(isinstance(v, int) for v in s)


def note_if_reproduced(run: str, archived: str) -> Reproduced | None:
    """The stamps that name one training, when the finished ``run`` and its ``archived``
    copy from before (the same job's folder in an archive) are one training made twice
    (equal :func:`fingerprint`) under different ``made`` stamps: the job's own (keyed by its
    folder name) and every input both records name with a stamp (the dataset left out, whose
    tables a restored run is checked against by name and size). None otherwise."""
    old, new = read_record(archived), read_record(run)
    was, now = old.get("made"), new.get("made")
    if not (_is_stamp(was) and _is_stamp(now)) or was == now:
        return None
    printed = fingerprint(run)
    if printed is None or printed != fingerprint(archived):
        return None
    notes = Reproduced()
    notes.add(os.path.basename(os.path.normpath(run)), was, now)
    old_in, new_in = old.get("inputs"), new.get("inputs")
    if isinstance(old_in, dict) and isinstance(new_in, dict):
        for key in sorted(old_in.keys() & new_in.keys() - {"data"}):
            if _is_stamp(old_in[key]) and _is_stamp(new_in[key]):
                notes.add(key, old_in[key], new_in[key])
    return notes

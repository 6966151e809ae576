"""Progress of long work, readable on a terminal and in a log file.

On a terminal a tqdm bar redraws itself in place. Written to a file (``bevkd bench`` sends
every job's output to ``RUN/train.log`` or ``backbone.log``) the same bar is one
carriage-return-separated redraw per update: hundreds of KB that ``less`` and ``grep`` show
as one line. :func:`progress_bar` gives the bar on a terminal and :class:`LineBar`, a tqdm
that writes a whole line every tenth of its total, everywhere else.
"""

from __future__ import annotations

import math
import sys
from typing import Any, TextIO

from tqdm import tqdm


def hms(seconds: float) -> str:
    """``3725.4`` -> ``'1:02:05'``."""
    s = int(round(max(seconds, 0.0)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def check_every(every: float) -> float:
    """``every`` (the share of a total between two lines of a log), refused outside (0, 1]."""
    if not 0.0 < every <= 1.0:
        raise ValueError(f"every must be in (0, 1], got {every}")
    return every


def next_mark(n: int, total: int, every: float) -> int:
    """The first count past ``n`` on the grid of ``every``·``total`` (grid points rounded
    half up, at least 1 apart), at most ``total``: where the next line of a log is due.
    ``total`` itself when it is not a positive finite count (a loader without a length)."""
    if not (0 < total < math.inf):
        return total
    step = every * total
    k = int(n // step) + 1
    while math.floor(k * step + 0.5) <= n:  # a grid point rounded down to n itself
        k += 1
    return min(math.floor(k * step + 0.5), total)


class LineBar(tqdm):
    """A tqdm that writes whole lines: at every ``every`` of ``total`` and when closed (a
    total it did not reach included), with tqdm's counts, times, rate and postfix::

        pretrain backbone:  10% 60/600 [01:02<09:18, 1.03s/it, class=2.391, depth=3.985]
    """

    def __init__(self, *args: Any, every: float = 0.1, **kwargs: Any):
        # a bar that starts at ``initial`` (a resumed run) says its first line a tenth on
        self._every, self._said, self._due = check_every(every), kwargs.get("initial", 0), None
        desc = kwargs.get("desc") or ""
        kwargs.update(mininterval=0, miniters=1, leave=False, bar_format=(
            ("{desc}: " if desc else "") + "{percentage:3.0f}% {n_fmt}/{total_fmt} "
            "[{elapsed}<{remaining}, {rate_fmt}{postfix}]"))
        super().__init__(*args, **kwargs)
        if not self.total:  # no percentage or time left to say
            self.bar_format = (("{desc}: " if desc else "")
                               + "{n_fmt} [{elapsed}, {rate_fmt}{postfix}]")

    def _line(self) -> None:
        self.fp.write(self.__str__() + "\n")
        self.fp.flush()
        self._said = self.n

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg is not None:  # tqdm clearing the bar (close): a log keeps its lines
            return False
        if not self.total:  # no total, no tenths: the line at close only
            return True
        if self._due is None:  # the total is known once tqdm's __init__ has run
            self._due = next_mark(self._said, int(self.total), self._every)
        if self.n > self._said and self.n >= self._due:
            self._line()
            self._due = next_mark(self.n, int(self.total), self._every)
        return True

    def clear(self, nolock: bool = False) -> None:
        """Nothing to clear (tqdm.write() clears a terminal's bar with carriage returns)."""

    def reset(self, total: float | None = None) -> None:
        super().reset(total)
        self._said, self._due = 0, None

    def close(self) -> None:
        if not getattr(self, "disable", True) and self.n > self._said:  # the last count
            self._line()
        super().close()


def progress_bar(iterable: Any = None, *, file: TextIO | None = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)`` on a terminal, :class:`LineBar` otherwise. ``file``:
    where it writes (tqdm's ``sys.stderr`` when None)."""
    stream = file if file is not None else sys.stderr
    cls = tqdm if is_terminal(stream) else LineBar
    return cls(iterable, file=stream, **kwargs)

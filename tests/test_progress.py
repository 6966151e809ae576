"""Progress bars: tqdm on a terminal, whole lines every tenth of the total in a log file."""

from __future__ import annotations

import io

import pytest
from tqdm import tqdm

from bevkd.progress import LineBar, hms, is_terminal, next_mark, progress_bar


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_hms():
    assert hms(0) == "0:00:00"
    assert hms(59.6) == "0:01:00"
    assert hms(3725.4) == "1:02:05"
    assert hms(-3) == "0:00:00"  # a clock that went backwards is not a negative time


def _marks(total: int, every: float) -> list[int]:
    n, out = 0, []
    while n < total:
        n = next_mark(n, total, every)
        out.append(n)
    return out


def test_marks_fall_on_every_tenth_of_the_total_and_its_end():
    # 95 steps: about every 9.5 (rounded half up), the last on the last step
    assert _marks(95, 0.1) == [10, 19, 29, 38, 48, 57, 67, 76, 86, 95]
    assert _marks(8, 0.25) == [2, 4, 6, 8]
    assert _marks(3, 0.1) == [1, 2, 3]  # fewer than ten steps: every step
    assert _marks(1140, 1.0) == [1140]
    # from where a resumed epoch starts, the grid's next point
    assert next_mark(28, 95, 0.1) == 29
    assert next_mark(29, 95, 0.1) == 38


def test_a_log_file_gets_a_line_every_tenth_and_at_the_end():
    out = io.StringIO()
    bar = progress_bar(total=20, desc="synth", unit="sample", file=out)
    assert isinstance(bar, LineBar)
    for i in range(20):
        bar.update(1)
        bar.set_postfix(loss=f"{20 - i:.1f}")  # a redraw that is not a new count
    bar.close()
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    counts = [line.split()[2] for line in lines]
    assert counts == [f"{n}/20" for n in range(2, 21, 2)], lines
    assert lines[0].startswith("synth:  10% 2/20 [")
    assert lines[-1].startswith("synth: 100% 20/20 [") and "loss=" in lines[-1]


def test_a_bar_resumed_part_way_says_its_next_tenth_not_where_it_starts():
    """A resumed pretraining's bar starts at its checkpoint's step: no line for the steps an
    earlier attempt made (a line at the start would have no rate and no time left)."""
    out = io.StringIO()
    bar = progress_bar(total=20, initial=7, desc="pretrain backbone", file=out)
    assert out.getvalue() == ""
    for _ in range(13):
        bar.update(1)
    bar.close()
    assert [line.split()[3] for line in out.getvalue().splitlines()] == [
        f"{n}/20" for n in range(8, 21, 2)]


def test_a_bar_closed_early_says_where_it_stopped_and_an_iterable_drives_it():
    out = io.StringIO()
    bar = progress_bar(total=100, file=out)
    bar.update(7)
    bar.close()
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[0]]
    assert out.getvalue().startswith("  7% 7/100 [")  # no description: no "desc: "
    out = io.StringIO()
    assert list(progress_bar(range(5), desc="eval", file=out)) == list(range(5))
    assert [line.split()[2] for line in out.getvalue().splitlines()] == [
        "1/5", "2/5", "3/5", "4/5", "5/5"]
    with pytest.raises(ValueError, match="every"):
        LineBar(total=3, every=0, file=io.StringIO())


def test_no_total_no_percentage_and_what_else_writes_to_the_log_gets_no_carriage_return():
    out = io.StringIO()
    bar = progress_bar(desc="read", file=out)  # no total: one line, at the end
    bar.update(3)
    bar.close()
    assert out.getvalue().startswith("read: 3 [") and "%" not in out.getvalue()
    out = io.StringIO()
    bar = progress_bar(total=4, file=out)
    bar.update(2)
    tqdm.write("a note", file=out)  # tqdm clears a terminal's bar around it
    bar.update(2)
    bar.reset(total=2)  # counts again from 0, with lines again
    bar.update(2)
    bar.close()
    assert "\r" not in out.getvalue()
    assert [line.split()[1] if "%" in line else line for line in out.getvalue().splitlines()
            ] == ["2/4", "a note", "4/4", "2/2"]  # a jump past marks: one line
    # a loader without a length: no marks, never a division by zero
    assert next_mark(0, 0, 0.1) == 0 and next_mark(5, float("inf"), 0.1) == float("inf")


def test_a_terminal_gets_tqdm_and_a_disabled_bar_says_nothing():
    assert is_terminal(Tty()) and not is_terminal(io.StringIO())
    closed = io.StringIO()
    closed.close()
    assert not is_terminal(closed)
    bar = progress_bar(total=3, file=Tty())
    assert type(bar) is tqdm
    bar.close()
    out = io.StringIO()
    bar = progress_bar(total=3, file=out, disable=True)
    bar.update(3)
    bar.close()
    assert out.getvalue() == ""

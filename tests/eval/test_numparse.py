"""numparse.parse_number rounds every decimal exactly as Python's float() (bit for bit)."""

from __future__ import annotations

import json
import math
import struct
from fractions import Fraction

import numba
import numpy as np
import pytest

from bevkd.eval.numparse import parse_number


@numba.njit(cache=False)
def _parse_all(buf, starts, ends, out, status, stop):
    for k in range(starts.shape[0]):
        end, value, st = parse_number(buf, starts[k], ends[k])
        out[k] = value
        status[k] = st
        stop[k] = end


def _parse(strings: list[str]):
    raw = " ".join(strings).encode()
    lens = np.array([len(s) for s in strings], np.int64)
    starts = np.concatenate([[0], np.cumsum(lens + 1)[:-1]]).astype(np.int64)
    out = np.empty(len(strings))
    status = np.empty(len(strings), np.int64)
    stop = np.empty(len(strings), np.int64)
    _parse_all(np.frombuffer(raw, np.uint8), starts, starts + lens, out, status, stop)
    return out, status, stop - starts


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def _significant_digits(s: str) -> int:
    return len(s.lstrip("-").split("e")[0].split("E")[0].replace(".", "").lstrip("0"))


def _near_half_way(s: str) -> bool:
    """Whether decimal ``s`` is subnormal, overflows, or lies so near the midpoint of two
    neighbouring doubles (relative 2**-60) that a 128-bit product cannot place it: the only
    decimals of up to 19 digits Eisel-Lemire leaves undecided."""
    exact, f = Fraction(s), float(s)
    if not 2.2250738585072014e-308 <= abs(f) < math.inf:
        return True
    mids = [(Fraction(f) + Fraction(math.nextafter(f, t))) / 2 for t in (-math.inf, math.inf)]
    return min(abs(exact - m) for m in mids) < abs(exact) / 2 ** 60


def _decimals(rng: np.random.Generator, n: int) -> list[str]:
    out = []
    for _ in range(n):
        digits = "".join(map(str, rng.integers(0, 10, int(rng.integers(1, 24)))))
        p = int(rng.integers(0, len(digits) + 1))
        s = (digits[:p].lstrip("0") or "0") + ("." + digits[p:] if p < len(digits) else "")
        if rng.random() < 0.3:
            s += rng.choice(["e", "E"]) + rng.choice(["", "+", "-"]) + str(rng.integers(0, 330))
        out.append(("-" if rng.random() < 0.5 else "") + s)
    return out


def test_random_numbers_round_exactly_like_python():
    rng = np.random.default_rng(0)
    typical = [repr(float(v)) for v in rng.normal(size=60000) * 10.0 ** rng.integers(-9, 9, 60000)]
    typical += [repr(float(np.float32(v))) for v in rng.normal(size=30000) * 100]  # float32
    bits = rng.integers(0, 2 ** 63, 60000, dtype=np.int64).view(np.float64)
    strings = typical + [repr(float(v)) for v in bits if np.isfinite(v)]
    strings += _decimals(rng, 60000)
    strings += [str(v) for v in rng.integers(-10 ** 17, 10 ** 17, 5000)]
    values, status, stop = _parse(strings)
    assert (status >= 0).all() and (stop == [len(s) for s in strings]).all()
    for s, v, st in zip(strings, values.tolist(), status.tolist()):
        if st == 0:
            ref = float(json.loads(s))
            assert _bits(v) == _bits(ref), (s, v, ref)
        else:  # the caller asks Python: only subnormals, > 19 digits or a near half-way case
            assert st == 1
            assert _significant_digits(s) > 19 or _near_half_way(s), s
    # what exporters write never needs Python
    assert (status[:len(typical)] == 0).all()


@pytest.mark.parametrize("text,expect", [
    ("0", 0.0), ("-0", 0.0), ("-0.0", -0.0), ("0.0", 0.0), ("1", 1.0), ("-1.5", -1.5),
    ("1e5", 1e5), ("1E+5", 1e5), ("2.5e-5", 2.5e-5), ("0.1", 0.1),
    ("0.30000000000000004", 0.30000000000000004), ("9007199254740993", 9007199254740992.0),
    ("1.7976931348623157e308", 1.7976931348623157e308), ("123456789012345678", 1.2345678901234568e17),
    ("NaN", float("nan")), ("Infinity", float("inf")), ("-Infinity", float("-inf")),
])
def test_edge_cases(text, expect):
    (v,), (status,), (stop,) = _parse([text])
    assert stop == len(text)
    if text == "9007199254740993":  # exactly half-way between two doubles: Python decides
        assert status == 1
        return
    assert status == 0
    assert _bits(v) == _bits(expect) or (np.isnan(v) and np.isnan(expect))


def test_extremes_are_delegated_or_exact():
    strings = ["1e309", "1e-400", "5e-324", "2.2250738585072014e-308",
               "123456789012345678901234567890", "0." + "0" * 30 + "123456789123456789123"]
    values, status, _ = _parse(strings)
    for s, v, st in zip(strings, values.tolist(), status.tolist()):
        assert st == 1 or _bits(v) == _bits(float(s))


@pytest.mark.parametrize("text", ["-", "+1", ".5", "e5", "-x", "abc", "1.", "1e", "1e+", "Nan",
                                  "Inf"])
def test_not_numbers(text):
    (_,), (status,), (stop,) = _parse([text])
    assert status == -1 or stop < len(text)


def test_leading_zero_stops_the_number():
    (_,), (status,), (stop,) = _parse(["01"])
    assert status == 0 and stop == 1  # the scanner then sees '1' where ',' belongs: fallback

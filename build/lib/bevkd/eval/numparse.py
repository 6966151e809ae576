"""Decimal -> float64 conversion in numba, rounded exactly as Python's ``float(str)``.

Python (and so ``json``) rounds a decimal correctly to the nearest double. Here: the exact
fast path (Clinger: a mantissa up to 2**53 times a power of ten up to 1e22 is one correctly
rounded operation), else the Eisel-Lemire algorithm (as Go's ``strconv`` and fast_float)
with a 128-bit table of powers of ten; in the rare cases it cannot decide (or with more than
19 significant digits) the caller falls back to Python's ``float``. Tests compare the result
with ``float()`` bit for bit on millions of decimal strings.
"""

from __future__ import annotations

import math

import numba
import numpy as np

U64 = np.uint64
_MASK32 = U64(0xFFFFFFFF)
_POW_MIN, _POW_MAX = -348, 347
_EXACT = np.array([10.0 ** k for k in range(23)])  # exactly representable powers of ten
_TWO53 = U64(1 << 53)
_POW5 = np.array([5 ** k for k in range(28)], np.uint64)  # 5**27 < 2**64


def _power_table() -> tuple[np.ndarray, np.ndarray]:
    """High and low 64 bits of 10**q normalised to [2**127, 2**128), rounded down."""
    hi = np.empty(_POW_MAX - _POW_MIN + 1, np.uint64)
    lo = np.empty_like(hi)
    for i, q in enumerate(range(_POW_MIN, _POW_MAX + 1)):
        if q >= 0:
            v = 10 ** q
            bl = v.bit_length()
            m = v << (128 - bl) if bl <= 128 else v >> (bl - 128)
        else:
            d = 10 ** -q  # never a power of two, so 2**k // d has exactly 128 bits
            m = (1 << (127 + d.bit_length())) // d
        hi[i], lo[i] = m >> 64, m & ((1 << 64) - 1)
    return hi, lo


POW_HI, POW_LO = _power_table()


@numba.njit(cache=True)
def _mul128(a: np.uint64, b: np.uint64) -> tuple[np.uint64, np.uint64]:
    """Full 64 x 64 -> 128-bit product as (high, low)."""
    a_lo = a & _MASK32
    a_hi = a >> U64(32)
    b_lo = b & _MASK32
    b_hi = b >> U64(32)
    p0 = a_lo * b_lo
    p1 = a_lo * b_hi
    p2 = a_hi * b_lo
    p3 = a_hi * b_hi
    mid = (p0 >> U64(32)) + (p1 & _MASK32) + (p2 & _MASK32)
    lo = (p0 & _MASK32) | (mid << U64(32))
    hi = p3 + (p1 >> U64(32)) + (p2 >> U64(32)) + (mid >> U64(32))
    return hi, lo


@numba.njit(cache=True)
def _clz(x: np.uint64) -> int:
    """Leading zero bits of a non-zero uint64."""
    n = 0
    if x <= U64(0x00000000FFFFFFFF):
        n += 32
        x = x << U64(32)
    if x <= U64(0x0000FFFFFFFFFFFF):
        n += 16
        x = x << U64(16)
    if x <= U64(0x00FFFFFFFFFFFFFF):
        n += 8
        x = x << U64(8)
    if x <= U64(0x0FFFFFFFFFFFFFFF):
        n += 4
        x = x << U64(4)
    if x <= U64(0x3FFFFFFFFFFFFFFF):
        n += 2
        x = x << U64(2)
    if x <= U64(0x7FFFFFFFFFFFFFFF):
        n += 1
    return n


@numba.njit(cache=True)
def decimal_to_float(man: np.uint64, exp10: int, neg: bool) -> tuple[bool, float]:
    """``man * 10**exp10`` (``man`` < 10**19) as the nearest double; ``(ok, value)``.

    ``ok`` is False where this cannot prove the rounding (the caller uses Python's float).
    The power table is a global, so numba embeds it as a constant: passing arrays to a
    function that is not inlined costs two atomic reference-count updates per call.
    """
    if man == U64(0):
        return True, -0.0 if neg else 0.0
    sign = -1.0 if neg else 1.0
    if man <= _TWO53 and -22 <= exp10 <= 22:
        f = float(man)
        return True, sign * (f * _EXACT[exp10] if exp10 >= 0 else f / _EXACT[-exp10])
    ok, value = _eisel_lemire(man, exp10)
    if ok:
        return True, sign * value
    # Eisel-Lemire cannot tell an exact value from a half-way one, and the full decimals of
    # float32 / float64 values (what exporters write) are exact dyadic numbers:
    # man * 10**-k = (man / 5**k) * 2**-k, where float() of the integer quotient rounds once
    # and the power of two is exact.
    if -27 <= exp10 < 0:
        p5 = _POW5[-exp10]
        if man % p5 == U64(0):
            f = math.ldexp(float(man // p5), exp10)
            if f >= 2.2250738585072014e-308:  # not subnormal: ldexp did not round
                return True, sign * f
    return False, 0.0


@numba.njit(cache=True)
def _eisel_lemire(man: np.uint64, exp10: int) -> tuple[bool, float]:
    """Eisel-Lemire for ``man`` > 0 (Go's ``eiselLemire64``); ``(ok, |value|)``."""
    if exp10 < _POW_MIN or exp10 > _POW_MAX:
        return False, 0.0
    clz = _clz(man)
    man = man << U64(clz)
    ret_exp2 = ((217706 * exp10) >> 16) + 64 + 1023 - clz
    idx = exp10 - _POW_MIN
    x_hi, x_lo = _mul128(man, POW_HI[idx])
    if (x_hi & U64(0x1FF)) == U64(0x1FF) and (x_lo + man) < man:
        y_hi, y_lo = _mul128(man, POW_LO[idx])
        merged_hi = x_hi
        merged_lo = x_lo + y_hi
        if merged_lo < x_lo:
            merged_hi += U64(1)
        if (merged_hi & U64(0x1FF)) == U64(0x1FF) and merged_lo + U64(1) == U64(0) \
                and (y_lo + man) < man:
            return False, 0.0
        x_hi = merged_hi
        x_lo = merged_lo
    msb = x_hi >> U64(63)
    ret_man = x_hi >> (msb + U64(9))
    ret_exp2 -= 1 - int(msb)
    if x_lo == U64(0) and (x_hi & U64(0x1FF)) == U64(0) and (ret_man & U64(3)) == U64(1):
        return False, 0.0  # exactly half-way: needs the full decimal
    ret_man += ret_man & U64(1)
    ret_man = ret_man >> U64(1)
    if (ret_man >> U64(53)) > U64(0):
        ret_man = ret_man >> U64(1)
        ret_exp2 += 1
    if ret_exp2 <= 0 or ret_exp2 >= 0x7FF:
        return False, 0.0  # subnormal or overflow: rare, leave it to Python
    return True, math.ldexp(float(ret_man), ret_exp2 - 1075)


@numba.njit(cache=True)
def parse_number(buf: np.ndarray, i: int, n: int) -> tuple[int, float, int]:
    """Parse a JSON number (or Python's NaN / Infinity / -Infinity) at ``buf[i]``.

    Returns ``(end, value, status)``: status 0 ok, 1 "ask Python's float" (value unset),
    -1 not a number. Integer syntax gives +0.0 for ``-0`` (``json`` makes it the int 0).

    The common shape -- at most 19 digits, optional fraction and exponent -- is read in one
    tight loop; everything else goes to the careful reader.
    """
    j = i
    neg = j < n and buf[j] == 45
    if neg:
        j += 1
    d0 = j
    man = U64(0)
    while j < n and U64(buf[j] - 48) <= U64(9):
        man = man * U64(10) + U64(buf[j] - 48)
        j += 1
    nint = j - d0
    if nint == 0 or (nint > 1 and buf[d0] == 48):
        return _parse_number_careful(buf, i, n)
    nfrac = 0
    if j < n and buf[j] == 46:
        j += 1
        f0 = j
        while j < n and U64(buf[j] - 48) <= U64(9):
            man = man * U64(10) + U64(buf[j] - 48)
            j += 1
        nfrac = j - f0
        if nfrac == 0:
            return start_fail(i)
    if nint + nfrac > 19 or (j < n and (buf[j] == 101 or buf[j] == 69)):
        return _parse_number_careful(buf, i, n)
    if nfrac == 0 and man == U64(0):
        return j, 0.0, 0  # integer zero, '-0' included: json makes it the int 0
    exp10 = -nfrac
    if man <= _TWO53 and exp10 >= -22:
        f = float(man)
        f = f * _EXACT[exp10] if exp10 >= 0 else f / _EXACT[-exp10]
        return j, -f if neg else f, 0
    ok, value = decimal_to_float(man, exp10, neg)
    return j, value, 0 if ok else 1


@numba.njit(cache=True)
def start_fail(i: int) -> tuple[int, float, int]:
    return i, 0.0, -1


@numba.njit(cache=True)
def _parse_number_careful(buf: np.ndarray, i: int, n: int) -> tuple[int, float, int]:
    """Any number: leading zeros, more than 19 digits, exponents, NaN, Infinity."""
    start = i
    neg = False
    if i < n and buf[i] == 45:  # '-'
        neg = True
        i += 1
    if i >= n:
        return start, 0.0, -1
    c = buf[i]
    if c == 73:  # Infinity
        if i + 8 <= n and buf[i + 1] == 110 and buf[i + 2] == 102 and buf[i + 3] == 105 \
                and buf[i + 4] == 110 and buf[i + 5] == 105 and buf[i + 6] == 116 \
                and buf[i + 7] == 121:
            return i + 8, -np.inf if neg else np.inf, 0
        return start, 0.0, -1
    if c == 78 and not neg:  # NaN
        if i + 3 <= n and buf[i + 1] == 97 and buf[i + 2] == 78:
            return i + 3, np.nan, 0
        return start, 0.0, -1
    if c < 48 or c > 57:
        return start, 0.0, -1
    man = U64(0)
    ndig = 0
    exp10 = 0
    trunc = False
    integer = True
    if c == 48:
        i += 1
    else:
        while i < n and 48 <= buf[i] <= 57:
            d = U64(buf[i] - 48)
            if ndig < 19:
                man = man * U64(10) + d
                ndig += 1
            else:
                exp10 += 1
                trunc = trunc or d != U64(0)
            i += 1
    if i < n and buf[i] == 46:  # '.'
        integer = False
        i += 1
        if i >= n or not (48 <= buf[i] <= 57):
            return start, 0.0, -1
        while i < n and 48 <= buf[i] <= 57:
            d = U64(buf[i] - 48)
            if man == U64(0) and d == U64(0):
                exp10 -= 1
            elif ndig < 19:
                man = man * U64(10) + d
                ndig += 1
                exp10 -= 1
            else:
                trunc = trunc or d != U64(0)
            i += 1
    if i < n and (buf[i] == 101 or buf[i] == 69):  # e E
        integer = False
        i += 1
        esign = 1
        if i < n and (buf[i] == 43 or buf[i] == 45):
            esign = -1 if buf[i] == 45 else 1
            i += 1
        if i >= n or not (48 <= buf[i] <= 57):
            return start, 0.0, -1
        e = 0
        while i < n and 48 <= buf[i] <= 57:
            if e < 100000:
                e = e * 10 + int(buf[i] - 48)
            i += 1
        exp10 += esign * e
    if trunc:
        return i, 0.0, 1
    if integer and man == U64(0):
        return i, 0.0, 0
    ok, value = decimal_to_float(man, exp10, neg)
    return i, value, 0 if ok else 1

"""JSON lexing primitives for the numba scanners (``jsonscan``) and hash joins (``records``).

Each works on a ``uint8`` buffer ``buf`` of ``n`` bytes from index ``i`` and returns the index
after what it read, or -1 on malformed input (the callers then fall back to ``json``).
"""

from __future__ import annotations

import numba
import numpy as np
from numba.extending import intrinsic


@intrinsic
def borrow(typingctx, arr):  # noqa: ARG001 - numba's intrinsic signature
    """The same array without its reference-count handle (``meminfo``).

    Numba updates an array's reference count atomically each time a variable takes it,
    which includes passing it to every helper; in the scanners that was half of the run
    time. A borrowed view makes those updates no-ops. Valid only while the caller holds the
    original -- the kernels borrow their arguments for the duration of the call.
    """
    def codegen(context, builder, sig, args):
        src = context.make_array(sig.args[0])(context, builder, value=args[0])
        out = context.make_array(sig.return_type)(context, builder)
        context.populate_array(out, data=src.data, shape=src.shape, strides=src.strides,
                               itemsize=src.itemsize, meminfo=None, parent=None)
        return out._getvalue()

    return arr(arr), codegen


@numba.njit(cache=True)
def ws(buf, i, n):
    """Skip JSON whitespace."""
    while i < n:
        c = buf[i]
        if c == 32 or c == 10 or c == 13 or c == 9:
            i += 1
        else:
            break
    return i


# bytes of number tokens: digits, + - . e E, and the letters of NaN / Infinity
_NUMBER_CHAR = np.zeros(256, np.uint8)
for _c in b"0123456789+-.eEINafinty":
    _NUMBER_CHAR[_c] = 1
# bytes that end the plain run of a JSON string: quote, backslash, control characters
_SPECIAL = np.zeros(256, np.uint8)
_SPECIAL[:32] = 1
_SPECIAL[34] = _SPECIAL[92] = 1


@numba.njit(cache=True)
def string(buf, i, n):
    """``buf[i]`` is a quote: returns (index after the closing quote, has escapes) or -1."""
    i += 1
    esc = False
    while i < n:
        c = buf[i]
        if _SPECIAL[c] == 0:
            i += 1
            continue
        if c == 34:
            return i + 1, esc
        if c == 92:
            esc = True
            i += 2
            continue
        return -1, esc
    return -1, esc


@numba.njit(cache=True)
def literal(buf, i, n, word):
    if i + word.shape[0] > n:
        return -1
    for k in range(word.shape[0]):
        if buf[i + k] != word[k]:
            return -1
    return i + word.shape[0]


TRUE = np.frombuffer(b"true", np.uint8).copy()
FALSE = np.frombuffer(b"false", np.uint8).copy()
NULL = np.frombuffer(b"null", np.uint8).copy()


@numba.njit(cache=True)
def skip_number(buf, i, n):
    """End of a number token (or NaN / Infinity) whose value nobody needs; -1 if none."""
    j = i
    while j < n and _NUMBER_CHAR[buf[j]]:
        j += 1
    return j if j > i else -1


@numba.njit(cache=True)
def skip_scalar(buf, i, n):
    """Skip the string, number or literal at ``buf[i]``; -1 if malformed."""
    c = buf[i]
    if c == 34:
        j, _ = string(buf, i, n)
        return j
    if c == 116:
        return literal(buf, i, n, TRUE)
    if c == 102:
        return literal(buf, i, n, FALSE)
    if c == 110:
        return literal(buf, i, n, NULL)
    return skip_number(buf, i, n)


@numba.njit(cache=True)
def member_name(buf, i, n):
    """An object member's name at ``buf[i]`` (the opening quote) through its colon:
    ``(after, start, end, escaped)`` where ``after`` indexes the byte past ':' (-1 when
    malformed) and the name is ``buf[start:end]``, still escaped when ``escaped``."""
    if i >= n or buf[i] != 34:
        return -1, 0, 0, False
    s = i + 1
    i, esc = string(buf, i, n)
    if i < 0:
        return -1, 0, 0, False
    e = i - 1
    i = ws(buf, i, n)
    if i >= n or buf[i] != 58:
        return -1, 0, 0, False
    return i + 1, s, e, esc


@numba.njit(cache=True)
def skip(buf, i, n):
    """Skip any JSON value at ``i`` (after whitespace); index after it, or -1 if malformed."""
    i = ws(buf, i, n)
    if i < n and buf[i] != 123 and buf[i] != 91:
        return skip_scalar(buf, i, n)
    stack = np.empty(256, np.uint8)
    depth = 0
    while True:
        i = ws(buf, i, n)
        if i >= n:
            return -1
        c = buf[i]
        if c == 123 or c == 91:  # { [
            if depth == 256:
                return -1
            stack[depth] = c
            depth += 1
            i = ws(buf, i + 1, n)
            if i < n and buf[i] == c + 2:  # empty {} or []
                depth -= 1
                i += 1
            elif c == 123:
                i, _, _, _ = member_name(buf, i, n)
                if i < 0:
                    return -1
                continue
            else:
                continue
        elif c == 34:
            i, _ = string(buf, i, n)
            if i < 0:
                return -1
        elif c == 116:
            i = literal(buf, i, n, TRUE)
        elif c == 102:
            i = literal(buf, i, n, FALSE)
        elif c == 110:
            i = literal(buf, i, n, NULL)
        else:
            i = skip_number(buf, i, n)
        if i < 0:
            return -1
        # after a complete value: close containers or expect the next element
        while True:
            if depth == 0:
                return i
            i = ws(buf, i, n)
            if i >= n:
                return -1
            c = buf[i]
            top = stack[depth - 1]
            if c == top + 2:
                depth -= 1
                i += 1
                continue
            if c != 44:  # ','
                return -1
            i = ws(buf, i + 1, n)
            if top == 123:
                i, _, _, _ = member_name(buf, i, n)
                if i < 0:
                    return -1
            break


@numba.njit(cache=True)
def bytes_equal(buf, s, e, ref, rs, re):
    """``buf[s:e] == ref[rs:re]``."""
    if e - s != re - rs:
        return False
    for k in range(e - s):
        if buf[s + k] != ref[rs + k]:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def count_byte(buf: np.ndarray, value: int) -> int:
    """How many bytes of ``buf`` equal ``value``, eight at a time (exact SWAR zero-byte test)."""
    buf = borrow(buf)
    n = buf.shape[0]
    words = n // 8
    w = buf[:words * 8].view(np.uint64)
    pattern = np.uint64(value) * np.uint64(0x0101010101010101)
    low7 = np.uint64(0x7F7F7F7F7F7F7F7F)
    total = 0
    for k in range(words):
        y = w[k] ^ pattern  # bytes equal to value become 0
        t = ~(((y & low7) + low7) | y | low7)  # high bit set exactly in the zero bytes
        total += (((t >> np.uint64(7)) * np.uint64(0x0101010101010101)) >> np.uint64(56))
    for i in range(words * 8, n):
        if buf[i] == value:
            total += 1
    return int(total)

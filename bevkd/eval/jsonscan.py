"""Schema-directed JSON scanning (numba) for the big files: tables and results.

``json.load`` of a nuScenes-val results file (~700 MB, 1.8 M boxes) builds ~50 M Python
objects and takes longer than everything else in ``bevkd metrics``. These scanners read the
bytes once and write the wanted fields of each record straight into numpy arrays: numbers
(rounded exactly as Python's ``float``, see ``numparse``), booleans, fixed-size number lists,
byte spans of strings (decoded only where needed), and string enums. Anything they do not
fully understand -- a missing or duplicated field, a list of the wrong length, a string with
escapes where an enum is expected, malformed JSON -- makes them report failure, and the caller
falls back to ``json`` and its precise error messages. So they can only ever be faster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numba
import numpy as np
from numba.extending import intrinsic

from .numparse import parse_number

# field kinds
STR, NUM, BOOL, ARR, STRLIST, ENUM, KEYEQ = range(7)
_INT_SLOTS = {STR: 3, NUM: 0, BOOL: 1, ARR: 1, STRLIST: 4, ENUM: 1, KEYEQ: 1}
OK, FAIL = 0, 1


@dataclass(frozen=True)
class Field:
    """A wanted record field: ``kind``; ``width`` for ARR; ``names`` for ENUM."""

    name: str
    kind: int
    width: int = 0
    names: tuple[str, ...] = ()


class _Spec:
    """Fields flattened into the arrays the numba kernels take."""

    def __init__(self, fields: Sequence[Field]):
        if len(fields) > 62:
            raise ValueError("at most 62 fields")
        self.fields = list(fields)
        key_bytes = [f.name.encode() for f in fields]
        self.keys = np.frombuffer(b"".join(key_bytes), np.uint8).copy()
        self.key_off = np.cumsum([0] + [len(k) for k in key_bytes]).astype(np.int64)
        self.kinds = np.array([f.kind for f in fields], np.int64)
        self.widths = np.array([f.width for f in fields], np.int64)
        self.fslot = np.zeros(len(fields), np.int64)
        self.islot = np.zeros(len(fields), np.int64)
        nf = ni = 0
        enum_bytes, enum_off, enum_group = [], [0], [0]
        self.enum_group = np.zeros(len(fields), np.int64)
        for k, f in enumerate(fields):
            self.fslot[k], self.islot[k] = nf, ni
            nf += f.width if f.kind == ARR else (1 if f.kind == NUM else 0)
            ni += _INT_SLOTS[f.kind]
            if f.kind == ENUM:
                self.enum_group[k] = len(enum_group) - 1
                for name in f.names:
                    enum_bytes.append(name.encode())
                    enum_off.append(enum_off[-1] + len(enum_bytes[-1]))
                enum_group.append(len(enum_off) - 1)
        self.nf, self.ni = max(nf, 1), max(ni, 1)
        self.enum_bytes = np.frombuffer(b"".join(enum_bytes) or b" ", np.uint8).copy()
        self.enum_off = np.array(enum_off, np.int64)
        self.enum_groups = np.array(enum_group, np.int64)

    def args(self) -> tuple:
        return (self.keys, self.key_off, self.kinds, self.widths, self.fslot, self.islot,
                self.enum_bytes, self.enum_off, self.enum_groups, self.enum_group)


# ------------------------------------------------------------------------------------------
# numba kernels
# ------------------------------------------------------------------------------------------


@intrinsic
def _borrow(typingctx, arr):  # noqa: ARG001 - numba's intrinsic signature
    """The same array without its reference-count handle (``meminfo``).

    Numba updates an array's reference count atomically each time a variable takes it,
    which includes every inlined helper call; in the scanners that was half of the run
    time. A borrowed view makes those updates no-ops. Valid only while the caller holds the
    original -- here, for the duration of the kernel call.
    """
    def codegen(context, builder, sig, args):
        src = context.make_array(sig.args[0])(context, builder, value=args[0])
        out = context.make_array(sig.return_type)(context, builder)
        context.populate_array(out, data=src.data, shape=src.shape, strides=src.strides,
                               itemsize=src.itemsize, meminfo=None, parent=None)
        return out._getvalue()

    return arr(arr), codegen


@numba.njit(cache=True)
def _ws(buf, i, n):
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
def _string(buf, i, n):
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
def _literal(buf, i, n, word):
    if i + word.shape[0] > n:
        return -1
    for k in range(word.shape[0]):
        if buf[i + k] != word[k]:
            return -1
    return i + word.shape[0]


_TRUE = np.frombuffer(b"true", np.uint8).copy()
_FALSE = np.frombuffer(b"false", np.uint8).copy()
_NULL = np.frombuffer(b"null", np.uint8).copy()


@numba.njit(cache=True)
def _skip_number(buf, i, n):
    """End of a number token (or NaN / Infinity) whose value nobody needs; -1 if none."""
    j = i
    while j < n and _NUMBER_CHAR[buf[j]]:
        j += 1
    return j if j > i else -1


@numba.njit(cache=True)
def _skip_scalar(buf, i, n):
    """Skip the string, number or literal at ``buf[i]``; -1 if malformed."""
    c = buf[i]
    if c == 34:
        j, _ = _string(buf, i, n)
        return j
    if c == 116:
        return _literal(buf, i, n, _TRUE)
    if c == 102:
        return _literal(buf, i, n, _FALSE)
    if c == 110:
        return _literal(buf, i, n, _NULL)
    return _skip_number(buf, i, n)


@numba.njit(cache=True)
def _skip(buf, i, n):
    """Skip any JSON value at ``i`` (after whitespace); index after it, or -1 if malformed."""
    i = _ws(buf, i, n)
    if i < n and buf[i] != 123 and buf[i] != 91:
        return _skip_scalar(buf, i, n)
    stack = np.empty(256, np.uint8)
    depth = 0
    while True:
        i = _ws(buf, i, n)
        if i >= n:
            return -1
        c = buf[i]
        if c == 123 or c == 91:  # { [
            if depth == 256:
                return -1
            stack[depth] = c
            depth += 1
            i = _ws(buf, i + 1, n)
            if i < n and buf[i] == c + 2:  # empty {} or []
                depth -= 1
                i += 1
            elif c == 123:
                if i >= n or buf[i] != 34:
                    return -1
                i, _ = _string(buf, i, n)
                if i < 0:
                    return -1
                i = _ws(buf, i, n)
                if i >= n or buf[i] != 58:
                    return -1
                i += 1
                continue
            else:
                continue
        elif c == 34:
            i, _ = _string(buf, i, n)
            if i < 0:
                return -1
        elif c == 116:
            i = _literal(buf, i, n, _TRUE)
        elif c == 102:
            i = _literal(buf, i, n, _FALSE)
        elif c == 110:
            i = _literal(buf, i, n, _NULL)
        else:
            i = _skip_number(buf, i, n)
        if i < 0:
            return -1
        # after a complete value: close containers or expect the next element
        while True:
            if depth == 0:
                return i
            i = _ws(buf, i, n)
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
            i = _ws(buf, i + 1, n)
            if top == 123:
                if i >= n or buf[i] != 34:
                    return -1
                i, _ = _string(buf, i, n)
                if i < 0:
                    return -1
                i = _ws(buf, i, n)
                if i >= n or buf[i] != 58:
                    return -1
                i += 1
            break


@numba.njit(cache=True)
def _bytes_equal(buf, s, e, ref, rs, re):
    if e - s != re - rs:
        return False
    for k in range(e - s):
        if buf[s + k] != ref[rs + k]:
            return False
    return True


@numba.njit(cache=True, inline="always")
def _record(buf, i, n, keys, key_off, kinds, widths, fslot, islot, enum_bytes, enum_off,
            enum_groups, enum_group, fout, iout, row, present, slow,
            n_slow, ks, ke):
    """Parse the object at ``buf[i] == '{'`` into row ``row``; returns (end, n_slow) or -1."""
    nkeys = kinds.shape[0]
    mask = 0
    last_k = -1
    i = _ws(buf, i + 1, n)
    if i < n and buf[i] == 125:
        present[row] = 0
        return i + 1, n_slow
    while True:
        if i >= n or buf[i] != 34:
            return -1, n_slow
        s = i + 1
        i, esc = _string(buf, i, n)
        if i < 0 or esc:
            return -1, n_slow
        e = i - 1
        i = _ws(buf, i, n)
        if i >= n or buf[i] != 58:
            return -1, n_slow
        i = _ws(buf, i + 1, n)
        # records usually list their keys in one order: try the one after the last first
        k = -1
        guess = last_k + 1 if last_k + 1 < nkeys else 0
        if _bytes_equal(buf, s, e, keys, key_off[guess], key_off[guess + 1]):
            k = guess
        else:
            for j in range(nkeys):
                if _bytes_equal(buf, s, e, keys, key_off[j], key_off[j + 1]):
                    k = j
                    break
        if k >= 0:
            last_k = k
        if k < 0:
            if i < n and buf[i] != 123 and buf[i] != 91:
                i = _skip_scalar(buf, i, n)
            else:
                i = _skip(buf, i, n)
            if i < 0:
                return -1, n_slow
        else:
            if mask & (1 << k):
                return -1, n_slow  # duplicate key: json keeps the last, we do not guess
            mask |= 1 << k
            kind = kinds[k]
            fs = fslot[k]
            js = islot[k]
            if i >= n:
                return -1, n_slow
            c = buf[i]
            if kind == 1:  # NUM
                end, v, status = parse_number(buf, i, n)
                if status < 0:
                    return -1, n_slow
                if status == 1:
                    if n_slow >= slow.shape[0]:
                        return -2, n_slow  # caller grows `slow` and retries
                    slow[n_slow, 0] = row
                    slow[n_slow, 1] = fs
                    slow[n_slow, 2] = i
                    slow[n_slow, 3] = end
                    n_slow += 1
                fout[row, fs] = v
                i = end
            elif kind == 0 or kind == 5 or kind == 6:  # STR, ENUM, KEYEQ
                if c != 34:
                    return -1, n_slow
                end, esc = _string(buf, i, n)
                if end < 0:
                    return -1, n_slow
                if kind == 0:
                    iout[row, js] = i + 1
                    iout[row, js + 1] = end - 1
                    iout[row, js + 2] = 1 if esc else 0
                elif esc:
                    return -1, n_slow
                elif kind == 5:
                    g = enum_group[k]
                    found = -1
                    for m in range(enum_groups[g], enum_groups[g + 1]):
                        if _bytes_equal(buf, i + 1, end - 1, enum_bytes, enum_off[m],
                                        enum_off[m + 1]):
                            found = m - enum_groups[g]
                            break
                    iout[row, js] = found
                else:
                    iout[row, js] = 1 if _bytes_equal(buf, i + 1, end - 1, buf, ks, ke) else 0
                i = end
            elif kind == 2:  # BOOL
                if c == 116:
                    i = _literal(buf, i, n, _TRUE)
                    iout[row, js] = 1
                else:
                    i = _literal(buf, i, n, _FALSE)
                    iout[row, js] = 0
                if i < 0:
                    return -1, n_slow
            elif kind == 3 or kind == 4:  # ARR, STRLIST
                if c != 91:
                    return -1, n_slow
                i = _ws(buf, i + 1, n)
                count = 0
                any_esc = 0
                if i < n and buf[i] == 93:
                    i += 1
                else:
                    while True:
                        if kind == 3:
                            if count >= widths[k]:
                                return -1, n_slow
                            end, v, status = parse_number(buf, i, n)
                            if status < 0:
                                return -1, n_slow
                            if status == 1:
                                if n_slow >= slow.shape[0]:
                                    return -2, n_slow
                                slow[n_slow, 0] = row
                                slow[n_slow, 1] = fs + count
                                slow[n_slow, 2] = i
                                slow[n_slow, 3] = end
                                n_slow += 1
                            fout[row, fs + count] = v
                        else:
                            if i >= n or buf[i] != 34:
                                return -1, n_slow
                            end, esc = _string(buf, i, n)
                            if end < 0:
                                return -1, n_slow
                            if count == 0:
                                iout[row, js + 1] = i + 1
                                iout[row, js + 2] = end - 1
                            if esc:
                                any_esc = 1
                        count += 1
                        i = _ws(buf, end, n)
                        if i < n and buf[i] == 44:
                            i = _ws(buf, i + 1, n)
                        elif i < n and buf[i] == 93:
                            i += 1
                            break
                        else:
                            return -1, n_slow
                if kind == 3 and count != widths[k]:
                    return -1, n_slow
                iout[row, js] = count
                if kind == 4:
                    iout[row, js + 3] = any_esc
        i = _ws(buf, i, n)
        if i < n and buf[i] == 44:
            i = _ws(buf, i + 1, n)
        elif i < n and buf[i] == 125:
            present[row] = mask
            return i + 1, n_slow
        else:
            return -1, n_slow


@numba.njit(cache=True, nogil=True)
def _scan_array(buf, start, n, keys, key_off, kinds, widths, fslot, islot, enum_bytes,
                enum_off, enum_groups, enum_group, fout, iout, present, slow,
                row0, ks, ke):
    """Records of the array at ``buf[start] == '['`` from row ``row0`` on.

    Returns ``(status, end, rows, n_slow)``: status 0 done, 1 malformed, 2 out of rows
    (``fout``/``iout`` full), 3 out of ``slow`` slots; on 2/3 the caller grows and rescans.
    """
    buf, keys, key_off, kinds, widths = (_borrow(buf), _borrow(keys), _borrow(key_off),
                                         _borrow(kinds), _borrow(widths))
    fslot, islot, enum_bytes, enum_off = (_borrow(fslot), _borrow(islot), _borrow(enum_bytes),
                                          _borrow(enum_off))
    enum_groups, enum_group, fout, iout = (_borrow(enum_groups), _borrow(enum_group),
                                           _borrow(fout), _borrow(iout))
    present, slow = _borrow(present), _borrow(slow)
    i = _ws(buf, start + 1, n)
    row = row0
    n_slow = 0
    if i < n and buf[i] == 93:
        return 0, i + 1, row, n_slow
    while True:
        if i >= n or buf[i] != 123:
            return 1, i, row, n_slow
        if row >= fout.shape[0]:
            return 2, i, row, n_slow
        i, n_slow = _record(buf, i, n, keys, key_off, kinds, widths, fslot, islot, enum_bytes,
                            enum_off, enum_groups, enum_group, fout, iout, row,
                            present, slow, n_slow, ks, ke)
        if i == -2:
            return 3, i, row, n_slow
        if i < 0:
            return 1, i, row, n_slow
        row += 1
        i = _ws(buf, i, n)
        if i < n and buf[i] == 44:
            i = _ws(buf, i + 1, n)
        elif i < n and buf[i] == 93:
            return 0, i + 1, row, n_slow
        else:
            return 1, i, row, n_slow


# ------------------------------------------------------------------------------------------
# Python side
# ------------------------------------------------------------------------------------------


class Records:
    """Scanned records: ``fout (R, F)`` floats, ``iout (R, I)`` ints, ``present (R,)`` bits."""

    def __init__(self, raw: bytes, spec: _Spec, fout: np.ndarray, iout: np.ndarray,
                 present: np.ndarray):
        self.raw, self.spec = raw, spec
        self.fout, self.iout, self.present = fout, iout, present
        self._index = {f.name: k for k, f in enumerate(spec.fields)}

    def __len__(self) -> int:
        return len(self.present)

    def has(self, name: str) -> np.ndarray:
        """``(R,)`` whether each record has the field."""
        return (self.present >> self._index[name]) & 1 == 1

    def numbers(self, name: str) -> np.ndarray:
        """NUM -> ``(R,)``; ARR -> ``(R, width)`` float64."""
        k = self._index[name]
        f = self.spec.fields[k]
        s = self.spec.fslot[k]
        return self.fout[:, s] if f.kind == NUM else self.fout[:, s:s + f.width]

    def ints(self, name: str) -> np.ndarray:
        """BOOL (0/1), ENUM (index or -1), KEYEQ (0/1), ARR / STRLIST (element count)."""
        return self.iout[:, self.spec.islot[self._index[name]]]

    def _spans(self, name: str, rows: Optional[np.ndarray]) -> np.ndarray:
        k = self._index[name]
        j = self.spec.islot[k] + (1 if self.spec.fields[k].kind == STRLIST else 0)
        return self.iout[:, j:j + 3] if rows is None else self.iout[rows, j:j + 3]

    def nonempty(self, name: str, rows: Optional[np.ndarray] = None) -> np.ndarray:
        """Whether a STR field is not ''."""
        spans = self._spans(name, rows)
        return spans[:, 1] > spans[:, 0]

    def escaped(self, name: str, rows: Optional[np.ndarray] = None) -> np.ndarray:
        """Whether the string has escapes (its raw bytes are not its text)."""
        return self._spans(name, rows)[:, 2] == 1

    def strings(self, name: str, rows: Optional[np.ndarray] = None) -> list[str]:
        """STR field (or the first element of a STRLIST) of ``rows`` (default all) as str."""
        k = self._index[name]
        j = self.spec.islot[k] + (1 if self.spec.fields[k].kind == STRLIST else 0)
        spans = self.iout[:, j:j + 3] if rows is None else self.iout[rows, j:j + 3]
        raw = self.raw
        out = [raw[s:e].decode() for s, e, _ in spans.tolist()]
        esc = np.flatnonzero(spans[:, 2])
        if len(esc):
            import json

            for r in esc.tolist():
                s, e = int(spans[r, 0]), int(spans[r, 1])
                out[r] = json.loads(raw[s - 1:e + 1])
        return out


@numba.njit(cache=True, nogil=True)
def count_byte(buf: np.ndarray, value: int) -> int:
    """How many bytes of ``buf`` equal ``value``, eight at a time (exact SWAR zero-byte test)."""
    buf = _borrow(buf)
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


def _alloc(spec: _Spec, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.zeros((rows, spec.nf)), np.zeros((rows, spec.ni), np.int64),
            np.zeros(rows, np.int64))


def _fix_slow(raw: bytes, fout: np.ndarray, slow: np.ndarray) -> None:
    for row, slot, s, e in slow.tolist():
        text = raw[s:e]
        # the numbers Python's float does not read itself are handled in numba
        fout[row, slot] = float(text)


def _scan(raw: bytes, buf: np.ndarray, spec: _Spec, start: int, rows_hint: int,
          ks: int = 0, ke: int = 0) -> tuple[int, int, Optional[Records]]:
    """Scan the array of records at ``start``; (status, end, records)."""
    rows = max(rows_hint, 16)
    n_slow_cap = 1024
    while True:
        fout, iout, present = _alloc(spec, rows)
        slow = np.zeros((n_slow_cap, 4), np.int64)
        status, end, n, n_slow = _scan_array(buf, start, len(buf), *spec.args(), fout, iout,
                                             present, slow, 0, ks, ke)
        if status == 2:
            rows *= 4
        elif status == 3:
            n_slow_cap *= 16
        elif status == 1:
            return FAIL, end, None
        else:
            _fix_slow(raw, fout, slow[:n_slow])
            return OK, end, Records(raw, spec, fout[:n], iout[:n], present[:n])


def scan_table(raw: bytes, fields: Sequence[Field]) -> Optional[Records]:
    """Records of a table file (a JSON array of objects), or None to fall back to ``json``."""
    buf = np.frombuffer(raw, np.uint8)
    i = _ws(buf, 0, len(buf))
    if i >= len(buf) or buf[i] != 91:
        return None
    spec = _Spec(fields)
    # every record opens a brace: an upper bound on the rows, so one pass in the common case
    status, end, recs = _scan(raw, buf, spec, i, count_byte(buf, 123) + 1)
    if status != OK or _ws(buf, end, len(buf)) != len(buf):
        return None
    return recs


@numba.njit(cache=True, nogil=True)
def _scan_results(buf, n, meta_key, results_key, keys, key_off, kinds, widths, fslot, islot,
                  enum_bytes, enum_off, enum_groups, enum_group, fout, iout,
                  present, slow, entries, info):
    """One pass over ``{"meta": ..., "results": {token: [record, ...], ...}}``.

    ``entries (cap, 3)``: key start, key end, end row of each results entry. ``info``:
    [status, meta start, meta end, entries, rows, slow numbers]; status 0 ok, 1 malformed or
    unsupported, 2 ``entries`` full, 3 ``slow`` full.
    """
    buf, keys, key_off, kinds, widths = (_borrow(buf), _borrow(keys), _borrow(key_off),
                                         _borrow(kinds), _borrow(widths))
    fslot, islot, enum_bytes, enum_off = (_borrow(fslot), _borrow(islot), _borrow(enum_bytes),
                                          _borrow(enum_off))
    enum_groups, enum_group, fout, iout = (_borrow(enum_groups), _borrow(enum_group),
                                           _borrow(fout), _borrow(iout))
    present, slow, entries, info = _borrow(present), _borrow(slow), _borrow(entries), \
        _borrow(info)
    meta_key, results_key = _borrow(meta_key), _borrow(results_key)
    info[0] = 1
    info[1] = -1
    info[2] = -1
    have_results = False
    row = np.int64(0)  # not the literal 0: _scan_array is then compiled once, not twice
    n_slow = 0
    n_ent = 0
    i = _ws(buf, 0, n)
    if i >= n or buf[i] != 123:
        return
    i = _ws(buf, i + 1, n)
    while i < n and buf[i] != 125:
        if buf[i] != 34:
            return
        s = i + 1
        i, esc = _string(buf, i, n)
        if i < 0 or esc:
            return
        e = i - 1
        i = _ws(buf, i, n)
        if i >= n or buf[i] != 58:
            return
        i = _ws(buf, i + 1, n)
        if _bytes_equal(buf, s, e, results_key, 0, results_key.shape[0]):
            if have_results or i >= n or buf[i] != 123:
                return
            have_results = True
            i = _ws(buf, i + 1, n)
            while i < n and buf[i] != 125:
                if buf[i] != 34:
                    return
                ks = i + 1
                i, esc = _string(buf, i, n)
                if i < 0 or esc:
                    return
                ke = i - 1
                i = _ws(buf, i, n)
                if i >= n or buf[i] != 58:
                    return
                i = _ws(buf, i + 1, n)
                if i >= n or buf[i] != 91:
                    return
                # the records of one sample; arrays are borrowed, so the call costs nothing
                status, i, row, got = _scan_array(
                    buf, i, n, keys, key_off, kinds, widths, fslot, islot, enum_bytes,
                    enum_off, enum_groups, enum_group, fout, iout, present,
                    slow[n_slow:], row, ks, ke)
                n_slow += got
                if status == 3:
                    info[0] = 3
                    return
                if status != 0:
                    return
                if n_ent >= entries.shape[0]:
                    info[0] = 2
                    return
                entries[n_ent, 0] = ks
                entries[n_ent, 1] = ke
                entries[n_ent, 2] = row
                n_ent += 1
                i = _ws(buf, i, n)
                if i < n and buf[i] == 44:
                    i = _ws(buf, i + 1, n)
                    if i >= n or buf[i] != 34:
                        return
                elif i >= n or buf[i] != 125:
                    return
            if i >= n:
                return
            i += 1
        else:
            is_meta = _bytes_equal(buf, s, e, meta_key, 0, meta_key.shape[0])
            if is_meta and info[1] >= 0:
                return
            start = i
            i = _skip(buf, i, n)
            if i < 0:
                return
            if is_meta:
                info[1] = start
                info[2] = i
        i = _ws(buf, i, n)
        if i < n and buf[i] == 44:
            i = _ws(buf, i + 1, n)
            if i >= n or buf[i] != 34:
                return
        elif i >= n or buf[i] != 125:
            return
    if i >= n or _ws(buf, i + 1, n) != n or not have_results:
        return
    info[0] = 0
    info[3] = n_ent
    info[4] = row
    info[5] = n_slow


@dataclass
class ScannedResults:
    """A results file as records: ``keys`` (sample tokens in file order), ``offsets (K+1,)``
    row ranges per key, ``records`` (boxes in file order), ``meta_json`` (raw bytes)."""

    keys: list[str]
    offsets: np.ndarray
    records: Records
    meta_json: Optional[bytes]


def scan_results(raw: bytes, fields: Sequence[Field]) -> Optional[ScannedResults]:
    """Scan ``{"meta": ..., "results": {token: [box, ...]}}``; None to fall back to ``json``.

    A KEYEQ field compares each box's string with the key its list is under.
    """
    buf = np.frombuffer(raw, np.uint8)
    spec = _Spec(fields)
    fout, iout, present = _alloc(spec, count_byte(buf, 123) + 1)  # every box opens a brace
    ent_cap, slow_cap = 16384, 65536
    info = np.zeros(6, np.int64)
    while True:
        entries = np.zeros((ent_cap, 3), np.int64)
        slow = np.zeros((slow_cap, 4), np.int64)
        _scan_results(buf, len(buf), np.frombuffer(b"meta", np.uint8).copy(),
                      np.frombuffer(b"results", np.uint8).copy(), *spec.args(), fout, iout,
                      present, slow, entries, info)
        if info[0] == 2:
            ent_cap *= 8
        elif info[0] == 3:
            slow_cap *= 8
        else:
            break
    if info[0] != 0:
        return None
    rows, n_ent = int(info[4]), int(info[3])
    _fix_slow(raw, fout, slow[:info[5]])
    entries = entries[:n_ent]
    keys = [raw[s:e].decode() for s, e, _ in entries.tolist()]
    meta = raw[info[1]:info[2]] if info[1] >= 0 else None
    offsets = np.concatenate([[0], entries[:, 2]]).astype(np.int64)
    return ScannedResults(keys, offsets, Records(raw, spec, fout[:rows], iout[:rows],
                                                 present[:rows]), meta)


@numba.njit(cache=True, nogil=True)
def _join(buf_a, spans_a, buf_b, spans_b, out):
    """For each span of ``a``, the last span of ``b`` with the same bytes, or -1.

    An open-addressing hash table over ``b`` (FNV-1a), checked on the bytes themselves.
    """
    buf_a, spans_a, buf_b, spans_b, out = (_borrow(buf_a), _borrow(spans_a), _borrow(buf_b),
                                           _borrow(spans_b), _borrow(out))
    nb = spans_b.shape[0]
    size = 16
    while size < 2 * nb:
        size *= 2
    mask = np.uint64(size - 1)
    table = np.full(size, -1, np.int64)
    hb = np.empty(nb, np.uint64)
    for r in range(nb):
        h = np.uint64(0xCBF29CE484222325)
        for i in range(spans_b[r, 0], spans_b[r, 1]):
            h = (h ^ np.uint64(buf_b[i])) * np.uint64(0x100000001B3)
        hb[r] = h
        slot = h & mask
        while True:
            j = table[slot]
            if j < 0:
                table[slot] = r
                break
            if hb[j] == h and _bytes_equal(buf_b, spans_b[j, 0], spans_b[j, 1], buf_b,
                                           spans_b[r, 0], spans_b[r, 1]):
                table[slot] = r  # a repeated string: the last one wins
                break
            slot = (slot + np.uint64(1)) & mask
    for r in range(spans_a.shape[0]):
        h = np.uint64(0xCBF29CE484222325)
        for i in range(spans_a[r, 0], spans_a[r, 1]):
            h = (h ^ np.uint64(buf_a[i])) * np.uint64(0x100000001B3)
        slot = h & mask
        out[r] = -1
        while True:
            j = table[slot]
            if j < 0:
                break
            if hb[j] == h and _bytes_equal(buf_a, spans_a[r, 0], spans_a[r, 1], buf_b,
                                           spans_b[j, 0], spans_b[j, 1]):
                out[r] = j
                break
            slot = (slot + np.uint64(1)) & mask


def _encode(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    enc = [x.encode() for x in strings]
    lens = np.array([len(e) for e in enc], np.int64)
    ends = np.cumsum(lens)
    spans = np.stack([ends - lens, ends], 1) if len(enc) else np.zeros((0, 2), np.int64)
    return np.frombuffer(b"".join(enc) or b" ", np.uint8), spans


def join(recs: "Records | RowRecords", name: str, rows: Optional[np.ndarray],
         target: "Sequence[str] | tuple[Records | RowRecords, str, np.ndarray]") -> np.ndarray:
    """Index into ``target`` of each row's string field ``name`` (the last equal one), or -1.

    ``target``: a list of strings, or ``(records, field, rows)`` of a table. No string is
    decoded on the fast path (numba hash join on the raw bytes).
    """
    rows = np.arange(len(recs)) if rows is None else np.asarray(rows, np.int64)
    fast = isinstance(recs, Records) and not recs.escaped(name, rows).any()
    if isinstance(target, tuple):
        t_recs, t_name, t_rows = target
        fast = fast and isinstance(t_recs, Records) and t_recs.raw is recs.raw \
            and not t_recs.escaped(t_name, t_rows).any()
    if not fast:
        wanted = list(target) if not isinstance(target, tuple) else target[0].strings(
            target[1], np.asarray(target[2], np.int64))
        pos = {w: i for i, w in enumerate(wanted)}  # later duplicates win
        return np.array([pos.get(x, -1) for x in recs.strings(name, rows)], np.int64)
    buf = np.frombuffer(recs.raw, np.uint8)
    spans_a = np.ascontiguousarray(recs._spans(name, rows)[:, :2])
    if isinstance(target, tuple):
        buf_b = buf
        spans_b = np.ascontiguousarray(target[0]._spans(target[1], target[2])[:, :2])
    else:
        buf_b, spans_b = _encode(target)
    out = np.empty(len(rows), np.int64)
    _join(buf, spans_a, buf_b, spans_b, out)
    return out


def match_rows(recs: "Records | RowRecords", name: str, wanted: Sequence[str],
               rows: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose string field ``name`` is one of ``wanted`` (ascending), and which one.

    Joins on hashes without decoding every row (each hit is checked on the real string).
    ``rows`` restricts the search. Returns ``(rows (M,), index into wanted (M,))``.
    """
    rows = np.arange(len(recs)) if rows is None else np.asarray(rows, np.int64)
    idx = join(recs, name, rows, list(wanted))
    hit = idx >= 0
    return rows[hit], idx[hit]


class RowRecords:
    """The :class:`Records` interface over rows parsed by ``json`` (the fallback path)."""

    def __init__(self, rows: list, fields: Sequence[Field], what: str):
        self.rows, self.what = rows, what
        self.fields = {f.name: f for f in fields}

    def __len__(self) -> int:
        return len(self.rows)

    def _column(self, name: str, rows: Optional[np.ndarray]) -> list:
        picked = self.rows if rows is None else [self.rows[r] for r in rows.tolist()]
        try:
            return [r[name] for r in picked]
        except (KeyError, TypeError):
            from ..errors import BevkdError

            raise BevkdError(f"{self.what} has a row without {name!r}") from None

    def has(self, name: str) -> np.ndarray:
        return np.array([isinstance(r, dict) and name in r for r in self.rows], bool)

    def numbers(self, name: str) -> np.ndarray:
        f = self.fields[name]
        try:
            out = np.array(self._column(name, None), np.float64)
        except (TypeError, ValueError):
            out = None
        if out is None or out.shape != ((len(self.rows), f.width) if f.kind == ARR
                                        else (len(self.rows),)):
            from ..errors import BevkdError

            raise BevkdError(f"{self.what} has a malformed {name!r}")
        return out

    def ints(self, name: str) -> np.ndarray:
        col = self._column(name, None)
        if self.fields[name].kind in (ARR, STRLIST):
            return np.array([len(v) for v in col], np.int64)
        return np.array([int(bool(v)) for v in col], np.int64)

    def nonempty(self, name: str, rows: Optional[np.ndarray] = None) -> np.ndarray:
        return np.array([x != "" for x in self._column(name, rows)], bool)

    def strings(self, name: str, rows: Optional[np.ndarray] = None) -> list[str]:
        col = self._column(name, rows)
        if self.fields[name].kind == STRLIST:
            return [v[0] for v in col]
        return col

"""The column model of scanned JSON records, its ``json`` fallback, and hash joins.

:class:`Records` holds what ``jsonscan`` extracted from a file (numbers, flags, string byte
spans); :class:`RowRecords` offers the same interface over rows parsed by ``json``, so the
ground-truth code has one path for both. :func:`join` matches string fields against other
strings on their raw bytes (numba hash table), decoding nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional, Sequence

import numba
import numpy as np

from .jsonlex import borrow, bytes_equal

# Field kinds and what a record keeps of each: STR a string (byte span and an escape flag),
# NUM a number, BOOL true/false, ARR a list of exactly `width` numbers, STRLIST a list of
# strings (count and the first one), ENUM a string from `names` (its index, -1 if another),
# KEYEQ whether a string equals the key the record's list is under (results files).
STR, NUM, BOOL, ARR, STRLIST, ENUM, KEYEQ = range(7)
_INT_SLOTS = {STR: 3, NUM: 0, BOOL: 1, ARR: 1, STRLIST: 4, ENUM: 1, KEYEQ: 1}


@dataclass(frozen=True)
class Field:
    """A wanted record field: ``kind``; ``width`` for ARR; ``names`` for ENUM."""

    name: str
    kind: int
    width: int = 0
    names: tuple[str, ...] = ()


class Spec:
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


class Records:
    """Scanned records: ``fout (R, F)`` floats, ``iout (R, I)`` ints, ``present (R,)`` bits."""

    def __init__(self, raw: bytes, spec: Spec, fout: np.ndarray, iout: np.ndarray,
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
        spans = self._spans(name, rows)
        raw = self.raw
        out = [raw[s:e].decode() for s, e, _ in spans.tolist()]
        for r in np.flatnonzero(spans[:, 2]).tolist():  # escapes: let json decode them
            s, e = int(spans[r, 0]), int(spans[r, 1])
            out[r] = json.loads(raw[s - 1:e + 1])
        return out


@numba.njit(cache=True, nogil=True)
def _join(buf_a, spans_a, buf_b, spans_b, out):
    """For each span of ``a``, the last span of ``b`` with the same bytes, or -1.

    An open-addressing hash table over ``b`` (FNV-1a), checked on the bytes themselves.
    """
    buf_a, spans_a, buf_b, spans_b, out = (borrow(buf_a), borrow(spans_a), borrow(buf_b),
                                           borrow(spans_b), borrow(out))
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
            if hb[j] == h and bytes_equal(buf_b, spans_b[j, 0], spans_b[j, 1], buf_b,
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
            if hb[j] == h and bytes_equal(buf_a, spans_a[r, 0], spans_a[r, 1], buf_b,
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

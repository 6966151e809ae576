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

from .jsonlex import TRUE, FALSE, borrow, bytes_equal, count_byte, literal, member_name, skip, \
    skip_scalar, string, ws
from .numparse import parse_number
from .records import Field, Records, Spec

OK, FAIL = 0, 1


@numba.njit(cache=True, inline="always")
def _record(buf, i, n, keys, key_off, kinds, widths, fslot, islot, enum_bytes, enum_off,
            enum_groups, enum_group, fout, iout, row, present, slow,
            n_slow, ks, ke):
    """Parse the object at ``buf[i] == '{'`` into row ``row``; returns (end, n_slow) or -1."""
    nkeys = kinds.shape[0]
    mask = 0
    last_k = -1
    i = ws(buf, i + 1, n)
    if i < n and buf[i] == 125:
        present[row] = 0
        return i + 1, n_slow
    while True:
        i, s, e, esc = member_name(buf, i, n)
        if i < 0 or esc:
            return -1, n_slow
        i = ws(buf, i, n)
        # records usually list their keys in one order: try the one after the last first
        k = -1
        guess = last_k + 1 if last_k + 1 < nkeys else 0
        if bytes_equal(buf, s, e, keys, key_off[guess], key_off[guess + 1]):
            k = guess
        else:
            for j in range(nkeys):
                if bytes_equal(buf, s, e, keys, key_off[j], key_off[j + 1]):
                    k = j
                    break
        if k >= 0:
            last_k = k
        if k < 0:
            if i < n and buf[i] != 123 and buf[i] != 91:
                i = skip_scalar(buf, i, n)
            else:
                i = skip(buf, i, n)
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
                end, esc = string(buf, i, n)
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
                        if bytes_equal(buf, i + 1, end - 1, enum_bytes, enum_off[m],
                                        enum_off[m + 1]):
                            found = m - enum_groups[g]
                            break
                    iout[row, js] = found
                else:
                    iout[row, js] = 1 if bytes_equal(buf, i + 1, end - 1, buf, ks, ke) else 0
                i = end
            elif kind == 2:  # BOOL
                if c == 116:
                    i = literal(buf, i, n, TRUE)
                    iout[row, js] = 1
                else:
                    i = literal(buf, i, n, FALSE)
                    iout[row, js] = 0
                if i < 0:
                    return -1, n_slow
            elif kind == 3 or kind == 4:  # ARR, STRLIST
                if c != 91:
                    return -1, n_slow
                i = ws(buf, i + 1, n)
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
                            end, esc = string(buf, i, n)
                            if end < 0:
                                return -1, n_slow
                            if count == 0:
                                iout[row, js + 1] = i + 1
                                iout[row, js + 2] = end - 1
                            if esc:
                                any_esc = 1
                        count += 1
                        i = ws(buf, end, n)
                        if i < n and buf[i] == 44:
                            i = ws(buf, i + 1, n)
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
        i = ws(buf, i, n)
        if i < n and buf[i] == 44:
            i = ws(buf, i + 1, n)
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
    buf, keys, key_off, kinds, widths = (borrow(buf), borrow(keys), borrow(key_off),
                                         borrow(kinds), borrow(widths))
    fslot, islot, enum_bytes, enum_off = (borrow(fslot), borrow(islot), borrow(enum_bytes),
                                          borrow(enum_off))
    enum_groups, enum_group, fout, iout = (borrow(enum_groups), borrow(enum_group),
                                           borrow(fout), borrow(iout))
    present, slow = borrow(present), borrow(slow)
    i = ws(buf, start + 1, n)
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
        i = ws(buf, i, n)
        if i < n and buf[i] == 44:
            i = ws(buf, i + 1, n)
        elif i < n and buf[i] == 93:
            return 0, i + 1, row, n_slow
        else:
            return 1, i, row, n_slow


def _alloc(spec: Spec, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.zeros((rows, spec.nf)), np.zeros((rows, spec.ni), np.int64),
            np.zeros(rows, np.int64))


def _fix_slow(raw: bytes, fout: np.ndarray, slow: np.ndarray) -> None:
    """Numbers numba could not round provably (``slow`` rows: row, slot, start, end)."""
    for row, slot, s, e in slow.tolist():
        fout[row, slot] = float(raw[s:e])


def _scan(raw: bytes, buf: np.ndarray, spec: Spec, start: int, rows_hint: int,
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
    i = ws(buf, 0, len(buf))
    if i >= len(buf) or buf[i] != 91:
        return None
    spec = Spec(fields)
    # every record opens a brace: an upper bound on the rows, so one pass in the common case
    status, end, recs = _scan(raw, buf, spec, i, count_byte(buf, 123) + 1)
    if status != OK or ws(buf, end, len(buf)) != len(buf):
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
    buf, keys, key_off, kinds, widths = (borrow(buf), borrow(keys), borrow(key_off),
                                         borrow(kinds), borrow(widths))
    fslot, islot, enum_bytes, enum_off = (borrow(fslot), borrow(islot), borrow(enum_bytes),
                                          borrow(enum_off))
    enum_groups, enum_group, fout, iout = (borrow(enum_groups), borrow(enum_group),
                                           borrow(fout), borrow(iout))
    present, slow, entries, info = borrow(present), borrow(slow), borrow(entries), \
        borrow(info)
    meta_key, results_key = borrow(meta_key), borrow(results_key)
    info[0] = 1
    info[1] = -1
    info[2] = -1
    have_results = False
    row = np.int64(0)  # not the literal 0: _scan_array is then compiled once, not twice
    n_slow = 0
    n_ent = 0
    i = ws(buf, 0, n)
    if i >= n or buf[i] != 123:
        return
    i = ws(buf, i + 1, n)
    while i < n and buf[i] != 125:
        i, s, e, esc = member_name(buf, i, n)
        if i < 0 or esc:
            return
        i = ws(buf, i, n)
        if bytes_equal(buf, s, e, results_key, 0, results_key.shape[0]):
            if have_results or i >= n or buf[i] != 123:
                return
            have_results = True
            i = ws(buf, i + 1, n)
            while i < n and buf[i] != 125:
                i, ks, ke, esc = member_name(buf, i, n)
                if i < 0 or esc:
                    return
                i = ws(buf, i, n)
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
                i = ws(buf, i, n)
                if i < n and buf[i] == 44:
                    i = ws(buf, i + 1, n)
                    if i >= n or buf[i] != 34:
                        return
                elif i >= n or buf[i] != 125:
                    return
            if i >= n:
                return
            i += 1
        else:
            is_meta = bytes_equal(buf, s, e, meta_key, 0, meta_key.shape[0])
            if is_meta and info[1] >= 0:
                return
            start = i
            i = skip(buf, i, n)
            if i < 0:
                return
            if is_meta:
                info[1] = start
                info[2] = i
        i = ws(buf, i, n)
        if i < n and buf[i] == 44:
            i = ws(buf, i + 1, n)
            if i >= n or buf[i] != 34:
                return
        elif i >= n or buf[i] != 125:
            return
    if i >= n or ws(buf, i + 1, n) != n or not have_results:
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
    spec = Spec(fields)
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

"""The numba JSON scanners read exactly what json reads, or decline (never guess)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bevkd.eval.config import ATTRIBUTE_NAMES, EVAL_CLASSES
from bevkd.eval import records
from bevkd.eval.jsonlex import count_byte
from bevkd.eval.jsonscan import scan_results, scan_table
from bevkd.eval.records import ARR, BOOL, ENUM, KEYEQ, NUM, STR, STRLIST, Field, RowRecords, \
    join, match_rows

FIELDS = [Field("token", STR), Field("flag", BOOL), Field("xyz", ARR, 3), Field("v", NUM),
          Field("tags", STRLIST)]


def _rows(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n):
        row = {"token": f"t{k:04x}", "flag": bool(rng.random() < 0.5),
               "xyz": [float(x) for x in rng.normal(size=3) * 100],
               "v": float(rng.normal()) if k % 3 else int(rng.integers(-5, 5)),
               "tags": [f"a{j}" for j in range(int(rng.integers(0, 3)))],
               "extra": {"nested": [1, {"x": "}]"}], "s": 'a "quoted" [string]'},
               "more": [[], {}, None, True, False, 1e-7, "x"]}
        if k % 4 == 0:  # another key order
            row = dict(reversed(list(row.items())))
        rows.append(row)
    rows[5]["token"] = "t\u00e9\u4e2d"  # non-ASCII, written raw or escaped
    rows[6]["token"] = 'quote " and \\ backslash'
    return rows


def _check_same(recs, rows):
    assert len(recs) == len(rows)
    assert recs.strings("token") == [r["token"] for r in rows]
    assert recs.ints("flag").tolist() == [int(r["flag"]) for r in rows]
    assert np.array_equal(recs.numbers("xyz"), np.array([r["xyz"] for r in rows]))
    assert np.array_equal(recs.numbers("v"), np.array([r["v"] for r in rows], float))
    assert recs.ints("tags").tolist() == [len(r["tags"]) for r in rows]
    with_tags = np.flatnonzero(recs.ints("tags"))
    assert recs.strings("tags", with_tags) == [rows[i]["tags"][0] for i in with_tags]


@pytest.mark.parametrize("dump", [
    lambda r: json.dumps(r), lambda r: json.dumps(r, indent=2),
    lambda r: json.dumps(r, separators=(",", ":")), lambda r: json.dumps(r, ensure_ascii=False),
])
def test_table_fields_equal_json(dump):
    rows = _rows(300)
    raw = dump(rows).encode()
    recs = scan_table(raw, FIELDS)
    assert recs is not None
    _check_same(recs, rows)
    _check_same(RowRecords(json.loads(raw), FIELDS, "t"), rows)


@pytest.mark.parametrize("raw", [
    b'[{"token": "a", "token": "b"}]',  # duplicate key
    b'[{"token": "a", "xyz": [1, 2]}]',  # wrong length
    b'[{"token": "a", "xyz": [1, 2, "3"]}]',  # not a number
    b'[{"token": "a", "flag": 1}]',  # not a bool
    b'[{"token": "a"}, ]',  # malformed
    b'[{"token": "a"}] x',  # trailing garbage
    b'{"token": "a"}',  # not a list
    b'[{"token": "a\x01"}]',  # control character in a string
    b'[{"token": "a", "v": 01}]',  # not JSON
    b'[{"token": "a", "other": [1, 2}]',  # mismatched brackets in a skipped value
])
def test_table_scanner_declines_what_it_does_not_understand(raw):
    assert scan_table(raw, FIELDS) is None


def test_missing_fields_are_reported_not_invented():
    recs = scan_table(b'[{"token": "a"}, {"token": "b", "v": 2}]', FIELDS)
    assert recs.has("v").tolist() == [False, True]
    assert recs.has("token").all()


def test_empty_table():
    recs = scan_table(b" [ ] ", FIELDS)
    assert recs is not None and len(recs) == 0


BOX = [Field("sample_token", KEYEQ), Field("translation", ARR, 3),
       Field("detection_name", ENUM, names=EVAL_CLASSES), Field("detection_score", NUM),
       Field("attribute_name", ENUM, names=("",) + ATTRIBUTE_NAMES)]


def _results(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    results = {}
    for s in range(20):
        tok = f"{s:032x}"
        results[tok] = [{"sample_token": tok, "translation": rng.normal(size=3).tolist(),
                         "detection_name": str(rng.choice(EVAL_CLASSES)),
                         "detection_score": float(rng.random()),
                         "attribute_name": str(rng.choice(("",) + ATTRIBUTE_NAMES)),
                         "ego_translation": [1, 2, 3]}
                        for _ in range(int(rng.integers(0, 30)))]
    return {"results": results, "extra": [{"a": 1}], "meta": {"use_camera": True, "x": "}"}}


def test_results_equal_json():
    data = _results()
    s = scan_results(json.dumps(data, indent=1).encode(), BOX)
    assert s is not None
    assert s.keys == list(data["results"]) and json.loads(s.meta_json) == data["meta"]
    boxes = [b for v in data["results"].values() for b in v]
    assert np.diff(s.offsets).tolist() == [len(v) for v in data["results"].values()]
    r = s.records
    assert np.array_equal(r.numbers("translation"), np.array([b["translation"] for b in boxes]))
    assert np.array_equal(r.numbers("detection_score"),
                          np.array([b["detection_score"] for b in boxes]))
    assert [EVAL_CLASSES[i] for i in r.ints("detection_name")] == \
        [b["detection_name"] for b in boxes]
    assert [(("",) + ATTRIBUTE_NAMES)[i] for i in r.ints("attribute_name")] == \
        [b["attribute_name"] for b in boxes]
    assert (r.ints("sample_token") == 1).all()


def test_results_flags_unknown_names_and_misplaced_boxes():
    data = _results()
    key = next(k for k, v in data["results"].items() if len(v) > 2)
    data["results"][key][0]["detection_name"] = "unicorn"
    data["results"][key][1]["sample_token"] = "elsewhere"
    s = scan_results(json.dumps(data).encode(), BOX)
    k = s.keys.index(key)
    first = s.offsets[k]
    assert s.records.ints("detection_name")[first] == -1
    assert s.records.ints("sample_token")[first + 1] == 0


@pytest.mark.parametrize("raw", [
    b'{"meta": {}, "results": 1}',
    b'{"meta": {}, "meta": {}, "results": {}}',
    b'{"meta": {}, "results": {"a": {}}}',
    b'{"meta": {}, "results": {"a": [1]}}',
    b'{"meta": {}, "results": {"a": [{"detection_name": "c\\u0061r"}]}}',  # escape in an enum
    b'{"meta": {}}',
    b'[]',
])
def test_results_scanner_declines(raw):
    assert scan_results(raw, BOX) is None


def test_count_byte_matches_bytes_count():
    rng = np.random.default_rng(3)
    for n in (0, 1, 7, 8, 9, 63, 1000, 4097):
        raw = bytes(rng.choice(np.frombuffer(b"{}a\x00\xff{", np.uint8), n).tolist())
        for offset in (0, 1, 3):
            buf = np.frombuffer(raw, np.uint8)[offset:]
            assert count_byte(buf, 123) == raw[offset:].count(b"{")


@pytest.fixture
def join_calls(monkeypatch) -> list:
    """Calls of the numba hash join (the fast path of records.join)."""
    calls = []
    real = records._join

    def spy(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(records, "_join", spy)
    return calls


def _expected(tokens: list[str], target: list[str]) -> list[int]:
    pos = {}
    for i, t in enumerate(target):
        pos[t] = i  # the last equal one wins
    return [pos.get(t, -1) for t in tokens]


def _join_rows() -> list[dict]:
    rows = _rows(200, seed=4)
    rows[10]["token"] = rows[3]["token"]  # repeated strings: the last one wins
    rows[120]["token"] = rows[60]["token"]
    return rows


def test_join_and_match_rows_take_the_hash_join_and_equal_the_python_fallback(join_calls):
    """Strings without escapes (non-ASCII written raw included) are joined on their bytes by
    the numba hash join, with the indices the Python fallback and a hand count give."""
    rows = _join_rows()
    rows[6]["token"] = "plain"  # no escapes anywhere: row 5 is UTF-8 bytes, not \u escapes
    raw = json.dumps(rows, ensure_ascii=False).encode()
    recs = scan_table(raw, FIELDS)
    assert not recs.escaped("token").any()
    slow = RowRecords(json.loads(raw), FIELDS, "t")
    tokens = [r["token"] for r in rows]
    wanted = tokens[::3] + ["nope", tokens[6], tokens[5]]  # 67 + 3; tokens[6] is also at 2
    got = join(recs, "token", None, wanted)
    assert got.tolist() == _expected(tokens, wanted)
    # by hand: row 6 -> its later copy 68, row 5 -> 69, row 10 -> row 3's 1, row 120 -> 40
    assert [got[i] for i in (0, 1, 5, 6, 10, 60, 120)] == [0, -1, 69, 68, 1, 40, 40]
    assert got.tolist() == join(slow, "token", None, wanted).tolist()
    assert len(join_calls) == 1
    got = join(recs, "token", None, (recs, "token", np.arange(50, 150)))
    assert got.tolist() == _expected(tokens, tokens[50:150])
    assert [got[i] for i in (10, 55, 60, 120, 149, 150)] == [-1, 5, 70, 70, 99, -1]
    assert got.tolist() == join(slow, "token", None, (slow, "token", np.arange(50, 150))).tolist()
    assert len(join_calls) == 2
    unique = list(dict.fromkeys(wanted))
    r_fast, w_fast = match_rows(recs, "token", unique)
    r_slow, w_slow = match_rows(slow, "token", unique)
    assert len(join_calls) == 3
    assert r_fast.tolist() == r_slow.tolist() == [i for i in range(200) if tokens[i] in unique]
    assert w_fast.tolist() == w_slow.tolist() == [unique.index(tokens[i]) for i in r_fast]
    assert 5 in r_fast.tolist() and 6 in r_fast.tolist()


def test_escaped_strings_are_joined_on_their_decoded_text(join_calls):
    """A string with escapes (\\u00e9, \\", \\\\) has raw bytes other than its text: the join
    decodes it (Python path) and still finds it; rows without escapes keep the hash join."""
    rows = _join_rows()
    recs = scan_table(json.dumps(rows).encode(), FIELDS)
    assert np.flatnonzero(recs.escaped("token")).tolist() == [5, 6]
    tokens = [r["token"] for r in rows]
    wanted = ["nope", tokens[6], tokens[5], tokens[3]]
    got = join(recs, "token", None, wanted)
    assert [got[i] for i in (5, 6, 3, 10, 0)] == [2, 1, 3, 3, -1]
    assert got.tolist() == _expected(tokens, wanted)
    rows_, idx = match_rows(recs, "token", wanted)
    assert rows_.tolist() == [3, 5, 6, 10] and idx.tolist() == [3, 2, 1, 3]
    # a target with escapes takes the Python path too
    got = join(recs, "token", np.arange(7, 12), (recs, "token", np.arange(10)))
    assert got.tolist() == [7, 8, 9, 3, -1]  # row 10 holds row 3's string
    assert len(join_calls) == 0
    # the same records, rows without escapes: the hash join
    got = join(recs, "token", np.arange(7, 200), wanted)
    assert got.tolist() == _expected(tokens[7:], wanted) and len(join_calls) == 1

"""Whole-or-nothing file writes."""

from __future__ import annotations

import json
import math

import pytest

from bevkd.fileio import atomic_write, write_json


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "metrics.json"
    write_json(str(path), {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}

    class Full(OSError):
        pass

    import builtins

    real_open = builtins.open

    def full_disk(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if "w" in mode:
            def write(_data):
                raise Full("No space left on device")
            f.write = write
        return f

    monkeypatch.setattr(builtins, "open", full_disk)
    with pytest.raises(Full):
        atomic_write(str(path), "{\"a\": 2}")
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"a": 1}  # the reader still sees a whole file
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]  # no temporary left


def test_strict_json_has_no_nan(tmp_path):
    path = tmp_path / "t.json"
    write_json(str(path), {"x": [1.0, math.nan], "y": {"z": math.inf}}, strict=True)
    assert json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(c)) == {
        "x": [1.0, None], "y": {"z": None}}
    write_json(str(path), {"x": math.nan})  # default: as Python writes it
    assert "NaN" in path.read_text()
    atomic_write(str(tmp_path / "b.bin"), b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"

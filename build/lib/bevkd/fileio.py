"""Files written whole or not at all: a kill or a full disk never leaves a half-written file
under its final name (readers such as `bevkd bench`'s reuse check trust what they find)."""

from __future__ import annotations

import json
import math
import os
from typing import Any


def atomic_write(path: str, data: str | bytes) -> str:
    """Writes ``data`` to ``path`` through a temporary file and a rename; returns ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)  # a full disk leaves nothing behind
        raise
    return path


def _no_nan(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no NaN/inf; strict readers reject Python's NaN token
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_no_nan(v) for v in obj]
    return obj


def write_json(path: str, obj: Any, indent: int | None = 1, strict: bool = False) -> str:
    """``obj`` as JSON at ``path``, atomically. ``strict``: non-finite floats become ``null``
    (for tables read by other tools); otherwise they are written as Python writes them."""
    return atomic_write(path, json.dumps(_no_nan(obj) if strict else obj, indent=indent))

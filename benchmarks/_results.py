"""How the scripts under benchmarks/ save what they measured: ``benchmarks/<name>.json`` (the
numbers, with the commit and the command that produced them) and ``benchmarks/<name>.md``
(the table people read). Imported as ``from _results import save`` by scripts run as
``python benchmarks/<script>.py`` (their folder is first on ``sys.path``)."""

from __future__ import annotations

import json
import os
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


def save(name: str, result: dict[str, Any], lines: list[str] | str, echo: bool = True) -> str:
    """Writes ``result`` to ``<name>.json`` and ``lines`` to ``<name>.md`` under benchmarks/;
    returns the markdown (printed too unless ``echo`` is false)."""
    md = lines if isinstance(lines, str) else "\n".join(lines) + "\n"
    with open(os.path.join(HERE, f"{name}.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(HERE, f"{name}.md"), "w") as f:
        f.write(md)
    if echo:
        print(md, end="")
    return md

"""Every benchmark script that computes in its own process pins numpy's BLAS kernels before
numpy loads (benchmarks/_pinned.py), as the bevkd command does: otherwise its data and geometry
on a CPU model OpenBLAS does not know are other bits than the CLI's trainings read."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
HEAVY = ("numpy", "torch", "bevkd", "_student")


def _imports(path: str) -> list[str]:
    """The top-level modules ``path`` imports at module level, in order (``__future__`` left
    out)."""
    with open(path) as f:
        tree = ast.parse(f.read())
    names = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            names.append((node.module or "").split(".")[0])
    return names


def _scripts() -> list[str]:
    return sorted(n for n in os.listdir(BENCHMARKS)
                  if n.endswith(".py") and n not in ("_pinned.py", "_results.py"))


@pytest.mark.parametrize("name", _scripts())
def test_script_pins_before_numpy(name):
    names = _imports(os.path.join(BENCHMARKS, name))
    if not set(names) & set(HEAVY):
        pytest.skip(f"{name} imports none of {HEAVY}: it computes through subprocesses")
    assert names[0] == "_pinned", f"{name}: first import is {names[0]!r}, not _pinned"


def test_order_check_reads_imports(tmp_path):
    """The check above reads imports as written (a script that imports numpy first fails)."""
    path = tmp_path / "probe.py"
    path.write_text('"""doc"""\nfrom __future__ import annotations\nimport numpy as np\n'
                    'import _pinned\nfrom bevkd.blas import core_for\n')
    assert _imports(str(path)) == ["numpy", "_pinned", "bevkd"]


def test_pinned_sets_core_before_numpy():
    """Imported first in a fresh process, _pinned leaves OPENBLAS_CORETYPE set to the
    instruction set's kernels (or unset where bevkd.blas has none for this CPU)."""
    from bevkd.blas import core_for, cpu_flags

    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import _pinned, os; "
            "print(os.environ.get('OPENBLAS_CORETYPE', '-'), 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, BENCHMARKS], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    # and numpy not loaded by it: the pin comes in time for the script's own imports
    assert out == [core_for(cpu_flags()) or "-", "False"]

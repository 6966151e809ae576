"""bevkd as pip installs it (not editable): the wheel holds the package and every shipped
config and preset, and an install of it finds them from any folder, with the README's
``configs/...`` paths too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import bevkd

REPO = os.path.dirname(os.path.dirname(os.path.abspath(bevkd.__file__)))

# run by the installed copy, from a folder that is not a checkout
INSTALLED = r"""
import os, sys
import bevkd
from bevkd.bench.plan import plan
from bevkd.engine.config import load_experiment, resolve_preset

site = sys.argv[1]
assert bevkd.__file__.startswith(site), bevkd.__file__
for name in ("demo", "tiny", "small", "full"):
    assert resolve_preset(name).startswith(site), resolve_preset(name)
cfg = load_experiment("configs/distill/asd.yaml", "tiny")  # as the README writes it
assert [m.type for m in cfg.distill.methods] == ["asd"] and cfg.grid.cell == 1.6
jobs = plan(1)
assert jobs and all(j.config.startswith(site) and os.path.isfile(j.config) for j in jobs)
print("installed bevkd reads", len(jobs), "job configs")
"""


def test_the_wheel_ships_the_configs_and_an_install_of_it_reads_them(tmp_path):
    # built from a copy: setuptools writes build/ and egg-info beside the sources
    src = tmp_path / "src"
    src.mkdir()
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(REPO, f), src / f)
    shutil.copytree(os.path.join(REPO, "bevkd"), src / "bevkd",
                    ignore=shutil.ignore_patterns("__pycache__"))
    # offline: the build backend is the environment's setuptools (the test extra's)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "--no-index", "--disable-pip-version-check",
                            "-q", "-w", str(tmp_path / "dist"), str(src)],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("bevkd-*.whl")
    shipped = {os.path.relpath(os.path.join(d, f), REPO).replace(os.sep, "/")
               for d, _, files in os.walk(os.path.join(REPO, "bevkd", "configs")) for f in files}
    assert len(shipped) >= 13  # 4 presets, 3 teachers, the student, 4 methods, the composite
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        z.extractall(tmp_path / "site")
    assert shipped <= names, sorted(shipped - names)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run([sys.executable, "-c", INSTALLED, str(tmp_path / "site")],
                         cwd=elsewhere, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(tmp_path / "site")})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "installed bevkd reads" in out.stdout

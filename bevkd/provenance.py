"""Where a result came from: the git commit of the code that produced it."""

from __future__ import annotations

import os
import subprocess


def git_commit() -> str:
    """HEAD of the bevkd checkout, with ``-dirty`` when tracked files differ; "unknown"
    outside a git checkout (e.g. an installed wheel)."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"

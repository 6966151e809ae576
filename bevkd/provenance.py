"""Where a result came from: the git commit of the code that produced it and the machine."""

from __future__ import annotations

import os
import platform
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


def machine() -> dict[str, object]:
    """The CPU and numeric libraries a result was computed with. A CPU training reproduces to
    the digit on the same ones but not across CPUs: torch dispatches other kernels (another
    float summation order) by instruction set, and training amplifies the last-bit
    differences (the tiny LiDAR teacher: mAP 17.6 on one Xeon, 18.0 on another)."""
    import numpy
    import torch

    return {"cpu": _cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cores": os.cpu_count(), "torch": torch.__version__, "numpy": numpy.__version__}


def machine_label(m: dict | None) -> str:
    """``machine()``'s identity in a few words: what decides whether two runs may be equal."""
    if not m:
        return "unrecorded"
    return f"{m.get('cpu', '?')} ({m.get('cpu_capability', '?')}), torch {m.get('torch', '?')}"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"

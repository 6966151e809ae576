"""Where a result came from: the git commit of the code that produced it and the machine."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess


COMMIT_ENV = "BEVKD_COMMIT"
"""Environment variable naming the commit a copy of the checkout without its git history was
made from (e.g. the working tree sent to a GPU machine); it wins over ``git`` when set."""


def git_commit() -> str:
    """HEAD of the bevkd checkout, with ``-dirty`` when tracked files differ; the value of
    :data:`COMMIT_ENV` where set; "unknown" outside a git checkout (e.g. an installed
    wheel)."""
    if os.environ.get(COMMIT_ENV):
        return os.environ[COMMIT_ENV]
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine(gpu: bool = False) -> dict[str, object]:
    """The CPU and numeric libraries a result was computed with. A CPU training reproduces to
    the digit on the same ones but not across CPUs: torch dispatches other kernels (another
    float summation order) by instruction set, numpy's OpenBLAS by CPU model (``blas``,
    unless :mod:`bevkd.blas` pinned them), and training amplifies the last-bit differences
    (the tiny LiDAR teacher: mAP 17.6 on one Xeon, 18.0 on another). ``gpu``: the result was
    computed on the (first) CUDA device, whose name and CUDA version are then recorded too
    (asked only then: the query starts a CUDA context)."""
    import numpy
    import torch

    from .blas import openblas_core

    info = cpuinfo()
    return {"cpu": info.get("model name") or platform.processor() or platform.machine()
            or "unknown",
            # a VM's model name can be generic ("Intel(R) Xeon(R) Processor"): family, model
            # and stepping, and a digest of the instruction-set flags, tell CPUs apart
            "cpu_id": "/".join(info.get(k, "?") for k in ("cpu family", "model", "stepping")),
            "cpu_flags": hashlib.sha1(" ".join(sorted(info.get("flags", "").split()))
                                      .encode()).hexdigest()[:10],
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cores": os.cpu_count(), "torch": torch.__version__, "numpy": numpy.__version__,
            # numpy's OpenBLAS kernels (bevkd.blas): another choice rounds numpy's geometry,
            # and so the data and every training, differently on the same CPU
            "blas": openblas_core() or "unknown",
            # a GPU training's arithmetic is the GPU's (and CUDA's), not the CPU's
            **({"gpu": torch.cuda.get_device_name(0), "cuda": torch.version.cuda}
               if gpu and torch.cuda.is_available() else {})}


def machine_label(m: dict | None) -> str:
    """``machine()``'s identity in a few words: what decides whether two runs may be equal."""
    if not m:
        return "unrecorded"
    gpu = f", {m['gpu']} (CUDA {m.get('cuda', '?')})" if m.get("gpu") else ""
    blas = f", OpenBLAS {m['blas']}" if m.get("blas") else ""  # (not recorded before)
    return (f"{m.get('cpu', '?')} {m.get('cpu_id', '?')} flags {m.get('cpu_flags', '?')} "
            f"({m.get('cpu_capability', '?')}){gpu}{blas}, torch {m.get('torch', '?')}")


def cpuinfo() -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` (empty where there is none)."""
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block ends
                key, _, value = line.partition(":")
                out.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return out

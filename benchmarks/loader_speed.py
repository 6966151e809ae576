"""Data loader throughput (samples/s) with and without worker processes.

    .venv/bin/python benchmarks/loader_speed.py [--data DIR] [--samples 40]

Generates a SynthScenes split at the default 800x450 resolution (or reads --data), then times
`NuScenesDataset` + `collate` in training mode (full augmentation, 10 LiDAR sweeps, depth
targets) for the `tiny` image size (64x176) and the `full` one (256x704), with 0 and 2 workers.
Writes benchmarks/loader_speed.md and .json.
"""

from __future__ import annotations

import _pinned  # noqa: F401  (first: numpy's BLAS kernels pinned before numpy loads)
import argparse
import os
import platform
import tempfile
import time

import torch
from torch.utils.data import DataLoader

from _results import save
from bevkd.data.nuscenes import DataConfig, NuScenesDataset
from bevkd.data.synth.generator import SynthConfig
from bevkd.data.synth.writer import generate_dataset
from bevkd.data.transforms import ImageAugConfig
from bevkd.provenance import git_commit
from bevkd.structures.batch import collate


# image sizes of the presets; resize limits scaled for an 800 x 450 source as BEVDepth's
# 0.386..0.55 are for 1600 x 900
CONFIGS = {
    "tiny (64x176)": DataConfig(image=ImageAugConfig(final_size=(64, 176),
                                                     resize_lim=(0.22, 0.26))),
    "full (256x704)": DataConfig(image=ImageAugConfig(final_size=(256, 704),
                                                      resize_lim=(0.88, 1.1))),
}


def _throughput(ds: NuScenesDataset, workers: int, samples: int, batch: int = 2) -> float:
    loader = DataLoader(ds, batch_size=batch, shuffle=False, num_workers=workers,
                        collate_fn=collate, persistent_workers=False)
    it = iter(loader)
    next(it)  # worker start-up and first batch are not throughput
    start, n = time.perf_counter(), 0
    for b in it:
        n += b.size
        if n >= samples:
            break
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="existing SynthScenes root (else generated)")
    ap.add_argument("--samples", type=int, default=40)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data
        if root is None:
            root = os.path.join(tmp, "synth")
            generate_dataset(SynthConfig(out=root, scenes=2, samples_per_scene=25, workers=2),
                             progress=False)
        rows = []
        for name, cfg in CONFIGS.items():
            ds = NuScenesDataset(root, "v1.0-synth", "synth_train", cfg, train=True,
                                 cache_dir=os.path.join(tmp, "cache"))
            for workers in (0, 2):
                rate = _throughput(ds, workers, min(args.samples, len(ds)))
                rows.append({"config": name, "workers": workers, "samples_per_s": rate})
                print(rows[-1])
    result = {"commit": git_commit(), "command": "python benchmarks/loader_speed.py",
              "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "source_resolution": [800, 450], "lidar_sweeps": 10, "rows": rows}
    lines = ["# Data loader throughput", "",
             f"`{result['command']}` at commit `{result['commit']}` ({result['machine']}); "
             "SynthScenes 800x450 source images, training mode (image + BEV augmentation), "
             "10 LiDAR sweeps, depth targets, batch 2.", "",
             "| image size | workers | samples / s |", "|---|---|---|"]
    lines += [f"| {r['config']} | {r['workers']} | {r['samples_per_s']:.1f} |" for r in rows]
    save("loader_speed", result, lines)


if __name__ == "__main__":
    main()

"""SynthScenes generation speed on one core at a given resolution.

    .venv/bin/python benchmarks/synth_speed.py [--width 800 --height 450 --samples 12]

Writes benchmarks/synth_speed.md and .json. Reported: end-to-end seconds per sample (6 cameras +
10 LiDAR sweeps + annotations + JPEG/bin/table writing) with one worker, and the split between
camera rendering, LiDAR casting and the rest. Target (issue #2): < 1 s per sample per core at
800x450.
"""

from __future__ import annotations

import _pinned  # noqa: F401  (first: numpy's BLAS kernels pinned before numpy loads)
import argparse
import os
import platform
import tempfile
import time

import numpy as np

from _results import save
from bevkd.data.synth.generator import SceneGenerator, SynthConfig
from bevkd.data.synth.writer import generate_dataset
from bevkd.provenance import git_commit

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=800)
    ap.add_argument("--height", type=int, default=450)
    ap.add_argument("--samples", type=int, default=12, help="samples per measured scene")
    ap.add_argument("--scenes", type=int, default=2)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        # warm-up: numba compiles (or loads its cache) once per process
        generate_dataset(SynthConfig(out=os.path.join(tmp, "warm"), scenes=1, samples_per_scene=1,
                                     width=64, height=36, workers=1), progress=False)
        cfg = SynthConfig(out=os.path.join(tmp, "run"), scenes=args.scenes,
                          samples_per_scene=args.samples, width=args.width, height=args.height,
                          workers=1)
        start = time.perf_counter()
        generate_dataset(cfg, progress=False)
        total = time.perf_counter() - start
    n = args.scenes * args.samples

    # breakdown on one scene, same settings
    gen = SceneGenerator(cfg, 0)
    cam_t, lidar_t = [], []
    for k in range(min(args.samples, 6)):
        t0 = time.perf_counter()
        gen.render_cameras(k * 0.5, k)
        cam_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for j in range(cfg.sweeps):
            gen.cast_sweep(k * 0.5 - 0.05 * j, 10 * k + j)
        lidar_t.append(time.perf_counter() - t0)
    per_sample = total / n
    result = {
        "commit": git_commit(),
        "command": f"python benchmarks/synth_speed.py --width {args.width} --height "
                   f"{args.height} --samples {args.samples} --scenes {args.scenes}",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "resolution": [args.width, args.height], "sweeps": cfg.sweeps, "samples": n,
        "seconds_per_sample_one_core": per_sample,
        "samples_per_second_per_core": 1.0 / per_sample,
        "camera_seconds_per_sample": float(np.median(cam_t)),
        "lidar_seconds_per_sample": float(np.median(lidar_t)),
        "target_seconds_per_sample": 1.0,
    }
    rest = per_sample - result["camera_seconds_per_sample"] - result["lidar_seconds_per_sample"]
    md = f"""# SynthScenes generation speed

`{result['command']}` at commit `{result['commit']}` ({result['machine']}).

| resolution | sweeps / sample | samples | s / sample (1 core) | samples / s / core | 6 cameras | {cfg.sweeps} LiDAR sweeps | tables, JPEG, files |
|---|---|---|---|---|---|---|---|
| {args.width}x{args.height} | {cfg.sweeps} | {n} | {per_sample:.3f} | {1 / per_sample:.2f} | {result['camera_seconds_per_sample']:.3f} s | {result['lidar_seconds_per_sample']:.3f} s | {rest:.3f} s |

Target: under 1 s per 6-camera + 10-sweep sample per core at 800x450
({'met' if per_sample < 1.0 else 'NOT met'}). Scenes run in parallel, one per worker process.
"""
    save("synth_speed", result, md)


if __name__ == "__main__":
    main()

"""Write a whole SynthScenes dataset: scenes in parallel, then the 13 nuScenes tables and splits.

Layout of the output folder (as real nuScenes):
    samples/<CHANNEL>/*.jpg | *.pcd.bin     key frames
    sweeps/LIDAR_TOP/*.pcd.bin              non-key LiDAR sweeps
    maps/<token>.png                        semantic prior raster of each log's road layout
    v1.0-synth/*.json, v1.0-synth/splits.json  (synth_train, synth_val; devkit >= 1.2.0)
"""

from __future__ import annotations

import glob
import json
import math
import multiprocessing as mp
import os
import queue
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict

import numpy as np
from PIL import Image
from tqdm import tqdm

from ...errors import BevkdError
from ...progress import progress_bar
from .catalog import ATTRIBUTES, CATEGORY_DESCRIPTIONS, CLASSES, EXTRA_CATEGORIES, VISIBILITY_LEVELS
from .generator import SceneGenerator, SynthConfig, token
from .raycast import paint_ground
from ...structures.classes import CAMERA_CHANNELS, LIDAR_CHANNEL

TABLES = ("attribute", "calibrated_sensor", "category", "ego_pose", "instance", "log", "map",
          "sample", "sample_annotation", "sample_data", "scene", "sensor", "visibility")


def validate_config(cfg: SynthConfig) -> None:
    """Reject arguments that cannot make a dataset, with a one-line reason."""
    if cfg.scenes < 1:
        raise BevkdError(f"--scenes must be at least 1 (got {cfg.scenes})")
    if cfg.samples_per_scene < 1:
        raise BevkdError(f"--samples-per-scene must be at least 1 (got {cfg.samples_per_scene})")
    if not (16 <= cfg.width <= 4096 and 16 <= cfg.height <= 4096):
        raise BevkdError(f"resolution {cfg.width}x{cfg.height} is out of range "
                         "(each side 16..4096 pixels)")
    if cfg.sweeps < 1 or cfg.sweeps > 10:
        raise BevkdError(f"--sweeps must be in 1..10 (got {cfg.sweeps}): LiDAR runs at 20 Hz, "
                         "key frames at 2 Hz")
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise BevkdError(f"--val-fraction must be in [0, 1) (got {cfg.val_fraction})")
    if cfg.workers < 0:
        raise BevkdError(f"--workers must be >= 0 (got {cfg.workers})")
    out = os.path.abspath(cfg.out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise BevkdError(f"output folder {out} is a file, not a folder")
    parent = out
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise BevkdError(f"output folder {out} is not writable ({parent} does not accept new files)")
    if (os.path.isdir(out) and os.listdir(out) and not os.path.isdir(os.path.join(out, cfg.version))
            and not is_incomplete(out)):
        raise BevkdError(f"output folder {out} exists and is not a SynthScenes dataset; "
                         "choose an empty or new folder")


# in an output folder from the first file of a generation until its tables are written: a
# generation cut short (Ctrl-C, a kill) is made again rather than refused or read
INCOMPLETE = ".synth_incomplete"


def is_incomplete(out: str) -> bool:
    """Whether ``out`` holds a generation that did not finish (its files are to be replaced)."""
    return os.path.isfile(os.path.join(out, INCOMPLETE))


def split_scenes(names: list[str], val_fraction: float) -> dict[str, list[str]]:
    """The last ``ceil(val_fraction * N)`` scenes are validation (at least one if N > 1)."""
    n = len(names)
    n_val = 0 if val_fraction == 0 else max(1, math.ceil(val_fraction * n)) if n > 1 else 1
    if n == 1:
        # one scene cannot be split: it serves as both, and the caller is told so
        return {"synth_train": list(names), "synth_val": list(names)}
    return {"synth_train": names[:n - n_val], "synth_val": names[n - n_val:]}


def _shared_tables() -> dict[str, list[dict]]:
    categories = [c.category for c in CLASSES.values()] + list(EXTRA_CATEGORIES)
    return {
        "sensor": [{"token": token("sensor", ch), "channel": ch, "modality": "camera"}
                   for ch in CAMERA_CHANNELS]
        + [{"token": token("sensor", LIDAR_CHANNEL), "channel": LIDAR_CHANNEL, "modality": "lidar"}],
        "category": [{"token": token("category", c), "name": c,
                      "description": CATEGORY_DESCRIPTIONS[c], "index": i}
                     for i, c in enumerate(categories)],
        "attribute": [{"token": token("attribute", n), "name": n, "description": d}
                      for n, d in ATTRIBUTES],
        "visibility": [{"token": t, "level": lvl, "description": f"visibility of whole object is "
                        f"between {lvl[1:].split('-')[0]} and {lvl.split('-')[1]} %"}
                       for t, lvl, _ in VISIBILITY_LEVELS],
    }


def _run_scene(cfg: SynthConfig, index: int, progress) -> dict[str, list[dict]]:
    gen = SceneGenerator(cfg, index)
    result = gen.run(on_sample=(lambda: progress.put(1)) if progress is not None else None)
    _write_map(gen)
    return result.tables


def _write_map(gen: SceneGenerator) -> None:
    """Semantic prior raster (0.5 m/px, global axes, north up) of the scene's drivable layout."""
    w = gen.world
    ego0 = w.ego_pose(0.0)[0]
    ego1 = w.ego_pose(0.5 * (gen.cfg.samples_per_scene - 1))[0]
    lo = np.minimum(ego0, ego1)[:2] - 80.0
    hi = np.maximum(ego0, ego1)[:2] + 80.0
    res = 0.5
    xs = np.arange(lo[0], hi[0], res)
    ys = np.arange(hi[1], lo[1], -res)
    rgb = paint_ground(xs, ys, w.layout.pack())
    rec = gen.tables["map"][0]
    path = os.path.join(gen.cfg.out, rec["filename"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(path)


def generate_dataset(cfg: SynthConfig, progress: bool = True) -> dict[str, list[str]]:
    """Generate the dataset described by ``cfg``; returns the splits (scene names)."""
    validate_config(cfg)
    try:
        os.makedirs(cfg.out, exist_ok=True)
    except OSError as err:
        raise BevkdError(f"cannot create output folder {cfg.out}: {err.strerror}") from None
    with open(os.path.join(cfg.out, INCOMPLETE), "w") as f:  # removed with the tables written
        f.write("a SynthScenes generation that has not finished\n")
    # Regenerating into an existing SynthScenes folder replaces it: stale files from other
    # settings would otherwise sit next to the new tables.
    for sub in ("samples", "sweeps", "maps", "synth_debug", cfg.version, ".bevkd_cache",
                *(os.path.basename(t) for t in glob.glob(os.path.join(cfg.out, ".tables-*")))):
        shutil.rmtree(os.path.join(cfg.out, sub), ignore_errors=True)
    workers = cfg.workers or os.cpu_count() or 1
    workers = max(1, min(workers, cfg.scenes))
    total = cfg.scenes * cfg.samples_per_scene
    bar = progress_bar(total=total, unit="sample", desc="synth", disable=not progress)
    results: list[dict[str, list[dict]]] = []
    try:
        if workers == 1:
            for i in range(cfg.scenes):
                results.append(_run_scene(cfg, i, None if not progress else _BarQueue(bar)))
        else:
            # fork (Linux default) needs no `__main__` guard in user scripts; the workers only
            # run numpy/numba code, so threads of the parent do not matter to them
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            with ctx.Manager() as manager:
                q = manager.Queue()
                with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                    futures = [pool.submit(_run_scene, cfg, i, q) for i in range(cfg.scenes)]
                    while not all(f.done() for f in futures):
                        try:
                            bar.update(q.get(timeout=0.2))
                        except queue.Empty:
                            pass
                    results = [f.result() for f in futures]  # scene order, not finish order
                    while not q.empty():
                        bar.update(q.get())
    finally:
        bar.close()
    tables = _shared_tables()
    for name in TABLES:
        tables.setdefault(name, [])
    for res in results:
        for name, rows in res.items():
            tables[name].extend(rows)
    splits = split_scenes([r["scene"][0]["name"] for r in results], cfg.val_fraction)
    _write_tables(cfg, tables, splits)
    os.remove(os.path.join(cfg.out, INCOMPLETE))
    return splits


class _BarQueue:
    """In-process stand-in for the progress queue."""

    def __init__(self, bar: tqdm):
        self.bar = bar

    def put(self, n: int) -> None:
        self.bar.update(n)


def _write_tables(cfg: SynthConfig, tables: dict[str, list[dict]],
                  splits: dict[str, list[str]]) -> None:
    """Write the tables atomically: a half-written dataset never looks complete."""
    final = os.path.join(cfg.out, cfg.version)
    tmp = tempfile.mkdtemp(prefix=".tables-", dir=cfg.out)
    for name in TABLES:
        with open(os.path.join(tmp, f"{name}.json"), "w") as f:
            json.dump(tables[name], f, indent=1)
    with open(os.path.join(tmp, "splits.json"), "w") as f:
        json.dump(splits, f, indent=1)
    meta = {k: v for k, v in asdict(cfg).items() if k not in ("out", "workers")}
    with open(os.path.join(tmp, "synth_config.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    if os.path.isdir(final):
        shutil.rmtree(final)
    os.replace(tmp, final)

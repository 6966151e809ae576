"""Speed and peak memory of ``bev_pool`` (sparse) against ``naive_bev_pool`` (outer product).

Times forward + backward (gradients to depth and context) on CPU with 2 threads (and 1: our
machine is shared, see the report), for the
``tiny`` and ``full`` student sizes, on a nuScenes-like 6-camera rig (so the number of frustum
points per BEV cell is realistic). Variants:

- ``naive``: materialises the (B, N, D, h, w, C) outer product and ``index_add``s it.
- ``sparse``: ``bev_pool`` building its plan from the geometry on every call (what a training
  step pays).
- ``sparse_plan_reused``: ``bev_pool`` with a plan built once beforehand (a second lift of the
  same batch), plus the plan build time on its own.

Peak memory: each variant runs in a fresh subprocess (so allocator caches and high-water marks
of one variant cannot leak into another); peak = ``ru_maxrss`` after the calls minus the
resident set size (``/proc/self/statm``) just before the first timed call (after a warm-up
on one camera, so lazy initialisation is not counted), i.e. the extra memory the
pooling needed at its worst moment, inputs excluded. ``tracemalloc`` does not see torch's
allocations, hence RSS.

Usage::

    python benchmarks/bev_pool_speed.py [--sizes tiny full] [--threads 2 1] [--repeats 15]

writes ``benchmarks/bev_pool_speed.md`` and ``.json`` next to this file.
"""

from __future__ import annotations

import _pinned  # noqa: F401  (first: numpy's BLAS kernels pinned before numpy loads)
import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from bevkd.data.transforms import ImageAugConfig, sample_image_aug
from bevkd.models.camera.lss import frustum, frustum_to_ego
from bevkd.models.grid import BevGrid
from bevkd.models.ops.bev_pool import bev_pool, bev_pool_plan, naive_bev_pool
from bevkd.provenance import git_commit

HERE = Path(__file__).resolve().parent
SIZES = {
    "tiny": dict(batch=1, cams=6, image=(64, 176), stride=16, bins=(2.0, 58.0, 0.5), channels=64,
                 grid=BevGrid(cell=1.6)),
    "full": dict(batch=1, cams=6, image=(256, 704), stride=16, bins=(2.0, 58.0, 0.5), channels=80,
                 grid=BevGrid(cell=0.8)),
}
VARIANTS = ("naive", "sparse", "sparse_plan_reused")
# BEVDepth camera order; yaw of the optical axis (deg), focal length on the 1600x900 source
RIG = [(55.0, 1266.0), (0.0, 1266.0), (-55.0, 1266.0), (110.0, 800.0), (180.0, 800.0),
       (-110.0, 800.0)]


def _inputs(size: dict, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """depth (B, N, D, h, w) softmaxed, context (B, N, C, h, w), geometry (B, N, D, h, w, 3)."""
    B, N = size["batch"], size["cams"]
    ego_T_cam = torch.eye(4).repeat(B, N, 1, 1)
    K = torch.eye(3).repeat(B, N, 1, 1)
    aug = sample_image_aug(ImageAugConfig(final_size=size["image"]), (1600, 900), None)
    for n, (yaw_deg, f) in enumerate(RIG[:N]):
        yaw = math.radians(yaw_deg)
        c, s = math.cos(yaw), math.sin(yaw)
        yaw_rot = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        cam_axes = torch.tensor([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])  # cam z -> ego x
        ego_T_cam[:, n, :3, :3] = yaw_rot @ cam_axes
        ego_T_cam[:, n, :3, 3] = torch.tensor([1.0 * c, 0.5 * s, 1.6])
        K[:, n] = torch.tensor([[f, 0.0, 800.0], [0.0, f, 450.0], [0.0, 0.0, 1.0]])
    aug_T_pix = torch.tensor(aug.matrix(), dtype=torch.float32).repeat(B, N, 1, 1)
    geometry = frustum_to_ego(frustum(size["image"], size["stride"], size["bins"]),
                              ego_T_cam, K, aug_T_pix, torch.eye(4).repeat(B, 1, 1))
    D, h, w = geometry.shape[2:5]
    g = torch.Generator().manual_seed(seed)
    depth = torch.randn(B, N, D, h, w, generator=g).softmax(2)
    context = torch.randn(B, N, size["channels"], h, w, generator=g)
    return depth, context, geometry


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _worker(size_name: str, variant: str, repeats: int) -> dict:
    size = SIZES[size_name]
    grid = size["grid"]
    depth, context, geometry = _inputs(size)
    depth.requires_grad_()
    context.requires_grad_()
    grad_out = torch.randn(size["batch"], size["channels"], *grid.shape)
    plan = None
    plan_times = []
    if variant == "sparse_plan_reused":
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            plan = bev_pool_plan(geometry, grid)
            plan_times.append((time.perf_counter() - t0) * 1e3)
        plan_times = sorted(plan_times[1:])

    def step(d: torch.Tensor, c: torch.Tensor, geom: torch.Tensor, p) -> None:
        if variant == "naive":
            out = naive_bev_pool(d, c, geom, grid)
        else:
            out = bev_pool(d, c, geom, grid, plan=p)
        out.backward(grad_out)
        depth.grad = context.grad = None

    # warm up on one camera so lazy initialisation (sparse kernels, thread pools) is neither
    # timed nor counted as pooling memory
    step(depth[:, :1], context[:, :1], geometry[:, :1], None)
    rss_before = _rss_mb()
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step(depth, context, geometry, plan)
        times.append((time.perf_counter() - t0) * 1e3)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times.sort()
    stats = bev_pool_plan(geometry, grid)
    return dict(size=size_name, variant=variant, repeats=repeats,
                ms_median=times[len(times) // 2], ms_mean=sum(times) / len(times),
                ms_min=times[0],
                plan_ms=plan_times[len(plan_times) // 2] if plan_times else None,
                peak_extra_mb=max(0.0, peak - rss_before),
                pre_call_slack_mb=max(0.0, maxrss_before - rss_before),
                frustum_points=depth.numel(), kept_points=stats.num_points,
                matrix_entries=stats.num_entries,
                outer_product_mb=depth.numel() * size["channels"] * 4 / 2**20)


def _check(size_name: str) -> float:
    """Max |bev_pool - naive| on the benchmark inputs (forward)."""
    size = SIZES[size_name]
    depth, context, geometry = _inputs(size)
    with torch.no_grad():
        a = bev_pool(depth, context, geometry, size["grid"])
        b = naive_bev_pool(depth, context, geometry, size["grid"])
    return float((a - b).abs().max())


def _markdown(report: dict) -> str:
    lines = [
        "# BEV pooling: sparse `bev_pool` vs naive outer product",
        "",
        f"Command: `{report['command']}`  ",
        f"Commit: `{report['commit']}`  ",
        f"Machine: CPU, torch {report['torch']}, {report['cpus']} cores; forward + backward "
        "(gradients to depth and context), after a warm-up call on one camera; median and min "
        "over the timed calls. Plan build: median of separate builds (included in `sparse`).",
        "",
        f"The machine is shared (1-min load average {report['load_avg_1min']['before']:.1f} "
        f"before / {report['load_avg_1min']['after']:.1f} after the run, on 2 cores). With 2 "
        "threads every parallel op waits for a thread the OS has descheduled, which inflates "
        "medians erratically (torch's parallel sort in the plan build suffers most); the 1-thread "
        "rows and the min column are the better guide to intrinsic cost, and 1 thread is how the "
        "tiny preset trains (independent runs in parallel, one thread each, DESIGN §7). "
        "Speed-up and memory ratios are against `naive` at the same thread count (speed-up from "
        "medians; from mins in brackets).",
        "",
        "Peak memory = `ru_maxrss` after the timed calls minus RSS just before them, each variant "
        "in a fresh subprocess (inputs and lazy initialisation excluded).",
        "",
        "| size | threads | variant | ms / call (median) | ms (min) | plan build ms "
        "| peak extra MB | speed-up vs naive | memory vs naive |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for threads, by_size in report["results"].items():
        for size_name, rows in by_size.items():
            naive = rows["naive"]
            for variant in VARIANTS:
                r = rows[variant]
                plan = f"{r['plan_ms']:.1f}" if r["plan_ms"] is not None else "-"
                mem_ratio = (f"{r['peak_extra_mb'] / naive['peak_extra_mb']:.2f}x"
                             if naive["peak_extra_mb"] > 0 else "-")
                lines.append(
                    f"| {size_name} | {threads} | {variant} | {r['ms_median']:.1f} "
                    f"| {r['ms_min']:.1f} | {plan} | {r['peak_extra_mb']:.1f} "
                    f"| {naive['ms_median'] / r['ms_median']:.2f}x "
                    f"({naive['ms_min'] / r['ms_min']:.2f}x) | {mem_ratio} |")
    lines += ["", "| size | frustum points | kept in grid | sparse entries | outer product MB "
              "| max abs diff (fwd) |", "|---|---|---|---|---|---|"]
    first = next(iter(report["results"].values()))
    for size_name, rows in first.items():
        r = rows["sparse"]
        lines.append(f"| {size_name} | {r['frustum_points']} | {r['kept_points']} "
                     f"| {r['matrix_entries']} | {r['outer_product_mb']:.1f} "
                     f"| {report['max_abs_diff'][size_name]:.2e} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--threads", nargs="+", type=int, default=[2, 1])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=HERE / "bev_pool_speed")
    parser.add_argument("--worker", nargs=2, metavar=("SIZE", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        torch.set_num_threads(args.threads[0])
        print(json.dumps(_worker(args.worker[0], args.worker[1], args.repeats)))
        return
    torch.set_num_threads(args.threads[0])
    results: dict[str, dict] = {}
    load_before = os.getloadavg()
    for threads in args.threads:
        by_size = results[str(threads)] = {}
        for size_name in args.sizes:
            by_size[size_name] = {}
            for variant in VARIANTS:
                proc = subprocess.run([sys.executable, __file__, "--worker", size_name, variant,
                                       "--repeats", str(args.repeats), "--threads", str(threads)],
                                      capture_output=True, text=True, check=True)
                r = by_size[size_name][variant] = json.loads(proc.stdout.strip().splitlines()[-1])
                print(f"{size_name:5s} {threads} {variant:19s} {r['ms_median']:8.1f} ms "
                      f"(min {r['ms_min']:.1f})  peak +{r['peak_extra_mb']:.1f} MB", flush=True)
    report = dict(
        command=" ".join(["python", os.path.relpath(__file__, HERE.parent),
                          *(sys.argv[1:] if argv is None else argv)]),
        commit=git_commit(), torch=torch.__version__, cpus=os.cpu_count(),
        load_avg_1min=dict(before=load_before[0], after=os.getloadavg()[0]), results=results,
        max_abs_diff={s: _check(s) for s in args.sizes})
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(_markdown(report))
    print(_markdown(report))


if __name__ == "__main__":
    main()

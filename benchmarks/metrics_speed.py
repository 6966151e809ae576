"""`bevkd metrics` vs nuscenes-devkit, end to end, at nuScenes-val scale.

    .venv/bin/python benchmarks/metrics_speed.py [--scenes 150 --samples 40 --preds 300]

Writes the nuScenes JSON tables of a fake ``v1.0-trainval`` dataset (no sensor files) whose
scenes carry the real names of the ``val`` split -- so both tools take the predefined-split
path -- with about 40 annotations per sample (all 10 classes, zero-point boxes, attributes,
instance chains for velocities, bicycles in bike racks) and the ~76 sample_data / ego_pose
rows per sample that real nuScenes has (key frames and sweeps of 6 cameras, 5 radars and the
LiDAR). Then a results file with ~300 predictions per sample (perturbed GT, duplicates, false
positives, scores rounded to 3 decimals so many tie). Both tools then score the same files,
each in a fresh process, timed from process start to exit:

- bevkd:  ``python -m bevkd.cli metrics --data D --version v1.0-trainval --split val ...``
- devkit: ``NuScenes(...)``, ``DetectionEval(...)``, ``evaluate()`` (its documented use)

and the benchmark checks that every metric agrees. Writes benchmarks/metrics_speed.md/.json.
Target (issue #5): >= 20x faster end to end.
"""

from __future__ import annotations

import _pinned  # noqa: F401  (first: numpy's BLAS kernels pinned before numpy loads)
import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

from bevkd.provenance import git_commit

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
VERSION = "v1.0-trainval"
US = 1_000_000

# (category, detection class or None, share of instances, mean [w, l, h], max speed m/s)
CATEGORIES = [
    ("vehicle.car", "car", 0.36, (1.95, 4.6, 1.7), 12.0),
    ("vehicle.truck", "truck", 0.07, (2.5, 7.0, 2.9), 10.0),
    ("vehicle.bus.rigid", "bus", 0.02, (2.9, 11.0, 3.5), 8.0),
    ("vehicle.bus.bendy", "bus", 0.005, (2.9, 17.0, 3.4), 8.0),
    ("vehicle.trailer", "trailer", 0.02, (2.9, 12.0, 3.9), 6.0),
    ("vehicle.construction", "construction_vehicle", 0.02, (2.8, 6.4, 3.2), 2.0),
    ("human.pedestrian.adult", "pedestrian", 0.17, (0.67, 0.73, 1.77), 1.6),
    ("human.pedestrian.child", "pedestrian", 0.01, (0.5, 0.5, 1.3), 1.5),
    ("human.pedestrian.construction_worker", "pedestrian", 0.01, (0.7, 0.7, 1.8), 1.0),
    ("human.pedestrian.police_officer", "pedestrian", 0.005, (0.7, 0.7, 1.8), 1.0),
    ("vehicle.motorcycle", "motorcycle", 0.02, (0.77, 2.1, 1.5), 10.0),
    ("vehicle.bicycle", "bicycle", 0.02, (0.6, 1.7, 1.3), 5.0),
    ("movable_object.barrier", "barrier", 0.13, (2.5, 0.5, 1.0), 0.0),
    ("movable_object.trafficcone", "traffic_cone", 0.09, (0.4, 0.4, 1.1), 0.0),
    ("movable_object.pushable_pullable", None, 0.01, (0.7, 0.8, 1.1), 0.0),
    ("movable_object.debris", None, 0.01, (0.8, 1.0, 0.4), 0.0),
    ("static_object.bicycle_rack", None, 0.0, (1.6, 6.0, 1.2), 0.0),
]
OTHER_CATEGORIES = ["human.pedestrian.wheelchair", "human.pedestrian.stroller",
                    "human.pedestrian.personal_mobility", "animal", "vehicle.emergency.ambulance",
                    "vehicle.emergency.police"]
ATTRS = ["vehicle.moving", "vehicle.stopped", "vehicle.parked", "cycle.with_rider",
         "cycle.without_rider", "pedestrian.sitting_lying_down", "pedestrian.standing",
         "pedestrian.moving"]
VEHICLES = {"car", "truck", "bus", "trailer", "construction_vehicle"}
# sensor channel -> (modality, frames per key frame interval)
SENSORS = {"LIDAR_TOP": ("lidar", 10), **{c: ("camera", 6) for c in (
    "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT",
    "CAM_BACK_RIGHT")}, **{c: ("radar", 6) for c in (
        "RADAR_FRONT", "RADAR_FRONT_LEFT", "RADAR_FRONT_RIGHT", "RADAR_BACK_LEFT",
        "RADAR_BACK_RIGHT")}}


def tok(*parts) -> str:
    return hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()


def quat(yaw: np.ndarray) -> np.ndarray:
    return np.stack([np.cos(yaw / 2), 0 * yaw, 0 * yaw, np.sin(yaw / 2)], -1)


def _attribute(name: str, moving: bool, rng) -> list[str]:
    if name in VEHICLES:
        a = "vehicle.moving" if moving else rng.choice(["vehicle.parked", "vehicle.stopped"])
    elif name in ("bicycle", "motorcycle"):
        a = "cycle.with_rider" if moving else "cycle.without_rider"
    elif name == "pedestrian":
        a = "pedestrian.moving" if moving else rng.choice(["pedestrian.standing",
                                                           "pedestrian.sitting_lying_down"])
    else:
        return []
    return [tok("attribute", a)] if rng.random() > 0.01 else []  # a few lack one, as nuScenes


def fake_scene(si: int, name: str, n_samples: int, rng, t: dict) -> None:
    """Append one scene's rows to the tables ``t``."""
    scene, log = tok("scene", si), tok("log", si)
    t["log"].append({"token": log, "logfile": f"fake-{si}", "vehicle": "n015",
                     "date_captured": "2018-01-01", "location": "singapore-onenorth"})
    start = 1_530_000_000 * US + si * 100 * US
    stamps = start + np.arange(n_samples) * US // 2 + rng.integers(-20_000, 20_000, n_samples)
    ego0 = rng.uniform(200, 2000, 2)
    heading = rng.uniform(-np.pi, np.pi)
    speed = rng.uniform(0, 10)

    def ego_at(ts):
        d = (np.asarray(ts) - start) / US * speed
        return ego0 + np.stack([np.cos(heading) * d, np.sin(heading) * d], -1)

    samples = [tok("sample", si, k) for k in range(n_samples)]
    for k, s in enumerate(samples):
        t["sample"].append({"token": s, "timestamp": int(stamps[k]), "scene_token": scene,
                            "prev": samples[k - 1] if k else "",
                            "next": samples[k + 1] if k + 1 < n_samples else ""})
    t["scene"].append({"token": scene, "name": name, "description": "fake", "log_token": log,
                       "nbr_samples": n_samples, "first_sample_token": samples[0],
                       "last_sample_token": samples[-1]})
    # sample_data + ego_pose: key frame at the sample time, sweeps in between
    for ch, (_, per_key) in SENSORS.items():
        cs = tok("cs", si, ch)
        t["calibrated_sensor"].append({"token": cs, "sensor_token": tok("sensor", ch),
                                       "translation": [0.9, 0.0, 1.8], "rotation": [1, 0, 0, 0],
                                       "camera_intrinsic": []})
        times = (stamps[:, None] + np.arange(per_key)[None] * (US // 2 // per_key)).ravel()
        pos = ego_at(times)
        toks = [tok("sd", si, ch, j) for j in range(len(times))]
        for j, ts in enumerate(times.tolist()):
            key = j % per_key == 0
            t["ego_pose"].append({"token": toks[j], "timestamp": ts,
                                  "rotation": quat(np.array(heading)).tolist(),
                                  "translation": [float(pos[j, 0]), float(pos[j, 1]), 0.0]})
            t["sample_data"].append({
                "token": toks[j], "sample_token": samples[j // per_key], "ego_pose_token": toks[j],
                "calibrated_sensor_token": cs, "timestamp": ts, "fileformat": "pcd",
                "is_key_frame": key, "height": 0, "width": 0,
                "filename": f"{'samples' if key else 'sweeps'}/{ch}/{toks[j]}.bin",
                "prev": toks[j - 1] if j else "", "next": toks[j + 1] if j + 1 < len(toks) else ""})
    ego_pos = ego_at(stamps)

    # objects: (category index, first/last sample, start position, velocity, yaw, size)
    shares = np.array([c[2] for c in CATEGORIES])
    objs = []
    for _ in range(rng.poisson(95)):  # ~40 detection-class boxes per sample
        c = int(rng.choice(len(CATEGORIES), p=shares / shares.sum()))
        a = int(rng.integers(0, n_samples))
        b = int(min(n_samples - 1, a + rng.integers(8, 40)))
        centre = ego_pos[a] + rng.uniform(-55, 55, 2)
        v = CATEGORIES[c][4] * rng.random() * (rng.random() < 0.5)
        yaw = rng.uniform(-np.pi, np.pi)
        objs.append((c, a, b, centre, v * np.array([np.cos(yaw), np.sin(yaw)]), yaw, None))
    if rng.random() < 0.3:  # a bike rack with bicycles parked in it
        a, b = 0, n_samples - 1
        centre = ego_pos[n_samples // 2] + rng.uniform(-20, 20, 2)
        yaw = rng.uniform(-np.pi, np.pi)
        rack = len(CATEGORIES) - 1
        objs.append((rack, a, b, centre, np.zeros(2), yaw, None))
        bike = [i for i, c in enumerate(CATEGORIES) if c[1] == "bicycle"][0]
        along = np.array([np.cos(yaw), np.sin(yaw)])
        for off in (-2.0, -0.5, 1.0, 2.2):
            objs.append((bike, a, b, centre + off * along, np.zeros(2), yaw + np.pi / 2, "racked"))
    for oi, (c, a, b, centre, vel, yaw, _) in enumerate(objs):
        cat, name, _, wlh, _ = CATEGORIES[c]
        inst = tok("inst", si, oi)
        size = (np.array(wlh) * np.exp(rng.normal(0, 0.08, 3))).tolist()
        anns = [tok("ann", si, oi, k) for k in range(a, b + 1)]
        t["instance"].append({"token": inst, "category_token": tok("category", cat),
                              "nbr_annotations": len(anns), "first_annotation_token": anns[0],
                              "last_annotation_token": anns[-1]})
        moving = bool(np.hypot(*vel) > 0.3)
        attrs = _attribute(name, moving, rng) if name else []
        for j, k in enumerate(range(a, b + 1)):
            dt = (stamps[k] - stamps[a]) / US
            p = centre + vel * dt
            dist = float(np.hypot(*(p - ego_pos[k])))
            pts = 0 if rng.random() < 0.12 else int(rng.exponential(2000 / (1 + dist)))
            t["sample_annotation"].append({
                "token": anns[j], "sample_token": samples[k], "instance_token": inst,
                "visibility_token": str(rng.integers(1, 5)), "attribute_tokens": attrs,
                "translation": [float(p[0]), float(p[1]), float(wlh[2] / 2 + rng.normal(0, 0.05))],
                "size": size, "rotation": quat(np.array(yaw)).tolist(),
                "prev": anns[j - 1] if j else "", "next": anns[j + 1] if j + 1 < len(anns) else "",
                "num_lidar_pts": pts, "num_radar_pts": int(rng.integers(0, 4)) if name in VEHICLES
                else 0})


def write_dataset(root: str, scenes: int, n_samples: int, seed: int) -> None:
    from nuscenes.utils.splits import create_splits_scenes
    from PIL import Image

    rng = np.random.default_rng(seed)
    names = create_splits_scenes()["val"][:scenes]
    t: dict[str, list] = {k: [] for k in ("log", "scene", "sample", "sample_data", "ego_pose",
                                          "calibrated_sensor", "instance", "sample_annotation")}
    for si, name in enumerate(names):
        fake_scene(si, name, n_samples, rng, t)
    cats = [c[0] for c in CATEGORIES] + OTHER_CATEGORIES
    t["category"] = [{"token": tok("category", c), "name": c, "description": ""} for c in cats]
    t["attribute"] = [{"token": tok("attribute", a), "name": a, "description": ""} for a in ATTRS]
    t["visibility"] = [{"token": str(i), "level": f"v{i}", "description": ""} for i in range(1, 5)]
    t["sensor"] = [{"token": tok("sensor", ch), "channel": ch, "modality": m}
                   for ch, (m, _) in SENSORS.items()]
    os.makedirs(os.path.join(root, "maps"), exist_ok=True)
    t["map"] = []
    for m in range(4):
        fn = f"maps/{tok('map', m)}.png"
        Image.new("L", (8, 8)).save(os.path.join(root, fn))
        t["map"].append({"token": tok("map", m), "category": "semantic_prior", "filename": fn,
                         "log_tokens": [r["token"] for r in t["log"][m::4]]})
    os.makedirs(os.path.join(root, VERSION), exist_ok=True)
    for name, rows in t.items():
        with open(os.path.join(root, VERSION, f"{name}.json"), "w") as f:
            json.dump(rows, f)


def write_predictions(root: str, path: str, n_preds: int, seed: int) -> None:
    """~n_preds boxes per sample: noisy copies of GT (some duplicated) and false positives."""
    rng = np.random.default_rng(seed + 1)
    tables = os.path.join(root, VERSION)
    load = lambda n: json.load(open(os.path.join(tables, f"{n}.json")))  # noqa: E731
    cat = {c["token"]: c["name"] for c in load("category")}
    from nuscenes.eval.detection.utils import category_to_detection_name, \
        detection_name_to_rel_attributes

    cls = {i["token"]: category_to_detection_name(cat[i["category_token"]])
           for i in load("instance")}
    by_sample: dict[str, list] = {}
    for a in load("sample_annotation"):
        by_sample.setdefault(a["sample_token"], []).append(a)
    classes = ["car", "truck", "bus", "trailer", "construction_vehicle", "pedestrian",
               "motorcycle", "bicycle", "traffic_cone", "barrier"]
    rel = {c: [""] + detection_name_to_rel_attributes(c) for c in classes}
    # a detector sees the BEV grid (+-51.2 m) around the LIDAR_TOP ego position
    poses = {p["token"]: p["translation"] for p in load("ego_pose")}
    lidar_cs = {c["token"] for c in load("calibrated_sensor")
                if c["sensor_token"] == tok("sensor", "LIDAR_TOP")}
    ego = {d["sample_token"]: np.array(poses[d["ego_pose_token"]]) for d in load("sample_data")
           if d["is_key_frame"] and d["calibrated_sensor_token"] in lidar_cs}
    del poses
    results = {}
    samples = load("sample")
    rng.shuffle(samples)  # the results' key order is not the table order
    for s in samples:
        st = s["token"]
        gts = [a for a in by_sample.get(st, []) if cls[a["instance_token"]]
               and np.abs(np.array(a["translation"][:2]) - ego[st][:2]).max() < 51.2]
        rows = []
        for a in gts:
            for _ in range(rng.choice([0, 1, 1, 1, 1, 2])):
                p = np.array(a["translation"]) + rng.normal(0, 0.5, 3)
                yaw = 2 * np.arctan2(a["rotation"][3], a["rotation"][0]) + rng.normal(0, 0.3)
                rows.append((cls[a["instance_token"]], p, np.array(a["size"]) *
                             np.exp(rng.normal(0, 0.1, 3)), yaw, rng.normal(0, 1.0, 2),
                             round(float(rng.beta(5, 2)), 3)))
        for _ in range(max(0, n_preds - len(rows))):
            c = classes[int(rng.integers(0, 10))]
            p = ego[st] + np.array([*rng.uniform(-51.2, 51.2, 2), rng.uniform(0, 3)])
            rows.append((c, p, rng.uniform(0.4, 5, 3),
                         rng.uniform(-np.pi, np.pi), rng.normal(0, 2, 2),
                         round(float(rng.beta(1, 5)), 3)))
        results[st] = [{"sample_token": st, "translation": p.tolist(), "size": sz.tolist(),
                        "rotation": [float(np.cos(y / 2)), 0.0, 0.0, float(np.sin(y / 2))],
                        "velocity": v.tolist(), "detection_name": c, "detection_score": sc,
                        "attribute_name": str(rng.choice(rel[c]))}
                       for c, p, sz, y, v, sc in rows[:500]]
    meta = {"use_camera": True, "use_lidar": False, "use_radar": False, "use_map": False,
            "use_external": False}
    with open(path, "w") as f:
        json.dump({"meta": meta, "results": results}, f)


DEVKIT = r"""
import json, sys, time
t0 = time.perf_counter()
from nuscenes import NuScenes
from nuscenes.eval.detection.config import config_factory
from nuscenes.eval.detection.evaluate import DetectionEval
t1 = time.perf_counter()
nusc = NuScenes(version=sys.argv[2], dataroot=sys.argv[1], verbose=False)
t2 = time.perf_counter()
ev = DetectionEval(nusc, config_factory("detection_cvpr_2019"), sys.argv[3], "val", sys.argv[4],
                   verbose=False)
t3 = time.perf_counter()
metrics, _ = ev.evaluate()
t4 = time.perf_counter()
summary = metrics.serialize(); summary["meta"] = ev.meta.copy()
json.dump({"summary": summary, "import_s": t1 - t0, "nuscenes_s": t2 - t1, "init_s": t3 - t2,
           "evaluate_s": t4 - t3}, open(sys.argv[5], "w"))
"""


def timed(cmd: list[str]) -> dict:
    """Run ``cmd`` in a fresh process: wall and CPU seconds, peak RSS (GiB), output."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{out}")
    return {"wall_s": took, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_gib": usage.ru_maxrss / 2**20, "output": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=150, help="val scenes (at most 150)")
    ap.add_argument("--samples", type=int, default=40, help="samples per scene")
    ap.add_argument("--preds", type=int, default=300, help="predictions per sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "bevkd_metrics_bench"),
                    help="where the fake dataset and results go (reused when settings match)")
    ap.add_argument("--no-write", action="store_true", help="do not write benchmarks/*.md/json")
    args = ap.parse_args()
    from bevkd.eval.report import max_abs_difference
    from bevkd.eval.tables import load_json

    key = f"v2-{args.scenes}-{args.samples}-{args.preds}-{args.seed}"  # v2: the faker version
    root = os.path.join(args.work, key)
    results = os.path.join(root, "results.json")
    if not os.path.isfile(os.path.join(root, "done")):
        t0 = time.perf_counter()
        write_dataset(root, args.scenes, args.samples, args.seed)
        write_predictions(root, results, args.preds, args.seed)
        open(os.path.join(root, "done"), "w").close()
        print(f"wrote the dataset and results in {time.perf_counter() - t0:.0f} s")
    sizes = {n: os.path.getsize(os.path.join(root, VERSION, f"{n}.json")) / 2**20
             for n in ("sample_annotation", "sample_data", "ego_pose")}
    sizes["results"] = os.path.getsize(results) / 2**20

    out = os.path.join(root, "bevkd_out")
    cmd = [sys.executable, "-m", "bevkd.cli", "metrics", "--data", root, "--version", VERSION,
           "--split", "val", "--results", results, "--out", out]
    load_before = os.getloadavg()
    first = timed(cmd)  # also compiles the numba kernels if their cache is missing
    ours = timed(cmd)
    print(ours["output"])
    print(f"bevkd metrics: {ours['wall_s']:.1f} s wall, {ours['cpu_s']:.1f} s CPU "
          f"(first run {first['wall_s']:.1f} s)")
    dk_json = os.path.join(root, "devkit.json")
    dk = timed([sys.executable, "-c", DEVKIT, root, VERSION, results,
                os.path.join(root, "devkit_out"), dk_json])
    load_after = os.getloadavg()
    dk_out = load_json(dk_json, "devkit output")
    print(f"devkit: {dk['wall_s']:.1f} s wall, {dk['cpu_s']:.1f} s CPU")
    summary = load_json(os.path.join(out, "metrics.json"), "bevkd output")
    diff, where, n = max_abs_difference(summary, json.loads(json.dumps(dk_out["summary"])))
    counts = next(line for line in ours["output"].splitlines() if "predictions," in line)
    result = {
        "commit": git_commit(),
        "command": f"python benchmarks/metrics_speed.py --scenes {args.scenes} --samples "
                   f"{args.samples} --preds {args.preds} --seed {args.seed}",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "samples": args.scenes * args.samples, "counts": counts.split(";")[0],
        "file_mib": {k: round(v, 1) for k, v in sizes.items()},
        "bevkd_command": "bevkd metrics --data D --version v1.0-trainval --split val "
                         "--results results.json --out OUT",
        "bevkd_wall_s": ours["wall_s"], "bevkd_cpu_s": ours["cpu_s"],
        "bevkd_peak_gib": ours["peak_gib"], "bevkd_first_run_wall_s": first["wall_s"],
        "devkit_wall_s": dk["wall_s"], "devkit_cpu_s": dk["cpu_s"],
        "devkit_peak_gib": dk["peak_gib"],
        "devkit_breakdown_s": {k: dk_out[k] for k in ("import_s", "nuscenes_s", "init_s",
                                                      "evaluate_s")},
        "speedup_wall": dk["wall_s"] / ours["wall_s"], "speedup_cpu": dk["cpu_s"] / ours["cpu_s"],
        "target_speedup": 20.0,
        "max_abs_difference": diff, "max_abs_difference_at": where, "values_compared": n,
        "mean_ap": summary["mean_ap"], "nd_score": summary["nd_score"],
    }
    print(json.dumps(result, indent=2))
    if not args.no_write:
        with open(os.path.join(HERE, "metrics_speed.json"), "w") as f:
            json.dump(result, f, indent=2)
        with open(os.path.join(HERE, "metrics_speed.md"), "w") as f:
            f.write(_markdown(result))


def _markdown(r: dict) -> str:
    b = r["devkit_breakdown_s"]
    same = ("identical (max abs difference 0)" if r["max_abs_difference"] == 0 else
            f"max abs difference {r['max_abs_difference']:.1e} (at "
            f"`{r['max_abs_difference_at']}`; the devkit computes yaw through pyquaternion "
            "matrices, an ulp apart)")
    files = ", ".join(f"{k} {v}" for k, v in r["file_mib"].items())
    load = r["load_average_before_after"]
    return f"""# Detection metrics speed: `bevkd metrics` vs nuscenes-devkit

Command: `{r['command']}`
Commit: `{r['commit']}`; machine: {r['machine']} (shared: load average {load[0]} before,
{load[1]} after, which slows both tools alike).

Data: fake `v1.0-trainval` tables whose 150 scenes carry the real `val` scene names, so both
tools take the predefined-split path: {r['samples']} samples, {r['counts']}. File sizes (MiB):
{files}. The tables have the ~76 sample_data / ego_pose rows per sample of real nuScenes.

Each tool runs in a fresh process on the same files, timed from process start to exit
(imports, table and results parsing included; no ground-truth cache). bevkd ran twice and the
second run is reported (first run {r['bevkd_first_run_wall_s']:.1f} s; on a machine that
never ran it, the first run also compiles the numba kernels, ~8 s once).

| tool | command | wall s | CPU s | peak memory |
|---|---|---|---|---|
| bevkd | `{r['bevkd_command']}` | {r['bevkd_wall_s']:.1f} | {r['bevkd_cpu_s']:.1f} | {r['bevkd_peak_gib']:.1f} GiB |
| nuscenes-devkit 1.2.0 | `NuScenes()` + `DetectionEval()` + `evaluate()` | {r['devkit_wall_s']:.1f} | {r['devkit_cpu_s']:.1f} | {r['devkit_peak_gib']:.1f} GiB |

**Speed-up: {r['speedup_wall']:.1f}x wall, {r['speedup_cpu']:.1f}x CPU** (target >= {r['target_speedup']:.0f}x).

Devkit breakdown: imports {b['import_s']:.1f} s, `NuScenes()` {b['nuscenes_s']:.1f} s,
`DetectionEval()` (load results and GT, filter) {b['init_s']:.1f} s, `evaluate()`
{b['evaluate_s']:.1f} s.

Numbers: {same} over all {r['values_compared']} values of `metrics_summary.json`
(mAP {r['mean_ap']:.6f}, NDS {r['nd_score']:.6f}).
"""


if __name__ == "__main__":
    main()

"""Generate one SynthScenes scene: world, sensor data files and its rows of the nuScenes tables.

Timing follows nuScenes: key frames (samples) at 2 Hz, LiDAR sweeps at 20 Hz (9 non-key sweeps
between key frames, plus 9 lead-in sweeps before the first key frame so that every sample has a
full 10-sweep history). Cameras are rendered at key frames only, at the key frame's timestamp
(real nuScenes cameras fire a few ms off the LiDAR; here images and boxes are exactly in sync).
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from PIL import Image

from ...structures.boxes import Boxes3D
from ...structures.geometry import make_transform, matrix_to_quat, rot_z
from .catalog import visibility_token
from .raycast import cast_lidar, render_camera
from ...structures.classes import LIDAR_CHANNEL
from .sensors import CameraSpec, LidarSpec, build_rig
from .world import World, WorldSpec, generate_world

KEY_DT = 0.5          # seconds between key frames
SWEEP_DT = 0.05       # seconds between LiDAR sweeps
ANNOTATION_RANGE = 70.0
RENDER_RADIUS = 130.0
TIME_BASE_US = 1_600_000_000_000_000


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines a SynthScenes dataset (same config => identical files)."""

    out: str
    scenes: int = 10
    samples_per_scene: int = 20
    seed: int = 0
    width: int = 800
    height: int = 450
    sweeps: int = 10                   # LiDAR sweeps per key frame, key sweep included
    val_fraction: float = 0.2
    workers: int = 0                   # 0: one per CPU core
    jpeg_quality: int = 92
    image_noise: float = 2.5           # sensor noise std in 8-bit levels
    debug_maps: bool = False           # also write per-pixel object ids (tests, debugging)
    version: str = "v1.0-synth"
    world: WorldSpec = field(default_factory=WorldSpec)


def token(*parts: Any) -> str:
    """Deterministic 32-hex token (nuScenes tokens have that shape)."""
    return hashlib.md5("/".join(str(p) for p in parts).encode()).hexdigest()


def _pose_record(tok: str, timestamp: int, global_T_x: np.ndarray) -> dict:
    return {"token": tok, "timestamp": timestamp,
            "rotation": [float(v) for v in matrix_to_quat(global_T_x[:3, :3])],
            "translation": [float(v) for v in global_T_x[:3, 3]]}


@dataclass
class SceneResult:
    """Rows this scene adds to each table, keyed by table name."""

    tables: dict[str, list[dict]]
    name: str


class SceneGenerator:
    """Generates scene ``index`` of the dataset described by ``cfg``."""

    def __init__(self, cfg: SynthConfig, index: int):
        self.cfg, self.index = cfg, index
        self.name = f"scene-{index:04d}"
        self.rng = np.random.default_rng([cfg.seed, index])
        duration = KEY_DT * (cfg.samples_per_scene - 1)
        self.world: World = generate_world(self.rng, duration, cfg.world)
        self.cams, self.lidar = build_rig(cfg.width, cfg.height, self.rng)
        self.log_token = token(cfg.seed, self.name, "log")
        self.tables: dict[str, list[dict]] = {k: [] for k in (
            "log", "scene", "sample", "sample_data", "ego_pose", "calibrated_sensor",
            "instance", "sample_annotation", "map")}
        self.cs_tokens = {c.channel: token(cfg.seed, self.name, "cs", c.channel) for c in self.cams}
        self.cs_tokens[LIDAR_CHANNEL] = token(cfg.seed, self.name, "cs", LIDAR_CHANNEL)
        self.log_name = f"synth-s{cfg.seed}-{self.name}"

    # ------------------------------------------------------------------ helpers
    def _frame_rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.cfg.seed, self.index, *key])

    def _timestamp(self, t: float) -> int:
        return TIME_BASE_US + self.index * 10**9 + int(round(t * 1e6))

    def global_T_ego(self, t: float) -> np.ndarray:
        pos, yaw = self.world.ego_pose(t)
        return make_transform(rot_z(np.array(yaw)), pos)

    # ------------------------------------------------------------------ sensors
    def render_cameras(self, t: float, frame: int) -> list[dict]:
        """Render all cameras at time t. Returns per camera: image (H, W, 3) uint8, obj_id,
        depth; plus the per-object visible / total pixel counts of the primary parts."""
        g_T_e = self.global_T_ego(t)
        prims = self.world.primitives(t, g_T_e[:3, 3], RENDER_RADIUS)
        n_obj = len(self.world.objects)
        vis_total = np.zeros(n_obj, np.int64)
        vis_visible = np.zeros(n_obj, np.int64)
        out = []
        for ci, cam in enumerate(self.cams):
            g_T_c = g_T_e @ cam.ego_T_cam
            H, W = cam.height, cam.width
            rgb = np.empty((H, W, 3), np.float32)
            obj = np.empty((H, W), np.int32)
            depth = np.empty((H, W), np.float32)
            K = cam.pix_T_cam
            render_camera(np.ascontiguousarray(g_T_c[:3, 3]), np.ascontiguousarray(g_T_c[:3, :3]),
                          K[0, 0], K[1, 1], K[0, 2], K[1, 2], W, H, prims,
                          self.world.layout.pack(), self.world.light, rgb, obj, depth,
                          vis_total, vis_visible)
            noise = self._frame_rng(frame, 100 + ci).standard_normal((H, W, 3), np.float32)
            img = np.clip(rgb * 255.0 + self.cfg.image_noise * noise, 0, 255).astype(np.uint8)
            out.append({"image": img, "obj_id": obj, "depth": depth})
        return out, vis_visible, vis_total

    def cast_sweep(self, t: float, sweep_id: int) -> tuple[np.ndarray, np.ndarray]:
        """One LiDAR sweep at time t: points (M, 5) float32 in the LIDAR_TOP frame and the
        world object index each point hit, (M,) int32 (-1 for the ground)."""
        lid: LidarSpec = self.lidar
        g_T_l = self.global_T_ego(t) @ lid.ego_T_lidar
        prims = self.world.primitives(t, g_T_l[:3, 3], lid.max_range)
        rng = self._frame_rng(sweep_id, 7)
        shape = (lid.beams, lid.azimuth_steps)
        drop_u = rng.random(shape)
        noise_n = rng.standard_normal(shape)
        inten_n = rng.standard_normal(shape)
        pts = np.empty((lid.beams * lid.azimuth_steps, 5), np.float64)
        obj = np.empty(lid.beams * lid.azimuth_steps, np.int32)
        n = cast_lidar(np.ascontiguousarray(g_T_l[:3, 3]), np.ascontiguousarray(g_T_l[:3, :3]),
                       lid.elevations, lid.azimuth_steps, lid.max_range, prims,
                       self.world.layout.pack(), drop_u, noise_n, inten_n, lid.noise_sigma,
                       lid.noise_clip, lid.drop_base, lid.drop_far, pts, obj)
        return pts[:n].astype(np.float32), obj[:n]

    # ------------------------------------------------------------------ writing
    def _write(self, rel: str, data: bytes) -> None:
        path = os.path.join(self.cfg.out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)

    def _jpeg(self, img: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=self.cfg.jpeg_quality)
        return buf.getvalue()

    def run(self, on_sample: Callable[[], None] | None = None) -> SceneResult:
        cfg = self.cfg
        K = cfg.samples_per_scene
        sample_tokens = [token(cfg.seed, self.name, "sample", k) for k in range(K)]
        self._static_records()
        # LiDAR sweep schedule: (time, key frame index or -1, nearest sample index)
        n_lead = cfg.sweeps - 1
        per_gap = round(KEY_DT / SWEEP_DT) - 1
        sweep_times = []
        for j in range(n_lead, 0, -1):
            sweep_times.append((-j * SWEEP_DT, -1, 0))
        for k in range(K):
            sweep_times.append((k * KEY_DT, k, k))
            if k < K - 1:
                for j in range(1, per_gap + 1):
                    t = k * KEY_DT + j * SWEEP_DT
                    sweep_times.append((t, -1, k if j * SWEEP_DT < KEY_DT / 2 else k + 1))
        cam_chains: dict[str, list[str]] = {c.channel: [] for c in self.cams}
        lidar_chain: list[str] = []
        ann_rows: dict[int, list[dict]] = {}   # object index -> its annotation rows in order
        si = 0
        for k in range(K):
            t_k = k * KEY_DT
            ts_k = self._timestamp(t_k)
            # LiDAR sweeps up to and including this key frame
            key_points = key_obj = None
            while si < len(sweep_times) and sweep_times[si][0] <= t_k + 1e-9:
                t, key_idx, near = sweep_times[si]
                pts, obj = self.cast_sweep(t, si)
                ts = self._timestamp(t)
                is_key = key_idx >= 0
                folder = "samples" if is_key else "sweeps"
                rel = f"{folder}/{LIDAR_CHANNEL}/{self.log_name}__{LIDAR_CHANNEL}__{ts}.pcd.bin"
                self._write(rel, pts.tobytes())
                sd_tok = token(cfg.seed, self.name, "sd", LIDAR_CHANNEL, si)
                self._sample_data(sd_tok, sample_tokens[near], LIDAR_CHANNEL, ts, t, "pcd", is_key,
                                  rel, 0, 0)
                lidar_chain.append(sd_tok)
                if is_key:
                    key_points, key_obj = pts, obj
                si += 1
            # cameras at the key frame
            renders, vis_visible, vis_total = self.render_cameras(t_k, k)
            for cam, r in zip(self.cams, renders):
                rel = f"samples/{cam.channel}/{self.log_name}__{cam.channel}__{ts_k}.jpg"
                self._write(rel, self._jpeg(r["image"]))
                sd_tok = token(cfg.seed, self.name, "sd", cam.channel, k)
                self._sample_data(sd_tok, sample_tokens[k], cam.channel, ts_k, t_k, "jpg", True,
                                  rel, cam.width, cam.height)
                cam_chains[cam.channel].append(sd_tok)
            self._annotate(k, sample_tokens[k], t_k, key_points, vis_visible, vis_total, ann_rows)
            if cfg.debug_maps:
                self._write_debug(sample_tokens[k], renders, key_obj)
            self.tables["sample"].append({
                "token": sample_tokens[k], "timestamp": ts_k, "scene_token": self.scene_token,
                "prev": sample_tokens[k - 1] if k > 0 else "",
                "next": sample_tokens[k + 1] if k < K - 1 else ""})
            if on_sample is not None:
                on_sample()
        for chain in [lidar_chain, *cam_chains.values()]:
            _link(self._sd_by_token, chain)
        self._instances(ann_rows)
        self.tables["scene"].append({
            "token": self.scene_token, "log_token": self.log_token, "nbr_samples": K,
            "first_sample_token": sample_tokens[0], "last_sample_token": sample_tokens[-1],
            "name": self.name, "description": self._description()})
        return SceneResult(self.tables, self.name)

    # ------------------------------------------------------------------ tables
    @property
    def scene_token(self) -> str:
        return token(self.cfg.seed, self.name, "scene")

    def _description(self) -> str:
        w = self.world
        return (f"SynthScenes seed {self.cfg.seed}: {w.layout.lanes_per_dir} lane(s) each way, "
                f"{len(w.layout.cross_u)} cross street(s), ego {w.ego_speed:.1f} m/s")

    def _static_records(self) -> None:
        self._sd_by_token: dict[str, dict] = {}
        self.tables["log"].append({"token": self.log_token, "logfile": self.log_name,
                                   "vehicle": "synth-ego", "date_captured": "2026-01-01",
                                   "location": "synth-city"})
        self.tables["map"].append({"token": token(self.cfg.seed, self.name, "map"),
                                   "log_tokens": [self.log_token], "category": "semantic_prior",
                                   "filename": f"maps/{token(self.cfg.seed, self.name, 'map')}.png"})
        cams: list[CameraSpec] = self.cams
        for cam in cams:
            rec = _pose_record(self.cs_tokens[cam.channel], 0, cam.ego_T_cam)
            del rec["timestamp"]
            rec["sensor_token"] = token("sensor", cam.channel)
            rec["camera_intrinsic"] = cam.pix_T_cam.tolist()
            self.tables["calibrated_sensor"].append(rec)
        rec = _pose_record(self.cs_tokens[LIDAR_CHANNEL], 0, self.lidar.ego_T_lidar)
        del rec["timestamp"]
        rec["sensor_token"] = token("sensor", LIDAR_CHANNEL)
        rec["camera_intrinsic"] = []
        self.tables["calibrated_sensor"].append(rec)

    def _sample_data(self, tok: str, sample_tok: str, channel: str, ts: int, t: float, fmt: str,
                     is_key: bool, rel: str, width: int, height: int) -> None:
        # nuScenes has one ego_pose per sample_data, sharing its token
        self.tables["ego_pose"].append(_pose_record(tok, ts, self.global_T_ego(t)))
        rec = {"token": tok, "sample_token": sample_tok, "ego_pose_token": tok,
               "calibrated_sensor_token": self.cs_tokens[channel], "timestamp": ts,
               "fileformat": fmt, "is_key_frame": is_key, "height": height, "width": width,
               "filename": rel, "prev": "", "next": ""}
        self.tables["sample_data"].append(rec)
        self._sd_by_token[tok] = rec

    def _annotate(self, k: int, sample_tok: str, t: float, key_points_lidar: np.ndarray,
                  vis_visible: np.ndarray, vis_total: np.ndarray,
                  ann_rows: dict[int, list[dict]]) -> None:
        """Annotation rows of the labeled objects in range at key frame k."""
        w = self.world
        labeled = w.labeled
        poses = w.poses(t)[labeled]
        ego = w.ego_pose(t)[0]
        in_range = np.hypot(poses[:, 0] - ego[0], poses[:, 1] - ego[1]) < ANNOTATION_RANGE
        objs = labeled[in_range]
        poses = poses[in_range]
        if len(objs) == 0:
            return
        lwh = np.stack([w.objects[i].lwh for i in objs])
        boxes = Boxes3D(np.concatenate([poses[:, :3], lwh, poses[:, 3:4], np.zeros((len(objs), 2))],
                                       axis=1))
        g_T_l = self.global_T_ego(t) @ self.lidar.ego_T_lidar
        pts_global = key_points_lidar[:, :3].astype(np.float64) @ g_T_l[:3, :3].T + g_T_l[:3, 3]
        counts = boxes.count_points(pts_global)
        translation, size_wlh, rotation, _ = boxes.to_nuscenes()
        for j, oi in enumerate(objs):
            o = w.objects[oi]
            total = vis_total[oi]
            frac = vis_visible[oi] / total if total > 0 else 0.0
            tok = token(self.cfg.seed, self.name, "ann", int(oi), k)
            attrs = [token("attribute", o.attribute)] if o.attribute else []
            ann_rows.setdefault(int(oi), []).append({
                "token": tok, "sample_token": sample_tok,
                "instance_token": token(self.cfg.seed, self.name, "instance", int(oi)),
                "visibility_token": visibility_token(frac), "attribute_tokens": attrs,
                "translation": [float(v) for v in translation[j]],
                "size": [float(v) for v in size_wlh[j]],
                "rotation": [float(v) for v in rotation[j]],
                "prev": "", "next": "", "num_lidar_pts": int(counts[j]), "num_radar_pts": 0})

    def _instances(self, ann_rows: dict[int, list[dict]]) -> None:
        for oi in sorted(ann_rows):
            rows = ann_rows[oi]
            # An instance is annotated from its first to its last key frame in range; an object
            # that drifts out and back in stays one track with a gap, as in nuScenes.
            for a, b in zip(rows[:-1], rows[1:]):
                a["next"], b["prev"] = b["token"], a["token"]
            self.tables["sample_annotation"].extend(rows)
            o = self.world.objects[oi]
            self.tables["instance"].append({
                "token": rows[0]["instance_token"], "category_token": token("category", o.category),
                "nbr_annotations": len(rows), "first_annotation_token": rows[0]["token"],
                "last_annotation_token": rows[-1]["token"]})

    def _write_debug(self, sample_tok: str, renders: list[dict], key_obj: np.ndarray) -> None:
        """Per-pixel object ids and per-point object ids, with the instance token of each
        labeled object: what the tests use to tie sensor data to labels."""
        inst = {int(i): token(self.cfg.seed, self.name, "instance", int(i)) for i in self.world.labeled}
        buf = io.BytesIO()
        np.savez_compressed(
            buf, obj_id=np.stack([r["obj_id"] for r in renders]),
            depth=np.stack([r["depth"] for r in renders]), point_obj=key_obj,
            object_index=np.array(sorted(inst), np.int64),
            instance_token=np.array([inst[i] for i in sorted(inst)]))
        self._write(f"synth_debug/{sample_tok}.npz", buf.getvalue())


def _link(sd_by_token: dict[str, dict], chain: list[str]) -> None:
    for a, b in zip(chain[:-1], chain[1:]):
        sd_by_token[a]["next"], sd_by_token[b]["prev"] = b, a


"""The SynthScenes sensor rig: six nuScenes cameras and a 32-beam LIDAR_TOP.

Mounting positions follow the nuScenes Renault Zoe (metres, ego frame: x forward, y left, z up).
Field of view is ~70 deg for five cameras and ~110 deg for CAM_BACK, as on the real car. Each log
gets its own small calibration jitter (a real fleet is never calibrated identically), so camera
extrinsics carry roll and pitch and code downstream cannot assume yaw-only rotations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...structures.classes import CAMERA_CHANNELS
from ...structures.geometry import make_transform, rot_z


# channel: (x, y, z, yaw in degrees, horizontal field of view in degrees)
_CAMERA_MOUNTS: dict[str, tuple[float, float, float, float, float]] = {
    "CAM_FRONT_LEFT": (1.52, 0.49, 1.51, 55.0, 70.0),
    "CAM_FRONT": (1.70, 0.016, 1.51, 0.0, 70.0),
    "CAM_FRONT_RIGHT": (1.55, -0.49, 1.50, -55.0, 70.0),
    "CAM_BACK_LEFT": (1.03, 0.48, 1.56, 110.0, 70.0),
    "CAM_BACK": (0.03, 0.0, 1.57, 180.0, 110.0),
    "CAM_BACK_RIGHT": (1.04, -0.48, 1.56, -110.0, 70.0),
}
_LIDAR_MOUNT = (0.943713, 0.0, 1.84023)


@dataclass(frozen=True)
class CameraSpec:
    """One calibrated camera: ``ego_T_cam`` (4, 4) and intrinsics ``pix_T_cam`` (3, 3)."""

    channel: str
    ego_T_cam: np.ndarray
    pix_T_cam: np.ndarray
    width: int
    height: int


@dataclass(frozen=True)
class LidarSpec:
    """A spinning multi-beam LiDAR (defaults: Velodyne HDL-32E at 20 Hz as on nuScenes)."""

    ego_T_lidar: np.ndarray
    beams: int = 32
    elevation_min_deg: float = -30.67
    elevation_max_deg: float = 10.67
    azimuth_steps: int = 1084
    max_range: float = 80.0
    noise_sigma: float = 0.015
    noise_clip: float = 0.03       # < parts margin: returns from an object stay inside its box
    drop_base: float = 0.03
    drop_far: float = 0.6

    @property
    def elevations(self) -> np.ndarray:
        """(beams,) elevation of each ring in radians, ring 0 lowest."""
        return np.deg2rad(np.linspace(self.elevation_min_deg, self.elevation_max_deg, self.beams))


def _cam_rotation(yaw_deg: float, jitter: np.ndarray) -> np.ndarray:
    """``ego_R_cam`` for a camera looking along ego yaw ``yaw_deg`` (camera x right, y down)."""
    # columns: camera x (right), y (down), z (forward) in the ego frame at yaw 0
    base = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    roll, pitch, dyaw = jitter
    cr, sr, cp, sp = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch)
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    return rot_z(np.deg2rad(yaw_deg) + dyaw) @ ry @ rx @ base


def build_rig(width: int, height: int, rng: np.random.Generator | None = None,
              jitter_deg: float = 0.4) -> tuple[list[CameraSpec], LidarSpec]:
    """Cameras (BEVDepth order) and LiDAR; ``rng`` adds per-log calibration jitter."""
    cams = []
    for ch in CAMERA_CHANNELS:
        x, y, z, yaw, fov = _CAMERA_MOUNTS[ch]
        jit = np.zeros(3) if rng is None else np.deg2rad(jitter_deg) * rng.standard_normal(3)
        ego_T_cam = make_transform(_cam_rotation(yaw, jit), np.array([x, y, z]))
        f = (width / 2.0) / np.tan(np.deg2rad(fov) / 2.0)
        pix_T_cam = np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])
        cams.append(CameraSpec(ch, ego_T_cam, pix_T_cam, width, height))
    # nuScenes LIDAR_TOP: x to the right, y forward (a -90 deg yaw about the ego z axis)
    lidar = LidarSpec(make_transform(rot_z(np.array(-np.pi / 2)), np.array(_LIDAR_MOUNT)))
    return cams, lidar

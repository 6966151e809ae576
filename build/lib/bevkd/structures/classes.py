"""nuScenes names: detection classes, CenterHead task groups, sensor channels (DESIGN §2)."""

from __future__ import annotations

# devkit order (nuscenes.eval.detection.constants.DETECTION_NAMES); labels index this tuple
DETECTION_CLASSES: tuple[str, ...] = (
    "car", "truck", "bus", "trailer", "construction_vehicle",
    "pedestrian", "motorcycle", "bicycle", "traffic_cone", "barrier",
)

# CenterHead task groups as BEVDepth
TASK_GROUPS: tuple[tuple[str, ...], ...] = (
    ("car",), ("truck", "construction_vehicle"), ("bus", "trailer"), ("barrier",),
    ("motorcycle", "bicycle"), ("pedestrian", "traffic_cone"),
)

CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(DETECTION_CLASSES)}

# The six nuScenes cameras in BEVDepth order, and the LiDAR channel.
CAMERA_CHANNELS: tuple[str, ...] = (
    "CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT",
)
LIDAR_CHANNEL = "LIDAR_TOP"

"""The nuScenes detection classes and the CenterHead task groups (DESIGN §2)."""

from __future__ import annotations

# devkit order (nuscenes.eval.detection.constants.DETECTION_NAMES); labels index this tuple
DETECTION_CLASSES: tuple[str, ...] = (
    "car", "truck", "construction_vehicle", "bus", "trailer",
    "barrier", "motorcycle", "bicycle", "pedestrian", "traffic_cone",
)

# CenterHead task groups as BEVDepth
TASK_GROUPS: tuple[tuple[str, ...], ...] = (
    ("car",), ("truck", "construction_vehicle"), ("bus", "trailer"), ("barrier",),
    ("motorcycle", "bicycle"), ("pedestrian", "traffic_cone"),
)

CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(DETECTION_CLASSES)}

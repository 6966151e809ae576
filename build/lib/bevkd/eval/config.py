"""The ``detection_cvpr_2019`` benchmark settings and the nuScenes detection vocabulary.

Copied from nuscenes-devkit 1.2.0 (``eval/detection/configs/detection_cvpr_2019.json``,
``eval/detection/constants.py``, ``eval/detection/utils.py``) so that importing the metrics
does not import the devkit (whose package import alone takes ~1 s); a test checks that the
copies equal the devkit's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Class order of the benchmark config: every per-class table and JSON key follows it. (It
# differs from bevkd.structures.classes.DETECTION_CLASSES, the model's label order.)
EVAL_CLASSES: tuple[str, ...] = (
    "car", "truck", "bus", "trailer", "construction_vehicle",
    "pedestrian", "motorcycle", "bicycle", "traffic_cone", "barrier",
)

ATTRIBUTE_NAMES: tuple[str, ...] = (
    "pedestrian.moving", "pedestrian.sitting_lying_down", "pedestrian.standing",
    "cycle.with_rider", "cycle.without_rider", "vehicle.moving", "vehicle.parked",
    "vehicle.stopped",
)

TP_METRICS: tuple[str, ...] = ("trans_err", "scale_err", "orient_err", "vel_err", "attr_err")

# The devkit's printout names of the mean TP errors.
TP_SHORT_NAMES: dict[str, str] = {"trans_err": "mATE", "scale_err": "mASE", "orient_err": "mAOE",
                                  "vel_err": "mAVE", "attr_err": "mAAE"}

# category_to_detection_name: general nuScenes category -> detection class.
CATEGORY_TO_CLASS: dict[str, str] = {
    "movable_object.barrier": "barrier",
    "vehicle.bicycle": "bicycle",
    "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus",
    "vehicle.car": "car",
    "vehicle.construction": "construction_vehicle",
    "vehicle.motorcycle": "motorcycle",
    "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian",
    "movable_object.trafficcone": "traffic_cone",
    "vehicle.trailer": "trailer",
    "vehicle.truck": "truck",
}

BIKE_RACK_CATEGORY = "static_object.bicycle_rack"
# Boxes of these classes whose centre lies in a bike rack are dropped (GT and predictions).
RACK_FILTERED_CLASSES: tuple[str, ...] = ("bicycle", "motorcycle")

_VEHICLE_ATTRS = ("vehicle.moving", "vehicle.parked", "vehicle.stopped")
_CYCLE_ATTRS = ("cycle.with_rider", "cycle.without_rider")
# detection_name_to_rel_attributes: the attributes a class may carry ('' is always allowed).
CLASS_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "car": _VEHICLE_ATTRS, "truck": _VEHICLE_ATTRS, "bus": _VEHICLE_ATTRS,
    "trailer": _VEHICLE_ATTRS, "construction_vehicle": _VEHICLE_ATTRS,
    "pedestrian": ("pedestrian.moving", "pedestrian.sitting_lying_down", "pedestrian.standing"),
    "motorcycle": _CYCLE_ATTRS, "bicycle": _CYCLE_ATTRS,
    "traffic_cone": (), "barrier": (),
}

# TP metrics the devkit sets to NaN for a class (DetectionEval.evaluate): cones have no
# orientation, velocity or attribute; barriers no velocity or attribute.
EXCLUDED_TP: dict[str, tuple[str, ...]] = {
    "traffic_cone": ("attr_err", "vel_err", "orient_err"),
    "barrier": ("attr_err", "vel_err"),
}

# The predefined nuScenes splits (keys of nuscenes.utils.splits.create_splits_scenes()) and
# the table version each requires (load_gt's compatibility check).
PREDEFINED_SPLITS: dict[str, str] = {
    "train": "trainval", "val": "trainval", "train_detect": "trainval",
    "train_track": "trainval", "mini_train": "mini", "mini_val": "mini", "test": "test",
}


def _cvpr_2019_range() -> dict[str, float]:
    return {"car": 50, "truck": 50, "bus": 50, "trailer": 50, "construction_vehicle": 50,
            "pedestrian": 40, "motorcycle": 40, "bicycle": 40, "traffic_cone": 30, "barrier": 30}


@dataclass(frozen=True)
class DetectionConfig:
    """Settings of a nuScenes detection benchmark (the devkit's ``DetectionConfig``).

    ``class_range`` keys define the class order of every table (``EVAL_CLASSES``).
    """

    class_range: dict[str, float] = field(default_factory=_cvpr_2019_range)
    dist_fcn: str = "center_distance"
    dist_ths: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    dist_th_tp: float = 2.0
    min_recall: float = 0.1
    min_precision: float = 0.1
    max_boxes_per_sample: int = 500
    mean_ap_weight: int = 5

    def __post_init__(self) -> None:
        if tuple(sorted(self.class_range)) != tuple(sorted(EVAL_CLASSES)):
            raise ValueError(f"class_range must have the 10 detection classes, got "
                             f"{sorted(self.class_range)}")
        if self.dist_th_tp not in self.dist_ths:
            raise ValueError(f"dist_th_tp {self.dist_th_tp} must be one of dist_ths {self.dist_ths}")
        if self.dist_fcn != "center_distance":
            raise ValueError(f"only center_distance matching is implemented, got {self.dist_fcn!r}")

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.class_range)

    def serialize(self) -> dict[str, Any]:
        """The ``cfg`` entry of ``metrics_summary.json`` (same keys and order as the devkit)."""
        return {
            "class_range": dict(self.class_range),
            "dist_fcn": self.dist_fcn,
            "dist_ths": list(self.dist_ths),
            "dist_th_tp": self.dist_th_tp,
            "min_recall": self.min_recall,
            "min_precision": self.min_precision,
            "max_boxes_per_sample": self.max_boxes_per_sample,
            "mean_ap_weight": self.mean_ap_weight,
        }


CVPR_2019 = DetectionConfig()

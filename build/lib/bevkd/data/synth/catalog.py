"""What SynthScenes can put into a world: object classes, their nuScenes categories, sizes,
frequencies, colours and attributes, and the nuScenes reference tables (visibility, attribute).

Sizes are means and relative spreads of the nuScenes train annotations (`[l, w, h]` here, the
dataset's `size` field is `[w, l, h]`). Frequencies are only used to order the classes the way
nuScenes does (cars most, then pedestrians, barriers, cones, trucks ...); the world places
objects where they belong (vehicles in lanes, pedestrians on sidewalks, barriers in work zones)
so the realised counts come from the layout, not from a flat draw.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClassSpec:
    """One kind of object SynthScenes can draw."""

    category: str                      # nuScenes category name (annotation `category_name`)
    lwh: tuple[float, float, float]    # mean [l, w, h] in metres
    spread: float                      # relative std of the size
    palette: tuple[tuple[int, int, int], ...]  # body colours, one is drawn per instance
    reflectivity: float                # LiDAR material reflectivity in [0, 1]


_CAR_PAINT = ((200, 200, 205), (30, 30, 35), (150, 20, 25), (20, 50, 120), (120, 125, 130),
              (230, 230, 225), (60, 90, 60), (180, 140, 40))

CLASSES: dict[str, ClassSpec] = {
    "car": ClassSpec("vehicle.car", (4.62, 1.95, 1.73), 0.08, _CAR_PAINT, 0.55),
    "truck": ClassSpec("vehicle.truck", (6.94, 2.52, 2.84), 0.15,
                       ((220, 220, 220), (40, 80, 150), (200, 120, 30), (90, 90, 95)), 0.5),
    "construction_vehicle": ClassSpec("vehicle.construction", (6.37, 2.73, 3.19), 0.12,
                                      ((235, 180, 20), (220, 120, 20)), 0.6),
    "bus": ClassSpec("vehicle.bus.rigid", (11.1, 2.94, 3.47), 0.06,
                     ((200, 40, 40), (230, 230, 230), (40, 120, 60)), 0.5),
    "trailer": ClassSpec("vehicle.trailer", (12.3, 2.90, 3.87), 0.12,
                         ((210, 210, 210), (150, 150, 155), (120, 60, 40)), 0.45),
    "barrier": ClassSpec("movable_object.barrier", (0.48, 2.49, 0.99), 0.05,
                         ((220, 40, 30), (240, 240, 240)), 0.9),
    "motorcycle": ClassSpec("vehicle.motorcycle", (2.11, 0.77, 1.47), 0.08,
                            ((20, 20, 20), (180, 30, 30), (40, 40, 160)), 0.5),
    "bicycle": ClassSpec("vehicle.bicycle", (1.70, 0.60, 1.28), 0.06,
                         ((30, 30, 30), (40, 90, 170), (170, 170, 170)), 0.4),
    "pedestrian": ClassSpec("human.pedestrian.adult", (0.73, 0.67, 1.77), 0.07,
                            ((40, 40, 60), (150, 30, 30), (30, 90, 140), (200, 190, 160),
                             (70, 110, 60), (20, 20, 20)), 0.35),
    "traffic_cone": ClassSpec("movable_object.trafficcone", (0.41, 0.41, 1.07), 0.08,
                              ((250, 110, 20),), 0.95),
}

# Annotated but not a detection class: the devkit drops these from the detection GT
# (and uses bicycle racks to filter parked bicycles), so our readers must too.
BICYCLE_RACK = "static_object.bicycle_rack"
DEBRIS = "movable_object.debris"
EXTRA_CATEGORIES: tuple[str, ...] = (BICYCLE_RACK, DEBRIS)

CATEGORY_DESCRIPTIONS: dict[str, str] = {
    "vehicle.car": "Vehicle designed primarily for personal use.",
    "vehicle.truck": "Vehicles primarily designed to haul cargo.",
    "vehicle.construction": "Vehicles primarily designed for construction.",
    "vehicle.bus.rigid": "Rigid bus.",
    "vehicle.trailer": "Any vehicle trailer.",
    "movable_object.barrier": "Temporary road barrier placed in the scene.",
    "vehicle.motorcycle": "Gasoline or electric powered 2-wheeled vehicle.",
    "vehicle.bicycle": "Human or electric powered 2-wheeled vehicle.",
    "human.pedestrian.adult": "Adult subcategory.",
    "movable_object.trafficcone": "All types of traffic cone.",
    BICYCLE_RACK: "Area or device intended to park or secure the bicycles in a row.",
    DEBRIS: "Movable object that is left on the driveable surface.",
}

# nuScenes attribute table (names and descriptions as in v1.0).
ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("vehicle.moving", "Vehicle is moving."),
    ("vehicle.stopped", "Vehicle, with a driver/rider in/on it, is currently stationary."),
    ("vehicle.parked", "Vehicle is stationary (usually for longer duration) with no driver."),
    ("cycle.with_rider", "There is a rider on the bicycle or motorcycle."),
    ("cycle.without_rider", "There is NO rider on the bicycle or motorcycle."),
    ("pedestrian.sitting_lying_down", "The human is sitting or lying down."),
    ("pedestrian.standing", "The human is standing."),
    ("pedestrian.moving", "The human is moving."),
)

# nuScenes visibility table: fraction of the annotation visible in all 6 images.
VISIBILITY_LEVELS: tuple[tuple[str, str, float], ...] = (
    ("1", "v0-40", 0.4),
    ("2", "v40-60", 0.6),
    ("3", "v60-80", 0.8),
    ("4", "v80-100", 1.01),
)


def visibility_token(fraction: float) -> str:
    """Token of the visibility bin of a visible fraction in [0, 1]."""
    for token, _, upper in VISIBILITY_LEVELS:
        if fraction < upper:
            return token
    return VISIBILITY_LEVELS[-1][0]

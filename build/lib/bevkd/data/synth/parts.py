"""Object shapes: each object is drawn as a few oriented boxes ("parts") inside its annotation box.

A part is one row of ``PART_FIELDS`` in the object's local frame (x along the length, y along
the width, z up, origin at the annotation box centre). Parts stay at least ``margin`` inside the
annotation box, so that every LiDAR return from the object, range noise included, lies inside
its label (`LidarSpec.noise_clip` is smaller than the margin). The first part is the *primary*
part: it contains the box centre, and the renderer uses it to measure visibility.
"""

from __future__ import annotations

import numpy as np

# Columns of a part row.
PART_FIELDS = ("cx", "cy", "cz", "hx", "hy", "hz", "r", "g", "b", "refl", "pattern")
N_PART_FIELDS = len(PART_FIELDS)

# Surface patterns the renderer knows (see raycast.shade_pattern).
PLAIN, WINDOWS, STRIPES_Y, FACADE, STRIPES_Z, GLASS_ROOF, FOLIAGE = range(7)

GLASS = (45, 55, 70)
TYRE = (25, 25, 25)
SKIN = (205, 160, 130)
METAL = (140, 140, 145)


def _rgb(c: tuple[int, int, int]) -> tuple[float, float, float]:
    return (c[0] / 255.0, c[1] / 255.0, c[2] / 255.0)


class _Builder:
    """Collects parts given as extents in fractions of the annotation box."""

    def __init__(self, lwh: np.ndarray, margin: float):
        self.l, self.w, self.h = (float(v) for v in lwh)
        # The margin never eats more than 15 % of a dimension, so small objects stay visible.
        self.mx = min(margin, 0.15 * self.l)
        self.my = min(margin, 0.15 * self.w)
        self.mz = min(margin, 0.15 * self.h)
        self.rows: list[list[float]] = []

    def add(self, x0: float, x1: float, y0: float, y1: float, z0: float, z1: float,
            color: tuple[int, int, int], refl: float, pattern: int = PLAIN) -> None:
        """Add a part spanning fractions [x0, x1] x [y0, y1] x [z0, z1] of the box (0..1)."""
        lo = np.array([-self.l / 2 + self.mx, -self.w / 2 + self.my, -self.h / 2 + self.mz])
        hi = -lo
        size = hi - lo
        a = lo + size * np.array([x0, y0, z0])
        b = lo + size * np.array([x1, y1, z1])
        c, half = (a + b) / 2, (b - a) / 2
        self.rows.append([*c, *half, *_rgb(color), refl, float(pattern)])

    def array(self) -> np.ndarray:
        return np.asarray(self.rows, dtype=np.float64)


def build_parts(kind: str, lwh: np.ndarray, color: tuple[int, int, int], refl: float,
                rng: np.random.Generator, margin: float, rider: bool = False) -> np.ndarray:
    """Parts ``(K, N_PART_FIELDS)`` of one object of detection class (or extra kind) ``kind``.

    Args:
        kind: a detection class name, or "bicycle_rack", "debris".
        lwh: annotation box size ``[l, w, h]``.
        color: the instance's body colour.
        refl: LiDAR reflectivity of the body.
        rng: draws secondary colours (clothes, rider).
        margin: minimum distance between parts and the annotation box faces.
        rider: cycles only: draw a rider on top.
    """
    p = _Builder(lwh, margin)
    if kind == "car":
        p.add(0, 1, 0, 1, 0.12, 0.55, color, refl)                    # body (primary)
        p.add(0.22, 0.72, 0.04, 0.96, 0.55, 1.0, color, 0.3, GLASS_ROOF)  # cabin
        _wheels(p, 0.12)
    elif kind in ("truck", "construction_vehicle"):
        p.add(0, 0.72, 0, 1, 0.12, 1.0, color, refl)                  # cargo / body (primary)
        p.add(0.74, 1, 0.03, 0.97, 0.12, 0.88, (225, 225, 225) if kind == "truck" else color,
              refl, WINDOWS)                                          # cab
        if kind == "construction_vehicle":                            # boom
            p.add(0.1, 0.65, 0.4, 0.6, 0.9, 1.0, (60, 60, 60), 0.4)
        _wheels(p, 0.12)
    elif kind == "bus":
        p.add(0, 1, 0, 1, 0.08, 1.0, color, refl, WINDOWS)
        _wheels(p, 0.08)
    elif kind == "trailer":
        p.add(0, 1, 0, 1, 0.25, 1.0, color, refl)
        p.add(0.05, 0.3, 0.1, 0.9, 0.0, 0.25, TYRE, 0.1)              # axle group
    elif kind in ("bicycle", "motorcycle"):
        frame_top = 0.62 if not rider else 0.42
        if rider:  # the rider's torso holds the box centre: it is the primary part
            shirt = _pick(rng, ((40, 40, 60), (150, 30, 30), (30, 90, 140), (200, 190, 160)))
            p.add(0.3, 0.7, 0.1, 0.9, frame_top, 0.85, shirt, 0.35)
            p.add(0.4, 0.6, 0.3, 0.7, 0.85, 1.0, SKIN, 0.3)
        p.add(0.15, 0.85, 0.3, 0.7, 0.25, frame_top, color, refl)      # frame
        p.add(0.0, 0.3, 0.42, 0.58, 0.0, frame_top - 0.05, TYRE, 0.1)  # wheels
        p.add(0.7, 1.0, 0.42, 0.58, 0.0, frame_top - 0.05, TYRE, 0.1)
    elif kind == "pedestrian":
        trousers = _pick(rng, ((30, 30, 40), (60, 60, 80), (90, 70, 50), (20, 40, 90)))
        p.add(0.15, 0.85, 0.1, 0.9, 0.46, 0.82, color, refl)           # torso (primary: centre)
        p.add(0.25, 0.75, 0.2, 0.8, 0.0, 0.46, trousers, 0.3)          # legs
        p.add(0.3, 0.7, 0.3, 0.7, 0.82, 1.0, SKIN, 0.3)                # head
    elif kind == "traffic_cone":
        p.add(0.2, 0.8, 0.2, 0.8, 0.0, 0.75, color, refl, STRIPES_Z)  # body (primary)
        p.add(0.0, 1.0, 0.0, 1.0, 0.0, 0.06, color, refl)              # base
        p.add(0.35, 0.65, 0.35, 0.65, 0.75, 1.0, color, refl)          # tip
    elif kind == "barrier":
        p.add(0, 1, 0, 1, 0.15, 1.0, color, refl, STRIPES_Y)
        p.add(0.2, 0.8, 0.0, 0.1, 0.0, 0.15, (90, 90, 90), 0.3)       # feet
        p.add(0.2, 0.8, 0.9, 1.0, 0.0, 0.15, (90, 90, 90), 0.3)
    elif kind == "bicycle_rack":
        # Two thin rails: parked bicycles inside the rack box stay visible.
        p.add(0.0, 1.0, 0.45, 0.55, 0.85, 1.0, METAL, 0.7)
        p.add(0.0, 0.04, 0.45, 0.55, 0.0, 0.85, METAL, 0.7)
        p.add(0.96, 1.0, 0.45, 0.55, 0.0, 0.85, METAL, 0.7)
    elif kind == "debris":
        p.add(0, 1, 0, 1, 0, 1, color, refl)
    else:
        raise ValueError(f"unknown object kind {kind!r}")
    return p.array()


def _wheels(p: _Builder, top: float) -> None:
    for x0, x1 in ((0.1, 0.28), (0.72, 0.9)):
        for y0, y1 in ((0.0, 0.12), (0.88, 1.0)):
            p.add(x0, x1, y0, y1, 0.0, top + 0.12, TYRE, 0.1)


def _pick(rng: np.random.Generator, options: tuple) -> tuple[int, int, int]:
    return options[int(rng.integers(len(options)))]


def distractor_parts(kind: str, size: np.ndarray, color: tuple[int, int, int],
                     rng: np.random.Generator) -> np.ndarray:
    """Parts of unlabeled scenery: "building", "pole", "tree", "clutter". ``size`` is [l, w, h]."""
    p = _Builder(size, 0.0)
    if kind == "building":
        p.add(0, 1, 0, 1, 0, 1, color, 0.3, FACADE)
    elif kind == "pole":
        p.add(0.35, 0.65, 0.35, 0.65, 0, 1, (110, 110, 115), 0.5)
        p.add(0.35, 1.0, 0.4, 0.6, 0.95, 1.0, (110, 110, 115), 0.5)  # lamp arm
    elif kind == "tree":
        p.add(0.42, 0.58, 0.42, 0.58, 0, 0.45, (90, 65, 40), 0.2)
        p.add(0, 1, 0, 1, 0.35, 1.0, (50 + int(rng.integers(40)), 110 + int(rng.integers(50)), 45),
              0.2, FOLIAGE)
    elif kind == "clutter":
        p.add(0, 1, 0, 1, 0, 1, color, 0.35)
    else:
        raise ValueError(f"unknown distractor kind {kind!r}")
    return p.array()

"""The procedural driving world of one SynthScenes scene.

A straight main road (lanes both ways, a parking strip, sidewalks) with perpendicular cross
streets, buildings, poles and trees; traffic that flows per lane (one speed per lane, so nobody
drives through anybody), parked and waiting vehicles, pedestrians, cyclists, work zones lined with
barriers and cones, bicycle racks, and debris. The ego drives in a lane at that lane's speed.

Everything is laid out in the road frame ``(u along the road, v to its left)``; a random origin
and heading place the road in the global frame, so no code downstream can rely on axis-aligned
global coordinates. Objects move with constant speed and yaw rate; `World.poses(t)` gives their
global poses at any time, which is what makes the instance chains and the devkit's velocities
exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .catalog import BICYCLE_RACK, CLASSES, DEBRIS
from .parts import N_PART_FIELDS, build_parts, distractor_parts
from .raycast import L_CROSS0, MAX_CROSS, N_PRIM_FIELDS


@dataclass(frozen=True)
class RoadLayout:
    """Geometry of the road network, in metres and radians."""

    origin: tuple[float, float]
    heading: float
    lane_width: float
    lanes_per_dir: int
    park_width: float
    walk_width: float
    cross_u: tuple[float, ...]
    cross_half_width: float

    @property
    def road_half_width(self) -> float:
        return self.lanes_per_dir * self.lane_width + self.park_width

    def to_global(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, s = np.cos(self.heading), np.sin(self.heading)
        return self.origin[0] + c * u - s * v, self.origin[1] + s * u + c * v

    def pack(self) -> np.ndarray:
        """The layout as the float vector the ray caster reads (raycast.L_*)."""
        out = np.zeros(L_CROSS0 + MAX_CROSS)
        out[:L_CROSS0] = (self.origin[0], self.origin[1], np.cos(self.heading),
                          np.sin(self.heading), self.lane_width, self.lanes_per_dir,
                          self.park_width, self.walk_width, self.cross_half_width,
                          len(self.cross_u))
        out[L_CROSS0:L_CROSS0 + len(self.cross_u)] = self.cross_u
        return out


@dataclass
class WorldObject:
    """An object with a constant-speed, constant-yaw-rate motion (road frame at t = 0)."""

    kind: str                  # detection class, "bicycle_rack", "debris", or a distractor kind
    category: str | None       # nuScenes category; None for unlabeled scenery
    lwh: np.ndarray            # (3,) annotation box size
    parts: np.ndarray          # (K, N_PART_FIELDS) local parts, primary first
    u: float
    v: float
    yaw: float                 # heading relative to the road direction
    speed: float = 0.0
    yaw_rate: float = 0.0
    attribute: str | None = None
    in_rack: bool = False      # a parked bicycle the devkit filters out (inside a bicycle rack)


@dataclass
class World:
    """All objects of a scene plus the ego trajectory."""

    layout: RoadLayout
    objects: list[WorldObject]
    ego_v: float               # ego lane centre (road frame)
    ego_speed: float
    light: np.ndarray          # raycast lighting vector
    # derived arrays, filled by `finalize`
    _parts: np.ndarray = field(default=None, repr=False)      # (P, N_PART_FIELDS)
    _owner: np.ndarray = field(default=None, repr=False)      # (P,) object index
    _primary: np.ndarray = field(default=None, repr=False)    # (P,) bool

    def finalize(self) -> "World":
        self._parts = np.concatenate([o.parts for o in self.objects])
        self._owner = np.concatenate([np.full(len(o.parts), i) for i, o in enumerate(self.objects)])
        counts = [len(o.parts) for o in self.objects]
        first = np.cumsum([0] + counts[:-1])
        self._primary = np.zeros(len(self._parts), bool)
        self._primary[first] = True
        self._u0 = np.array([o.u for o in self.objects])
        self._v0 = np.array([o.v for o in self.objects])
        self._yaw0 = np.array([o.yaw for o in self.objects])
        self._speed = np.array([o.speed for o in self.objects])
        self._yaw_rate = np.array([o.yaw_rate for o in self.objects])
        self._h = np.array([o.lwh[2] for o in self.objects])
        return self

    @property
    def labeled(self) -> np.ndarray:
        """Indices of the annotated objects."""
        return np.array([i for i, o in enumerate(self.objects) if o.category is not None], int)

    def ego_pose(self, t: float) -> tuple[np.ndarray, float]:
        """Global ego position (3,) and yaw at time ``t`` (seconds from the scene start)."""
        x, y = self.layout.to_global(np.array(self.ego_speed * t), np.array(self.ego_v))
        return np.array([float(x), float(y), 0.0]), self.layout.heading

    def poses(self, t: float) -> np.ndarray:
        """Global box centres and yaws of every object at time ``t``: (N, 4) x, y, z, yaw."""
        w = self._yaw_rate
        yaw_t = self._yaw0 + w * t
        turning = np.abs(w) > 1e-9
        safe_w = np.where(turning, w, 1.0)
        # constant speed along a circular arc; straight line when the yaw rate is zero
        du = np.where(turning, self._speed / safe_w * (np.sin(yaw_t) - np.sin(self._yaw0)),
                      self._speed * np.cos(self._yaw0) * t)
        dv = np.where(turning, -self._speed / safe_w * (np.cos(yaw_t) - np.cos(self._yaw0)),
                      self._speed * np.sin(self._yaw0) * t)
        x, y = self.layout.to_global(self._u0 + du, self._v0 + dv)
        return np.stack([x, y, self._h / 2, yaw_t + self.layout.heading], axis=1)

    def primitives(self, t: float, near: np.ndarray, radius: float) -> np.ndarray:
        """Primitives (raycast.PRIM_FIELDS) of objects within ``radius`` of ``near`` at time t."""
        pose = self.poses(t)
        keep_obj = np.hypot(pose[:, 0] - near[0], pose[:, 1] - near[1]) < radius + 30.0
        keep = keep_obj[self._owner]
        parts, owner = self._parts[keep], self._owner[keep]
        ps = pose[owner]
        c, s = np.cos(ps[:, 3]), np.sin(ps[:, 3])
        out = np.empty((len(parts), N_PRIM_FIELDS))
        out[:, 0] = ps[:, 0] + c * parts[:, 0] - s * parts[:, 1]
        out[:, 1] = ps[:, 1] + s * parts[:, 0] + c * parts[:, 1]
        out[:, 2] = ps[:, 2] + parts[:, 2]
        out[:, 3:6] = parts[:, 3:6]
        out[:, 6], out[:, 7] = c, s
        out[:, 8:13] = parts[:, 6:11]
        out[:, 13] = owner
        out[:, 14] = self._primary[keep]
        return out


@dataclass(frozen=True)
class WorldSpec:
    """Knobs of the world generator (defaults give nuScenes-like densities)."""

    lane_width: float = 3.5
    parts_margin: float = 0.05     # parts stay this far inside their annotation box
    margin_ahead: float = 90.0     # populated road beyond the ego's first/last position
    mean_gap: float = 14.0         # mean free gap between moving vehicles in a lane (m)
    pedestrians_per_100m: float = 6.0
    work_zone_prob: float = 0.85


def _size(rng: np.random.Generator, kind: str) -> np.ndarray:
    spec = CLASSES[kind]
    return np.asarray(spec.lwh) * np.clip(1 + spec.spread * rng.standard_normal(3), 0.7, 1.4)


class _Placer:
    """Builds objects and keeps static ones from overlapping.

    Footprints are kept as rectangles aligned with the road frame (the bound of the rotated
    box): nearly every static object is road-aligned, and a disc would make a parked bus
    collide with every pole along the sidewalk.
    """

    def __init__(self, rng: np.random.Generator, spec: WorldSpec):
        self.rng, self.spec = rng, spec
        self.objects: list[WorldObject] = []
        self._rects: list[tuple[float, float, float, float]] = []  # u, v, half_u, half_v
        self._rect_owner: list[WorldObject] = []

    def free(self, u: float, v: float, hu: float, hv: float) -> bool:
        return all(abs(u - a) >= hu + c or abs(v - b) >= hv + d for a, b, c, d in self._rects)

    def add(self, kind: str, u: float, v: float, yaw: float, speed: float = 0.0,
            attribute: str | None = None, lwh: np.ndarray | None = None, rider: bool = False,
            yaw_rate: float = 0.0, check: bool = True) -> bool:
        rng = self.rng
        if kind in CLASSES:
            spec = CLASSES[kind]
            lwh = _size(rng, kind) if lwh is None else lwh
            color = spec.palette[int(rng.integers(len(spec.palette)))]
            parts = build_parts(kind, lwh, color, spec.reflectivity, rng, self.spec.parts_margin,
                                rider=rider)
            category = spec.category
        elif kind in ("bicycle_rack", "debris"):
            color = (90, 80, 70)
            parts = build_parts(kind, lwh, color, 0.4, rng, self.spec.parts_margin)
            category = BICYCLE_RACK if kind == "bicycle_rack" else DEBRIS
        else:
            grey = int(rng.integers(90, 200))
            color = (grey, int(grey * rng.uniform(0.85, 1.0)), int(grey * rng.uniform(0.75, 1.0)))
            parts = distractor_parts(kind, lwh, color, rng)
            category = None
        c, s = abs(np.cos(yaw)), abs(np.sin(yaw))
        hu = 0.5 * (c * lwh[0] + s * lwh[1]) + 0.15  # 15 cm of air between neighbours
        hv = 0.5 * (s * lwh[0] + c * lwh[1]) + 0.15
        obj = WorldObject(kind, category, np.asarray(lwh, float), parts, u, v, yaw, speed,
                          yaw_rate, attribute)
        if speed == 0.0:  # moving objects share lanes/sidewalks by construction
            if check and not self.free(u, v, hu, hv):
                return False
            self._rects.append((u, v, hu, hv))
            self._rect_owner.append(obj)
        assert parts.shape[1] == N_PART_FIELDS
        self.objects.append(obj)
        return True

    def evict(self, u: float, v: float, half_u: float, half_v: float, kinds: set[str]) -> None:
        """Remove static objects of ``kinds`` whose footprints reach into a rectangle."""
        gone = set()
        for (a, b, c, d), o in zip(self._rects, self._rect_owner):
            if o.kind in kinds and abs(a - u) < half_u + c and abs(b - v) < half_v + d:
                gone.add(id(o))
        if gone:
            keep = [i for i, o in enumerate(self._rect_owner) if id(o) not in gone]
            self._rects = [self._rects[i] for i in keep]
            self._rect_owner = [self._rect_owner[i] for i in keep]
            self.objects = [o for o in self.objects if id(o) not in gone]


def generate_world(rng: np.random.Generator, duration: float, spec: WorldSpec = WorldSpec()
                   ) -> World:
    """Draw one scene's world covering the ego's drive of ``duration`` seconds."""
    lanes = int(rng.integers(1, 4))
    park_w = 2.6
    layout_hw = lanes * spec.lane_width + park_w
    ego_speed = float(rng.uniform(0.0, 12.0))
    u_end = ego_speed * duration
    lo, hi = -spec.margin_ahead, u_end + spec.margin_ahead
    cross, u = [], lo + rng.uniform(20, 80)
    while u < hi and len(cross) < MAX_CROSS:
        cross.append(float(u))
        u += rng.uniform(70, 150)
    cross_hw = float(rng.uniform(5.0, 8.0))
    layout = RoadLayout(origin=(float(rng.uniform(200, 1800)), float(rng.uniform(200, 1800))),
                        heading=float(rng.uniform(-np.pi, np.pi)), lane_width=spec.lane_width,
                        lanes_per_dir=lanes, park_width=park_w,
                        walk_width=float(rng.uniform(2.5, 4.5)), cross_u=tuple(cross),
                        cross_half_width=cross_hw)
    walk_w = layout.walk_width
    in_cross = lambda u, pad=0.0: any(abs(u - c) < cross_hw + pad for c in cross)  # noqa: E731

    P = _Placer(rng, spec)
    ego_lane = int(rng.integers(lanes))
    ego_v = -(ego_lane + 0.5) * spec.lane_width

    # Lane traffic: one speed per lane, vehicles spaced by length + gap.
    vehicle_kinds = ("car", "truck", "bus", "trailer", "construction_vehicle", "motorcycle")
    vehicle_p = np.array([0.74, 0.17, 0.025, 0.03, 0.01, 0.025])
    for side in (-1, 1):  # -1: lanes driving +u (ego side), +1: lanes driving -u
        for k in range(lanes):
            v_lane = side * (k + 0.5) * spec.lane_width
            is_ego = side == -1 and k == ego_lane
            speed = ego_speed if is_ego else float(rng.choice([0.0, rng.uniform(2, 14)],
                                                              p=[0.2, 0.8]))
            yaw = 0.0 if side == -1 else np.pi
            # cover the stretch the ego sees during the whole scene
            sweep = speed * duration
            start = lo - (sweep if side == -1 else 0.0)
            stop = hi + (sweep if side == 1 else 0.0)
            pos = start + rng.uniform(0, 10)
            while pos < stop:
                kind = str(rng.choice(vehicle_kinds, p=vehicle_p))
                lwh = _size(rng, kind)
                centre = pos + lwh[0] / 2
                # keep the ego's own slot free: it drives at this lane's speed
                if not (is_ego and abs(centre) < 8.0 + lwh[0] / 2):
                    if speed == 0.0 and in_cross(centre, lwh[0] / 2):
                        pass  # a stopped queue does not block the intersection
                    else:
                        attr = "vehicle.moving" if speed > 0 else "vehicle.stopped"
                        if kind == "motorcycle":
                            attr = "cycle.with_rider"
                        P.add(kind, centre, v_lane + rng.uniform(-0.3, 0.3),
                              yaw + rng.normal(0, 0.015), speed, attr, lwh,
                              rider=kind == "motorcycle", check=False)
                gap = rng.exponential(spec.mean_gap) + 3.0 if speed > 0 else rng.exponential(3) + 1.5
                pos += lwh[0] + gap

    # Parking strips: parked cars, motorcycles, or a work zone with barriers and cones.
    for side in (-1, 1):
        v_park = side * (lanes * spec.lane_width + park_w / 2)
        zone_u = rng.uniform(lo, hi) if rng.random() < spec.work_zone_prob else None
        zone_len = rng.uniform(20, 45)
        pos = lo
        while pos < hi:
            if zone_u is not None and zone_u <= pos < zone_u + zone_len:
                _work_zone(P, rng, pos, zone_len, side, lanes * spec.lane_width, park_w)
                pos += zone_len
                continue
            if in_cross(pos, 3.0):
                pos += 2.0
                continue
            roll = rng.random()
            if roll < 0.55:
                kind = "car" if rng.random() < 0.9 else "motorcycle"
                yaw = (0.0 if side == -1 else np.pi) + rng.normal(0, 0.04)
                attr = "vehicle.parked" if kind == "car" else "cycle.without_rider"
                lwh = _size(rng, kind)
                P.add(kind, pos + lwh[0] / 2, v_park + rng.uniform(-0.2, 0.2), yaw, 0.0, attr, lwh)
                pos += lwh[0] + rng.uniform(0.8, 3.0)
            else:
                pos += rng.uniform(3, 12)

    # Cross streets: vehicles waiting to enter the main road, pedestrians at the corners.
    for uc in cross:
        for side in (-1, 1):
            n_wait = int(rng.integers(0, 3))
            vq = side * (layout_hw + walk_w + 2.0)
            for _ in range(n_wait):
                lwh = _size(rng, "car")
                # right-hand traffic: approaching the main road from side s drives toward -s
                u_lane = uc + side * spec.lane_width / 2
                P.add("car", u_lane, vq + side * lwh[0] / 2, -side * np.pi / 2 + rng.normal(0, 0.03),
                      0.0, "vehicle.stopped", lwh)
                vq += side * (lwh[0] + rng.uniform(1.5, 4))

    # Sidewalks: pedestrians (walking along, standing, sitting), cyclists, racks, scenery.
    total_len = hi - lo
    for side in (-1, 1):
        v_in = side * (layout_hw + 0.2)
        n_ped = rng.poisson(spec.pedestrians_per_100m * total_len / 100.0)
        for _ in range(n_ped):
            u = rng.uniform(lo, hi)
            v = v_in + side * rng.uniform(0.6, walk_w - 0.5)
            roll = rng.random()
            if roll < 0.6:
                heading = 0.0 if rng.random() < 0.5 else np.pi
                P.add("pedestrian", u, v, heading + rng.normal(0, 0.05), rng.uniform(0.8, 1.7),
                      "pedestrian.moving", check=False)
            elif roll < 0.92:
                P.add("pedestrian", u, v, rng.uniform(-np.pi, np.pi), 0.0, "pedestrian.standing")
            else:
                P.add("pedestrian", u, v, rng.uniform(-np.pi, np.pi), 0.0,
                      "pedestrian.sitting_lying_down",
                      lwh=_size(rng, "pedestrian") * np.array([1.3, 1.0, 0.7]))
        # cyclists riding along the curb side of the sidewalk
        for _ in range(rng.poisson(0.8 * total_len / 100.0)):
            kind = "bicycle" if rng.random() < 0.6 else "motorcycle"
            lwh = _size(rng, kind) * np.array([1.0, 1.0, 1.3])  # box includes the rider
            heading = 0.0 if side == -1 else np.pi
            P.add(kind, rng.uniform(lo, hi), v_in + side * 0.5, heading, rng.uniform(2.5, 6.0),
                  "cycle.with_rider", lwh, rider=True, check=False)
        # bicycle racks with parked bicycles inside (the devkit filters those bicycles)
        for _ in range(rng.poisson(0.5 * total_len / 100.0)):
            n_bikes = int(rng.integers(1, 5))
            rack_l = 0.9 * n_bikes + 0.6
            u = rng.uniform(lo, hi)
            v = v_in + side * (walk_w - 1.2)
            rack = np.array([rack_l, 2.0, 1.0])
            if in_cross(u, rack_l) or not P.add("bicycle_rack", u, v, 0.0, lwh=rack):
                continue
            for j in range(n_bikes):
                ub = u - rack_l / 2 + 0.75 + 0.9 * j
                if P.add("bicycle", ub, v, np.pi / 2 + rng.normal(0, 0.05), 0.0,
                         "cycle.without_rider", check=False):
                    P.objects[-1].in_rack = True
        # scenery: poles and trees at the curb, clutter, buildings behind the sidewalk
        u = lo + rng.uniform(0, 10)
        while u < hi:
            if not in_cross(u, 1.0):
                kind = "pole" if rng.random() < 0.5 else "tree"
                size = (np.array([1.2, 0.3, rng.uniform(6, 8)]) if kind == "pole"
                        else np.array([1.0, 1.0, 1.0]) * rng.uniform(2.5, 4.5)
                        + np.array([0, 0, rng.uniform(2, 4)]))
                P.add(kind, u, v_in + side * 0.6, 0.0 if side == -1 else np.pi, lwh=size)
            u += rng.uniform(12, 30)
        for _ in range(rng.poisson(1.5 * total_len / 100.0)):
            size = np.array([rng.uniform(0.4, 1.5), rng.uniform(0.4, 1.2), rng.uniform(0.5, 1.6)])
            u = rng.uniform(lo, hi)
            if not in_cross(u, 1.0):
                P.add("clutter", u, v_in + side * rng.uniform(1.0, walk_w - 0.5),
                      rng.uniform(-np.pi, np.pi), lwh=size)
        u = lo
        v_b = side * (layout_hw + walk_w + rng.uniform(1.0, 4.0))
        while u < hi + 40:
            width = rng.uniform(12, 40)
            if not in_cross(u + width / 2, width / 2 + 1.0) and rng.random() < 0.85:
                depth = rng.uniform(10, 25)
                P.add("building", u + width / 2, v_b + side * depth / 2, 0.0,
                      lwh=np.array([width, depth, rng.uniform(6, 30)]), check=False)
            u += width + rng.uniform(0, 6)

    # Debris on the road now and then.
    for _ in range(rng.poisson(0.3 * total_len / 100.0)):
        side = rng.choice([-1, 1])
        lwh = np.array([rng.uniform(0.3, 1.0), rng.uniform(0.3, 0.8), rng.uniform(0.1, 0.4)])
        P.add("debris", rng.uniform(lo, hi), side * (lanes * spec.lane_width + 0.6),
              rng.uniform(-np.pi, np.pi), lwh=lwh)

    _ensure_every_class(P, rng, layout, ego_speed, duration)

    sun_az, sun_el = rng.uniform(-np.pi, np.pi), rng.uniform(0.35, 1.2)
    light = np.array([np.cos(sun_el) * np.cos(sun_az), np.cos(sun_el) * np.sin(sun_az),
                      np.sin(sun_el), rng.uniform(0.45, 0.6), 0.55, rng.uniform(150, 450),
                      rng.uniform(0.8, 1.1)])
    return World(layout, P.objects, ego_v, ego_speed, light).finalize()


def _work_zone(P: _Placer, rng: np.random.Generator, start: float, length: float, side: int,
               lanes_w: float, park_w: float) -> None:
    """A closed stretch of parking strip: a barrier line, cones in front, machines and workers."""
    v_edge = side * (lanes_w + 0.35)
    u = start
    use_barriers = rng.random() < 0.7
    while u < start + length:
        if use_barriers:
            # a barrier's long side (its width) runs along the road
            P.add("barrier", u + 1.3, v_edge + side * 0.3, np.pi / 2 + rng.normal(0, 0.03),
                  attribute=None)
            u += 2.7 + rng.uniform(0, 0.3)
        else:
            P.add("traffic_cone", u, v_edge, 0.0, attribute=None)
            u += rng.uniform(2.0, 4.0)
    # a few cones ahead of the closure
    for j in range(int(rng.integers(2, 6))):
        P.add("traffic_cone", start - 2.0 - 2.5 * j, v_edge + side * 0.2 * j, 0.0)
    if rng.random() < 0.6:
        # behind the barrier line, two wheels up on the curb
        P.add("construction_vehicle", start + length / 2, side * (lanes_w + park_w / 2 + 0.9),
              float(rng.choice([0.0, np.pi])), 0.0, "vehicle.parked", check=False)
    for _ in range(int(rng.integers(0, 3))):
        P.add("pedestrian", rng.uniform(start, start + length),
              side * (lanes_w + park_w * rng.uniform(0.5, 0.9)), rng.uniform(-np.pi, np.pi), 0.0,
              "pedestrian.standing")


# Where a missing class is parked: kerb-side in the parking strip, or on the sidewalk.
_EVICTABLE = {"car", "motorcycle", "pedestrian", "clutter", "debris"}
_KERB_KINDS = ("car", "truck", "bus", "trailer", "construction_vehicle", "motorcycle")


def _ensure_every_class(P: _Placer, rng: np.random.Generator, layout: RoadLayout,
                        ego_speed: float, duration: float) -> None:
    """Add one static instance of every detection class right beside the ego's path.

    Rare classes (bus, trailer, construction vehicle) would otherwise be absent from most
    scenes, and a split without a class cannot score that class (the devkit gives it AP 0);
    objects merely "nearby" can still be hidden by traffic at every key frame. A parked bus or
    trailer at the kerb, a cone or a bicycle by the lane line are ordinary sights, and one per
    class and scene barely moves the class frequencies.
    """
    times = np.arange(0.0, duration + 1e-9, 0.5)
    lanes_w = layout.lanes_per_dir * layout.lane_width
    # small objects first, in the open part of the parking strip next to the lane line, so
    # that the long vehicles placed after them cannot hide them from every sensor
    for kind in sorted(CLASSES, key=lambda k: k in _KERB_KINDS):
        for _ in range(100):
            side = 1 if rng.random() < 0.5 else -1
            # right beside the ego at some key frame: close enough that traffic in between
            # cannot hide it from every sensor at every key frame
            u = ego_speed * float(rng.choice(times)) + rng.uniform(-10.0, 10.0)
            if any(abs(u - c) < layout.cross_half_width + 8.0 for c in layout.cross_u):
                continue
            if kind in _KERB_KINDS:
                v = side * (lanes_w + layout.park_width / 2 + 0.2)
                yaw = 0.0 if side == -1 else np.pi
                attr = "cycle.without_rider" if kind == "motorcycle" else "vehicle.parked"
            else:
                v = side * (lanes_w + rng.uniform(0.5, 0.9))
                yaw = {"pedestrian": rng.uniform(-np.pi, np.pi), "barrier": np.pi / 2,
                       "bicycle": 0.0 if side == -1 else np.pi}.get(kind, 0.0)
                attr = {"pedestrian": "pedestrian.standing",
                        "bicycle": "cycle.without_rider"}.get(kind)
            if kind in ("bus", "trailer", "truck", "construction_vehicle"):
                # long vehicles rarely find a free kerb gap: parked cars make room
                lwh = _size(rng, kind)
                P.evict(u, v, lwh[0] / 2 + 0.5, lwh[1] / 2 + 0.3, _EVICTABLE)
                if P.add(kind, u, v, yaw, 0.0, attr, lwh):
                    break
            elif P.add(kind, u, v, yaw, 0.0, attr):
                break

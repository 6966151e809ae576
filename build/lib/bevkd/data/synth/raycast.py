"""Numba ray casting for SynthScenes: cameras and the spinning LiDAR share one scene description.

The scene is flat ground (z = 0 in the global frame) painted by the road layout, plus oriented
boxes ("primitives", one row of ``PRIM_FIELDS`` each, yaw-only rotation). Every camera pixel and
every LiDAR beam is a ray; the nearest hit wins, which gives occlusion for free.

Rays are only tested against the primitives that can cover them: for a camera, each box's
near-plane-clipped screen rectangle; for the LiDAR, each box's azimuth/elevation window. That
keeps a 6 x 800 x 450 render plus ten 32-beam sweeps within about a second on one core, which a
brute-force rays x boxes product would not.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .parts import FACADE, FOLIAGE, GLASS_ROOF, STRIPES_Y, STRIPES_Z, WINDOWS

# Columns of a primitive row (world frame).
PRIM_FIELDS = ("cx", "cy", "cz", "hx", "hy", "hz", "cos", "sin", "r", "g", "b", "refl",
               "pattern", "object", "primary")
N_PRIM_FIELDS = len(PRIM_FIELDS)

# Road layout vector (see world.RoadLayout.pack): origin, heading, lane geometry, cross streets.
L_OX, L_OY, L_COS, L_SIN, L_LANE_W, L_LANES, L_PARK_W, L_WALK_W, L_CROSS_HW, L_NCROSS = range(10)
L_CROSS0 = 10
MAX_CROSS = 16

# Lighting vector: sun direction (unit, world), ambient, diffuse, haze distance, brightness.
G_SUNX, G_SUNY, G_SUNZ, G_AMB, G_DIFF, G_HAZE, G_BRIGHT = range(7)

_GLASS = (0.18, 0.22, 0.28)
_HORIZON = (0.80, 0.85, 0.90)
_ZENITH = (0.40, 0.58, 0.85)


@njit(cache=True, inline="always")
def _hash01(ix: int, iy: int, salt: int) -> float:
    """Deterministic value noise in [0, 1) for integer cell coordinates."""
    h = (ix * 374761393 + iy * 668265263 + salt * 2246822519) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    h = h ^ (h >> 16)
    return (h & 0xFFFFFF) / 16777216.0


@njit(cache=True)
def ground_material(x: float, y: float, layout: np.ndarray):
    """Colour (r, g, b in 0..1) and LiDAR reflectivity of the ground at global (x, y)."""
    dx, dy = x - layout[L_OX], y - layout[L_OY]
    u = dx * layout[L_COS] + dy * layout[L_SIN]
    v = -dx * layout[L_SIN] + dy * layout[L_COS]
    lane_w, lanes = layout[L_LANE_W], int(layout[L_LANES])
    road_hw = lanes * lane_w + layout[L_PARK_W]
    walk_w, cross_hw = layout[L_WALK_W], layout[L_CROSS_HW]
    av = abs(v)
    near_cross = 1e9  # signed distance (along u) to the nearest cross-street edge
    in_cross = False
    uc_near = 0.0
    for i in range(int(layout[L_NCROSS])):
        uc = layout[L_CROSS0 + i]
        d = abs(u - uc) - cross_hw
        if d < near_cross:
            near_cross = d
            uc_near = uc
        if d < 0.0:
            in_cross = True
    n_fine = _hash01(int(math.floor(u * 5.0)), int(math.floor(v * 5.0)), 1)
    n_coarse = _hash01(int(math.floor(u * 0.5)), int(math.floor(v * 0.5)), 2)
    if av < road_hw or in_cross:
        g = 0.27 + 0.05 * n_fine + 0.04 * n_coarse
        r, gg, b, refl = g, g, g * 1.04, 0.08
        mark = 0  # 0 none, 1 white, 2 yellow
        if in_cross:
            if av >= road_hw and abs(u - uc_near) < 0.1 and (v % 6.0) < 3.0:
                mark = 2
        else:
            if 0.05 < av < 0.17:
                mark = 2
            elif abs(av - lanes * lane_w) < 0.09:
                mark = 1
            else:
                for k in range(1, lanes):
                    if abs(av - k * lane_w) < 0.07 and (u % 9.0) < 3.0:
                        mark = 1
            if av < road_hw and 1.0 < near_cross < 4.5 and (v % 1.2) < 0.6:
                mark = 1
        if mark == 1:
            r, gg, b, refl = 0.86, 0.86, 0.84, 0.6
        elif mark == 2:
            r, gg, b, refl = 0.85, 0.68, 0.15, 0.55
        return r, gg, b, refl
    if av < road_hw + walk_w:
        if av < road_hw + 0.2:
            return 0.78, 0.77, 0.74, 0.3  # curb
        seam = (u % 1.5) < 0.05 or ((av - road_hw) % 1.5) < 0.05
        g = 0.60 + 0.06 * n_fine - (0.12 if seam else 0.0)
        return g, g * 0.98, g * 0.94, 0.25
    t = n_coarse
    r = 0.30 * (1 - t) + 0.45 * t + 0.05 * n_fine
    gg = 0.42 * (1 - t) + 0.38 * t + 0.05 * n_fine
    b = 0.20 * (1 - t) + 0.27 * t
    return r, gg, b, 0.15


@njit(cache=True, inline="always")
def _ray_box(ox, oy, oz, dx, dy, dz, prims, p):
    """Entry distance of a ray into primitive ``p`` (inf if missed or behind) and the entry face.

    Faces: 0 -x, 1 +x, 2 -y, 3 +y, 4 -z, 5 +z in the box frame.
    """
    c, s = prims[p, 6], prims[p, 7]
    rx, ry, rz = ox - prims[p, 0], oy - prims[p, 1], oz - prims[p, 2]
    lo = (c * rx + s * ry, -s * rx + c * ry, rz)
    ld = (c * dx + s * dy, -s * dx + c * dy, dz)
    t0, t1 = -1e30, 1e30
    face = -1
    for k in range(3):
        h = prims[p, 3 + k]
        if abs(ld[k]) < 1e-12:
            if lo[k] < -h or lo[k] > h:
                return np.inf, -1
            continue
        inv = 1.0 / ld[k]
        ta, tb = (-h - lo[k]) * inv, (h - lo[k]) * inv
        f = 2 * k
        if ta > tb:
            ta, tb = tb, ta
            f = 2 * k + 1
        if ta > t0:
            t0, face = ta, f
        if tb < t1:
            t1 = tb
        if t0 > t1:
            return np.inf, -1
    if t0 <= 1e-6:
        return np.inf, -1
    return t0, face


@njit(cache=True, inline="always")
def _face_normal(prims, p, face):
    c, s = prims[p, 6], prims[p, 7]
    k, sign = face // 2, (1.0 if face % 2 == 1 else -1.0)
    if k == 0:
        return sign * c, sign * s, 0.0
    if k == 1:
        return -sign * s, sign * c, 0.0
    return 0.0, 0.0, sign


@njit(cache=True)
def _shade_pattern(prims, p, face, hx, hy, hz):
    """Base colour of primitive ``p`` at the world hit point, after its surface pattern."""
    r, g, b = prims[p, 8], prims[p, 9], prims[p, 10]
    pattern = int(prims[p, 12])
    if pattern == 0:
        return r, g, b
    c, s = prims[p, 6], prims[p, 7]
    rx, ry, rz = hx - prims[p, 0], hy - prims[p, 1], hz - prims[p, 2]
    lx, ly = c * rx + s * ry, -s * rx + c * ry
    zb = rz + prims[p, 5]  # height above the part's bottom
    qz = zb / (2.0 * prims[p, 5])
    side = face < 4
    if pattern == WINDOWS:
        if side and 0.55 < qz < 0.88:
            return _GLASS
    elif pattern == STRIPES_Y:
        if int(math.floor((ly + 50.0) / 0.4)) % 2 == 0:
            return 0.93, 0.93, 0.93
    elif pattern == FACADE:
        hcoord = lx if face >= 2 else ly
        if side and 1.0 < (zb % 3.2) < 2.3 and 0.8 < ((hcoord + 500.0) % 3.0) < 2.2:
            return _GLASS[0] + 0.1, _GLASS[1] + 0.12, _GLASS[2] + 0.15
    elif pattern == STRIPES_Z:
        if 0.45 < qz < 0.75:
            return 0.95, 0.95, 0.95
    elif pattern == GLASS_ROOF:
        if side:
            return _GLASS
    elif pattern == FOLIAGE:
        n = _hash01(int(math.floor(lx * 3.0)), int(math.floor(ly * 3.0 + zb * 7.0)), 3)
        f = 0.7 + 0.6 * n
        return r * f, g * f, b * f
    return r, g, b


@njit(cache=True)
def _screen_rect(prims, p, o, R, fx, fy, cx, cy, W, H, near):
    """Pixel rectangle [u0, u1) x [v0, v1) covering primitive ``p`` (empty if behind the camera).

    Box edges that cross the near plane are clipped there, so boxes beside the camera get a
    tight rectangle instead of the whole image.
    """
    c, s = prims[p, 6], prims[p, 7]
    pts = np.empty((8, 3))
    i = 0
    for sx in (-1.0, 1.0):
        for sy in (-1.0, 1.0):
            for sz in (-1.0, 1.0):
                lx, ly, lz = sx * prims[p, 3], sy * prims[p, 4], sz * prims[p, 5]
                wx = prims[p, 0] + c * lx - s * ly - o[0]
                wy = prims[p, 1] + s * lx + c * ly - o[1]
                wz = prims[p, 2] + lz - o[2]
                # camera coordinates: cam = R^T (world - o)
                pts[i, 0] = R[0, 0] * wx + R[1, 0] * wy + R[2, 0] * wz
                pts[i, 1] = R[0, 1] * wx + R[1, 1] * wy + R[2, 1] * wz
                pts[i, 2] = R[0, 2] * wx + R[1, 2] * wy + R[2, 2] * wz
                i += 1
    umin, umax, vmin, vmax = 1e18, -1e18, 1e18, -1e18
    any_front = False
    for a in range(8):
        for bit in (1, 2, 4):  # corners a and a ^ bit share an edge
            b = a ^ bit
            if b < a:
                continue
            za, zb = pts[a, 2], pts[b, 2]
            for j in range(3):
                if j == 0 and za >= near:
                    x, y, z = pts[a, 0], pts[a, 1], za
                elif j == 1 and zb >= near:
                    x, y, z = pts[b, 0], pts[b, 1], zb
                elif j == 2 and (za >= near) != (zb >= near):
                    t = (near - za) / (zb - za)  # where the edge crosses the near plane
                    x = pts[a, 0] + t * (pts[b, 0] - pts[a, 0])
                    y = pts[a, 1] + t * (pts[b, 1] - pts[a, 1])
                    z = near
                else:
                    continue
                any_front = True
                u, v = fx * x / z + cx, fy * y / z + cy
                umin, umax = min(umin, u), max(umax, u)
                vmin, vmax = min(vmin, v), max(vmax, v)
    if not any_front:
        return 0, 0, 0, 0
    u0 = int(max(0.0, math.floor(umin - 0.5)))
    u1 = int(min(float(W), math.ceil(umax + 0.5)))
    v0 = int(max(0.0, math.floor(vmin - 0.5)))
    v1 = int(min(float(H), math.ceil(vmax + 0.5)))
    return u0, u1, v0, v1


@njit(cache=True)
def render_camera(o, R, fx, fy, cx, cy, W, H, prims, layout, light,
                  rgb, obj_id, depth, vis_total, vis_visible):
    """Ray-cast one pinhole camera.

    Args:
        o: (3,) camera centre, world frame.  R: (3, 3) ``world_R_cam`` (camera x right, y down,
            z forward).  fx, fy, cx, cy: intrinsics of a W x H image.
        prims: (P, N_PRIM_FIELDS).  layout: packed road layout.  light: lighting vector.
    Writes:
        rgb: (H, W, 3) float32 linear colour in [0, 1].  obj_id: (H, W) int32 object index of
        the visible surface or -1.  depth: (H, W) float32 z-depth (inf for sky).
        vis_total / vis_visible: (n_objects,) counts of pixels whose ray hits the object's
        primary part at all / as the nearest surface (their ratio is the visibility).
    """
    near = 0.05
    tbest = np.full((H, W), np.inf)
    pbest = np.full((H, W), -1, np.int32)
    fbest = np.zeros((H, W), np.int8)
    for p in range(prims.shape[0]):
        u0, u1, v0, v1 = _screen_rect(prims, p, o, R, fx, fy, cx, cy, W, H, near)
        primary = prims[p, 14] > 0.5
        obj = int(prims[p, 13])
        for v in range(v0, v1):
            yc = (v + 0.5 - cy) / fy
            for u in range(u0, u1):
                xc = (u + 0.5 - cx) / fx
                dx = R[0, 0] * xc + R[0, 1] * yc + R[0, 2]
                dy = R[1, 0] * xc + R[1, 1] * yc + R[1, 2]
                dz = R[2, 0] * xc + R[2, 1] * yc + R[2, 2]
                t, face = _ray_box(o[0], o[1], o[2], dx, dy, dz, prims, p)
                if t < np.inf:
                    if primary:
                        vis_total[obj] += 1
                    if t < tbest[v, u]:
                        tbest[v, u] = t
                        pbest[v, u] = p
                        fbest[v, u] = face
    sx, sy, sz = light[G_SUNX], light[G_SUNY], light[G_SUNZ]
    amb, diff, haze, bright = light[G_AMB], light[G_DIFF], light[G_HAZE], light[G_BRIGHT]
    for v in range(H):
        yc = (v + 0.5 - cy) / fy
        for u in range(W):
            xc = (u + 0.5 - cx) / fx
            # direction with unit camera-z component: t is then the z-depth
            dx = R[0, 0] * xc + R[0, 1] * yc + R[0, 2]
            dy = R[1, 0] * xc + R[1, 1] * yc + R[1, 2]
            dz = R[2, 0] * xc + R[2, 1] * yc + R[2, 2]
            norm = math.sqrt(dx * dx + dy * dy + dz * dz)
            tg = -o[2] / dz if dz < -1e-9 else np.inf
            p = pbest[v, u]
            t = tbest[v, u]
            if p >= 0 and t < tg:
                hx, hy, hz = o[0] + t * dx, o[1] + t * dy, o[2] + t * dz
                r, g, b = _shade_pattern(prims, p, int(fbest[v, u]), hx, hy, hz)
                nx, ny, nz = _face_normal(prims, p, int(fbest[v, u]))
                lam = amb + diff * max(0.0, nx * sx + ny * sy + nz * sz)
                obj_id[v, u] = int(prims[p, 13])
                if prims[p, 14] > 0.5:
                    vis_visible[int(prims[p, 13])] += 1
            elif tg < np.inf:
                t = tg
                r, g, b, _ = ground_material(o[0] + t * dx, o[1] + t * dy, layout)
                lam = amb + diff * max(0.0, sz)
                obj_id[v, u] = -1
            else:
                el = max(0.0, dz / norm)
                w = math.sqrt(el)
                rgb[v, u, 0] = bright * (_HORIZON[0] * (1 - w) + _ZENITH[0] * w)
                rgb[v, u, 1] = bright * (_HORIZON[1] * (1 - w) + _ZENITH[1] * w)
                rgb[v, u, 2] = bright * (_HORIZON[2] * (1 - w) + _ZENITH[2] * w)
                obj_id[v, u] = -1
                depth[v, u] = np.inf
                continue
            f = math.exp(-t * norm / haze)
            rgb[v, u, 0] = bright * (r * lam * f + _HORIZON[0] * (1 - f))
            rgb[v, u, 1] = bright * (g * lam * f + _HORIZON[1] * (1 - f))
            rgb[v, u, 2] = bright * (b * lam * f + _HORIZON[2] * (1 - f))
            depth[v, u] = t


@njit(cache=True)
def cast_lidar(o, R, elevations, n_az, max_range, prims, layout, drop_u, noise_n, inten_n,
               noise_sigma, noise_clip, drop_base, drop_far, out_pts, out_obj):
    """Ray-cast one instantaneous sweep of a spinning multi-beam LiDAR.

    Args:
        o: (3,) sensor origin, world.  R: (3, 3) ``world_R_lidar``.
        elevations: (B,) beam elevation angles in radians (ring index = beam index).
        n_az: azimuth steps per revolution.  max_range: metres.
        drop_u, noise_n, inten_n: (B, n_az) uniform / standard-normal / standard-normal draws
            (made by the caller from the scene's seeded generator, so sweeps are deterministic).
    Writes the kept points to ``out_pts`` ((B * n_az, 5): x, y, z in the LiDAR frame, intensity
    0..255, ring) and the hit object index (-1 for ground/scenery without label) to ``out_obj``.
    Returns the number of points written.
    """
    B = elevations.shape[0]
    daz = 2.0 * math.pi / n_az
    tbest = np.full((B, n_az), max_range)
    pbest = np.full((B, n_az), -1, np.int32)
    fbest = np.zeros((B, n_az), np.int8)
    cosel, sinel = np.cos(elevations), np.sin(elevations)
    cosaz = np.cos(np.arange(n_az) * daz)
    sinaz = np.sin(np.arange(n_az) * daz)
    el_min, el_max = elevations.min(), elevations.max()
    for p in range(prims.shape[0]):
        # primitive in the LiDAR frame: l = R^T (w - o)
        wx, wy, wz = prims[p, 0] - o[0], prims[p, 1] - o[1], prims[p, 2] - o[2]
        lx = R[0, 0] * wx + R[1, 0] * wy + R[2, 0] * wz
        ly = R[0, 1] * wx + R[1, 1] * wy + R[2, 1] * wz
        lz = R[0, 2] * wx + R[1, 2] * wy + R[2, 2] * wz
        r_xy = math.sqrt(prims[p, 3] ** 2 + prims[p, 4] ** 2)
        d_xy = math.sqrt(lx * lx + ly * ly)
        if d_xy - r_xy > max_range:
            continue
        zlo, zhi = lz - prims[p, 5], lz + prims[p, 5]
        if d_xy <= r_xy + 1e-3:
            a_lo, a_n = 0, n_az
            e_lo, e_hi = el_min, el_max
        else:
            # conservative azimuth / elevation window of the box seen from the sensor
            half = math.asin(min(1.0, r_xy / d_xy))
            a_c = math.atan2(ly, lx)
            a_lo = int(math.floor((a_c - half) / daz))
            a_n = int(math.ceil((a_c + half) / daz)) - a_lo + 1
            dmin, dmax = d_xy - r_xy, d_xy + r_xy
            e_hi = math.atan2(zhi, dmin if zhi > 0 else dmax)
            e_lo = math.atan2(zlo, dmax if zlo > 0 else dmin)
        for bi in range(B):
            if elevations[bi] < e_lo - 1e-9 or elevations[bi] > e_hi + 1e-9:
                continue
            for k in range(a_n):
                ai = (a_lo + k) % n_az
                # direction in the LiDAR frame, then world
                ex, ey, ez = cosel[bi] * cosaz[ai], cosel[bi] * sinaz[ai], sinel[bi]
                dx = R[0, 0] * ex + R[0, 1] * ey + R[0, 2] * ez
                dy = R[1, 0] * ex + R[1, 1] * ey + R[1, 2] * ez
                dz = R[2, 0] * ex + R[2, 1] * ey + R[2, 2] * ez
                t, face = _ray_box(o[0], o[1], o[2], dx, dy, dz, prims, p)
                if t < tbest[bi, ai]:
                    tbest[bi, ai] = t
                    pbest[bi, ai] = p
                    fbest[bi, ai] = face
    n = 0
    for bi in range(B):
        for ai in range(n_az):
            ex, ey, ez = cosel[bi] * cosaz[ai], cosel[bi] * sinaz[ai], sinel[bi]
            dx = R[0, 0] * ex + R[0, 1] * ey + R[0, 2] * ez
            dy = R[1, 0] * ex + R[1, 1] * ey + R[1, 2] * ez
            dz = R[2, 0] * ex + R[2, 1] * ey + R[2, 2] * ez
            t = tbest[bi, ai]
            p = pbest[bi, ai]
            tg = -o[2] / dz if dz < -1e-9 else np.inf
            if tg < t:
                t = tg
                p = -1
                _, _, _, refl = ground_material(o[0] + t * dx, o[1] + t * dy, layout)
                cos_inc = -dz
                obj = -1
            elif p >= 0:
                refl = prims[p, 11]
                nx, ny, nz = _face_normal(prims, p, int(fbest[bi, ai]))
                cos_inc = abs(nx * dx + ny * dy + nz * dz)
                obj = int(prims[p, 13])
            else:
                continue  # no return within range
            # Dark and far surfaces return less often; that is what starves far objects.
            frac = t / max_range
            if drop_u[bi, ai] < drop_base + drop_far * frac * frac * (1.3 - refl):
                continue
            noise = min(noise_clip, max(-noise_clip, noise_sigma * noise_n[bi, ai]))
            rr = t + noise
            inten = 255.0 * refl * (0.3 + 0.7 * cos_inc) * (1.0 - 0.4 * frac) + 4.0 * inten_n[bi, ai]
            out_pts[n, 0] = rr * ex
            out_pts[n, 1] = rr * ey
            out_pts[n, 2] = rr * ez
            out_pts[n, 3] = min(255.0, max(0.0, inten))
            out_pts[n, 4] = bi
            out_obj[n] = obj
            n += 1
    return n


@njit(cache=True)
def paint_ground(xs: np.ndarray, ys: np.ndarray, layout: np.ndarray) -> np.ndarray:
    """Ground colour on the grid ``ys x xs`` (global metres): (len(ys), len(xs), 3) in [0, 1]."""
    out = np.empty((ys.shape[0], xs.shape[0], 3))
    for i in range(ys.shape[0]):
        for j in range(xs.shape[0]):
            r, g, b, _ = ground_material(xs[j], ys[i], layout)
            out[i, j, 0], out[i, j, 1], out[i, j, 2] = r, g, b
    return out

"""Rigid-body geometry shared by boxes, datasets and models.

Every function accepts numpy arrays or torch tensors and returns the same kind, keeping the
dtype and device of its primary argument (the first one unless stated); other array
arguments are converted to match. Leading batch dimensions ``[...]`` broadcast.

Conventions: frames are x forward, y left, z up; yaw is about +z, 0 along +x,
counter-clockwise positive. Quaternions are ``[w, x, y, z]`` (nuScenes / pyquaternion
order). Transforms are 4x4 homogeneous matrices named ``a_T_b``: they map b-coordinates to
a-coordinates, so ``a_T_c = a_T_b @ b_T_c``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence, TypeVar, Union

import numpy as np
import torch

__all__ = [
    "quat_to_matrix",
    "matrix_to_quat",
    "yaw_to_quat",
    "quat_to_yaw",
    "quat_multiply",
    "rot_z",
    "make_transform",
    "invert_transform",
    "transform_points",
    "transform_from_record",
    "project_points",
    "wrap_angle",
]

Array = TypeVar("Array", np.ndarray, torch.Tensor)
ArrayLike = Union[np.ndarray, torch.Tensor, float, Sequence[float], Sequence[Sequence[float]]]


# ----------------------------------------------------------------------------------------
# Backend dispatch. Kept private; boxes.py shares them.
# ----------------------------------------------------------------------------------------


def _as_array(x: ArrayLike) -> Any:
    """Tensors pass through; anything else becomes a numpy array. Integers become floats."""
    if isinstance(x, torch.Tensor):
        return x if x.is_floating_point() else x.to(torch.get_default_dtype())
    arr = np.asarray(x)
    return arr if np.issubdtype(arr.dtype, np.floating) else arr.astype(np.float64)


def _like(x: ArrayLike, ref: Any) -> Any:
    """``x`` as an array of the same kind, dtype and device as ``ref``."""
    if isinstance(ref, torch.Tensor):
        return torch.as_tensor(x, dtype=ref.dtype, device=ref.device)
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=ref.dtype)


def _stack(xs: Sequence[Any], axis: int) -> Any:
    if isinstance(xs[0], torch.Tensor):
        return torch.stack(list(xs), dim=axis)
    return np.stack(xs, axis=axis)


def _cat(xs: Sequence[Any], axis: int) -> Any:
    if isinstance(xs[0], torch.Tensor):
        return torch.cat(list(xs), dim=axis)
    return np.concatenate(xs, axis=axis)


def _sin(x: Any) -> Any:
    return torch.sin(x) if isinstance(x, torch.Tensor) else np.sin(x)


def _cos(x: Any) -> Any:
    return torch.cos(x) if isinstance(x, torch.Tensor) else np.cos(x)


def _sqrt(x: Any) -> Any:
    return torch.sqrt(x) if isinstance(x, torch.Tensor) else np.sqrt(x)


def _atan2(y: Any, x: Any) -> Any:
    return torch.atan2(y, x) if isinstance(y, torch.Tensor) else np.arctan2(y, x)


def _where(cond: Any, a: Any, b: Any) -> Any:
    return torch.where(cond, a, b) if isinstance(a, torch.Tensor) else np.where(cond, a, b)


def _clamp_min(x: Any, lo: float) -> Any:
    return torch.clamp(x, min=lo) if isinstance(x, torch.Tensor) else np.maximum(x, lo)


def _zeros(shape: Sequence[int], like: Any) -> Any:
    if isinstance(like, torch.Tensor):
        return torch.zeros(tuple(shape), dtype=like.dtype, device=like.device)
    return np.zeros(tuple(shape), dtype=like.dtype)


def _arange(n: int, like: Any) -> Any:
    if isinstance(like, torch.Tensor):
        return torch.arange(n, device=like.device)
    return np.arange(n)


def _swap_last(x: Any) -> Any:
    """Transpose of the last two axes (same spelling in numpy and torch)."""
    return x.swapaxes(-1, -2)


def _copy(x: Any) -> Any:
    return x.clone() if isinstance(x, torch.Tensor) else x.copy()


def _check_last(x: Any, size: int, name: str) -> None:
    if x.ndim < 1 or x.shape[-1] != size:
        raise ValueError(f"{name} must have shape [..., {size}], got {tuple(x.shape)}")


def _check_square(x: Any, size: int, name: str) -> None:
    if x.ndim < 2 or tuple(x.shape[-2:]) != (size, size):
        raise ValueError(f"{name} must have shape [..., {size}, {size}], got {tuple(x.shape)}")


# ----------------------------------------------------------------------------------------
# Angles and quaternions
# ----------------------------------------------------------------------------------------


def wrap_angle(angle: ArrayLike) -> Array:
    """Wrap angles to ``[-pi, pi)``. Shape ``[...]`` -> ``[...]``."""
    a = _as_array(angle)
    out = (a + math.pi) % (2.0 * math.pi) - math.pi
    # Rounding can land exactly on +pi (e.g. for inputs a hair below -pi); fold it over.
    return _where(out >= math.pi, out - 2.0 * math.pi, out)


def quat_to_matrix(q: ArrayLike) -> Array:
    """Rotation matrices from quaternions ``[w, x, y, z]``; ``q`` need not be unit length.

    Shape ``[..., 4]`` -> ``[..., 3, 3]``.
    """
    q = _as_array(q)
    _check_last(q, 4, "q")
    q = q / _sqrt((q * q).sum(-1))[..., None]
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    entries = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return _stack(entries, -1).reshape(*q.shape[:-1], 3, 3)


def matrix_to_quat(rotation: ArrayLike) -> Array:
    """Unit quaternions ``[w, x, y, z]`` with ``w >= 0`` from rotation matrices.

    Shape ``[..., 3, 3]`` -> ``[..., 4]``. Uses Shepperd's method: of the four ways to
    recover the quaternion, each row divides by one component, and we take the one with
    the largest component so the division is never ill-conditioned (e.g. near 180 degrees,
    where ``w`` -> 0).
    """
    m = _as_array(rotation)
    _check_square(m, 3, "rotation")
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # 4w^2, 4x^2, 4y^2, 4z^2. They sum to exactly 4, so the largest is >= 1.
    sq = _stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1
    )
    # Row k is 4 * q_k * q.
    candidates = _stack(
        [
            _stack([sq[..., 0], m21 - m12, m02 - m20, m10 - m01], -1),
            _stack([m21 - m12, sq[..., 1], m10 + m01, m02 + m20], -1),
            _stack([m02 - m20, m10 + m01, sq[..., 2], m12 + m21], -1),
            _stack([m10 - m01, m02 + m20, m12 + m21, sq[..., 3]], -1),
        ],
        -2,
    )
    # 4|q_k|; the clamp only touches rows that are discarded below, and keeps them (and
    # their gradients) finite.
    denom = 2 * _sqrt(_clamp_min(sq, 0.01))
    best = sq.argmax(-1)
    pick = best[..., None] == _arange(4, like=m)
    q = (candidates / denom[..., None] * pick[..., None]).sum(-2)
    q = q / _sqrt((q * q).sum(-1))[..., None]
    return _where(q[..., :1] < 0, -q, q)


def yaw_to_quat(yaw: ArrayLike) -> Array:
    """Quaternions ``[w, x, y, z]`` of rotations by ``yaw`` about +z. ``[...]`` -> ``[..., 4]``."""
    half = _as_array(yaw) / 2
    zero = half * 0
    return _stack([_cos(half), zero, zero, _sin(half)], -1)


def quat_to_yaw(q: ArrayLike) -> Array:
    """Yaw of the rotated x axis, ``atan2(R[1, 0], R[0, 0])``. ``[..., 4]`` -> ``[...]``.

    Same as ``nuscenes.eval.common.utils.quaternion_yaw``; meaningful for boxes in an
    ego, lidar or global frame (z up), not in a camera frame.
    """
    q = _as_array(q)
    _check_last(q, 4, "q")
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    # Both arguments are R[1, 0] and R[0, 0] times |q|^2, which atan2 ignores, so q need
    # not be normalised.
    return _atan2(2 * (x * y + w * z), w * w + x * x - y * y - z * z)


def quat_multiply(a: ArrayLike, b: ArrayLike) -> Array:
    """Hamilton product ``a * b`` (apply ``b`` first, then ``a``). ``[..., 4]`` x ``[..., 4]``."""
    a = _as_array(a)
    b = _like(b, a)
    _check_last(a, 4, "a")
    _check_last(b, 4, "b")
    aw, ax, ay, az = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    bw, bx, by, bz = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return _stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        -1,
    )


# ----------------------------------------------------------------------------------------
# Rotations, transforms, projection
# ----------------------------------------------------------------------------------------


def rot_z(yaw: ArrayLike) -> Array:
    """Rotations about +z, counter-clockwise seen from above. ``[...]`` -> ``[..., 3, 3]``."""
    yaw = _as_array(yaw)
    c, s = _cos(yaw), _sin(yaw)
    zero, one = yaw * 0, yaw * 0 + 1
    entries = [c, -s, zero, s, c, zero, zero, zero, one]
    return _stack(entries, -1).reshape(*yaw.shape, 3, 3)


def make_transform(rotation: ArrayLike, translation: ArrayLike) -> Array:
    """Homogeneous transforms from rotations ``[..., 3, 3]`` and translations ``[..., 3]``.

    Batch dimensions broadcast. Returns ``[..., 4, 4]`` in the kind/dtype of ``rotation``.
    """
    r = _as_array(rotation)
    t = _like(translation, r)
    _check_square(r, 3, "rotation")
    _check_last(t, 3, "translation")
    broadcast = torch.broadcast_shapes if isinstance(r, torch.Tensor) else np.broadcast_shapes
    batch = tuple(broadcast(tuple(r.shape[:-2]), tuple(t.shape[:-1])))
    out = _zeros((*batch, 4, 4), like=r)
    out[..., :3, :3] = r
    out[..., :3, 3] = t
    out[..., 3, 3] = 1
    return out


def invert_transform(a_T_b: ArrayLike) -> Array:
    """Rigid inverse ``b_T_a`` of ``a_T_b``: ``[R | t]^-1 = [R^T | -R^T t]``. ``[..., 4, 4]``.

    Exact for rigid transforms and cheaper and better conditioned than a general inverse;
    meaningless for matrices with scale or shear.
    """
    m = _as_array(a_T_b)
    _check_square(m, 4, "a_T_b")
    r_inv = _swap_last(m[..., :3, :3])
    t = m[..., :3, 3]
    return make_transform(r_inv, -(r_inv @ t[..., None])[..., 0])


def transform_points(a_T_b: ArrayLike, points: ArrayLike) -> Array:
    """Map points from frame b to frame a.

    ``a_T_b``: ``[4, 4]`` or ``[..., 4, 4]`` broadcasting against the batch dims of
    ``points`` ``[..., 3]``. Returns ``[..., 3]`` in the kind/dtype of ``points``.
    """
    p = _as_array(points)
    m = _like(a_T_b, p)
    _check_square(m, 4, "a_T_b")
    _check_last(p, 3, "points")
    r, t = m[..., :3, :3], m[..., :3, 3]
    if m.ndim == 2:
        # One matrix for all points: a single (..., 3) @ (3, 3) product.
        return p @ _swap_last(r) + t
    return (r @ p[..., None])[..., 0] + t


def transform_from_record(record: Mapping[str, Any]) -> np.ndarray:
    """4x4 float64 transform from a nuScenes ``ego_pose`` or ``calibrated_sensor`` record.

    An ego_pose record gives ``global_T_ego``; a calibrated_sensor record gives
    ``ego_T_sensor``. ``rotation`` is a ``[w, x, y, z]`` quaternion, ``translation`` metres.
    """
    rotation = quat_to_matrix(np.asarray(record["rotation"], dtype=np.float64))
    return make_transform(rotation, np.asarray(record["translation"], dtype=np.float64))


def project_points(pix_T_cam: ArrayLike, points_cam: ArrayLike) -> tuple[Array, Array]:
    """Pinhole projection of camera-frame points.

    ``pix_T_cam``: ``[3, 3]`` or ``[..., 3, 3]``; ``points_cam``: ``[..., 3]``. Returns
    ``(uv [..., 2], depth [...])`` with ``depth = z``. Nothing is clipped: points behind the
    camera project (mirrored) with negative depth and ``z == 0`` gives inf/nan, without
    warnings; the caller decides what to keep.
    """
    p = _as_array(points_cam)
    k = _like(pix_T_cam, p)
    _check_square(k, 3, "pix_T_cam")
    _check_last(p, 3, "points_cam")
    proj = p @ _swap_last(k) if k.ndim == 2 else (k @ p[..., None])[..., 0]
    if isinstance(proj, torch.Tensor):
        uv = proj[..., :2] / proj[..., 2:3]
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = proj[..., :2] / proj[..., 2:3]
    return uv, p[..., 2]

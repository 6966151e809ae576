"""Upright 3D boxes with velocity: :class:`Boxes3D`."""

from __future__ import annotations

from typing import Any, Literal, Optional, Sequence, Union

import numpy as np
import torch

from bevkd.structures.geometry import (
    ArrayLike,
    _as_array,
    _atan2,
    _cat,
    _check_square,
    _copy,
    _cos,
    _like,
    _sin,
    _stack,
    _zeros,
    quat_to_yaw,
    transform_points,
    wrap_angle,
    yaw_to_quat,
)

__all__ = ["Boxes3D"]

Index = Union[int, slice, np.ndarray, torch.Tensor, Sequence[int], Sequence[bool]]

# Corner signs (x, y, z) in the order of nuscenes.utils.data_classes.Box.corners(): the
# first four face forward (+x), the last four backward; each face goes left-top,
# right-top, right-bottom, left-bottom (seen from outside the front face).
_CORNER_SIGNS = np.array(
    [
        [1, 1, 1], [1, -1, 1], [1, -1, -1], [1, 1, -1],
        [-1, 1, 1], [-1, -1, 1], [-1, -1, -1], [-1, 1, -1],
    ],
    dtype=np.float64,
)  # fmt: skip

# Footprint front-right, front-left, rear-left, rear-right: counter-clockwise seen from
# above (+z). The devkit's first four corners all lie on the front face, so they are not a
# footprint; its top face in order 0, 1, 5, 4 is one, but clockwise.
_BEV_ORDER = [1, 0, 4, 5]


class Boxes3D:
    """N upright 3D boxes as one ``(N, 9)`` array ``[x, y, z, l, w, h, yaw, vx, vy]``.

    ``(x, y, z)`` is the geometric centre, ``(l, w, h)`` the extents along the box's own
    x (heading), y and z axes, ``yaw`` the heading about +z (0 along +x, counter-clockwise
    positive), ``(vx, vy)`` the velocity in m/s in the same frame. The array is a numpy
    array or a torch tensor; every method returns a new ``Boxes3D`` of the same kind, dtype
    and device and never writes to ``self.tensor``. Operations that change yaw wrap it to
    ``[-pi, pi)``.

    The constructor does not copy, and the properties (``center``, ``dims``, ...) are views.
    """

    __slots__ = ("tensor",)

    def __init__(self, tensor: Union[np.ndarray, torch.Tensor, Sequence[Sequence[float]]]):
        """``tensor``: ``(N, 9)``; lists become float64 numpy, integer arrays become float."""
        tensor = _as_array(tensor)
        if tensor.ndim != 2 or tensor.shape[1] != 9:
            raise ValueError(
                "Boxes3D expects an (N, 9) array [x, y, z, l, w, h, yaw, vx, vy], "
                f"got shape {tuple(tensor.shape)}; use .reshape(-1, 9) for a single box"
            )
        self.tensor = tensor

    # ------------------------------------------------------------------------------------
    # Construction and conversion
    # ------------------------------------------------------------------------------------

    @classmethod
    def empty(
        cls,
        backend: Literal["numpy", "torch"] = "numpy",
        dtype: Union[np.dtype, torch.dtype, type, None] = None,
        device: Union[str, torch.device, None] = None,
    ) -> Boxes3D:
        """No boxes, ``(0, 9)``. Default dtype: float64 for numpy, float32 for torch."""
        if backend == "numpy":
            return cls(np.zeros((0, 9), dtype=np.float64 if dtype is None else dtype))
        if backend == "torch":
            dtype = torch.float32 if dtype is None else dtype
            return cls(torch.zeros((0, 9), dtype=dtype, device=device))
        raise ValueError(f"backend must be 'numpy' or 'torch', got {backend!r}")

    @classmethod
    def from_nuscenes(
        cls,
        translation: ArrayLike,
        size_wlh: ArrayLike,
        rotation_wxyz: ArrayLike,
        velocity: Optional[ArrayLike] = None,
    ) -> Boxes3D:
        """Boxes from nuScenes fields.

        ``translation (N, 3)`` centres, ``size_wlh (N, 3)`` as ``[w, l, h]``,
        ``rotation_wxyz (N, 4)`` quaternions, ``velocity (N, 2)`` (or ``(N, 3)``, whose z
        is dropped; ``None`` gives zeros). Only the yaw of the rotation is kept, measured
        like ``nuscenes.eval.common.utils.quaternion_yaw``. The kind, dtype and device
        follow ``translation``; NaN velocities (annotations without one) stay NaN.
        """
        t = _as_array(translation)
        size = _like(size_wlh, t)
        rot = _like(rotation_wxyz, t)
        n = t.shape[0] if t.ndim == 2 else -1
        fields = (("translation", t, 3), ("size_wlh", size, 3), ("rotation_wxyz", rot, 4))
        for name, arr, width in fields:
            if arr.ndim != 2 or arr.shape != (n, width):
                raise ValueError(f"{name} must have shape (N, {width}), got {tuple(arr.shape)}")
        if velocity is None:
            vel = _zeros((n, 2), like=t)
        else:
            vel = _like(velocity, t)
            if vel.ndim != 2 or vel.shape[0] != n or vel.shape[1] not in (2, 3):
                raise ValueError(
                    f"velocity must have shape (N, 2) or (N, 3), got {tuple(vel.shape)}"
                )
            vel = vel[:, :2]
        yaw = wrap_angle(quat_to_yaw(rot))
        return cls(_cat([t, size[:, [1, 0, 2]], yaw[:, None], vel], 1))

    def to_nuscenes(self) -> tuple[Any, Any, Any, Any]:
        """``(translation (N, 3), size_wlh (N, 3), rotation_wxyz (N, 4), velocity (N, 2))``.

        Fresh arrays (not views); rotations are pure yaw quaternions with ``w >= 0``.
        """
        return (
            _copy(self.center),
            self.dims[:, [1, 0, 2]],
            yaw_to_quat(self.yaw),
            _copy(self.velocity),
        )

    @classmethod
    def cat(cls, boxes: Sequence[Boxes3D]) -> Boxes3D:
        """Concatenate box sets of the same kind (all numpy or all torch)."""
        if len(boxes) == 0:
            raise ValueError("Boxes3D.cat needs at least one Boxes3D; use Boxes3D.empty() for none")
        if len({b.is_torch for b in boxes}) > 1:
            raise TypeError(
                "cannot concatenate numpy- and torch-backed Boxes3D; "
                "convert with .numpy() or .torch()"
            )
        return cls(_cat([b.tensor for b in boxes], 0))

    def clone(self) -> Boxes3D:
        """A deep copy."""
        return Boxes3D(_copy(self.tensor))

    def to(self, device: Union[str, torch.device]) -> Boxes3D:
        """Move a torch-backed set to ``device``; numpy-backed sets raise ``TypeError``."""
        if not self.is_torch:
            raise TypeError("Boxes3D.to() needs torch-backed boxes; call .torch(device) instead")
        return Boxes3D(self.tensor.to(device))

    def numpy(self) -> Boxes3D:
        """Numpy-backed boxes (detached, on the CPU; may share memory with ``self``)."""
        if self.is_torch:
            return Boxes3D(self.tensor.detach().cpu().numpy())
        return Boxes3D(self.tensor)

    def torch(self, device: Union[str, torch.device, None] = None) -> Boxes3D:
        """Torch-backed boxes, keeping the dtype (may share memory with ``self``)."""
        t = self.tensor if self.is_torch else torch.from_numpy(self.tensor)
        return Boxes3D(t if device is None else t.to(device))

    # ------------------------------------------------------------------------------------
    # Container protocol and metadata
    # ------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.tensor.shape[0])

    def __getitem__(self, index: Index) -> Boxes3D:
        """Select by int, slice, boolean mask ``(N,)`` or integer indices; always a Boxes3D."""
        if not isinstance(index, (int, np.integer, slice)):
            index = self._convert_index(index)
        return Boxes3D(self.tensor[index].reshape(-1, 9))

    def _convert_index(self, index: Any) -> Any:
        """An index array in this set's backend (numpy index on torch boxes and vice versa)."""
        if self.is_torch:
            index = torch.as_tensor(index, device=self.tensor.device)
            # An empty list arrives as a float tensor, which torch refuses as an index.
            return index.long() if index.is_floating_point() else index
        if isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        index = np.asarray(index)
        return index.astype(np.int64) if index.dtype.kind == "f" else index

    def __repr__(self) -> str:
        backend = f"torch, device={self.tensor.device}" if self.is_torch else "numpy"
        return f"Boxes3D(n={len(self)}, {backend}, dtype={self.tensor.dtype})"

    @property
    def is_torch(self) -> bool:
        return isinstance(self.tensor, torch.Tensor)

    @property
    def dtype(self) -> Union[np.dtype, torch.dtype]:
        return self.tensor.dtype

    @property
    def device(self) -> Optional[torch.device]:
        """The torch device, or ``None`` for numpy-backed boxes."""
        return self.tensor.device if self.is_torch else None

    # ------------------------------------------------------------------------------------
    # Fields
    # ------------------------------------------------------------------------------------

    @property
    def center(self) -> Any:
        """Geometric centres ``(N, 3)``."""
        return self.tensor[:, 0:3]

    @property
    def dims(self) -> Any:
        """Extents ``(N, 3)`` as ``[l, w, h]``."""
        return self.tensor[:, 3:6]

    @property
    def yaw(self) -> Any:
        """Headings ``(N,)`` in radians."""
        return self.tensor[:, 6]

    @property
    def velocity(self) -> Any:
        """Velocities ``(N, 2)`` as ``[vx, vy]`` in m/s."""
        return self.tensor[:, 7:9]

    @property
    def bottom_center(self) -> Any:
        """Centres of the bottom faces ``(N, 3)`` (a new array)."""
        return _cat([self.tensor[:, 0:2], self.tensor[:, 2:3] - self.tensor[:, 5:6] / 2], 1)

    def _with(
        self, center: Any = None, dims: Any = None, yaw: Any = None, velocity: Any = None
    ) -> Boxes3D:
        """A new set with the given fields replaced; yaw is wrapped to [-pi, pi)."""
        parts = [
            self.center if center is None else center,
            self.dims if dims is None else dims,
            (self.yaw if yaw is None else wrap_angle(yaw))[:, None],
            self.velocity if velocity is None else velocity,
        ]
        return Boxes3D(_cat(parts, 1))

    # ------------------------------------------------------------------------------------
    # Geometry
    # ------------------------------------------------------------------------------------

    def corners(self) -> Any:
        """Corners ``(N, 8, 3)`` in the order of ``nuscenes Box.corners()`` (transposed).

        0-3 face forward (+x of the box), 4-7 backward; in each face: left-top, right-top,
        right-bottom, left-bottom.
        """
        local = _like(_CORNER_SIGNS, self.tensor)[None] * (self.dims[:, None, :] / 2)
        c, s = _cos(self.yaw)[:, None], _sin(self.yaw)[:, None]
        x = c * local[..., 0] - s * local[..., 1] + self.center[:, 0:1]
        y = s * local[..., 0] + c * local[..., 1] + self.center[:, 1:2]
        z = local[..., 2] + self.center[:, 2:3]
        return _stack([x, y, z], -1)

    def bev_corners(self) -> Any:
        """Footprint polygons ``(N, 4, 2)``, counter-clockwise seen from above.

        Order: front-right, front-left, rear-left, rear-right (devkit corners 1, 0, 4, 5).
        """
        return self.corners()[:, _BEV_ORDER, :2]

    def transform(self, a_T_b: ArrayLike) -> Boxes3D:
        """Map boxes from frame b to frame a with the rigid transform ``a_T_b (4, 4)``.

        Centres go through the full transform; velocity is a vector, so it is only rotated
        (by the upper-left 2x2 of the rotation, assuming ``vz = 0``). The new yaw is the
        heading vector ``(cos yaw, sin yaw, 0)`` rotated and projected onto the xy-plane:
        for rotations about z it is ``yaw + yaw(R)``; roll and pitch would tilt the box,
        which this upright representation cannot hold, so they are dropped (as in
        BEVDepth/mmdet3d). This matches the devkit's ``Box.rotate`` followed by
        ``quaternion_yaw`` and ``velocity[:2]``. Scale in ``a_T_b`` is not supported.
        """
        m = _like(a_T_b, self.tensor)
        _check_square(m, 4, "a_T_b")
        if m.ndim != 2:
            raise ValueError(f"a_T_b must have shape (4, 4), got {tuple(m.shape)}")
        r2 = m[:2, :2]
        heading = _stack([_cos(self.yaw), _sin(self.yaw)], -1) @ r2.T
        return self._with(
            center=transform_points(m, self.center),
            yaw=_atan2(heading[:, 1], heading[:, 0]),
            velocity=self.velocity @ r2.T,
        )

    def rotate(self, angle: Union[float, ArrayLike]) -> Boxes3D:
        """Rotate by ``angle`` (radians, counter-clockwise) about the z axis through the origin.

        Centres, yaw and velocities turn; equal to ``transform`` with ``rot_z(angle)``.
        """
        angle = _like(angle, self.tensor)
        c, s = _cos(angle), _sin(angle)

        def turn(xy: Any) -> Any:
            return _stack([c * xy[:, 0] - s * xy[:, 1], s * xy[:, 0] + c * xy[:, 1]], -1)

        center = _cat([turn(self.center[:, :2]), self.center[:, 2:3]], 1)
        return self._with(center=center, yaw=self.yaw + angle, velocity=turn(self.velocity))

    def flip(self, axis: Literal["x", "y"]) -> Boxes3D:
        """Mirror the scene (a BEV augmentation).

        ``"x"``: across the x axis, ``y -> -y``, ``yaw -> -yaw``, ``vy -> -vy``.
        ``"y"``: across the y axis, ``x -> -x``, ``yaw -> pi - yaw``, ``vx -> -vx``.
        Boxes are symmetric, so the mirrored corner set is exactly a box again.
        """
        if axis == "x":
            sign = _like([1.0, -1.0], self.tensor)
            yaw = -self.yaw
        elif axis == "y":
            sign = _like([-1.0, 1.0], self.tensor)
            yaw = np.pi - self.yaw
        else:
            raise ValueError(f"flip axis must be 'x' or 'y', got {axis!r}")
        center = _cat([self.center[:, :2] * sign, self.center[:, 2:3]], 1)
        return self._with(center=center, yaw=yaw, velocity=self.velocity * sign)

    def scale(self, factor: float) -> Boxes3D:
        """Scale the scene about the origin: centres, dims and velocities times ``factor`` (> 0)."""
        if not factor > 0:
            raise ValueError(f"scale factor must be positive, got {factor}")
        return self._with(
            center=self.center * factor, dims=self.dims * factor, velocity=self.velocity * factor
        )

    def translate(self, offset: ArrayLike) -> Boxes3D:
        """Shift centres by ``offset (3,)``; velocities are unchanged."""
        offset = _like(offset, self.tensor)
        if tuple(offset.shape) != (3,):
            raise ValueError(f"offset must have shape (3,), got {tuple(offset.shape)}")
        return self._with(center=self.center + offset)

    # ------------------------------------------------------------------------------------
    # Points
    # ------------------------------------------------------------------------------------

    def points_in_boxes(self, points: ArrayLike, eps: float = 1e-6) -> Any:
        """Which points lie in which box: ``points (M, 3)`` -> ``(M, N)`` bool.

        The boundary counts as inside, with ``eps`` metres of slack against rounding.
        Memory is O(M * N); chunk the points for very large inputs.
        """
        p = _like(points, self.tensor)
        if p.ndim != 2 or p.shape[1] != 3:
            raise ValueError(f"points must have shape (M, 3), got {tuple(p.shape)}")
        d = p[:, None, :] - self.center[None]  # (M, N, 3)
        c, s = _cos(self.yaw), _sin(self.yaw)
        # Rotate the offsets by -yaw into each box's own frame.
        local_x = c * d[..., 0] + s * d[..., 1]
        local_y = -s * d[..., 0] + c * d[..., 1]
        half = self.dims / 2 + eps
        inside_x = abs(local_x) <= half[:, 0]
        inside_y = abs(local_y) <= half[:, 1]
        return inside_x & inside_y & (abs(d[..., 2]) <= half[:, 2])

    def count_points(self, points: ArrayLike, eps: float = 1e-6) -> Any:
        """Number of ``points (M, 3)`` inside each box: ``(N,)`` int64."""
        return self.points_in_boxes(points, eps).sum(0)

"""Geometry primitives: rigid transforms, quaternions and 3D boxes (numpy or torch)."""

from bevkd.structures.boxes import Boxes3D
from bevkd.structures.geometry import (
    invert_transform,
    make_transform,
    matrix_to_quat,
    project_points,
    quat_multiply,
    quat_to_matrix,
    quat_to_yaw,
    rot_z,
    transform_from_record,
    transform_points,
    wrap_angle,
    yaw_to_quat,
)

__all__ = [
    "Boxes3D",
    "invert_transform",
    "make_transform",
    "matrix_to_quat",
    "project_points",
    "quat_multiply",
    "quat_to_matrix",
    "quat_to_yaw",
    "rot_z",
    "transform_from_record",
    "transform_points",
    "wrap_angle",
    "yaw_to_quat",
]

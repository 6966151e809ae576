"""Tests for bevkd.structures.geometry: hand-computed values, pyquaternion and the devkit."""

import math
import warnings

import numpy as np
import pytest
import torch
from nuscenes.eval.common.utils import quaternion_yaw
from pyquaternion import Quaternion

from bevkd.structures import (
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

S45 = math.sqrt(0.5)  # cos 45 deg == sin 45 deg


def random_quats(n: int, seed: int = 0) -> np.ndarray:
    """Unit quaternions [w, x, y, z] with random signs, shape (n, 4)."""
    q = np.random.default_rng(seed).normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def random_rigid(n: int, seed: int = 0) -> np.ndarray:
    """Random rigid transforms (n, 4, 4)."""
    t = np.random.default_rng(seed + 1).uniform(-50, 50, size=(n, 3))
    return make_transform(quat_to_matrix(random_quats(n, seed)), t)


# ----------------------------------------------------------------------------------------
# Quaternions
# ----------------------------------------------------------------------------------------


def test_yaw_90_quaternion_and_matrix_by_hand():
    # Rotation by theta about z is [cos(theta/2), 0, 0, sin(theta/2)]; theta = 90 deg.
    q = yaw_to_quat(math.pi / 2)
    np.testing.assert_allclose(q, [S45, 0, 0, S45])
    # x -> y, y -> -x: columns are the images of the axes.
    np.testing.assert_allclose(quat_to_matrix(q), [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-15)
    assert quat_to_yaw(q) == pytest.approx(math.pi / 2)


def test_quat_to_matrix_180_about_x_by_hand():
    # 180 deg about x flips y and z.
    np.testing.assert_allclose(quat_to_matrix([0.0, 1.0, 0.0, 0.0]), np.diag([1.0, -1.0, -1.0]))


def test_quat_to_matrix_normalises_and_matches_pyquaternion():
    q = random_quats(16)
    r = quat_to_matrix(3.0 * q)  # scale must not matter
    assert r.shape == (16, 3, 3)
    for qi, ri in zip(q, r):
        np.testing.assert_allclose(ri, Quaternion(qi).rotation_matrix, atol=1e-12)
    # Proper rotations: orthonormal with determinant +1.
    eye = np.broadcast_to(np.eye(3), r.shape)
    np.testing.assert_allclose(r @ r.transpose(0, 2, 1), eye, atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0)


def test_matrix_to_quat_round_trip_up_to_sign():
    q = random_quats(64, seed=3)
    back = matrix_to_quat(quat_to_matrix(q))
    assert np.all(back[:, 0] >= 0)
    # q and -q are the same rotation; the result is the w >= 0 one.
    np.testing.assert_allclose(back, q * np.sign(q[:, :1]), atol=1e-12)


@pytest.mark.parametrize(
    "q",
    [
        [1.0, 0.0, 0.0, 0.0],  # identity
        [0.0, 1.0, 0.0, 0.0],  # 180 deg about x: w = 0, the naive w-branch divides by zero
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
        [1e-9, S45, -S45, 0.0],  # almost 180 deg about a diagonal
        [0.5, -0.5, 0.5, -0.5],
    ],
)
def test_matrix_to_quat_near_singular_branches(q):
    q = np.asarray(q) / np.linalg.norm(q)
    back = matrix_to_quat(quat_to_matrix(q))
    assert np.all(np.isfinite(back))
    sign = 1.0 if np.dot(back, q) >= 0 else -1.0
    np.testing.assert_allclose(back, sign * q, atol=1e-9)
    np.testing.assert_allclose(quat_to_matrix(back), quat_to_matrix(q), atol=1e-12)


def test_matrix_to_quat_batched_shape():
    r = quat_to_matrix(random_quats(6).reshape(2, 3, 4))
    assert r.shape == (2, 3, 3, 3)
    assert matrix_to_quat(r).shape == (2, 3, 4)


def test_quat_to_yaw_matches_devkit_quaternion_yaw():
    # Includes roll and pitch: yaw is still that of the rotated x axis.
    for qi in random_quats(16, seed=5):
        assert quat_to_yaw(qi) == pytest.approx(quaternion_yaw(Quaternion(qi)), abs=1e-12)
    # Unnormalised input gives the same yaw.
    q = random_quats(4, seed=6)
    np.testing.assert_allclose(quat_to_yaw(5.0 * q), quat_to_yaw(q))


def test_yaw_round_trip():
    yaws = np.array([-3.0, -1.0, 0.0, 0.5, 2.0, 3.1])
    np.testing.assert_allclose(quat_to_yaw(yaw_to_quat(yaws)), yaws, atol=1e-12)
    np.testing.assert_allclose(quat_to_matrix(yaw_to_quat(yaws)), rot_z(yaws), atol=1e-12)


def test_quat_multiply_matches_pyquaternion_and_composes_rotations():
    a, b = random_quats(8, seed=7), random_quats(8, seed=8)
    ab = quat_multiply(a, b)
    for ai, bi, abi in zip(a, b, ab):
        np.testing.assert_allclose(abi, (Quaternion(ai) * Quaternion(bi)).elements, atol=1e-12)
    # a * b rotates by b first, then by a.
    composed = quat_to_matrix(a) @ quat_to_matrix(b)
    np.testing.assert_allclose(quat_to_matrix(ab), composed, atol=1e-12)
    # Yaw rotations add.
    yaw_sum = quat_multiply(yaw_to_quat(0.3), yaw_to_quat(0.4))
    np.testing.assert_allclose(yaw_sum, yaw_to_quat(0.7), atol=1e-15)


# ----------------------------------------------------------------------------------------
# Rotations and transforms
# ----------------------------------------------------------------------------------------


def test_rot_z_is_counter_clockwise():
    # +90 deg turns +x into +y (left) and +y into -x.
    r = rot_z(math.pi / 2)
    np.testing.assert_allclose(r @ [1.0, 0.0, 0.0], [0, 1, 0], atol=1e-15)
    np.testing.assert_allclose(r @ [0.0, 1.0, 0.0], [-1, 0, 0], atol=1e-15)
    assert rot_z(np.zeros((2, 5))).shape == (2, 5, 3, 3)


def test_make_transform_and_transform_points_by_hand():
    a_T_b = make_transform(rot_z(math.pi / 2), [1.0, 2.0, 3.0])
    np.testing.assert_allclose(a_T_b[3], [0, 0, 0, 1])
    # (1, 0, 0) -> rotated (0, 1, 0) -> shifted (1, 3, 3); (0, 0, 1) -> (1, 2, 4).
    out = transform_points(a_T_b, [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(out, [[1, 3, 3], [1, 2, 4]], atol=1e-15)


def test_make_transform_broadcasts_batch_dims():
    t = make_transform(np.eye(3), np.arange(12.0).reshape(4, 3))
    assert t.shape == (4, 4, 4)
    np.testing.assert_allclose(t[2, :3, 3], [6, 7, 8])


def test_transform_points_batched_matrices():
    mats = random_rigid(5, seed=2)
    pts = np.random.default_rng(0).normal(size=(5, 3))
    expected = np.stack([m[:3, :3] @ p + m[:3, 3] for m, p in zip(mats, pts)])
    np.testing.assert_allclose(transform_points(mats, pts), expected, atol=1e-12)
    # One matrix, leading dims on the points.
    grid = np.random.default_rng(1).normal(size=(2, 4, 3))
    flat = transform_points(mats[0], grid.reshape(-1, 3)).reshape(2, 4, 3)
    np.testing.assert_allclose(transform_points(mats[0], grid), flat)


def test_invert_transform_composes_to_identity():
    mats = random_rigid(8, seed=4)
    inv = invert_transform(mats)
    eye = np.broadcast_to(np.eye(4), mats.shape)
    np.testing.assert_allclose(mats @ inv, eye, atol=1e-12)
    np.testing.assert_allclose(inv @ mats, eye, atol=1e-12)
    np.testing.assert_allclose(inv, np.linalg.inv(mats), atol=1e-10)
    # b -> a -> b brings points back.
    pts = np.random.default_rng(9).normal(size=(10, 3))
    there = transform_points(mats[0], pts)
    np.testing.assert_allclose(transform_points(inv[0], there), pts, atol=1e-12)


def test_transform_from_record_matches_pyquaternion():
    q = Quaternion(axis=[0.1, 0.2, 1.0], angle=0.7)
    record = {"rotation": list(q.elements), "translation": [400.0, 1100.0, 0.5], "token": "x"}
    m = transform_from_record(record)
    assert isinstance(m, np.ndarray) and m.dtype == np.float64 and m.shape == (4, 4)
    expected = q.transformation_matrix
    expected[:3, 3] = record["translation"]
    np.testing.assert_allclose(m, expected, atol=1e-12)


# ----------------------------------------------------------------------------------------
# Projection and angles
# ----------------------------------------------------------------------------------------


def test_project_points_by_hand():
    k = np.array([[100.0, 0.0, 50.0], [0.0, 100.0, 40.0], [0.0, 0.0, 1.0]])
    # u = fx * x / z + cx = 100 * 1 / 10 + 50 = 60; v = 100 * 2 / 10 + 40 = 60.
    # Behind the camera (z = -10) the point mirrors: u = -10 + 50, v = -20 + 40.
    uv, depth = project_points(k, [[1.0, 2.0, 10.0], [1.0, 2.0, -10.0]])
    np.testing.assert_allclose(uv, [[60, 60], [40, 20]])
    np.testing.assert_allclose(depth, [10, -10])


def test_project_points_zero_depth_is_not_clipped_and_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        uv, depth = project_points(np.eye(3), np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    assert depth.tolist() == [0.0, 0.0]
    assert np.isinf(uv[0, 0]) and np.isnan(uv[1, 0])


def test_wrap_angle_by_hand():
    pi = math.pi
    # The last input is the double just below -pi: (a + pi) % 2pi rounds to exactly 2pi,
    # which must fold back to -pi rather than give +pi.
    a = np.array([0.0, pi, -pi, 1.5 * pi, -1.5 * pi, 2 * pi, 7.0, np.nextafter(-pi, -4.0)])
    out = wrap_angle(a)
    expected = [0, -pi, -pi, -0.5 * pi, 0.5 * pi, 0, 7 - 2 * pi, -pi]
    np.testing.assert_allclose(out, expected, atol=1e-12)
    assert np.all((out >= -pi) & (out < pi))
    t = wrap_angle(torch.tensor([pi, 3 * pi], dtype=torch.float32))
    assert t.dtype == torch.float32 and bool(((t >= -pi) & (t < pi)).all())


# ----------------------------------------------------------------------------------------
# Backends
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn, args",
    [
        (quat_to_matrix, (random_quats(5),)),
        (matrix_to_quat, (quat_to_matrix(random_quats(5)),)),
        (yaw_to_quat, (np.linspace(-3, 3, 5),)),
        (quat_to_yaw, (random_quats(5),)),
        (quat_multiply, (random_quats(5), random_quats(5, seed=1))),
        (rot_z, (np.linspace(-3, 3, 5),)),
        (make_transform, (quat_to_matrix(random_quats(5)), np.ones((5, 3)))),
        (invert_transform, (random_rigid(5),)),
        (transform_points, (random_rigid(1)[0], np.arange(15.0).reshape(5, 3))),
        (wrap_angle, (np.linspace(-10, 10, 5),)),
    ],
)
def test_numpy_and_torch_agree_and_keep_type(fn, args):
    ref = fn(*args)
    assert isinstance(ref, np.ndarray) and ref.dtype == np.float64
    out64 = fn(*[torch.from_numpy(a) for a in args])
    assert isinstance(out64, torch.Tensor) and out64.dtype == torch.float64
    np.testing.assert_allclose(out64.numpy(), ref, atol=1e-12)
    out32 = fn(*[torch.from_numpy(a).float() for a in args])
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.numpy(), ref, atol=1e-4)
    np32 = fn(*[a.astype(np.float32) for a in args])
    assert np32.dtype == np.float32


def test_project_points_torch_matches_numpy():
    k = np.array([[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]])
    pts = np.random.default_rng(0).uniform(1, 20, size=(7, 3))
    uv, depth = project_points(k, pts)
    uv_t, depth_t = project_points(torch.from_numpy(k), torch.from_numpy(pts))
    assert isinstance(uv_t, torch.Tensor)
    np.testing.assert_allclose(uv_t.numpy(), uv)
    np.testing.assert_allclose(depth_t.numpy(), depth)


def test_mixed_inputs_follow_the_primary_argument():
    # Points decide the kind; a numpy matrix is converted to the tensor's dtype.
    pts = torch.ones(2, 3, dtype=torch.float32)
    out = transform_points(np.eye(4), pts)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    m = make_transform(torch.eye(3, dtype=torch.float64), np.array([1.0, 2.0, 3.0]))
    assert isinstance(m, torch.Tensor) and m.dtype == torch.float64


def test_autograd_flows_through_torch_paths():
    yaw = torch.tensor([0.3, 1.2], dtype=torch.float64, requires_grad=True)
    q = matrix_to_quat(rot_z(yaw))
    q[:, 3].sum().backward()
    # d/dyaw sin(yaw / 2) = cos(yaw / 2) / 2.
    np.testing.assert_allclose(yaw.grad.numpy(), np.cos(yaw.detach().numpy() / 2) / 2, atol=1e-12)


@pytest.mark.parametrize(
    "fn, arg",
    [
        (quat_to_matrix, np.zeros(3)),
        (matrix_to_quat, np.zeros((3, 4))),
        (invert_transform, np.eye(3)),
        (quat_to_yaw, np.zeros((2, 3))),
    ],
)
def test_bad_shapes_raise(fn, arg):
    with pytest.raises(ValueError, match="shape"):
        fn(arg)

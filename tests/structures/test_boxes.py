"""Tests for bevkd.structures.Boxes3D: hand-computed values and the nuScenes devkit."""

import math

import numpy as np
import pytest
import torch
from nuscenes.eval.common.utils import quaternion_yaw
from nuscenes.utils.data_classes import Box
from nuscenes.utils.geometry_utils import points_in_box
from pyquaternion import Quaternion

from bevkd.structures import Boxes3D, invert_transform, make_transform, quat_to_matrix, rot_z

PI = math.pi
# A rigid transform with roll and pitch, like global_T_ego on a slope.
TILTED = make_transform(quat_to_matrix([0.9, 0.1, -0.1, 0.4]), [1.0, 2.0, 3.0])

# The reference box of the hand computations: centre (10, 0, 1), l = 4, w = 2, h = 2,
# heading 90 deg (+y), moving at 3 m/s along its heading.
# Its footprint: the length runs along y (y in [-2, 2]), the width along x (x in [9, 11]),
# and z in [0, 2].
HAND = [10.0, 0.0, 1.0, 4.0, 2.0, 2.0, PI / 2, 0.0, 3.0]


def random_boxes(n: int, seed: int = 0) -> Boxes3D:
    rng = np.random.default_rng(seed)
    return Boxes3D(
        np.concatenate(
            [
                rng.uniform(-40, 40, (n, 3)),
                rng.uniform(0.5, 6, (n, 3)),
                rng.uniform(-PI, PI, (n, 1)),
                rng.uniform(-10, 10, (n, 2)),
            ],
            axis=1,
        )
    )


def devkit_box(row: np.ndarray) -> Box:
    """The devkit Box of one (9,) row (velocity with vz = 0)."""
    x, y, z, l, w, h, yaw, vx, vy = row
    return Box([x, y, z], [w, l, h], Quaternion(axis=[0, 0, 1], angle=yaw), velocity=(vx, vy, 0.0))


def as_point_set(corners: np.ndarray) -> set:
    return {tuple(np.round(c, 9)) for c in corners}


# ----------------------------------------------------------------------------------------
# Construction, container protocol, conversion
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(9,), (3, 8), (2, 9, 1), (0,)])
def test_constructor_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match=r"\(N, 9\)"):
        Boxes3D(np.zeros(shape))


def test_constructor_accepts_lists_and_casts_integers():
    b = Boxes3D([[1, 2, 3, 4, 5, 6, 0, 0, 0]])
    assert isinstance(b.tensor, np.ndarray) and b.dtype == np.float64
    t = Boxes3D(torch.zeros(2, 9, dtype=torch.int64))
    assert t.is_torch and t.dtype.is_floating_point


def test_empty():
    e = Boxes3D.empty()
    assert len(e) == 0 and e.tensor.shape == (0, 9) and e.dtype == np.float64
    assert e.corners().shape == (0, 8, 3)
    et = Boxes3D.empty("torch", dtype=torch.float64)
    assert et.is_torch and et.dtype == torch.float64 and et.device == torch.device("cpu")
    assert et.points_in_boxes(torch.zeros(4, 3)).shape == (4, 0)
    with pytest.raises(ValueError):
        Boxes3D.empty("jax")


def test_fields_by_hand():
    b = Boxes3D([HAND])
    np.testing.assert_allclose(b.center, [[10, 0, 1]])
    np.testing.assert_allclose(b.dims, [[4, 2, 2]])
    np.testing.assert_allclose(b.yaw, [PI / 2])
    np.testing.assert_allclose(b.velocity, [[0, 3]])
    # Bottom face: z = 1 - h / 2 = 0.
    np.testing.assert_allclose(b.bottom_center, [[10, 0, 0]])


def test_getitem_variants_return_boxes():
    b = random_boxes(5)
    for backend in (b, b.torch()):
        rows = backend.numpy().tensor
        np.testing.assert_array_equal(backend[1].numpy().tensor, rows[1:2])
        np.testing.assert_array_equal(backend[-1].numpy().tensor, rows[4:5])
        np.testing.assert_array_equal(backend[1:3].numpy().tensor, rows[1:3])
        mask = np.array([True, False, True, False, True])
        np.testing.assert_array_equal(backend[mask].numpy().tensor, rows[mask])
        np.testing.assert_array_equal(backend[torch.from_numpy(mask)].numpy().tensor, rows[mask])
        np.testing.assert_array_equal(backend[np.array([4, 0])].numpy().tensor, rows[[4, 0]])
        np.testing.assert_array_equal(backend[[2]].numpy().tensor, rows[[2]])
        assert len(backend[[]]) == 0
        assert backend[0].is_torch == backend.is_torch
        with pytest.raises(IndexError):
            backend[5]


def test_cat_clone_and_backend_conversion():
    a, b = random_boxes(2, seed=1), random_boxes(3, seed=2)
    c = Boxes3D.cat([a, b])
    assert len(c) == 5
    np.testing.assert_array_equal(c.tensor[2:], b.tensor)
    with pytest.raises(TypeError, match="numpy- and torch"):
        Boxes3D.cat([a, b.torch()])
    with pytest.raises(ValueError):
        Boxes3D.cat([])

    clone = a.clone()
    clone.tensor[0, 0] = 1e6
    assert a.tensor[0, 0] != 1e6

    t = a.torch()
    assert t.is_torch and t.dtype == torch.float64
    assert t.to("cpu").device == torch.device("cpu")
    back = t.numpy()
    assert isinstance(back.tensor, np.ndarray)
    np.testing.assert_array_equal(back.tensor, a.tensor)
    with pytest.raises(TypeError):
        a.to("cpu")


# ----------------------------------------------------------------------------------------
# nuScenes I/O
# ----------------------------------------------------------------------------------------


def test_from_nuscenes_by_hand():
    # nuScenes size is [w, l, h]; yaw 90 deg is the quaternion [cos45, 0, 0, sin45].
    s = math.sqrt(0.5)
    b = Boxes3D.from_nuscenes(
        [[10.0, 0.0, 1.0]], [[2.0, 4.0, 2.0]], [[s, 0.0, 0.0, s]], [[0.0, 3.0]]
    )
    np.testing.assert_allclose(b.tensor, [HAND], atol=1e-15)
    # Without velocity: zeros. With the devkit's 3-vector: z dropped.
    b0 = Boxes3D.from_nuscenes([[0.0, 0, 0]], [[1.0, 1, 1]], [[1.0, 0, 0, 0]])
    assert b0.velocity.tolist() == [[0, 0]]
    b3 = Boxes3D.from_nuscenes([[0.0, 0, 0]], [[1.0, 1, 1]], [[1.0, 0, 0, 0]], [[1.0, 2.0, 9.0]])
    assert b3.velocity.tolist() == [[1, 2]]


def test_from_nuscenes_round_trip():
    rng = np.random.default_rng(0)
    n = 12
    translation = rng.uniform(-500, 500, (n, 3))
    size = rng.uniform(0.3, 10, (n, 3))
    yaw = rng.uniform(-PI, PI, n)
    rotation = np.stack([np.cos(yaw / 2), 0 * yaw, 0 * yaw, np.sin(yaw / 2)], 1)
    rotation[::2] *= -1  # the same rotations, other sign
    velocity = rng.uniform(-20, 20, (n, 2))
    velocity[3] = np.nan  # annotations without velocity
    t, s, q, v = Boxes3D.from_nuscenes(translation, size, rotation, velocity).to_nuscenes()
    np.testing.assert_allclose(t, translation)
    np.testing.assert_allclose(s, size)
    np.testing.assert_allclose(q, rotation * np.sign(rotation[:, :1]), atol=1e-12)
    np.testing.assert_allclose(v, velocity)  # NaN == NaN here


def test_from_nuscenes_yaw_matches_devkit_for_tilted_rotations():
    q = np.random.default_rng(1).normal(size=(6, 4))
    b = Boxes3D.from_nuscenes(np.zeros((6, 3)), np.ones((6, 3)), q)
    expected = [quaternion_yaw(Quaternion(qi / np.linalg.norm(qi))) for qi in q]
    np.testing.assert_allclose(b.yaw, expected, atol=1e-12)


def test_to_nuscenes_returns_copies_and_rejects_bad_shapes():
    b = Boxes3D([HAND])
    t, _, _, v = b.to_nuscenes()
    t[0, 0] = -1.0
    v[0, 0] = -1.0
    assert b.tensor[0, 0] == 10.0 and b.tensor[0, 7] == 0.0
    with pytest.raises(ValueError, match="size_wlh"):
        Boxes3D.from_nuscenes(np.zeros((2, 3)), np.zeros((3, 3)), np.zeros((2, 4)))


# ----------------------------------------------------------------------------------------
# Corners
# ----------------------------------------------------------------------------------------


def test_bev_corners_by_hand():
    # Local footprint corners (x along the heading, y to the left), rotated by +90 deg
    # ((x, y) -> (-y, x)) and shifted by (10, 0):
    #   front-right ( 2, -1) -> (1,  2) -> (11,  2)
    #   front-left  ( 2,  1) -> (-1, 2) -> ( 9,  2)
    #   rear-left   (-2,  1) -> (-1,-2) -> ( 9, -2)
    #   rear-right  (-2, -1) -> (1, -2) -> (11, -2)
    bev = Boxes3D([HAND]).bev_corners()
    np.testing.assert_allclose(bev[0], [[11, 2], [9, 2], [9, -2], [11, -2]], atol=1e-12)


def test_bev_corners_are_counter_clockwise():
    b = random_boxes(10)
    bev = b.bev_corners()
    x, y = bev[..., 0], bev[..., 1]
    # Shoelace: positive signed area means counter-clockwise; it equals l * w.
    area = 0.5 * (x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y).sum(1)
    np.testing.assert_allclose(area, b.dims[:, 0] * b.dims[:, 1])


def test_corners_by_hand_axis_aligned():
    # l = 4, w = 2, h = 2 at the origin, yaw 0: corner 0 is front-left-top, 6 rear-right-bottom.
    c = Boxes3D([[0, 0, 0, 4, 2, 2, 0, 0, 0]]).corners()[0]
    np.testing.assert_allclose(c[0], [2, 1, 1])
    np.testing.assert_allclose(c[1], [2, -1, 1])
    np.testing.assert_allclose(c[6], [-2, -1, -1])


def test_corners_match_devkit_order():
    b = random_boxes(8, seed=3)
    corners = b.corners()
    assert corners.shape == (8, 8, 3)
    for row, c in zip(b.tensor, corners):
        np.testing.assert_allclose(c, devkit_box(row).corners().T, atol=1e-10)


# ----------------------------------------------------------------------------------------
# Transforms and augmentation
# ----------------------------------------------------------------------------------------


def test_transform_matches_devkit_rotate_translate():
    b = random_boxes(6, seed=4)
    # A rotation with roll and pitch, as between ego and global frames.
    q = Quaternion(axis=[0.05, -0.03, 1.0], angle=2.5)
    t = np.array([300.0, -120.0, 2.0])
    out = b.transform(make_transform(q.rotation_matrix, t))
    for row, new in zip(b.tensor, out.tensor):
        box = devkit_box(row)
        box.rotate(q)
        box.translate(t)
        np.testing.assert_allclose(new[:3], box.center, atol=1e-10)
        np.testing.assert_allclose(new[3:6], row[3:6])
        assert new[6] == pytest.approx(quaternion_yaw(box.orientation), abs=1e-10)
        np.testing.assert_allclose(new[7:9], box.velocity[:2], atol=1e-10)


def test_transform_yaw_only_corners_match_devkit_and_invert():
    b = random_boxes(6, seed=5)
    q = Quaternion(axis=[0, 0, 1], angle=-2.0)
    a_T_b = make_transform(q.rotation_matrix, [5.0, 6.0, 7.0])
    out = b.transform(a_T_b)
    for row, c in zip(b.tensor, out.corners()):
        box = devkit_box(row)
        box.rotate(q)
        box.translate([5.0, 6.0, 7.0])
        np.testing.assert_allclose(c, box.corners().T, atol=1e-10)
    back = out.transform(invert_transform(a_T_b))
    np.testing.assert_allclose(back.tensor, b.tensor, atol=1e-10)


def test_velocity_transforms_as_a_vector():
    b = Boxes3D([HAND])  # velocity (0, 3)
    shifted = b.transform(make_transform(np.eye(3), [100.0, 50.0, 0.0]))
    np.testing.assert_allclose(shifted.velocity, [[0, 3]])
    np.testing.assert_allclose(shifted.center, [[110, 50, 1]])
    # Rotating the frame by -90 deg turns +y into +x: velocity (0, 3) -> (3, 0).
    turned = b.transform(make_transform(rot_z(-PI / 2), [100.0, 50.0, 0.0]))
    np.testing.assert_allclose(turned.velocity, [[3, 0]], atol=1e-12)
    assert turned.yaw[0] == pytest.approx(0.0, abs=1e-12)


def test_rotate_by_hand_and_equals_transform():
    # A box at (1, 0, 0) heading +x moving +x, turned by 90 deg: at (0, 1, 0) heading and moving +y.
    b = Boxes3D([[1.0, 0, 0, 4, 2, 2, 0, 1.0, 0]])
    r = b.rotate(PI / 2)
    np.testing.assert_allclose(r.tensor, [[0, 1, 0, 4, 2, 2, PI / 2, 0, 1]], atol=1e-12)
    many = random_boxes(10, seed=6)
    angle = 2.2
    via_matrix = many.transform(make_transform(rot_z(angle), np.zeros(3)))
    np.testing.assert_allclose(many.rotate(angle).tensor, via_matrix.tensor, atol=1e-12)


def test_rotate_wraps_yaw():
    out = random_boxes(10, seed=7).rotate(3 * PI)
    assert np.all((out.yaw >= -PI) & (out.yaw < PI))


def test_translate_matches_transform_and_devkit():
    b = random_boxes(5, seed=8)
    offset = np.array([1.5, -2.0, 0.25])
    moved = b.translate(offset)
    via_matrix = b.transform(make_transform(np.eye(3), offset))
    np.testing.assert_allclose(moved.tensor, via_matrix.tensor, atol=1e-12)
    np.testing.assert_allclose(moved.corners(), b.corners() + offset, atol=1e-12)
    with pytest.raises(ValueError):
        b.translate([1.0, 2.0])


def test_scale_scales_corners_and_velocity():
    b = random_boxes(5, seed=9)
    s = b.scale(1.1)
    # Scaling about the origin maps every corner c to 1.1 c, in the same order.
    np.testing.assert_allclose(s.corners(), 1.1 * b.corners(), atol=1e-10)
    np.testing.assert_allclose(s.velocity, 1.1 * b.velocity)
    np.testing.assert_allclose(s.yaw, b.yaw)
    with pytest.raises(ValueError):
        b.scale(0.0)


def test_flip_by_hand():
    b = Boxes3D([HAND])  # (10, 0, 1), yaw 90 deg, velocity (0, 3)
    # Across the x axis: y -> -y, heading +y becomes -y (yaw -90), vy -> -vy.
    expected_x = [[10, 0, 1, 4, 2, 2, -PI / 2, 0, -3]]
    np.testing.assert_allclose(b.flip("x").tensor, expected_x, atol=1e-12)
    # Across the y axis: x -> -x, yaw -> pi - 90 deg = 90 deg (a +y heading stays +y).
    expected_y = [[-10, 0, 1, 4, 2, 2, PI / 2, 0, 3]]
    np.testing.assert_allclose(b.flip("y").tensor, expected_y, atol=1e-12)
    with pytest.raises(ValueError):
        b.flip("z")


@pytest.mark.parametrize("axis, mirror", [("x", [1, -1, 1]), ("y", [-1, 1, 1])])
def test_flip_mirrors_corner_sets_and_is_an_involution(axis, mirror):
    b = random_boxes(6, seed=10)
    flipped = b.flip(axis)
    for before, after in zip(b.corners(), flipped.corners()):
        assert as_point_set(after) == as_point_set(before * mirror)
    np.testing.assert_allclose(flipped.velocity, b.velocity * mirror[:2])
    twice = flipped.flip(axis)
    np.testing.assert_allclose(twice.tensor, b.tensor, atol=1e-12)
    assert np.all((flipped.yaw >= -PI) & (flipped.yaw < PI))


def test_methods_return_new_objects_and_do_not_mutate():
    b = random_boxes(4, seed=11)
    before = b.tensor.copy()
    for out in (b.rotate(0.3), b.flip("x"), b.flip("y"), b.scale(2.0), b.translate([1.0, 1, 1]),
                b.transform(np.eye(4)), b[0:2], b.clone()):
        assert isinstance(out, Boxes3D) and out is not b
    np.testing.assert_array_equal(b.tensor, before)


# ----------------------------------------------------------------------------------------
# Points
# ----------------------------------------------------------------------------------------


def test_points_in_box_by_hand():
    # The HAND footprint is x in [9, 11], y in [-2, 2], z in [0, 2].
    points = np.array(
        [
            [10.0, 1.999, 1.0],  # just inside the front face
            [10.0, 2.001, 1.0],  # just outside it
            [11.0, 2.0, 2.0],  # a corner: boundary counts
            [11.5, 0.0, 1.0],  # inside if yaw were ignored (x in [8, 12]), outside here
            [10.0, 0.0, -0.01],  # just below the bottom
            [9.001, -1.999, 0.001],  # inside near a bottom corner
        ]
    )
    inside = Boxes3D([HAND]).points_in_boxes(points)
    assert inside.shape == (6, 1)
    assert inside[:, 0].tolist() == [True, False, True, False, False, True]


def test_points_in_boxes_matches_devkit_and_counts():
    b = random_boxes(4, seed=12)
    rng = np.random.default_rng(13)
    # Points around each box so that a fair share lands inside.
    points = np.concatenate([c + rng.uniform(-3, 3, (50, 3)) for c in b.center])
    inside = b.points_in_boxes(points)
    assert inside.shape == (200, 4) and inside.dtype == bool
    for j, row in enumerate(b.tensor):
        np.testing.assert_array_equal(inside[:, j], points_in_box(devkit_box(row), points.T))
    counts = b.count_points(points)
    np.testing.assert_array_equal(counts, inside.sum(0))
    assert counts.min() > 0


# ----------------------------------------------------------------------------------------
# Backends
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "op",
    [
        lambda b: b.corners(),
        lambda b: b.bev_corners(),
        lambda b: b.bottom_center,
        lambda b: b.transform(TILTED).tensor,
        lambda b: b.rotate(1.3).tensor,
        lambda b: b.flip("x").tensor,
        lambda b: b.flip("y").tensor,
        lambda b: b.scale(0.9).tensor,
        lambda b: b.translate([1.0, -1.0, 0.5]).tensor,
        lambda b: b.points_in_boxes(np.random.default_rng(0).uniform(-40, 40, (300, 3))),
        lambda b: b.count_points(np.random.default_rng(0).uniform(-40, 40, (300, 3))),
        lambda b: b.to_nuscenes()[2],
    ],
)
def test_numpy_and_torch_give_the_same_numbers(op):
    b = random_boxes(20, seed=14)
    ref = op(b)
    assert isinstance(ref, np.ndarray)
    out = op(b.torch())
    assert isinstance(out, torch.Tensor) and out.dtype == torch.from_numpy(ref).dtype
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-12)
    out32 = op(Boxes3D(b.torch().tensor.float()))
    if out32.dtype.is_floating_point:
        assert out32.dtype == torch.float32
        np.testing.assert_allclose(out32.numpy(), ref, atol=1e-3)


def test_float32_numpy_stays_float32():
    b = Boxes3D(random_boxes(3).tensor.astype(np.float32))
    assert b.rotate(0.5).dtype == np.float32
    assert b.transform(np.eye(4)).dtype == np.float32
    assert b.corners().dtype == np.float32

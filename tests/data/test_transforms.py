"""Augmentation matrices against hand-computed values; boxes and points move together."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from bevkd.data.depth import depth_targets
from bevkd.data.transforms import (BevAug, BevAugConfig, ImageAug, ImageAugConfig,
                                   sample_bev_aug, sample_image_aug)
from bevkd.structures.boxes import Boxes3D


def _apply(m: np.ndarray, u: float, v: float) -> tuple[float, float]:
    p = m @ np.array([u, v, 1.0])
    return p[0] / p[2], p[1] / p[2]


def test_image_aug_matrix_by_hand():
    # 200 x 100 image resized by 0.5 to 100 x 50, crop from (10, 5) to an 80 x 40 image
    aug = ImageAug(resized=(100, 50), crop=(10, 5), final_size=(40, 80), flip=False, rotate=0.0,
                   source_size=(200, 100))
    assert _apply(aug.matrix(), 40.0, 20.0) == pytest.approx((10.0, 5.0))
    flipped = ImageAug((100, 50), (10, 5), (40, 80), True, 0.0, (200, 100))
    assert _apply(flipped.matrix(), 40.0, 20.0) == pytest.approx((70.0, 5.0))  # x -> 80 - x
    # a 90 degree counter-clockwise turn about the centre (40, 20) of the final image:
    # a pixel 10 to the right of the centre ends 10 above it (y points down)
    turned = ImageAug((100, 50), (10, 5), (40, 80), False, 90.0, (200, 100))
    assert _apply(turned.matrix(), 2 * (40 + 10 + 10), 2 * (20 + 5)) == pytest.approx((40.0, 10.0))


def test_image_warp_moves_a_marked_pixel_where_the_matrix_says():
    src = np.zeros((100, 200, 3), np.uint8)
    src[40:44, 120:124] = 255  # a 4 x 4 white square centred at (122, 42)
    cfg = ImageAugConfig(final_size=(48, 96), resize_lim=(0.45, 0.55), rot_lim=(-8.0, 8.0))
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(5):
        aug = sample_image_aug(cfg, (200, 100), rng)
        out = np.asarray(aug.apply(Image.fromarray(src)), np.float32)[..., 0]
        u, v = _apply(aug.matrix(), 122.0, 42.0)
        if not (2 <= u < 94 and 2 <= v < 46):
            continue
        ys, xs = np.nonzero(out > 40)
        w = out[ys, xs]
        centroid = (np.sum((xs + 0.5) * w) / w.sum(), np.sum((ys + 0.5) * w) / w.sum())
        assert centroid == pytest.approx((u, v), abs=0.5)
        checked += 1
    assert checked >= 3


def test_eval_image_aug_is_the_centred_bottom_crop_without_flip_or_rotation():
    cfg = ImageAugConfig(final_size=(256, 704))
    aug = sample_image_aug(cfg, (1600, 900), None)
    # BEVDepth eval: resize = max(256/900, 704/1600) = 0.44 -> 704 x 396, keep the bottom 256
    assert aug.resized == (704, 396) and aug.crop == (0, 140)
    assert not aug.flip and aug.rotate == 0.0


def test_bev_aug_matrix_by_hand_and_boxes_follow_points():
    aug = BevAug(angle=math.pi / 2, scale=2.0, flip_x=True, flip_y=False)
    # (1, 0, 1) -> scale (2, 0, 2) -> rotate 90 deg (0, 2, 2) -> x -> -x: (0, 2, 2)
    assert aug.matrix() @ np.array([1.0, 0, 1, 1]) == pytest.approx([0.0, 2.0, 2.0, 1.0])
    rng = np.random.default_rng(0)
    boxes = Boxes3D(np.c_[rng.uniform(-20, 20, (6, 3)), rng.uniform(1, 4, (6, 3)),
                          rng.uniform(-3, 3, (6, 1)), rng.uniform(-5, 5, (6, 2))])
    for _ in range(8):
        aug = sample_bev_aug(BevAugConfig(), rng)
        moved = aug.apply_boxes(boxes)
        m = aug.matrix()
        expected = boxes.corners() @ m[:3, :3].T
        got = moved.corners()
        # the same corner sets (a flip reorders corners)
        for e, g in zip(expected, got):
            d = np.linalg.norm(e[:, None] - g[None], axis=-1)
            assert d.min(1).max() < 1e-9
        # velocity is a vector: it goes through the linear part
        assert np.allclose(moved.velocity, boxes.velocity @ m[:2, :2].T)


def test_depth_targets_keep_the_nearest_point_per_cell():
    # identity camera at the ego origin looking along ego x (cam z = ego x)
    ego_T_cam = np.eye(4)
    ego_T_cam[:3, :3] = np.array([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])
    K = np.array([[10.0, 0, 8], [0, 10.0, 8], [0, 0, 1]])
    pts = np.array([[5.0, 0, 0], [3.0, 0, 0], [70.0, 0, 0], [4.0, -0.9, 0]])
    # (5, 0, 0) and (3, 0, 0) land on pixel (8, 8): cell (2, 2) at stride 4 keeps 3;
    # 70 m is out of range; (4, -0.9, 0) lands at u = 8 + 10 * 0.9 / 4 = 10.25: same cell
    d = depth_targets(pts, ego_T_cam, K, np.eye(3), (16, 16), 4, (2.0, 58.0))
    expected = np.zeros((4, 4))
    expected[2, 2] = 3.0
    assert d.numpy() == pytest.approx(expected)

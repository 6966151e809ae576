"""Frustum geometry by hand, agreement with LiDAR projection, and the LSS view transformer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bevkd.data.depth import project_to_image
from bevkd.data.transforms import BevAug, ImageAug
from bevkd.models.camera.lss import (LSSViewTransformer, depth_bin_centres, depth_bin_index,
                                     frustum, frustum_to_ego, num_depth_bins)
from bevkd.models.grid import BevGrid

H, W, S = 64, 176, 16            # 4 x 11 feature cells
BINS = (2.0, 58.0, 0.5)          # 112 bins
# camera -> ego with the camera looking along ego +x: cam x -> ego -y, cam y -> ego -z, z -> x
CAM_TO_EGO_ROT = torch.tensor([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]], dtype=torch.float64)


def _rig(cx: float = 88.0, cy: float = 24.0, f: float = 100.0):
    ego_T_cam = torch.eye(4, dtype=torch.float64)
    ego_T_cam[:3, :3] = CAM_TO_EGO_ROT
    K = torch.tensor([[f, 0, cx], [0, f, cy], [0, 0, 1]], dtype=torch.float64)
    eye3 = torch.eye(3, dtype=torch.float64)
    return (ego_T_cam.view(1, 1, 4, 4), K.view(1, 1, 3, 3), eye3.view(1, 1, 3, 3),
            torch.eye(4, dtype=torch.float64).view(1, 4, 4))


def _geom(ego_T_cam, K, aug, bda):
    return frustum_to_ego(frustum((H, W), S, BINS, dtype=torch.float64), ego_T_cam, K, aug, bda)


def test_frustum_cells_and_bins():
    f = frustum((H, W), S, BINS)
    assert f.shape == (112, 4, 11, 3) and num_depth_bins(BINS) == 112
    torch.testing.assert_close(f[0, 0, 0], torch.tensor([8.0, 8.0, 2.25]))
    torch.testing.assert_close(f[111, 3, 10], torch.tensor([168.0, 56.0, 57.75]))
    assert depth_bin_index(torch.tensor([1.99, 2.0, 2.49, 2.5, 57.99, 58.0]), BINS).tolist() == \
        [-1, 0, 0, 1, 111, -1]
    centres = depth_bin_centres(BINS)
    assert depth_bin_index(centres, BINS).tolist() == list(range(112))
    with pytest.raises(ValueError):
        num_depth_bins((2.0, 58.2, 0.5))


def test_principal_point_maps_onto_the_optical_axis():
    geom = _geom(*_rig())[0, 0]                       # (D, h, w, 3)
    d = depth_bin_centres(BINS, dtype=torch.float64)
    # cell (r=1, c=5) has its centre at pixel (88, 24) = the principal point
    expect = torch.stack([d, torch.zeros_like(d), torch.zeros_like(d)], -1)
    torch.testing.assert_close(geom[:, 1, 5], expect)
    # one cell right (u = 104) is 16 px = 0.16·d to the camera's right = ego -y
    torch.testing.assert_close(geom[:, 1, 6, 1], -0.16 * d)
    # one cell down (v = 40) is below the axis = ego -z
    torch.testing.assert_close(geom[:, 2, 5, 2], -0.16 * d)


def test_image_flip_mirrors_the_geometry():
    ego_T_cam, K, aug, bda = _rig(cx=W / 2.0)
    flip = torch.tensor([[-1.0, 0, W], [0, 1, 0], [0, 0, 1]], dtype=torch.float64).view(1, 1, 3, 3)
    plain, flipped = _geom(ego_T_cam, K, aug, bda), _geom(ego_T_cam, K, flip, bda)
    # augmented column c' shows original column w-1-c'
    torch.testing.assert_close(flipped, plain.flip(4))
    # with the principal point at the image centre that is a mirror across the ego x-z plane
    mirrored = plain * torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(flipped, mirrored)


def test_bda_flip_and_general_bda():
    ego_T_cam, K, aug, bda = _rig()
    plain = _geom(ego_T_cam, K, aug, bda)
    flip_y = torch.diag(torch.tensor([1.0, -1.0, 1.0, 1.0], dtype=torch.float64)).view(1, 4, 4)
    torch.testing.assert_close(_geom(ego_T_cam, K, aug, flip_y),
                               plain * torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))
    m = torch.from_numpy(BevAug(angle=0.3, scale=1.04, flip_x=True).matrix()).view(1, 4, 4)
    torch.testing.assert_close(_geom(ego_T_cam, K, aug, m), plain @ m[0, :3, :3].T + m[0, :3, 3])


def _random_camera(rng: np.random.Generator, yaw: float):
    """A nuScenes-like camera (1600x900 source) with a random training image augmentation."""
    c, s = math.cos(yaw), math.sin(yaw)
    pitch = rng.uniform(-0.05, 0.05)
    yaw_rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    pitch_rot = np.array([[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)],
                          [0, math.sin(pitch), math.cos(pitch)]])
    ego_T_cam = np.eye(4)
    ego_T_cam[:3, :3] = yaw_rot @ CAM_TO_EGO_ROT.numpy() @ pitch_rot
    ego_T_cam[:3, 3] = [rng.uniform(0.5, 1.7), rng.uniform(-0.5, 0.5), 1.5]
    K = np.array([[1260.0, 0, 810], [0, 1260.0, 450], [0, 0, 1]])
    aug = ImageAug(resized=(704, 396), crop=(0, 396 - 256), final_size=(256, 704),
                   flip=bool(rng.random() < 0.5), rotate=float(rng.uniform(-5.4, 5.4)),
                   source_size=(1600, 900))
    return ego_T_cam, K, aug.matrix()


def test_frustum_agrees_with_lidar_projection():
    """A point projected ego -> cam -> K -> aug lands in a cell whose frustum point at the
    point's depth bin is within half a bin (depth) and half a cell (pixels) of it."""
    rng = np.random.default_rng(0)
    yaws = [0.0, 0.96, -0.96, math.pi]
    cams = [_random_camera(rng, y) for y in yaws]
    bev = BevAug(angle=-0.2, scale=0.97, flip_y=True)
    ego_T_cam = torch.tensor(np.stack([c[0] for c in cams]))[None]
    K = torch.tensor(np.stack([c[1] for c in cams]))[None]
    aug = torch.tensor(np.stack([c[2] for c in cams]))[None]
    bda = torch.tensor(bev.matrix())[None]
    stride, bins = 16, BINS
    geom = frustum_to_ego(frustum((256, 704), stride, bins, dtype=torch.float64),
                          ego_T_cam, K, aug, bda)[0]
    points = rng.uniform([-50, -50, -2], [50, 50, 2], (4000, 3))
    checked = 0
    for n in range(len(cams)):
        cam_T_ego = np.linalg.inv(cams[n][0])
        uv, depth = project_to_image(points, cams[n][0], cams[n][1], cams[n][2])
        # keep the ego points that made it (same filter as project_to_image, then image bounds)
        in_front = (points @ cam_T_ego[:3, :3].T + cam_T_ego[:3, 3])[:, 2] > 1e-3
        pts = points[in_front]
        ok = ((uv[:, 0] >= 0) & (uv[:, 0] < 704) & (uv[:, 1] >= 0) & (uv[:, 1] < 256)
              & (depth >= bins[0]) & (depth < bins[1]))
        for p, (u, v), d in zip(pts[ok], uv[ok], depth[ok]):
            r, c = int(v // stride), int(u // stride)
            k = int(depth_bin_index(torch.tensor(d), bins))
            q = geom[n, k, r, c].numpy()
            # back to the camera: depth and augmented pixel of the frustum point
            q_ego = np.linalg.solve(bev.matrix()[:3, :3], q)
            q_cam = cam_T_ego[:3, :3] @ q_ego + cam_T_ego[:3, 3]
            q_pix = cams[n][2] @ cams[n][1] @ q_cam
            assert abs(q_cam[2] - d) <= bins[2] / 2 + 1e-9
            assert np.all(np.abs(q_pix[:2] / q_pix[2] - (u, v)) <= stride / 2 + 1e-6)
            # and in metres: half a bin along the ray plus half a cell across it
            across = d * stride / 2 * math.sqrt(2) / (1260.0 * 0.44)
            assert np.linalg.norm(q - bev.apply_points(p[None])[0]) <= \
                bev.scale * (bins[2] / 2 + across + 1e-6)
            checked += 1
    assert checked > 50


def test_view_transformer_splats_one_pixel_into_its_cell():
    grid = BevGrid()
    lss = LSSViewTransformer(grid=grid, image_size=(H, W), stride=S, depth_bins=BINS)
    ego_T_cam, K, aug, bda = (t.float() for t in _rig())
    D, (h, w) = lss.depth_channels, lss.feature_size
    logits = torch.zeros(1, D, h, w)
    logits[0, 16, 1, 5] = 50.0                       # bin 16: centre 10.25 m
    context = torch.zeros(1, 3, h, w)
    context[0, 0, 1, 5] = 1.0
    out = lss(logits.requires_grad_(), context.requires_grad_(), ego_T_cam, K, aug, bda)
    assert out.shape == (1, 3, 128, 128)
    # (10.25, 0, 0): ix = floor((10.25 + 51.2) / 0.8) = 76, iy = floor(51.2 / 0.8) = 64
    assert out[0, 0, 64, 76].item() == pytest.approx(1.0, abs=1e-6)
    assert out[0, 0].sum().item() == pytest.approx(1.0, abs=1e-5)
    assert torch.count_nonzero(out[0, 1:]) == 0
    gd, gc = torch.autograd.grad(out[0, 0, 64, 76], (logits, context))
    assert gd.abs().sum() > 0 and gc[0, 0, 1, 5] > 0.99
    # a plan built once gives the same result
    plan = lss.plan(ego_T_cam, K, aug, bda)
    torch.testing.assert_close(lss(logits, context, ego_T_cam, K, aug, bda, plan=plan), out)


def test_view_transformer_checks_shapes():
    lss = LSSViewTransformer(grid=BevGrid(), image_size=(H, W), stride=S, depth_bins=BINS)
    ego_T_cam, K, aug, bda = (t.float() for t in _rig())
    with pytest.raises(ValueError, match="depth_logits"):
        lss(torch.zeros(1, 10, 4, 11), torch.zeros(1, 3, 4, 11), ego_T_cam, K, aug, bda)
    with pytest.raises(ValueError, match="context"):
        lss(torch.zeros(1, 112, 4, 11), torch.zeros(1, 3, 4, 10), ego_T_cam, K, aug, bda)


def test_normalized_pooling_is_the_depth_weighted_mean_plus_log_mass():
    grid = BevGrid()
    lss = LSSViewTransformer(grid=grid, image_size=(H, W), stride=S, depth_bins=BINS,
                             pooling="normalized")
    assert lss.out_channels(3) == 4
    ego_T_cam, K, aug, bda = (t.float() for t in _rig())
    D, (h, w) = lss.depth_channels, lss.feature_size
    # every pixel sure of bin 0 (2.25 m) with context 0.5, except pixel (1, 5): bin 16
    # (10.25 m on the optical axis) with context (2, -1, 0)
    logits = torch.full((1, D, h, w), -50.0)
    logits[0, 0] = 50.0
    logits[0, :, 1, 5] = -50.0
    logits[0, 16, 1, 5] = 50.0
    context = torch.full((1, 3, h, w), 0.5)
    context[0, :, 1, 5] = torch.tensor([2.0, -1.0, 0.0])
    out = lss(logits.requires_grad_(), context.requires_grad_(), ego_T_cam, K, aug, bda)
    assert out.shape == (1, 4, 128, 128)
    eps = LSSViewTransformer.EPS
    # the cell of (10.25, 0, 0) has that one pixel's depth mass 1: its context, divided by 1 + ε
    torch.testing.assert_close(out[0, :3, 64, 76], torch.tensor([2.0, -1.0, 0.0]) / (1 + eps))
    assert out[0, 3, 64, 76].item() == pytest.approx(math.log(1 + eps), abs=1e-5)
    # cells at 2.25 m collect several pixels of context 0.5: the mean is 0.5 whatever their
    # number, where the sum grows with it; the log-mass channel counts them
    summed = LSSViewTransformer(grid=grid, image_size=(H, W), stride=S, depth_bins=BINS)(
        logits, context, ego_T_cam, K, aug, bda)
    mass = summed[0, 0] / 0.5
    near = (mass > 1.5) & (summed[0, 1] > 0)
    assert near.any()
    torch.testing.assert_close(out[0, 1][near], 0.5 * mass[near] / (mass[near] + eps))
    torch.testing.assert_close(out[0, 3][near], torch.log(mass[near] + eps))
    # an empty cell: zero features and the log of ε
    assert out[0, :3, 0, 0].abs().sum() == 0
    assert out[0, 3, 0, 0].item() == pytest.approx(math.log(eps))
    # gradients reach the depth (through the mass) and the context
    gd, gc = torch.autograd.grad(out[0, 0, 64, 76] + out[0, 3, 64, 76], (logits, context))
    assert gd.abs().sum() > 0 and gc[0, 0, 1, 5] > 0.99
    with pytest.raises(ValueError, match="pooling must be one of"):
        LSSViewTransformer(grid=grid, image_size=(H, W), stride=S, depth_bins=BINS,
                           pooling="max")

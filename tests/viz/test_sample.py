"""`bevkd show`: the picture, the wireframe projection, and its errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from bevkd.errors import BevkdError
from bevkd.viz.sample import EDGES, box_edges_2d, draw_sample


def test_draws_cameras_and_bev_into_one_png(synth_root, tmp_path):
    out = draw_sample(synth_root, "2", str(tmp_path / "sub" / "s.png"), sweeps=3)
    img = np.asarray(Image.open(out).convert("RGB"), np.float32)
    assert img.shape[1] == 2400 and img.shape[0] > 500
    assert img.std() > 30  # images, points and boxes, not an empty canvas


def test_box_wireframe_projects_to_hand_computed_pixels():
    # camera frame: x right, y down, z forward; f = 100, principal point (50, 40)
    K = np.array([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]])
    # a 2 m cube centred 10 m ahead, corners ordered like the devkit (front face first)
    x, y = np.array([1, -1, -1, 1, 1, -1, -1, 1.0]), np.array([1, 1, -1, -1, 1, 1, -1, -1.0])
    z = 10 + np.array([-1, -1, -1, -1, 1, 1, 1, 1.0])
    corners = np.stack([x, y, z], -1)[None]
    segs, valid = box_edges_2d(corners, K)
    assert valid.all()
    # edge 0 joins corners 0 and 1 of the near face (z = 9): u = 50 +- 100 / 9, v = 40 + 100 / 9
    d = 100 / 9
    assert np.allclose(segs[0, 0], [[50 + d, 40 + d], [50 - d, 40 + d]])


def test_edges_crossing_the_near_plane_are_cut_not_mirrored():
    K = np.eye(3)
    corners = np.zeros((1, 8, 3))
    corners[0, :, 2] = [-1, -1, -1, -1, 1, 1, 1, 1]  # front face behind the camera
    corners[0, :, 0] = 0.5
    segs, valid = box_edges_2d(corners, K, near=0.1)
    front = [i for i, (a, b) in enumerate(EDGES) if a < 4 and b < 4]
    assert not valid[0, front].any()
    # corner 0 (z = -1) to corner 4 (z = 1): cut at z = 0.1, x = 0.5 -> u = 5 (not -0.5)
    k = next(i for i, (a, b) in enumerate(EDGES) if (a, b) == (0, 4))
    assert valid[0, k] and segs[0, k, 0, 0] == pytest.approx(5.0)


def test_errors_name_the_problem(synth_root, tmp_path, nusc):
    with pytest.raises(BevkdError, match=r"valid: 0\.\.5"):
        draw_sample(synth_root, "6", str(tmp_path / "a.png"))
    with pytest.raises(BevkdError, match="unknown sample token"):
        draw_sample(synth_root, "feedface", str(tmp_path / "a.png"))
    with pytest.raises(BevkdError, match="does not exist"):
        draw_sample(str(tmp_path / "nowhere"), "0", str(tmp_path / "a.png"))


def test_missing_image_names_the_file_and_sample(synth_root, nusc, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(synth_root, root, ignore=shutil.ignore_patterns("synth_debug"))
    sample = nusc.sample[0]
    rel = nusc.get("sample_data", sample["data"]["CAM_BACK"])["filename"]
    os.remove(root / rel)
    with pytest.raises(BevkdError, match=f"{os.path.basename(rel)}.*{sample['token']}"):
        draw_sample(str(root), "0", str(tmp_path / "a.png"))

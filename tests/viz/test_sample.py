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


def test_the_picture_is_written_in_its_extensions_format(synth_root, tmp_path):
    out = draw_sample(synth_root, "0", str(tmp_path / "s.jpg"), sweeps=1)
    assert Image.open(out).format == "JPEG"  # not PNG bytes under a .jpg name
    with pytest.raises(BevkdError, match=r"\.xyz is no picture format matplotlib writes"):
        draw_sample(synth_root, "0", str(tmp_path / "s.xyz"))
    assert not os.path.exists(tmp_path / "s.xyz")


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
    with pytest.raises(BevkdError, match="dataset root .*nowhere does not exist"):
        draw_sample(str(tmp_path / "nowhere"), "0", str(tmp_path / "a.png"))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(BevkdError, match="afile is a file, not a folder"):
        draw_sample(str(tmp_path / "afile"), "0", str(tmp_path / "a.png"))


def test_missing_image_names_the_file_and_sample(synth_root, nusc, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(synth_root, root, ignore=shutil.ignore_patterns("synth_debug"))
    sample = nusc.sample[0]
    rel = nusc.get("sample_data", sample["data"]["CAM_BACK"])["filename"]
    os.remove(root / rel)
    with pytest.raises(BevkdError, match=f"{os.path.basename(rel)}.*{sample['token']}"):
        draw_sample(str(root), "0", str(tmp_path / "a.png"))


def test_global_box_projects_through_a_real_camera_rotation():
    # A nuScenes-style front camera at the ego origin, 1.5 m up, looking along global +x:
    # camera x = -global y, camera y = -global z, camera z = global x.
    from bevkd.structures.boxes import Boxes3D
    from bevkd.structures.geometry import invert_transform, make_transform
    from bevkd.viz.sample import camera_box_edges

    R = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0.0]])  # columns: camera axes in global
    cam_T_global = invert_transform(make_transform(R, np.array([0, 0, 1.5])))
    K = np.array([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]])
    # 10 m ahead at camera height, l = 4 (along x), w = 2, h = 2, heading +x (away)
    box = Boxes3D([[10.0, 0, 1.5, 4, 2, 2, 0, 0, 0]])
    segs, valid = camera_box_edges(box, cam_T_global, K)
    assert valid.all()
    # the front-face X meets at the face centre (12, 0, 1.5) -> principal point
    a, b = segs[0, 12], segs[0, 13]
    assert np.allclose((a[0] + a[1]) / 2, [50, 40]) and np.allclose((b[0] + b[1]) / 2, [50, 40])
    # corner 0 = front-left-top (12, 1, 2.5) -> camera (-1, -1, 12) -> (50 - 100/12, 40 - 100/12)
    assert np.allclose(segs[0, 0, 0], [50 - 100 / 12, 40 - 100 / 12])
    # corner 6 = rear-right-bottom (8, -1, 0.5) -> camera (1, 1, 8) -> (62.5, 52.5)
    k = next(i for i, (p, q) in enumerate(EDGES) if (p, q) == (5, 6))
    assert np.allclose(segs[0, k, 1], [62.5, 52.5])


def test_boxes_sit_on_their_objects_in_the_images(synth_root, nusc):
    # The renderer's per-pixel object ids (debug maps) must fall inside the projected boxes.
    from bevkd.structures.geometry import transform_from_record
    from bevkd.viz.sample import CAMERAS, _gt_boxes, camera_box_edges

    sample = nusc.sample[1]
    dbg = np.load(os.path.join(synth_root, "synth_debug", f"{sample['token']}.npz"))
    obj_of = {t: int(i) for i, t in zip(dbg["object_index"], dbg["instance_token"])}
    anns = [nusc.get("sample_annotation", t) for t in sample["anns"]]
    boxes, classes, _ = _gt_boxes(nusc, sample)
    inst = [a["instance_token"] for a in anns if a["category_name"].split(".")[0] != "static_object"
            and a["category_name"] != "movable_object.debris"]
    assert len(inst) == len(classes)
    checked = 0
    for ci, ch in enumerate(CAMERAS):
        sd = nusc.get("sample_data", sample["data"][ch])
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        g_T_c = transform_from_record(nusc.get("ego_pose", sd["ego_pose_token"])) @ \
            transform_from_record(cs)
        K = np.array(cs["camera_intrinsic"])
        segs, valid = camera_box_edges(boxes, np.linalg.inv(g_T_c), K)
        for j, tok in enumerate(inst):
            vv, uu = np.nonzero(dbg["obj_id"][ci] == obj_of[tok])
            if len(uu) < 30 or not valid[j].all():
                continue  # barely visible or cut by the near plane: bounds not comparable
            pts = segs[j].reshape(-1, 2)
            assert uu.min() >= pts[:, 0].min() - 2 and uu.max() <= pts[:, 0].max() + 2
            assert vv.min() >= pts[:, 1].min() - 2 and vv.max() <= pts[:, 1].max() + 2
            checked += 1
    assert checked >= 5

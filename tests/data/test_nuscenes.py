"""The loader on a generated SynthScenes split: augmentation keeps sensors and labels aligned."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
from nuscenes.utils.data_classes import Box
from PIL import Image
from pyquaternion import Quaternion

from bevkd.data.depth import project_to_image
from bevkd.data.infos import load_infos
from bevkd.data.nuscenes import IMAGENET_MEAN, IMAGENET_STD, DataConfig, NuScenesDataset
from bevkd.data.transforms import ImageAugConfig
from bevkd.errors import BevkdError
from bevkd.structures.batch import collate
from bevkd.structures.boxes import Boxes3D
from bevkd.structures.geometry import invert_transform

# source images are 320 x 180 (tests/conftest.py); strong augmentation on purpose
AUG = DataConfig(image=ImageAugConfig(final_size=(96, 256), resize_lim=(0.8, 1.0),
                                      rot_lim=(-10.0, 10.0)), lidar_sweeps=3, depth_stride=8,
                 min_gt_points=0, point_range=(-200.0, -200.0, -5.0, 200.0, 200.0, 3.0))


@pytest.fixture(scope="module")
def train_set(synth_root, tmp_path_factory):
    return NuScenesDataset(synth_root, "v1.0-synth", "synth_train", AUG, train=True, seed=1,
                           cache_dir=str(tmp_path_factory.mktemp("cache")))


def _original_image(root: str, rel: str) -> np.ndarray:
    return np.asarray(Image.open(os.path.join(root, rel)).convert("RGB"), np.float32)


def _denormalise(img: torch.Tensor) -> np.ndarray:
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (img * std + mean).permute(1, 2, 0).numpy()


def test_points_project_through_augmented_cameras_onto_the_moved_pixels(train_set, synth_root):
    sample = train_set[1]
    info = train_set.infos[1]
    pts_aug = sample.points[sample.points[:, 5] == 0, :3].double().numpy()  # key sweep
    ego_T_augego = np.linalg.inv(sample.bda.double().numpy())
    pts = pts_aug @ ego_T_augego[:3, :3].T  # back to the un-augmented ego frame
    checked, errors = 0, {0: 0.0, 2: 0.0}
    for n, cam in enumerate(info.cams):
        A = sample.aug_T_pix[0, n].double().numpy()
        # the path a model takes: augmented ego -> ego -> camera -> pixels -> augmented pixels
        uv_aug, _ = project_to_image(pts, sample.ego_T_cam[0, n].double().numpy(),
                                     sample.pix_T_cam[0, n].double().numpy(), A)
        # the original pixel of each point, moved by the image augmentation
        uv0, _ = project_to_image(pts, cam.ego_T_cam, cam.pix_T_cam, np.eye(3))
        moved = np.c_[uv0, np.ones(len(uv0))] @ A.T
        H, W = AUG.image.final_size
        seen = ((uv_aug[:, 0] >= 0) & (uv_aug[:, 0] < W) & (uv_aug[:, 1] >= 0)
                & (uv_aug[:, 1] < H))
        assert np.abs(moved[seen, :2] / moved[seen, 2:] - uv_aug[seen]).max() < 0.01  # sub-pixel
        # ... and the image content really moved there: colours agree better at the predicted
        # pixel than two pixels off (a misplaced warp would not)
        orig, augd = _original_image(synth_root, cam.path), _denormalise(sample.images[0, n])
        inside = ((uv_aug[:, 0] > 3) & (uv_aug[:, 0] < W - 3) & (uv_aug[:, 1] > 3)
                  & (uv_aug[:, 1] < H - 3) & (uv0[:, 0] > 3) & (uv0[:, 0] < cam.width - 3)
                  & (uv0[:, 1] > 3) & (uv0[:, 1] < cam.height - 3))
        o = orig[uv0[inside, 1].astype(int), uv0[inside, 0].astype(int)]
        for shift in (0, 2):
            a = augd[uv_aug[inside, 1].astype(int), uv_aug[inside, 0].astype(int) + shift]
            errors[shift] += np.abs(a - o).sum()
        checked += int(inside.sum())
    assert checked > 500
    assert errors[0] < 0.75 * errors[2]


def test_points_inside_each_box_are_the_same_after_bev_augmentation(train_set):
    info = train_set.infos[0]
    sample = train_set[0]
    bda = sample.bda.double().numpy()
    pts_aug = sample.points[:, :3].double().numpy()
    pts = pts_aug @ np.linalg.inv(bda)[:3, :3].T
    boxes_aug = Boxes3D(sample.boxes.tensor.double())
    boxes = Boxes3D(torch.from_numpy(info.gt_boxes).nan_to_num())
    assert len(boxes) == len(boxes_aug) > 10
    inside = boxes.points_in_boxes(torch.from_numpy(pts), eps=1e-4)
    inside_aug = boxes_aug.points_in_boxes(torch.from_numpy(pts_aug), eps=1e-4)
    assert inside.any(0).sum() > 5
    # float32 storage may move a point sitting on a face; allow a handful over the whole set
    assert (inside != inside_aug).sum() <= 3
    assert not np.allclose(bda, np.eye(4))  # seed 1 draws a real augmentation


def test_depth_target_is_the_nearest_projected_point_per_cell(train_set):
    info = train_set.infos[0]
    sample = train_set[0]
    stride, (H, W) = AUG.depth_stride, AUG.image.final_size
    key = sample.points[sample.points[:, 5] == 0, :3].double().numpy()
    pts = key @ np.linalg.inv(sample.bda.double().numpy())[:3, :3].T
    for n, cam in enumerate(info.cams):
        uv, z = project_to_image(pts, cam.ego_T_cam, cam.pix_T_cam,
                                 sample.aug_T_pix[0, n].double().numpy())
        ok = (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H) & (z >= 2) & (z < 58)
        expected = {}
        for (u, v), d in zip(uv[ok], z[ok]):
            cell = (int(v // stride), int(u // stride))
            expected[cell] = min(expected.get(cell, np.inf), d)
        target = sample.depth[n].numpy()
        got = {tuple(c): target[tuple(c)] for c in np.argwhere(target > 0)}
        assert got.keys() == expected.keys()
        assert all(abs(got[c] - expected[c]) < 1e-4 for c in got)


def test_boxes_read_back_equal_the_devkit_annotations_in_global_frame(synth_root, nusc, tmp_path):
    infos = load_infos(synth_root, "v1.0-synth", "synth_val", cache_dir=str(tmp_path))
    checked = 0
    for info in infos:
        boxes = Boxes3D(info.gt_boxes).transform(info.global_T_ego)
        t, s, r, v = boxes.to_nuscenes()
        for j, tok in enumerate(info.gt_tokens):
            ann = nusc.get("sample_annotation", tok)
            assert np.allclose(t[j], ann["translation"], atol=1e-6)
            assert np.allclose(s[j], ann["size"], atol=1e-6)
            ref = Box(ann["translation"], ann["size"], Quaternion(ann["rotation"]))
            ours = Box(t[j], s[j], Quaternion(r[j]))
            assert np.allclose(ours.corners(), ref.corners(), atol=1e-6)
            vel = nusc.box_velocity(tok)[:2]
            assert np.allclose(v[j], vel, atol=1e-6, equal_nan=True)
            checked += 1
    assert checked > 50


def test_temporal_frames_share_the_key_ego_frame(synth_root, tmp_path):
    cfg = DataConfig(image=AUG.image, prev_frames=1, use_lidar=False)
    ds = NuScenesDataset(synth_root, "v1.0-synth", "synth_val", cfg, cache_dir=str(tmp_path))
    first, second = ds[0], ds[1]  # the first sample repeats itself as its previous frame
    assert torch.equal(first.images[0], first.images[1])
    # frame 1 of sample 1 is sample 0's key frame, seen from sample 1's ego frame
    info0, info1 = ds.infos[0], ds.infos[1]
    expected = invert_transform(info1.global_T_ego) @ info0.global_T_ego @ info0.cams[1].ego_T_cam
    assert np.allclose(second.ego_T_cam[1, 1].double().numpy(), expected, atol=1e-4)
    assert torch.equal(second.images[1], first.images[0])


def test_collate_builds_a_typed_batch(train_set):
    batch = collate([train_set[0], train_set[1]])
    assert batch.size == 2
    assert batch.cams.images.shape == (2, 1, 6, 3, 96, 256)
    assert batch.targets.depth.shape == (2, 6, 12, 32)
    assert batch.lidar.points.shape[1] == 6 and set(batch.lidar.batch_index.tolist()) == {0, 1}
    assert torch.allclose(batch.lidar.points[:, 5].unique(), torch.tensor([0.0, 0.05, 0.1]))
    assert batch.to("cpu").meta.sample_tokens == batch.meta.sample_tokens


def test_eval_pipeline_is_deterministic_and_unaugmented(synth_root, tmp_path):
    ds = NuScenesDataset(synth_root, "v1.0-synth", "synth_val", AUG, cache_dir=str(tmp_path))
    a, b = ds[0], ds[0]
    assert torch.equal(a.images, b.images) and torch.equal(a.bda, torch.eye(4))
    # every camera: 320 x 180 scaled by max(96 / 180, 256 / 320) = 0.8 to 256 x 144, then the
    # 96-row crop that keeps the bottom (bot_pct 0): rows 48..143; no flip, no rotation
    want = torch.tensor([[0.8, 0.0, 0.0], [0.0, 0.8, -48.0], [0.0, 0.0, 1.0]])
    m = a.aug_T_pix.reshape(-1, 3, 3)
    assert m.shape[0] == 6 and torch.allclose(m.float(), want.expand_as(m), atol=1e-6)


def test_bad_files_name_the_file_and_the_sample(synth_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(synth_root, root, ignore=shutil.ignore_patterns("synth_debug"))
    ds = NuScenesDataset(str(root), "v1.0-synth", "synth_val", AUG, cache_dir=str(tmp_path))
    info = ds.infos[0]
    img = root / info.cams[2].path
    img.write_bytes(img.read_bytes()[:200])  # truncated JPEG
    with pytest.raises(BevkdError, match=f"{info.cams[2].path}.*{info.token}"):
        ds[0]
    img.unlink()
    with pytest.raises(BevkdError, match=f"missing image .*{info.token}"):
        ds[0]
    pts = root / ds.infos[1].sweeps[0].path
    pts.write_bytes(pts.read_bytes()[:-6])
    with pytest.raises(BevkdError, match=f"truncated point file .*{ds.infos[1].token}"):
        ds[1]
    pts.write_bytes(bytes(1004))  # whole floats (251) but not whole 5-float points
    with pytest.raises(BevkdError, match="1004 bytes is not a whole number of 5-float"):
        ds[1]
    pts.write_bytes(np.array([[1, 2, np.nan, 0, 0]] * 3, np.float32).tobytes())
    with pytest.raises(BevkdError, match=f"corrupt point file .*non-finite.*{ds.infos[1].token}"):
        ds[1]
    with pytest.raises(BevkdError, match="v1.0-trainval does not exist"):
        NuScenesDataset(str(root), "v1.0-trainval", "val", AUG)
    # --skip-bad policy: skip and count instead of failing
    skipping = NuScenesDataset(str(root), "v1.0-synth", "synth_val",
                               DataConfig(image=AUG.image, skip_bad=True), cache_dir=str(tmp_path))
    item = skipping[0]
    assert item.token == skipping.infos[2].token and skipping.skipped == [info.token,
                                                                          ds.infos[1].token]


def test_info_cache_is_reused_and_invalidated_when_tables_change(synth_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(synth_root, root, ignore=shutil.ignore_patterns("samples", "sweeps",
                                                                   "synth_debug"))
    first = load_infos(str(root), "v1.0-synth", "synth_val", cache_dir=str(tmp_path / "c"))
    assert len(os.listdir(tmp_path / "c")) == 1
    again = load_infos(str(root), "v1.0-synth", "synth_val", cache_dir=str(tmp_path / "c"))
    assert [i.token for i in again] == [i.token for i in first]
    table = root / "v1.0-synth" / "sample.json"
    table.write_text(table.read_text() + "\n")  # any change to the tables: rebuild
    load_infos(str(root), "v1.0-synth", "synth_val", cache_dir=str(tmp_path / "c"))
    assert len(os.listdir(tmp_path / "c")) == 2

"""The nuScenes-format dataset (real nuScenes or SynthScenes, one code path).

``NuScenesDataset(root, version, split, cfg, train)`` yields :class:`bevkd.structures.batch.Sample`
items: augmented multi-view images with their geometry, multi-sweep LiDAR points with a time-lag
channel, GT boxes in the (augmented) key ego frame, and LiDAR depth targets per camera.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import BevkdError
from ..structures.batch import Sample
from ..structures.boxes import Boxes3D
from .depth import depth_targets
from .infos import SampleInfo, load_infos
from .transforms import (BevAug, BevAugConfig, ImageAugConfig, sample_bev_aug, sample_image_aug)

log = logging.getLogger(__name__)

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class DataConfig:
    """What the loader produces (BEVDepth defaults; presets override)."""

    use_camera: bool = True
    use_lidar: bool = True
    image: ImageAugConfig = field(default_factory=ImageAugConfig)
    bev: BevAugConfig = field(default_factory=BevAugConfig)
    lidar_sweeps: int = 10              # key sweep included
    prev_frames: int = 0                # previous key frames for a temporal student
    depth_stride: int = 16              # image-feature stride of the depth targets
    depth_range: tuple[float, float] = (2.0, 58.0)
    point_range: tuple[float, float, float, float, float, float] = (
        -51.2, -51.2, -5.0, 51.2, 51.2, 3.0)
    min_gt_points: int = 1              # training: GT with fewer LiDAR+radar points dropped
    skip_bad: bool = False              # log and skip unreadable samples instead of failing


def load_points(root: str, rel: str, sample_token: str) -> np.ndarray:
    """A nuScenes LiDAR file: (M, 5) float32 x, y, z, intensity, ring."""
    path = os.path.join(root, rel)
    try:
        size = os.path.getsize(path)
        raw = np.fromfile(path, dtype=np.float32)
    except FileNotFoundError:
        raise BevkdError(f"missing point file {path} (sample {sample_token})") from None
    if size % 20:  # fromfile silently drops a trailing partial float: check the bytes
        raise BevkdError(f"truncated point file {path} ({size} bytes is not a whole "
                         f"number of 5-float points; sample {sample_token})")
    points = raw.reshape(-1, 5)
    if not np.isfinite(points[:, :4]).all():
        raise BevkdError(f"corrupt point file {path} (non-finite values; sample {sample_token})")
    return points


def load_image(root: str, rel: str, sample_token: str) -> Image.Image:
    path = os.path.join(root, rel)
    if not os.path.isfile(path):
        raise BevkdError(f"missing image {path} (sample {sample_token})")
    try:
        with Image.open(path) as im:
            im.load()  # decode now: a truncated JPEG fails here, not later in a worker
            return im.convert("RGB")
    except OSError as err:
        raise BevkdError(f"corrupt or truncated image {path} (sample {sample_token}): "
                         f"{err}") from None


class NuScenesDataset(Dataset):
    """One split of a nuScenes-format dataset as augmented, typed samples."""

    def __init__(self, root: str, version: str, split: str, cfg: DataConfig = DataConfig(),
                 train: bool = False, seed: int = 0, cache_dir: str | None = None):
        self.root, self.version, self.split = root, version, split
        self.cfg, self.train, self.seed = cfg, train, seed
        self.infos: list[SampleInfo] = load_infos(root, version, split,
                                                  max(1, cfg.lidar_sweeps), cache_dir)
        self._index = {info.token: i for i, info in enumerate(self.infos)}
        self.epoch = 0
        self.skipped: list[str] = []

    def __len__(self) -> int:
        return len(self.infos)

    def set_epoch(self, epoch: int) -> None:
        """The epoch of plain integer keys. Training augmentations depend on (seed, epoch,
        index): reproducible and resumable. Training loaders pass ``(epoch, index)`` keys
        (:class:`~bevkd.data.sampler.EpochSampler`) because a loader worker holds its own copy
        of the dataset, which a ``set_epoch`` here does not reach."""
        self.epoch = epoch

    def _rng(self, index: int, epoch: int) -> np.random.Generator | None:
        return np.random.default_rng([self.seed, epoch, index]) if self.train else None

    def __getitem__(self, key: int | tuple[int, int]) -> Sample:
        """``dataset[index]`` (augmented for :attr:`epoch`) or ``dataset[(epoch, index)]``."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        if not self.cfg.skip_bad:
            return self.load(index, epoch)
        for k in range(len(self)):
            i = (index + k) % len(self)
            try:
                return self.load(i, epoch)
            except BevkdError as err:
                self.skipped.append(self.infos[i].token)
                log.warning("skipping sample (%d skipped so far): %s", len(self.skipped), err)
        raise BevkdError(f"every sample of split {self.split!r} is unreadable")

    def frames(self, index: int) -> list[SampleInfo]:
        """The key frame and up to ``prev_frames`` previous key frames (the first repeats
        itself where the scene starts, as BEVDepth pads)."""
        out = [self.infos[index]]
        for _ in range(self.cfg.prev_frames):
            prev = out[-1].prev
            out.append(self.infos[self._index[prev]] if prev in self._index else out[-1])
        return out

    def load(self, index: int, epoch: int | None = None) -> Sample:
        info = self.infos[index]
        rng = self._rng(index, self.epoch if epoch is None else epoch)
        cfg = self.cfg
        bev = sample_bev_aug(cfg.bev, rng) if self.train else BevAug()
        bda = bev.matrix()

        key_points = None
        points = None
        if cfg.use_lidar or cfg.use_camera:
            sweeps = []
            # cameras alone need only the key sweep (depth targets)
            n_sweeps = max(1, cfg.lidar_sweeps) if cfg.use_lidar else 1
            for k, sw in enumerate(info.sweeps[:n_sweeps]):
                pts = load_points(self.root, sw.path, info.token)
                xyz = pts[:, :3].astype(np.float64) @ sw.ego_T_lidar[:3, :3].T + sw.ego_T_lidar[:3, 3]
                if k == 0:
                    key_points = xyz
                lag = np.full((len(pts), 1), sw.time_lag, np.float32)
                sweeps.append(np.concatenate([xyz.astype(np.float32), pts[:, 3:5], lag], 1))
            if cfg.use_lidar:
                points = torch.from_numpy(bev.apply_points(np.concatenate(sweeps)))

        images = ego_T_cam = pix_T_cam = aug_T_pix = depth = None
        if cfg.use_camera:
            frames = self.frames(index)
            augs = [sample_image_aug(cfg.image, (c.width, c.height), rng) for c in info.cams]
            imgs, e_T_c, p_T_c, a_T_p = [], [], [], []
            for frame in frames:
                for cam, aug in zip(frame.cams, augs):
                    img = aug.apply(load_image(self.root, cam.path, frame.token))
                    imgs.append(_normalise(img))
                    # previous frames are re-expressed in the key frame's ego frame
                    key_T_frame = np.linalg.inv(info.global_T_ego) @ frame.global_T_ego
                    e_T_c.append(key_T_frame @ cam.ego_T_cam)
                    p_T_c.append(cam.pix_T_cam)
                    a_T_p.append(aug.matrix())
            T, N = len(frames), len(info.cams)
            images = torch.stack(imgs).view(T, N, *imgs[0].shape)
            ego_T_cam = torch.from_numpy(np.stack(e_T_c)).float().view(T, N, 4, 4)
            pix_T_cam = torch.from_numpy(np.stack(p_T_c)).float().view(T, N, 3, 3)
            aug_T_pix = torch.from_numpy(np.stack(a_T_p)).float().view(T, N, 3, 3)
            depth = torch.stack([
                depth_targets(key_points, cam.ego_T_cam, cam.pix_T_cam, aug.matrix(),
                              cfg.image.final_size, cfg.depth_stride, cfg.depth_range)
                for cam, aug in zip(info.cams, augs)])

        boxes, labels = self._targets(info, bev)
        return Sample(info.token, info.timestamp, torch.from_numpy(info.global_T_ego), images,
                      ego_T_cam, pix_T_cam, aug_T_pix, torch.from_numpy(bda).float(), points,
                      boxes, labels, depth)

    def _targets(self, info: SampleInfo, bev: BevAug) -> tuple[Boxes3D, torch.Tensor]:
        boxes = info.gt_boxes.copy()
        labels = info.gt_labels
        boxes[:, 7:9] = np.nan_to_num(boxes[:, 7:9])  # no velocity estimate: regress 0
        if self.train:
            keep = info.gt_num_pts >= self.cfg.min_gt_points
            boxes, labels = boxes[keep], labels[keep]
        out = bev.apply_boxes(Boxes3D(boxes))
        if self.train:
            r = self.cfg.point_range
            c = out.center
            keep = (c[:, 0] >= r[0]) & (c[:, 0] < r[3]) & (c[:, 1] >= r[1]) & (c[:, 1] < r[4])
            out, labels = out[keep], labels[keep]
        return Boxes3D(torch.from_numpy(out.tensor).float()), torch.from_numpy(labels.copy())


def _normalise(img: Image.Image) -> torch.Tensor:
    """(3, H, W) float32, ImageNet mean/std (RGB)."""
    arr = torch.from_numpy(np.asarray(img, np.float32)).permute(2, 0, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (arr - mean) / std

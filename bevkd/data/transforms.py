"""Image and BEV augmentation that keep cameras, LiDAR and boxes describing the same world.

Image augmentation (per camera: resize, crop, flip, rotate) is recorded as one 3x3 matrix
``aug_T_pix`` acting on homogeneous pixel coordinates, and the image is warped *by that matrix*
(after an antialiased resize), so pixels and matrix cannot disagree. Pixel coordinates use the
continuous convention of the renderer: pixel ``(i, j)`` covers ``[i, i+1) x [j, j+1)``.

BEV augmentation (per sample: scale, rotation about z, x/y flips) is one 4x4 matrix
``bda = augego_T_ego`` applied to LiDAR points and boxes; the model applies it to the camera
frustum through the same matrix (BEVDepth's ``bda_mat``). Defaults are BEVDepth's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..structures.boxes import Boxes3D


@dataclass(frozen=True)
class ImageAugConfig:
    """Per-camera image augmentation (BEVDepth ``ida_aug_conf``; angles in degrees)."""

    final_size: tuple[int, int] = (256, 704)          # (H, W) fed to the network
    resize_lim: tuple[float, float] = (0.386, 0.55)
    bot_pct_lim: tuple[float, float] = (0.0, 0.0)     # fraction of the bottom cropped away
    rot_lim: tuple[float, float] = (-5.4, 5.4)
    flip: bool = True

    def __post_init__(self) -> None:
        # ValueError: bevkd.config.from_dict names the section ("data.image: final_size ...")
        if min(self.final_size) < 32:  # the ResNet's stride: a smaller side has no feature
            raise ValueError(f"final_size (H, W) must be at least 32 pixels a side, got "
                             f"{tuple(self.final_size)}")
        if not 0 < self.resize_lim[0] <= self.resize_lim[1]:
            raise ValueError(f"resize_lim must be (low, high) with 0 < low <= high, got "
                             f"{tuple(self.resize_lim)}")
        if not 0 <= self.bot_pct_lim[0] <= self.bot_pct_lim[1] < 1:
            raise ValueError(f"bot_pct_lim must be (low, high) fractions with 0 <= low <= high "
                             f"< 1, got {tuple(self.bot_pct_lim)}")


@dataclass(frozen=True)
class BevAugConfig:
    """Per-sample BEV augmentation (BEVDepth ``bda_aug_conf``; angles in degrees)."""

    rot_lim: tuple[float, float] = (-22.5, 22.5)
    scale_lim: tuple[float, float] = (0.95, 1.05)
    flip_x_ratio: float = 0.5   # probability of x -> -x
    flip_y_ratio: float = 0.5   # probability of y -> -y


@dataclass(frozen=True)
class ImageAug:
    """Sampled augmentation of one image: resize to ``resized`` (W, H), crop box
    (x0, y0) + final size, horizontal flip, then rotation by ``rotate`` degrees
    counter-clockwise (as seen on screen) about the centre of the final image."""

    resized: tuple[int, int]
    crop: tuple[int, int]
    final_size: tuple[int, int]  # (H, W)
    flip: bool
    rotate: float
    source_size: tuple[int, int]  # (W, H) of the original image

    def matrix(self) -> np.ndarray:
        """``aug_T_pix`` (3, 3): original pixel coordinates -> augmented pixel coordinates."""
        W, H = self.source_size
        fh, fw = self.final_size
        # PIL's resize maps the continuous pixel range exactly: x -> x * newW / W
        m = np.diag([self.resized[0] / W, self.resized[1] / H, 1.0])
        m = np.array([[1.0, 0, -self.crop[0]], [0, 1.0, -self.crop[1]], [0, 0, 1]]) @ m
        if self.flip:
            m = np.array([[-1.0, 0, fw], [0, 1.0, 0], [0, 0, 1]]) @ m
        if self.rotate:
            a = math.radians(self.rotate)
            c, s = math.cos(a), math.sin(a)
            cx, cy = fw / 2.0, fh / 2.0
            # counter-clockwise on screen with y pointing down
            rot = np.array([[c, s, 0], [-s, c, 0], [0, 0, 1.0]])
            centre = np.array([[1.0, 0, cx], [0, 1.0, cy], [0, 0, 1]])
            m = centre @ rot @ np.linalg.inv(centre) @ m
        return m

    def apply(self, img: Image.Image) -> Image.Image:
        """Warp ``img`` (the original) into the augmented (final_size) image."""
        if img.size != self.source_size:
            raise ValueError(f"image is {img.size}, augmentation was drawn for {self.source_size}")
        resized = img.resize(self.resized, Image.BILINEAR)
        scale = np.diag([self.resized[0] / self.source_size[0],
                         self.resized[1] / self.source_size[1], 1.0])
        # remaining affine part: resized pixel -> augmented pixel; PIL wants its inverse
        rest = self.matrix() @ np.linalg.inv(scale)
        inv = np.linalg.inv(rest)
        fh, fw = self.final_size
        return resized.transform((fw, fh), Image.AFFINE, data=tuple(inv[:2].reshape(-1)),
                                 resample=Image.BILINEAR)


def sample_image_aug(cfg: ImageAugConfig, source_size: tuple[int, int],
                     rng: np.random.Generator | None) -> ImageAug:
    """Draw a training augmentation (``rng`` given) or the deterministic eval one (``None``)."""
    W, H = source_size
    fh, fw = cfg.final_size
    if rng is not None:
        resize = float(rng.uniform(*cfg.resize_lim))
        bot = float(rng.uniform(*cfg.bot_pct_lim))
    else:
        resize = max(fh / H, fw / W)
        bot = float(np.mean(cfg.bot_pct_lim))
    new_w, new_h = int(W * resize), int(H * resize)
    crop_h = int((1 - bot) * new_h) - fh
    if rng is not None:
        crop_w = int(rng.uniform(0, max(0, new_w - fw)))
        flip = bool(cfg.flip and rng.random() < 0.5)
        rotate = float(rng.uniform(*cfg.rot_lim))
    else:
        crop_w = int(max(0, new_w - fw) / 2)
        flip, rotate = False, 0.0
    return ImageAug((new_w, new_h), (crop_w, crop_h), (fh, fw), flip, rotate, (W, H))


@dataclass(frozen=True)
class BevAug:
    """Sampled BEV augmentation: scale, then rotate by ``angle`` radians about z, then flips."""

    angle: float = 0.0
    scale: float = 1.0
    flip_x: bool = False   # x -> -x
    flip_y: bool = False   # y -> -y

    def matrix(self) -> np.ndarray:
        """``bda`` (4, 4): ego frame -> augmented ego frame."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        m = np.eye(4)
        m[:2, :2] = np.array([[c, -s], [s, c]]) * self.scale
        m[2, 2] = self.scale
        flip = np.diag([-1.0 if self.flip_x else 1.0, -1.0 if self.flip_y else 1.0, 1.0, 1.0])
        return flip @ m

    def apply_points(self, points: np.ndarray) -> np.ndarray:
        """Points (M, C >= 3): xyz mapped, other channels kept."""
        out = points.copy()
        m = self.matrix()
        out[:, :3] = points[:, :3] @ m[:3, :3].T
        return out

    def apply_boxes(self, boxes: Boxes3D) -> Boxes3D:
        """The same map on boxes (centres, sizes, yaw, velocity)."""
        out = boxes.scale(self.scale).rotate(self.angle)
        if self.flip_x:
            out = out.flip("y")  # mirror across the y axis: x -> -x
        if self.flip_y:
            out = out.flip("x")  # mirror across the x axis: y -> -y
        return out


def sample_bev_aug(cfg: BevAugConfig, rng: np.random.Generator | None) -> BevAug:
    """Draw a training BEV augmentation (``rng`` given) or the identity (``None``)."""
    if rng is None:
        return BevAug()
    return BevAug(angle=math.radians(float(rng.uniform(*cfg.rot_lim))),
                  scale=float(rng.uniform(*cfg.scale_lim)),
                  flip_x=bool(rng.random() < cfg.flip_x_ratio),
                  flip_y=bool(rng.random() < cfg.flip_y_ratio))

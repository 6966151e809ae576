"""Draw a sample as the model sees it: after the loader's augmentation (``bevkd show --augment``)
and with its LiDAR depth targets (``--depth``).

Boxes and LiDAR points are projected through exactly the matrices the model receives
(``bda``, ``ego_T_cam``, ``pix_T_cam``, ``aug_T_pix``): if they sit on the objects here, the
student's frustum and the teacher's BEV describe the same world.
"""

from __future__ import annotations

import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

from ..data.depth import project_to_image  # noqa: E402
from ..data.infos import split_scene_names  # noqa: E402
from ..data.nuscenes import IMAGENET_MEAN, IMAGENET_STD, DataConfig, NuScenesDataset  # noqa: E402
from ..errors import BevkdError  # noqa: E402
from ..structures.boxes import Boxes3D  # noqa: E402
from ..structures.classes import DETECTION_CLASSES  # noqa: E402
from ..structures.geometry import invert_transform  # noqa: E402
from ..data.infos import find_version  # noqa: E402
from .sample import CLASS_COLORS, box_edges_2d  # noqa: E402

_SPLITS = ("synth_train", "synth_val", "train", "val", "mini_train", "mini_val", "test")


def _find_split(root: str, version: str, sample: str) -> tuple[str, str]:
    """(split, sample token) for a sample index (table order) or token."""
    with open(os.path.join(root, version, "sample.json")) as f:
        samples = json.load(f)
    if sample.isdigit():
        if int(sample) >= len(samples):
            raise BevkdError(f"sample index {sample} out of range (0..{len(samples) - 1})")
        rec = samples[int(sample)]
    else:
        rec = next((s for s in samples if s["token"] == sample), None)
        if rec is None:
            raise BevkdError(f"unknown sample token {sample!r} in {version}")
    with open(os.path.join(root, version, "scene.json")) as f:
        scene = next(s["name"] for s in json.load(f) if s["token"] == rec["scene_token"])
    for split in _SPLITS:
        try:
            if scene in split_scene_names(root, version, split):
                return split, rec["token"]
        except BevkdError:
            continue
    raise BevkdError(f"scene {scene} of sample {rec['token']} is in no known split")


def draw_augmented(data: str, sample: str, out: str, version: str | None = None,
                   augment: bool = True, depth: bool = False, seed: int = 0,
                   cfg: DataConfig | None = None) -> str:
    """Draw the loader's view of one sample; returns the PNG path.

    Top: the six (augmented) images with GT boxes and key-sweep LiDAR points coloured by depth.
    With ``depth``: a second row of the depth-target grids. Right: BEV of the (augmented)
    points and boxes, where BEV augmentation shows as a rotated / flipped / scaled scene.
    """
    version = find_version(data, version)
    split, token = _find_split(data, version, sample)
    if cfg is None:
        from ..data.transforms import ImageAugConfig

        # BEVDepth's `full` image (256 x 704) and resize range, scaled to the source width
        k = 1600 / _source_size(data, version)[0]
        cfg = DataConfig(image=ImageAugConfig(final_size=(256, 704),
                                              resize_lim=(0.386 * k, 0.55 * k)),
                         lidar_sweeps=1, depth_stride=8)
    ds = NuScenesDataset(data, version, split, cfg, train=augment, seed=seed)
    index = next(i for i, info in enumerate(ds.infos) if info.token == token)
    item = ds[index]
    info = ds.infos[index]

    rows = 2 if depth else 1
    fig = plt.figure(figsize=(24, 4.2 * rows + 1.5), dpi=100)
    grid = fig.add_gridspec(2 * rows, 4, width_ratios=[1, 1, 1, 1.05])
    pts_aug = item.points[item.points[:, 5] == 0, :3].double().numpy()
    bda = item.bda.double().numpy()
    ego_T_augego = np.linalg.inv(bda)
    pts = pts_aug @ ego_T_augego[:3, :3].T
    boxes_ego = Boxes3D(item.boxes.tensor.double()).numpy()
    corners = boxes_ego.corners() @ ego_T_augego[:3, :3].T  # back to the un-augmented frame
    names = [DETECTION_CLASSES[int(i)] for i in item.labels]
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    H, W = cfg.image.final_size
    for n, cam in enumerate(info.cams):
        ax = fig.add_subplot(grid[n // 3, n % 3]) if not depth else fig.add_subplot(
            grid[(n // 3) * 2, n % 3])
        img = ((item.images[0, n] * std + mean).permute(1, 2, 0).clamp(0, 255) / 255).numpy()
        ax.imshow(img)
        e_T_c = item.ego_T_cam[0, n].double().numpy()
        K = item.aug_T_pix[0, n].double().numpy() @ item.pix_T_cam[0, n].double().numpy()
        uv, z = project_to_image(pts, e_T_c, K, np.eye(3))
        keep = (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
        ax.scatter(uv[keep, 0], uv[keep, 1], c=z[keep], s=0.6, alpha=0.7, cmap="turbo", vmin=0,
                   vmax=50, linewidths=0)
        cam_T_ego = invert_transform(e_T_c)
        c_cam = corners @ cam_T_ego[:3, :3].T + cam_T_ego[:3, 3]
        segs, valid = box_edges_2d(c_cam, K)
        for b in range(len(names)):
            if valid[b].any():
                ax.add_collection(LineCollection(segs[b][valid[b]], colors=CLASS_COLORS[names[b]],
                                                 linewidths=1.0))
        ax.set_xlim(0, W)
        ax.set_ylim(H, 0)
        ax.set_title(f"{cam.channel} (augmented)" if augment else cam.channel, fontsize=9)
        ax.axis("off")
        if depth:
            dax = fig.add_subplot(grid[(n // 3) * 2 + 1, n % 3])
            target = item.depth[n].numpy()
            shown = np.ma.masked_where(target <= 0, target)
            dax.imshow(img, extent=(0, W, H, 0), alpha=0.35)
            im = dax.imshow(shown, cmap="turbo", vmin=0, vmax=50, extent=(0, W, H, 0),
                            interpolation="nearest")
            dax.set_title(f"depth targets (stride {cfg.depth_stride}, min per cell)", fontsize=8)
            dax.axis("off")
    bev = fig.add_subplot(grid[:, 3])
    p = item.points.numpy()
    bev.scatter(-p[:, 1], p[:, 0], s=0.2, c=p[:, 2], cmap="viridis", vmin=-2, vmax=3)
    for name, poly in zip(names, boxes_ego.bev_corners()):
        ring = np.vstack([poly, poly[:1]])
        bev.plot(-ring[:, 1], ring[:, 0], color=CLASS_COLORS[name], lw=1.0)
    bev.set_xlim(-60, 60)
    bev.set_ylim(-60, 60)
    bev.set_aspect("equal")
    bev.set_title("BEV after augmentation (augmented ego frame; x up, y left)", fontsize=9)
    if depth:
        fig.colorbar(im, ax=bev, fraction=0.03, label="depth [m]")
    fig.suptitle(f"sample {token} ({split}) as the loader gives it"
                 + (f", augmentation seed {seed}" if augment else ""), fontsize=11)
    fig.tight_layout()
    out_dir = os.path.dirname(os.path.abspath(out))
    os.makedirs(out_dir, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def _source_size(root: str, version: str) -> tuple[int, int]:
    with open(os.path.join(root, version, "sample_data.json")) as f:
        for sd in json.load(f):
            if sd["fileformat"] == "jpg":
                return sd["width"], sd["height"]
    raise BevkdError(f"{version} has no camera images")

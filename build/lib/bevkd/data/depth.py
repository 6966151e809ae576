"""LiDAR depth targets for the camera student (BEVDepth's depth supervision).

Points of the key sweep (ego frame, before BEV augmentation) are projected into each augmented
image; every feature cell (``stride`` x ``stride`` pixels) takes the smallest depth of the points
that land in it, 0 where none does. Depth is the camera-frame z, which image augmentation does
not change.
"""

from __future__ import annotations

import numpy as np
import torch

from ..structures.geometry import invert_transform


def project_to_image(points_ego: np.ndarray, ego_T_cam: np.ndarray, pix_T_cam: np.ndarray,
                     aug_T_pix: np.ndarray, min_depth: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Augmented pixel coordinates (M', 2) and depths (M',) of the points in front of the camera.

    Args:
        points_ego: (M, 3) points in the ego frame.
        ego_T_cam: (4, 4).  pix_T_cam: (3, 3) intrinsics.  aug_T_pix: (3, 3) image augmentation.
    """
    cam_T_ego = invert_transform(ego_T_cam)
    pts = points_ego @ cam_T_ego[:3, :3].T + cam_T_ego[:3, 3]
    pts = pts[pts[:, 2] > min_depth]
    uv1 = pts @ (aug_T_pix @ pix_T_cam).T
    return uv1[:, :2] / uv1[:, 2:3], pts[:, 2]


def depth_targets(points_ego: np.ndarray, ego_T_cam: np.ndarray, pix_T_cam: np.ndarray,
                  aug_T_pix: np.ndarray, image_size: tuple[int, int], stride: int,
                  depth_range: tuple[float, float]) -> torch.Tensor:
    """Min-depth target map of one camera: (H // stride, W // stride) float32, 0 = no target.

    Args:
        image_size: (H, W) of the augmented image.
        depth_range: [min, max) of the depth bins; points outside give no target.
    """
    H, W = image_size
    h, w = H // stride, W // stride
    uv, depth = project_to_image(points_ego, ego_T_cam, pix_T_cam, aug_T_pix)
    keep = ((uv[:, 0] >= 0) & (uv[:, 0] < w * stride) & (uv[:, 1] >= 0)
            & (uv[:, 1] < h * stride) & (depth >= depth_range[0]) & (depth < depth_range[1]))
    uv, depth = uv[keep], depth[keep]
    cell = (np.floor(uv[:, 1] / stride) * w + np.floor(uv[:, 0] / stride)).astype(np.int64)
    out = torch.full((h * w,), float("inf"))
    out.scatter_reduce_(0, torch.from_numpy(cell), torch.from_numpy(depth.astype(np.float32)),
                        reduce="amin")
    out[torch.isinf(out)] = 0.0
    return out.view(h, w)

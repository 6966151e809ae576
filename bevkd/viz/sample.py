"""Draw one nuScenes-format sample: six camera images with projected GT boxes and a BEV panel.

Entry point :func:`draw_sample` (used by ``bevkd show``). Works on any nuScenes-format
dataset; only annotations of the ten detection classes are drawn.
"""

from __future__ import annotations

import os
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs (or tries to open) a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.backend_bases import FigureCanvasBase  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from PIL import Image  # noqa: E402

from bevkd.data.infos import find_version  # noqa: E402
from bevkd.data.nuscenes import load_points  # noqa: E402
from bevkd.structures.classes import CAMERA_CHANNELS, DETECTION_CLASSES, LIDAR_CHANNEL  # noqa: E402
from bevkd.errors import BevkdError  # noqa: E402
from bevkd.structures.boxes import Boxes3D  # noqa: E402
from bevkd.structures.geometry import (  # noqa: E402
    invert_transform,
    project_points,
    transform_from_record,
    transform_points,
)

__all__ = ["draw_sample", "box_edges_2d", "camera_box_edges", "load_sweeps_ego", "CAMERAS",
           "CLASS_COLORS"]

CAMERAS, LIDAR = CAMERA_CHANNELS, LIDAR_CHANNEL
# matplotlib's tab10, one fixed colour per detection class (devkit order).
CLASS_COLORS: dict[str, str] = dict(zip(DETECTION_CLASSES, (
    "#1f77b4", "#ff7f0e", "#8c564b", "#d62728", "#9467bd",
    "#7f7f7f", "#e377c2", "#bcbd22", "#2ca02c", "#17becf",
)))  # fmt: skip
# Devkit corner order (see Boxes3D.corners): 0-3 front face, 4-7 back face. The last two
# "edges" are the diagonals of the front face, drawn as an X so the heading is visible.
EDGES = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 6], [6, 7], [7, 4],
                  [0, 4], [1, 5], [2, 6], [3, 7], [0, 2], [1, 3]])  # fmt: skip
FRONT_EDGES = (0, 1, 2, 3, 12, 13)
BEV_RANGE = 60.0  # metres, half side of the BEV panel
FIG_WIDTH_PX, DPI = 2400, 100
EGO_BOX = (-0.9, 3.2, 0.87)  # Renault Zoe-like: rear / front x from the rear axle, half width


def box_edges_2d(corners_cam: np.ndarray, pix_T_cam: np.ndarray,
                 near: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Project box wireframes, clipping each edge against the plane ``z = near``.

    ``corners_cam (N, 8, 3)`` in the camera frame (devkit corner order), ``pix_T_cam (3, 3)``.
    Returns ``(segments (N, 14, 2, 2) pixel endpoints [u, v], valid (N, 14) bool)`` for the
    edges in :data:`EDGES` (12 box edges + the front-face X). An edge fully behind the near
    plane is invalid; one that crosses it is cut at the plane, so a box beside the camera
    keeps its visible part instead of vanishing or wrapping around through the mirrored
    projection of points behind the camera.
    """
    c = np.asarray(corners_cam, dtype=np.float64).reshape(-1, 8, 3)
    a, b = c[:, EDGES[:, 0]], c[:, EDGES[:, 1]]  # (N, 14, 3)
    za, zb = a[..., 2:3], b[..., 2:3]
    valid = (za[..., 0] >= near) | (zb[..., 0] >= near)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.clip((near - za) / (zb - za), 0.0, 1.0)  # where the edge meets z = near
    cut = a + t * (b - a)
    a = np.where(za < near, cut, a)
    b = np.where(zb < near, cut, b)
    uv_a, _ = project_points(pix_T_cam, a)
    uv_b, _ = project_points(pix_T_cam, b)
    seg = np.stack([uv_a, uv_b], axis=-2)
    return np.where(valid[..., None, None], seg, np.nan), valid


def camera_box_edges(boxes: Boxes3D, cam_T_frame: np.ndarray, pix_T_cam: np.ndarray,
                     near: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Wireframes of upright ``boxes (N, 9)`` given in a z-up frame (global, ego) in an image.

    ``cam_T_frame (4, 4)`` maps that frame into the camera, ``pix_T_cam (3, 3)``; returns
    :func:`box_edges_2d`'s ``(segments (N, 14, 2, 2), valid (N, 14))``. The corners are
    built in the z-up frame and then mapped as points: ``Boxes3D.transform`` keeps boxes
    upright about the *target* frame's z, which in a camera frame is the optical axis, so
    ``boxes.transform(cam_T_frame).corners()`` would come out tilted.
    """
    corners = transform_points(np.asarray(cam_T_frame, dtype=np.float64),
                               np.asarray(boxes.numpy().corners(), dtype=np.float64))
    return box_edges_2d(corners, pix_T_cam, near)


def _global_T_sensor(nusc: Any, sd: dict) -> np.ndarray:
    """``global_T_sensor (4, 4)`` at the sample_data's own time (its own ego pose)."""
    ego = nusc.get("ego_pose", sd["ego_pose_token"])
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    return transform_from_record(ego) @ transform_from_record(cs)


def load_sweeps_ego(nusc: Any, lidar_sd: dict, sweeps: int, ego_T_global: np.ndarray,
                    sample_token: str) -> tuple[np.ndarray, int]:
    """LiDAR points of up to ``sweeps`` sweeps (key sweep first, then its prev chain).

    Each sweep goes sweep -> ego(sweep time) -> global -> ego(key time), so static
    structure lines up even when the car moves. Returns ``(points (M, 5) float64, sweeps
    used)``, xyz in the key frame's ego frame, intensity and ring kept.
    """
    clouds, sd = [], lidar_sd
    for _ in range(sweeps):
        pts = load_points(nusc.dataroot, sd["filename"], sample_token)
        pts = pts.astype(np.float64)
        pts[:, :3] = transform_points(ego_T_global @ _global_T_sensor(nusc, sd), pts[:, :3])
        clouds.append(pts)
        if not sd["prev"]:
            break  # scene start: fewer sweeps exist than asked for
        sd = nusc.get("sample_data", sd["prev"])
    return np.concatenate(clouds), len(clouds)


def _resolve_sample(nusc: Any, sample: str | int, version: str) -> dict:
    """The sample record for an index into ``nusc.sample`` (table order) or a token."""
    n = len(nusc.sample)
    text = str(sample).strip()
    if text.lstrip("-").isdigit():
        i = int(text)
        if not 0 <= i < n:
            raise BevkdError(f"sample index {i} out of range: {version} has {n} samples "
                             f"(valid: 0..{n - 1})")
        return nusc.sample[i]
    try:
        return nusc.get("sample", text)
    except KeyError:
        raise BevkdError(f"unknown sample token {text!r} (not in {version}/sample.json)") from None


def picture_format(out: str) -> str:
    """The format a picture is written in: its file's extension (png without one)."""
    return os.path.splitext(out)[1].lower().lstrip(".") or "png"


def _prepare_out(out: str) -> str:
    """Create the parent folder of ``out`` and fail early (before drawing) if unwritable."""
    out = os.path.abspath(out)
    parent = os.path.dirname(out)
    if os.path.isdir(out):
        raise BevkdError(f"cannot write {out}: it is a folder")
    ext = picture_format(out)
    if ext not in FigureCanvasBase.get_supported_filetypes():
        raise BevkdError(f"cannot write {out}: .{ext} is no picture format matplotlib writes "
                         "(png, jpg, pdf, svg, ...)")
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as err:
        raise BevkdError(f"cannot create folder {parent} for {out}: {err.strerror}") from None
    if not os.access(parent, os.W_OK) or (os.path.exists(out) and not os.access(out, os.W_OK)):
        raise BevkdError(f"cannot write {out}: permission denied")
    return out


def _gt_boxes(nusc: Any, sample: dict) -> tuple[Boxes3D, list[str], np.ndarray]:
    """Global-frame GT boxes of detection classes: ``(boxes (N, 9), classes, has_pts (N,))``."""
    # The devkit's own mapping, so real nuScenes categories (bendy bus, child, ...) work too.
    from nuscenes.eval.detection.utils import category_to_detection_name

    anns = [nusc.get("sample_annotation", t) for t in sample["anns"]]
    keep = [(a, category_to_detection_name(a["category_name"])) for a in anns]
    keep = [(a, c) for a, c in keep if c is not None]
    if not keep:
        return Boxes3D.empty(), [], np.zeros(0, dtype=bool)
    boxes = Boxes3D.from_nuscenes(
        np.array([a["translation"] for a, _ in keep], dtype=np.float64),
        np.array([a["size"] for a, _ in keep], dtype=np.float64),
        np.array([a["rotation"] for a, _ in keep], dtype=np.float64),
    )
    # num_lidar_pts == 0: the devkit filters these out of evaluation; drawn dashed.
    has_pts = np.array([a.get("num_lidar_pts", 1) > 0 for a, _ in keep])
    return boxes, [c for _, c in keep], has_pts


def _draw_camera(ax: Any, nusc: Any, sd: dict, boxes: Boxes3D, classes: list[str],
                 has_pts: np.ndarray, sample_token: str) -> None:
    """Camera image with the wireframes of ``boxes`` (global frame) on ``ax``."""
    path = os.path.join(nusc.dataroot, sd["filename"])
    if not os.path.isfile(path):
        raise BevkdError(f"missing image file {path} (sample {sample_token})")
    try:
        with Image.open(path) as im:
            img = np.asarray(im.convert("RGB"))
    except OSError as err:
        raise BevkdError(f"cannot read image {path} (sample {sample_token}): {err}") from None
    h, w = img.shape[:2]
    ax.imshow(img, extent=(0, w, h, 0), interpolation="bilinear")
    if len(boxes):
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        cam_T_global = invert_transform(_global_T_sensor(nusc, sd))
        seg, valid = camera_box_edges(boxes, cam_T_global,
                                      np.asarray(cs["camera_intrinsic"], dtype=np.float64))
        lw = max(0.6, w / 800.0)  # thin lines on small test images, readable on 1600 px
        # One collection per camera: thousands of separate Line2D objects are slow to draw.
        idx, edge = np.nonzero(valid)
        front = np.isin(edge, FRONT_EDGES)
        ax.add_collection(LineCollection(
            seg[idx, edge], colors=[CLASS_COLORS[classes[i]] for i in idx],
            linewidths=np.where(front, 2 * lw, lw),
            linestyles=["solid" if has_pts[i] else "dashed" for i in idx]))
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)  # image rows grow downwards; also clips edges leaving the image
    ax.set_title(sd["channel"], fontsize=10, pad=3)
    ax.axis("off")


def _draw_bev(ax: Any, nusc: Any, sample: dict, points: np.ndarray, boxes_ego: Boxes3D,
              classes: list[str], has_pts: np.ndarray, ego_T_global: np.ndarray,
              n_sweeps: int) -> None:
    """BEV in the key-frame ego frame: plot x = ego y (inverted: left is left), plot y = ego x."""
    r = BEV_RANGE
    near = (np.abs(points[:, 0]) < r) & (np.abs(points[:, 1]) < r)
    p = points[near]
    # Height colours separate the ground (dark) from objects and buildings (bright).
    ax.scatter(p[:, 1], p[:, 0], c=np.clip(p[:, 2], -0.5, 3.0), cmap="viridis", s=0.6,
               linewidths=0, rasterized=True)
    # Camera frustums: rays through the left/right image border at the principal row.
    for ch in CAMERAS:
        if ch not in sample["data"]:
            continue
        sd = nusc.get("sample_data", sample["data"][ch])
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        k = np.asarray(cs["camera_intrinsic"], dtype=np.float64)
        width = sd["width"] or 2 * k[0, 2]  # sweeps-style records may lack a size
        # Rays through the left and right image border at the principal row, 1.5 r deep:
        # far enough to leave the panel.
        pix = np.array([[0.0, k[1, 2], 1.0], [width, k[1, 2], 1.0]])
        ends = pix @ np.linalg.inv(k).T * 1.5 * r
        pts = transform_points(ego_T_global @ _global_T_sensor(nusc, sd),
                               np.vstack([np.zeros(3), ends]))
        for end in pts[1:]:
            ax.plot([pts[0, 1], end[1]], [pts[0, 0], end[0]], color="0.5", lw=0.6, alpha=0.5)
    if len(boxes_ego):
        fp = boxes_ego.bev_corners()  # (N, 4, 2): front-right, front-left, rear-left, rear-right
        centers = boxes_ego.center[:, :2]
        for i, cls in enumerate(classes):
            poly = np.vstack([fp[i], fp[i][:1]])
            style = "-" if has_pts[i] else "--"
            ax.plot(poly[:, 1], poly[:, 0], style, color=CLASS_COLORS[cls], lw=1.2)
            front = fp[i][:2].mean(0)  # heading tick: centre -> middle of the front edge
            ax.plot([centers[i, 1], front[1]], [centers[i, 0], front[0]],
                    color=CLASS_COLORS[cls], lw=1.2)
    x0, x1, hw = EGO_BOX
    ax.add_patch(Rectangle((-hw, x0), 2 * hw, x1 - x0, fc="black", ec="black", lw=1, zorder=3))
    present = [c for c in DETECTION_CLASSES if c in classes]
    handles = [Line2D([], [], color=CLASS_COLORS[c], lw=2, label=c) for c in present]
    if not has_pts.all():
        handles.append(Line2D([], [], color="k", ls="--", label="0 LiDAR pts (not evaluated)"))
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.8)
    ax.set_xlim(r, -r)  # ego +y (left) to the left of the plot
    ax.set_ylim(-r, r)  # ego +x (forward) up
    ax.set_aspect("equal")
    ax.set_xlabel("ego y [m] (left +)")
    ax.set_ylabel("ego x [m] (forward +)")
    ax.set_title(f"{sample['token']}  BEV (ego), {LIDAR} x{n_sweeps}, colour = height",
                 fontsize=10)
    ax.grid(alpha=0.2)


def draw_sample(data: str, sample: str, out: str, version: str | None = None,
                sweeps: int = 1) -> str:
    """Draw sample ``sample`` (index in table order or token) of the dataset in ``data``.

    Left: the six cameras (2 x 3) with GT boxes of detection classes as wireframes (front
    face thick with an X); right: a +-60 m BEV in the key frame's ego frame with the LiDAR
    points of ``sweeps`` sweeps, box footprints, the ego car and the camera frustums.
    Boxes without LiDAR points are dashed. Writes a ``2400 px`` wide PNG to ``out``
    (parent folders created) and returns its absolute path. User errors raise
    :class:`BevkdError`.
    """
    from bevkd.data.infos import load_devkit  # the devkit is a slow import; only needed here

    if sweeps < 1:
        raise BevkdError(f"sweeps must be >= 1, got {sweeps}")
    version = find_version(data, version)
    out = _prepare_out(out)
    nusc = load_devkit(data, version)
    rec = _resolve_sample(nusc, sample, version)
    token = rec["token"]
    boxes, classes, has_pts = _gt_boxes(nusc, rec)

    lidar_sd = nusc.get("sample_data", rec["data"][LIDAR])
    ego_T_global = invert_transform(transform_from_record(
        nusc.get("ego_pose", lidar_sd["ego_pose_token"])))
    points, n_sweeps = load_sweeps_ego(nusc, lidar_sd, sweeps, ego_T_global, token)

    cams = [nusc.get("sample_data", rec["data"][ch]) for ch in CAMERAS if ch in rec["data"]]
    aspect = (cams[0]["height"] / cams[0]["width"]) if cams and cams[0]["width"] else 9 / 16
    # Layout in inches: 3 image columns + a square BEV whose side equals the two image rows.
    # Widths: 3 w + 6 gaps + ticks (BEV labels) + side, with side = 2 rows + gap - title - ticks.
    W, gap, title, ticks = FIG_WIDTH_PX / DPI, 0.08, 0.3, 0.6
    w = (W - 6 * gap - title) / (3 + 2 * aspect)
    row = w * aspect + title
    H = round((2 * row + gap) * DPI) / DPI
    side = H - title - ticks
    fig = plt.figure(figsize=(W, H), dpi=DPI)
    try:
        for k, sd in enumerate(cams):
            r, c = divmod(k, 3)
            rect = ((gap + c * (w + gap)) / W, (H - (r + 1) * row - r * gap) / H, w / W,
                    w * aspect / H)
            _draw_camera(fig.add_axes(rect), nusc, sd, boxes, classes, has_pts, token)
        bev = fig.add_axes(((W - side - gap) / W, ticks / H, side / W, side / H))
        _draw_bev(bev, nusc, rec, points, boxes.transform(ego_T_global), classes, has_pts,
                  ego_T_global, n_sweeps)
        try:
            fig.savefig(out, dpi=DPI, format=picture_format(out))
        except OSError as err:
            raise BevkdError(f"cannot write {out}: {err.strerror or err}") from None
    finally:
        plt.close(fig)
    return out

"""LabelDistill's label encoder (Kim et al., ECCV 2024; DESIGN §4.2): an approximate inverse of
the LiDAR teacher's head, trained as its own stage.

GT boxes are painted onto the BEV grid; per cell an MLP embeds the painted box and class, a
BasicBlock mixes neighbours, and two conv blocks produce maps shaped like the teacher trunk's two
stage outputs. Those go through the teacher's **frozen** neck and head, and the usual CenterPoint
loss against GT trains the encoder only. Its stage outputs (``bev_s1``, ``bev_s2``) are then the
"label features" a camera student imitates (:class:`~bevkd.distill.labeldistill.LabelDistill`).

Painted 9-vector of a cell covered by box ``(x, y, z, l, w, h, yaw, vx, vy)`` (our normalisation;
the published code paints the raw box, which no per-cell layer can relate to its own cell):

    [x − x_cell, y − y_cell, z, log l, log w, log h, yaw, vx, vy]

offsets in metres from the cell centre, ``z`` the geometric centre (m), log sizes (as the head's
code), yaw in radians as the box stores it (``[-π, π)``), velocity m/s (NaN → 0). Unpainted cells
hold zeros and an all-zero class vector (published). Footprint: cell centres within
``±l/4, ±w/4`` of the box (``"half"``, published) or ``±l/2, ±w/2`` (``"full"``), in the box's
frame; the box's centre cell is always painted (a box smaller than a cell would otherwise vanish).
Where footprints overlap, the box whose centre is nearest the cell centre wins.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import BevkdError
from ..models.backbones.resnet import BasicBlock
from ..models.detector import Detector
from ..models.grid import BevGrid
from ..models.outputs import DetOutputs
from ..structures.batch import Batch
from ..structures.boxes import Boxes3D
from ..structures.classes import DETECTION_CLASSES

BOX_FEATURES = 9
NUM_CLASSES = len(DETECTION_CLASSES)
_FOOTPRINT_SCALE = {"half": 0.5, "full": 1.0}


def paint_labels(boxes: Sequence[Boxes3D], labels: Sequence[torch.Tensor], grid: BevGrid,
                 footprint: str = "half", device: torch.device | str | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Paint GT boxes onto ``grid``.

    Args:
        boxes: per sample ``Boxes3D`` (K_b, 9) in the grid's frame.
        labels: per sample (K_b,) indices into ``DETECTION_CLASSES`` (others are skipped).
        footprint: ``"half"`` (``±l/4, ±w/4``) or ``"full"`` (``±l/2, ±w/2``).

    Returns ``box (B, Y, X, 9)`` painted 9-vectors (module docstring), ``cls (B, Y, X, 10)``
    one-hot classes and ``painted (B, Y, X)`` bool.
    """
    if footprint not in _FOOTPRINT_SCALE:
        raise ValueError(f"footprint must be one of {sorted(_FOOTPRINT_SCALE)}, got {footprint!r}")
    scale = _FOOTPRINT_SCALE[footprint]
    if device is None:
        device = boxes[0].tensor.device if len(boxes) and boxes[0].is_torch else "cpu"
    h, w = grid.shape
    cells = grid.cell_centres(1, device)  # (Y, X, 2)
    bsz = len(boxes)
    box_map = torch.zeros(bsz, h, w, BOX_FEATURES, device=device)
    cls_map = torch.zeros(bsz, h, w, NUM_CLASSES, device=device)
    painted = torch.zeros(bsz, h, w, dtype=torch.bool, device=device)
    for b, (bx, lb) in enumerate(zip(boxes, labels)):
        t = bx.torch(device).tensor.float()
        lab = torch.as_tensor(lb, device=device).long().reshape(-1)
        ok = (lab >= 0) & (lab < NUM_CLASSES) & torch.isfinite(t[:, :7]).all(1)
        t, lab = t[ok], lab[ok]
        if len(t) == 0:
            continue
        d = cells[None] - t[:, None, None, :2]  # (K, Y, X, 2)
        c, s = torch.cos(t[:, 6])[:, None, None], torch.sin(t[:, 6])[:, None, None]
        lx = d[..., 0] * c + d[..., 1] * s
        ly = -d[..., 0] * s + d[..., 1] * c
        inside = (lx.abs() <= scale * t[:, 3, None, None] / 2) & \
                 (ly.abs() <= scale * t[:, 4, None, None] / 2)
        ixy = grid.cell_index(t[:, :2])  # (K, 2) centre cells
        on = (ixy[:, 0] >= 0) & (ixy[:, 0] < w) & (ixy[:, 1] >= 0) & (ixy[:, 1] < h)
        k = torch.arange(len(t), device=device)[on]
        inside[k, ixy[on, 1], ixy[on, 0]] = True
        dist = torch.where(inside, (d ** 2).sum(-1), torch.full_like(lx, float("inf")))
        best = dist.argmin(0)  # (Y, X): nearest covering box
        hit = inside.any(0)
        sel = best[hit]
        offset = (t[sel, :2] - cells[hit])
        vec = torch.cat([offset, t[sel, 2:3], t[sel, 3:6].clamp_min(1e-3).log(), t[sel, 6:7],
                         t[sel, 7:9].nan_to_num(0.0)], 1)
        box_map[b][hit] = vec
        cls_map[b][hit] = nn.functional.one_hot(lab[sel], NUM_CLASSES).float()
        painted[b] = hit
    return box_map, cls_map, painted


def _mlp(c_in: int, c_hidden: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(c_in, c_hidden), nn.ReLU(inplace=True),
                         nn.Linear(c_hidden, c_out))


def _out_block(c_in: int, c_out: int, stride: int, norm: str) -> nn.Sequential:
    # replicate padding as published: zero padding would draw a fake border in the label map
    layer = (nn.BatchNorm2d(c_out) if norm == "batch" else nn.GroupNorm(1, c_out))
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False,
                                   padding_mode="replicate"), layer, nn.ReLU(inplace=True))


class LabelEncoder(Detector):
    """GT boxes -> label features shaped like the LiDAR teacher's trunk stages -> the teacher's
    frozen neck and head (a detector: ``forward``/``loss``/``decode`` as any other).

    Publishes ``bev_s1`` (B, c1, Y, X), ``bev_s2`` (B, c2, Y/2, X/2) (c1, c2: the teacher trunk's
    stage channels) and ``bev_neck`` (the teacher neck's output on them).

    Args:
        grid: the BEV grid (must be the teacher's).
        teacher: the trained LiDAR teacher run folder (or a checkpoint in one); its trunk neck and
            head are copied in frozen (they are part of this model's checkpoint).
        footprint: ``"half"`` (published) or ``"full"`` box footprint painted.
        hidden_channels: width of the MLPs and the BasicBlock (256).
        norm: ``"batch"`` (BatchNorm) or ``"layer"`` (GroupNorm(1, C): LayerNorm over C, H, W
            without per-position affine, close to the published LayerNorm([C, H, W])) in the two
            output blocks.
        teacher_weights: False builds the teacher's trunk and head from its config alone, for
            a model about to load this encoder's own checkpoint, which holds them
            (:func:`bevkd.builder.without_init_weights`): the teacher's run may have no
            checkpoint left (a bench run restored from its archive).
    """

    feature_keys = ("bev_s1", "bev_s2", "bev_neck")

    def __init__(self, grid: BevGrid, teacher: str = "", footprint: str = "half",
                 hidden_channels: int = 256, norm: str = "batch", teacher_weights: bool = True):
        super().__init__()
        if not teacher:
            raise BevkdError("label_encoder needs the trained LiDAR teacher run: set "
                             "model.args.teacher (e.g. --set model.args.teacher=runs/pillars)")
        if footprint not in _FOOTPRINT_SCALE:
            raise BevkdError(f"model.args.footprint must be one of {sorted(_FOOTPRINT_SCALE)}, "
                             f"got {footprint!r}")
        if norm not in ("batch", "layer"):
            raise BevkdError(f"model.args.norm must be 'batch' or 'layer', got {norm!r}")
        from ..builder import load_teacher  # the builder maps config names to this class

        lidar = load_teacher(teacher, grid, "lidar", teacher_weights)
        if not (hasattr(lidar, "trunk") and hasattr(lidar.trunk, "from_stages")
                and hasattr(lidar, "head")):
            raise BevkdError(f"teacher {teacher} ({type(lidar).__name__}) has no BevTrunk + "
                             "CenterHead to decode label features with")
        self.grid, self.footprint = grid, footprint
        c1, c2 = lidar.trunk.channels
        self.mlp_box = _mlp(BOX_FEATURES, hidden_channels, hidden_channels)
        self.mlp_cls = _mlp(NUM_CLASSES, hidden_channels, hidden_channels)
        self.mlp = _mlp(hidden_channels, hidden_channels, hidden_channels)
        self.norm = nn.LayerNorm(hidden_channels)
        self.block = BasicBlock(hidden_channels, hidden_channels)
        self.out_s1 = _out_block(hidden_channels, c1, 1, norm)
        self.out_s2 = _out_block(hidden_channels, c2, 2, norm)
        # The teacher's trunk (for its neck, via from_stages) and head: frozen, always in eval.
        self.trunk = lidar.trunk.requires_grad_(False).eval()
        self.head = lidar.head.requires_grad_(False).eval()

    @property
    def feature_channels(self) -> dict[str, int]:
        c1, c2 = self.trunk.channels
        return {"bev_s1": c1, "bev_s2": c2, "bev_neck": self.trunk.out_channels}

    def train(self, mode: bool = True) -> "LabelEncoder":
        super().train(mode)
        self.trunk.eval()  # frozen teacher parts keep their BatchNorm statistics
        self.head.eval()
        return self

    def embed(self, box: torch.Tensor, cls: torch.Tensor, painted: torch.Tensor) -> torch.Tensor:
        """Per-cell embedding (B, hidden, Y, X) of painted maps (``paint_labels``' outputs).

        Unpainted cells all hold the same input (zeros), so their embedding is computed once.
        """
        bsz, h, w, _ = box.shape
        zeros = box.new_zeros(1, BOX_FEATURES), cls.new_zeros(1, NUM_CLASSES)
        background = self._cell_mlp(*zeros)[0]
        emb = background.expand(bsz, h, w, -1).clone()
        if painted.any():
            emb[painted] = self._cell_mlp(box[painted], cls[painted])
        return emb.permute(0, 3, 1, 2).contiguous()

    def _cell_mlp(self, box: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        return self.norm(self.mlp(self.mlp_box(box) + self.mlp_cls(cls)))

    def forward(self, batch: Batch) -> DetOutputs:
        device = self.out_s1[0].weight.device
        box, cls, painted = paint_labels(batch.targets.boxes, batch.targets.labels, self.grid,
                                         self.footprint, device)
        x = self.block(self.embed(box, cls, painted))
        s1, s2 = self.out_s1(x), self.out_s2(x)
        neck = self.trunk.from_stages(s1, s2)
        return DetOutputs(feats={"bev_s1": s1, "bev_s2": s2, "bev_neck": neck},
                          preds=self.head(neck))

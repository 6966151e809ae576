"""Per-sample detector output, the currency between `decode`, evaluation and export."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .boxes import Boxes3D


@dataclass
class Detections:
    """Detections of one sample, in the ego frame of its key frame (LIDAR_TOP timestamp).

    Attributes:
        sample_token: the nuScenes sample.
        boxes: (N, 9) `Boxes3D` [x, y, z, l, w, h, yaw, vx, vy], z at the geometric centre.
        scores: (N,) confidence in [0, 1].
        labels: (N,) int, index into `bevkd.structures.classes.DETECTION_CLASSES`.
    """

    sample_token: str
    boxes: Boxes3D
    scores: Any
    labels: Any

    def __post_init__(self) -> None:
        n = len(self.boxes)
        if len(self.scores) != n or len(self.labels) != n:
            raise ValueError(f"Detections of {self.sample_token}: {n} boxes but "
                             f"{len(self.scores)} scores and {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.boxes)

    def numpy(self) -> "Detections":
        """A numpy-backed copy (off the GPU, picklable, what evaluation and export read)."""
        def arr(x: Any) -> np.ndarray:
            return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        return Detections(self.sample_token, self.boxes.numpy(), arr(self.scores),
                          arr(self.labels))

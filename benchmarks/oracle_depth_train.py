"""Diagnostic: `bevkd train` with the LiDAR depth bin forced into the camera student's lift.

    .venv/bin/python benchmarks/oracle_depth_train.py train configs/student/bevdepth.yaml \
        --preset tiny --data DATA --out RUN [--set ...]

Wherever a feature cell has a LiDAR depth target, the depth net's logits are replaced by a
one-hot of that bin (+-10 logits), in training and validation, so the BEV features land where
the LiDAR says; cells without a target keep the predicted depth. Separates "depth is wrong"
from "the image features / BEV layers have not learned" (benchmarks/student_tiny_diagnostics.md,
row C_oracle). Not a method: validation uses LiDAR.
"""

from __future__ import annotations

import _pinned  # noqa: F401  (first: numpy's BLAS kernels pinned before numpy loads)
import sys

import torch
import torch.nn.functional as F

from bevkd.cli import main
from bevkd.models.camera.bevdepth import BEVDepth
from bevkd.models.camera.lss import depth_bin_index


def _with_oracle_depth(detector: BEVDepth, depth_targets: torch.Tensor) -> None:
    """Wraps ``detector``'s depth net (once) so it reads ``detector._oracle_depth``."""
    encoder = detector.encoder
    detector._oracle_depth = depth_targets
    if getattr(encoder.depth_net, "_oracle", False):
        return
    predict = encoder.depth_net.forward

    def forward(feats, params):
        logits, context = predict(feats, params)
        idx = depth_bin_index(detector._oracle_depth.flatten(0, 1), encoder.view.depth_bins)
        onehot = F.one_hot(idx.clamp_min(0), logits.shape[1]).permute(0, 3, 1, 2).to(logits)
        return torch.where((idx >= 0)[:, None], onehot * 20 - 10, logits), context

    encoder.depth_net.forward = forward
    encoder.depth_net._oracle = True


_forward = BEVDepth.forward


def _oracle_forward(self, batch):
    _with_oracle_depth(self, batch.targets.depth)
    return _forward(self, batch)


if __name__ == "__main__":
    BEVDepth.forward = _oracle_forward  # this diagnostic process only
    sys.exit(main(sys.argv[1:]))

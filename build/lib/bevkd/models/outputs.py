"""What every detector returns (DESIGN §3): the same type in training and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class DetOutputs:
    """Output of ``detector(batch)``.

    Attributes:
        feats: published features by key (DESIGN §3): ``bev_in``, ``bev_s1``, ``bev_s2``,
            ``bev_neck``, and for camera students ``img_feats``, ``depth_logits``, ``context``.
            Distillers read these; detectors never know who does.
        preds: one dict per CenterHead task with ``heatmap`` (B, n_task_classes, H, W) logits,
            ``reg`` (B, 2, H, W), ``height`` (B, 1, H, W), ``dim`` (B, 3, H, W) log sizes,
            ``rot`` (B, 2, H, W) sin/cos, ``vel`` (B, 2, H, W).
            (DESIGN writes ``dict[str, Tensor]``; a list of per-task dicts keeps task groups
            of different class counts apart without key mangling.)
    """

    feats: dict[str, torch.Tensor] = field(default_factory=dict)
    preds: list[dict[str, torch.Tensor]] = field(default_factory=list)

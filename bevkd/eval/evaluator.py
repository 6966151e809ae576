"""Training-time evaluation hook: ground truth loaded once, metrics of in-memory detections."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from ..structures.detections import Detections
from .config import CVPR_2019, DetectionConfig
from .confusion import top_detection_sources
from .export import detections_to_predictions, export_results
from .metrics import EvalResult, evaluate
from .groundtruth import GroundTruth


class DetectionEvaluator:
    """nuScenes detection metrics of a split, for ``bevkd train`` / ``bevkd eval``.

    The split's ground truth and LIDAR_TOP poses are read once (optionally through an
    on-disk cache); :meth:`evaluate` then maps ego-frame detections to the global frame and
    scores them without writing files. Results equal ``bevkd metrics`` (and the devkit) on
    the results file that :meth:`export` gives.

    Example::

        ev = DetectionEvaluator("data/nuscenes", "v1.0-trainval", "val")
        metrics = ev.evaluate(detections)   # list[Detections], one per sample of the split
        metrics["mean_ap"], metrics["nd_score"]
    """

    def __init__(self, data_root: str, version: str, split: str,
                 cache_dir: Optional[str] = None, cfg: DetectionConfig = CVPR_2019):
        self.cfg = cfg
        self.gt = GroundTruth.load(data_root, version, split, cache_dir=cache_dir)
        self._poses = self.gt.global_T_ego()
        self._index = {t: i for i, t in enumerate(self.gt.sample_tokens)}

    @property
    def sample_tokens(self) -> list[str]:
        """The samples to detect, in split order."""
        return list(self.gt.sample_tokens)

    def global_T_ego(self, sample_token: str) -> np.ndarray:
        """The LIDAR_TOP ego pose ``(4, 4)`` of a sample of the split."""
        return self._poses[self._index[sample_token]]

    def evaluate_full(self, detections: Sequence[Detections],
                      meta: Optional[dict] = None) -> EvalResult:
        """Summary and per-class/threshold curves (for plots) of one set of detections."""
        return evaluate(self.gt, self._predictions(detections, meta), self.cfg)

    def evaluate_with_sources(self, detections: Sequence[Detections],
                              meta: Optional[dict] = None
                              ) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
        """:meth:`evaluate`'s summary, and where each class's top predictions land
        (:func:`bevkd.eval.confusion.top_detection_sources`), of the same detections."""
        preds = self._predictions(detections, meta)
        return (evaluate(self.gt, preds, self.cfg).summary,
                top_detection_sources(self.gt, preds, self.cfg))

    def _predictions(self, detections: Sequence[Detections], meta: Optional[dict]):
        return detections_to_predictions(detections, self.gt.sample_tokens, self._poses,
                                         self.gt.predefined, meta=meta, cfg=self.cfg)

    def evaluate(self, detections: Sequence[Detections],
                 meta: Optional[dict] = None) -> dict[str, Any]:
        """The ``metrics_summary.json`` dict (``mean_ap``, ``nd_score``, ``tp_errors``, ...).

        ``detections``: one :class:`Detections` per sample of the split (ego frame of its
        key frame); others are ignored. Raises :class:`BevkdError` on a missing sample,
        more than 500 boxes in a sample, or non-finite values.
        """
        return self.evaluate_full(detections, meta).summary

    def export(self, detections: Sequence[Detections],
               meta: Optional[dict] = None) -> dict[str, Any]:
        """The official results dict of the detections (write it with ``write_results``)."""
        poses = dict(zip(self.gt.sample_tokens, self._poses))
        return export_results([d for d in detections if d.sample_token in poses], poses, meta)

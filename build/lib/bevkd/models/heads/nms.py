"""Circle NMS on BEV centres (CenterPoint's NMS for CenterHead detections)."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

__all__ = ["circle_nms"]


def circle_nms(centres: torch.Tensor, scores: torch.Tensor, radius: float,
               max_keep: Optional[int] = None) -> torch.Tensor:
    """Greedy circle NMS: keep the highest-scoring centre, drop every other centre closer than
    ``radius`` to it, repeat with the best remaining one.

    Args:
        centres: ``(K, 2)`` BEV centres ``(x, y)`` in metres.
        scores: ``(K,)`` scores.
        radius: suppression radius in metres (a centre at distance ``< radius`` is dropped).
        max_keep: stop after this many kept centres (CenterPoint's ``post_max_size``).

    Returns: ``(M,)`` long indices into ``centres``, by decreasing score, on the input's device.
    Ties in score keep the lower index first (stable sort).
    """
    k = int(scores.numel())
    device = scores.device
    if k == 0:
        return torch.zeros(0, dtype=torch.long, device=device)
    order = torch.sort(scores, descending=True, stable=True).indices
    # float64 is unavailable on some devices (MPS); float32 is ample for metre-scale distances
    c = centres[order].to(torch.promote_types(centres.dtype, torch.float32))
    # The distance matrix is vectorised on the device; the greedy sweep is inherently sequential,
    # so it runs on one host copy of the (K, K) bool matrix rather than syncing K times.
    d2 = ((c[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    close = (d2 < float(radius) ** 2).cpu().numpy()
    removed = np.zeros(k, dtype=bool)
    keep: list[int] = []
    limit = k if max_keep is None else max_keep
    for i in range(k):
        if len(keep) >= limit:
            break
        if removed[i]:
            continue
        keep.append(i)
        removed |= close[i]
    return order[torch.as_tensor(keep, dtype=torch.long, device=device)]

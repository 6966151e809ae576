"""Epoch-keyed, rank-aware, resumable sampling of a dataset.

Why not ``RandomSampler`` + Lightning's ``DistributedSampler``: a resumed run must see exactly
the samples, in the order and with the augmentations, that the uninterrupted run would have
seen, also when it was killed in the middle of an epoch, and a 2-process run must see the same
global batches as a 1-process run. So:

- the order of epoch ``e`` is a pure function of ``(seed, e)``;
- each item is handed to the dataset as the key ``(epoch, index)``, so the augmentation drawn
  for it is a function of ``(seed, epoch, index)`` inside whichever worker process loads it
  (a ``set_epoch`` on the main process's dataset never reaches persistent workers);
- rank ``r`` of ``W`` takes items ``r, r + W, ...`` of the order padded (with its own first
  items) to a multiple of ``W``, so global batch ``k`` of ``W`` ranks with per-rank batch ``b``
  is the set of items ``k·W·b ... (k+1)·W·b - 1``: the global batch of one process with batch
  ``W·b``;
- :meth:`EpochSampler.resume` starts the next iteration ``consumed`` items into an epoch.
"""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = ["EpochSampler"]


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` keys of this rank's share of a ``size``-item dataset.

    Args:
        size: number of items in the dataset.
        seed: the order of epoch ``e`` is ``permutation(default_rng([seed, e]))``.
        shuffle: ``False`` keeps dataset order (evaluation).
        rank, world_size: default to ``torch.distributed``'s when it is initialised at
            iteration time (Lightning starts the process group after the loader is built).
    """

    def __init__(self, size: int, seed: int = 0, shuffle: bool = True,
                 rank: Optional[int] = None, world_size: Optional[int] = None):
        if size <= 0:
            raise ValueError(f"cannot sample from an empty dataset (size {size})")
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self._rank, self._world = rank, world_size
        self.epoch = 0
        self.start = 0  # items of this rank's share already consumed (resume)

    def _rank_world(self) -> tuple[int, int]:
        rank, world = _rank_world()
        return (self._rank if self._rank is not None else rank,
                self._world if self._world is not None else world)

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before every epoch; a new epoch starts from its first item."""
        if epoch != self.epoch:
            self.start = 0
        self.epoch = epoch

    def resume(self, epoch: int, consumed: int) -> None:
        """The next iteration is epoch ``epoch`` without its first ``consumed`` items (of
        this rank's share)."""
        if consumed < 0:
            raise ValueError(f"consumed must be >= 0, got {consumed}")
        self.epoch, self.start = epoch, consumed

    def order(self, epoch: int) -> np.ndarray:
        """All ranks' items of ``epoch`` in order (before sharding)."""
        if not self.shuffle:
            return np.arange(self.size)
        return np.random.default_rng([self.seed, epoch]).permutation(self.size)

    def _share(self) -> np.ndarray:
        rank, world = self._rank_world()
        order = self.order(self.epoch)
        pad = -len(order) % world
        if pad:  # every rank gets the same number of items (DDP steps in lockstep)
            order = np.concatenate([order, np.resize(order, pad)])
        return order[rank::world]

    def __len__(self) -> int:
        # the whole share: Lightning counts an epoch's batches from this, also on resume
        return -(-self.size // self._rank_world()[1])

    def __iter__(self) -> Iterator[tuple[int, int]]:
        share, epoch = self._share(), self.epoch
        start, self.start = self.start, 0  # a resume offset applies to one iteration only
        for index in share[start:]:
            yield epoch, int(index)

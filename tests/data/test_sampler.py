"""EpochSampler: epoch-keyed order, rank shards that add up to one process's batches, resume."""

from __future__ import annotations

import pytest

from bevkd.data.sampler import EpochSampler


def _keys(sampler: EpochSampler) -> list[tuple[int, int]]:
    return list(iter(sampler))


def test_order_is_a_function_of_seed_and_epoch():
    s = EpochSampler(10, seed=1)
    first = _keys(s)
    assert sorted(i for _, i in first) == list(range(10)) and {e for e, _ in first} == {0}
    assert _keys(EpochSampler(10, seed=1)) == first          # same seed, same order
    assert _keys(EpochSampler(10, seed=2)) != first          # another seed, another order
    s.set_epoch(1)
    second = _keys(s)
    assert {e for e, _ in second} == {1} and [i for _, i in second] != [i for _, i in first]
    assert [i for _, i in _keys(EpochSampler(5, shuffle=False))] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("size", [12, 13])
def test_two_ranks_see_the_global_batches_of_one_process(size):
    """Global batch k of 2 ranks x batch 2 = batch k of 1 process x batch 4 (as sets)."""
    one = [i for _, i in _keys(EpochSampler(size, seed=5, rank=0, world_size=1))]
    ranks = [[i for _, i in _keys(EpochSampler(size, seed=5, rank=r, world_size=2))]
             for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == -(-size // 2)  # lockstep: equal shares
    for k in range(size // 4):
        assert set(ranks[0][2 * k:2 * k + 2] + ranks[1][2 * k:2 * k + 2]) == \
            set(one[4 * k:4 * k + 4])
    # an odd size pads with the first item of the order (a repeat, not a new sample)
    assert set(ranks[0]) | set(ranks[1]) == set(range(size))


def test_resume_skips_the_consumed_items_once():
    s = EpochSampler(7, seed=0)
    s.set_epoch(3)
    full = _keys(s)
    s.resume(3, 4)
    assert _keys(s) == full[4:]
    assert _keys(s) == full                  # the next iteration is whole again
    s.resume(3, 2)
    s.set_epoch(3)                           # Lightning re-announcing the same epoch keeps it
    assert _keys(s) == full[2:]
    s.resume(3, 2)
    s.set_epoch(4)                           # a new epoch starts from its beginning
    assert len(_keys(s)) == 7
    assert len(s) == 7                       # the length is always the whole share


def test_bad_arguments():
    with pytest.raises(ValueError, match="empty dataset"):
        EpochSampler(0)
    with pytest.raises(ValueError, match="consumed"):
        EpochSampler(3).resume(0, -1)

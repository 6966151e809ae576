"""bev_pool (sparse, no outer product) against the naive outer-product reference."""

from __future__ import annotations

import pytest
import torch

from bevkd.models.grid import BevGrid
from bevkd.models.ops.bev_pool import bev_pool, bev_pool_plan, naive_bev_pool

# a small grid so that many frustum points share a cell
GRID = BevGrid(x_range=(-4.0, 4.0), y_range=(-3.0, 3.0), z_range=(-1.0, 1.0), cell=1.0)


def _inputs(B=2, N=3, D=5, h=4, w=6, C=7, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    depth = torch.rand(B, N, D, h, w, generator=g, dtype=dtype).softmax(2)
    context = torch.randn(B, N, C, h, w, generator=g, dtype=dtype)
    # about a third of the points fall outside x, y or z
    geometry = torch.rand(B, N, D, h, w, 3, generator=g, dtype=dtype)
    geometry = geometry * torch.tensor([12.0, 9.0, 3.0], dtype=dtype) - torch.tensor(
        [6.0, 4.5, 1.5], dtype=dtype)
    return depth.requires_grad_(), context.requires_grad_(), geometry


def _grads(fn, depth, context, geometry, weight):
    out = fn(depth, context, geometry, GRID)
    gd, gc = torch.autograd.grad((out * weight).sum(), (depth, context))
    return out, gd, gc


def test_matches_naive_forward_and_gradients():
    depth, context, geometry = _inputs()
    weight = torch.randn(2, 7, *GRID.shape, dtype=torch.float64)
    out, gd, gc = _grads(bev_pool, depth, context, geometry, weight)
    ref, rgd, rgc = _grads(naive_bev_pool, depth, context, geometry, weight)
    assert out.shape == (2, 7, 6, 8)
    plan = bev_pool_plan(geometry, GRID)
    # the test must actually exercise dropped points and shared cells / merged entries
    assert plan.num_points < depth.numel()
    assert plan.num_entries < plan.num_points
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gd, rgd, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gc, rgc, atol=1e-5, rtol=1e-5)
    assert gd.abs().sum() > 0 and gc.abs().sum() > 0


def test_matches_naive_float32_and_reused_plan():
    depth, context, geometry = _inputs(dtype=torch.float32, seed=1, C=16)
    plan = bev_pool_plan(geometry, GRID)
    out = bev_pool(depth, context, None, GRID, plan=plan)
    again = bev_pool(depth, context, geometry, GRID)
    ref = naive_bev_pool(depth, context, geometry, GRID)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out, again, atol=0, rtol=0)


def test_half_precision_context_accumulates_in_float32():
    depth, context, geometry = _inputs(dtype=torch.float32, seed=5)
    out = bev_pool(depth, context.bfloat16(), geometry, GRID)
    ref = naive_bev_pool(depth, context.bfloat16().float(), geometry, GRID)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=1e-2)


def test_gradcheck():
    depth, context, geometry = _inputs(B=1, N=2, D=3, h=2, w=3, C=2, seed=2)
    assert torch.autograd.gradcheck(lambda d, c: bev_pool(d, c, geometry, GRID), (depth, context))


def test_points_by_hand():
    """Two depth bins of one pixel in one cell, a third in another, a fourth out of z range."""
    depth = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64).view(1, 1, 4, 1, 1)
    context = torch.tensor([1.0, -2.0], dtype=torch.float64).view(1, 1, 2, 1, 1)
    geometry = torch.tensor([[0.5, 0.5, 0.0], [0.9, 0.1, 0.5], [-3.5, 2.5, -0.9],
                             [0.5, 0.5, 1.0]], dtype=torch.float64).view(1, 1, 4, 1, 1, 3)
    out = bev_pool(depth, context, geometry, GRID)
    expect = torch.zeros(1, 2, 6, 8, dtype=torch.float64)
    # cell (iy, ix) = (floor((y + 3) / 1), floor((x + 4) / 1))
    expect[0, :, 3, 4] = 0.3 * context.view(2)
    expect[0, :, 5, 0] = 0.3 * context.view(2)
    torch.testing.assert_close(out, expect)
    assert bev_pool_plan(geometry, GRID).num_entries == 2


def test_batches_do_not_mix():
    depth, context, geometry = _inputs(B=2, seed=3)
    out = bev_pool(depth, context, geometry, GRID)
    one = bev_pool(depth[1:], context[1:], geometry[1:], GRID)
    torch.testing.assert_close(out[1:], one, atol=1e-12, rtol=0)


def test_everything_outside_gives_zeros_and_zero_grads():
    depth, context, geometry = _inputs(B=1, seed=4)
    geometry = geometry + 100.0
    out = bev_pool(depth, context, geometry, GRID)
    assert torch.count_nonzero(out) == 0
    gd, gc = torch.autograd.grad(out.sum(), (depth, context))
    assert torch.count_nonzero(gd) == 0 and torch.count_nonzero(gc) == 0


def test_shape_errors():
    depth, context, geometry = _inputs(B=1)
    plan = bev_pool_plan(geometry, GRID)
    with pytest.raises(ValueError, match="plan was built"):
        bev_pool(depth[:, :2], context[:, :2], None, GRID, plan=plan)
    with pytest.raises(ValueError, match="context"):
        bev_pool(depth, context[..., :2], None, GRID, plan=plan)
    with pytest.raises(ValueError, match="geometry"):
        bev_pool_plan(geometry[..., :2], GRID)

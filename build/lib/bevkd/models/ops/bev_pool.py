"""Lift-Splat BEV pooling in pure PyTorch, without the N·D·h·w·C outer product.

Lift-Splat puts, for every camera pixel ``q`` and depth bin ``d``, the feature
``depth[d, q] · context[q, :]`` at the 3-D frustum point ``geometry[d, q]`` and sums the points
that fall in one BEV cell. Written as linear algebra this is one sparse-dense product::

    bev[k, :] = Σ_q S[k, q] · context[q, :],    S[k, q] = Σ_{d : cell(d, q) = k} depth[d, q]

``S`` (cells × pixels) has at most ``D`` non-zeros per pixel, and consecutive depth bins of a
pixel often share a cell, so it is much smaller than the outer product (``C`` times fewer
numbers at least). Gradients follow from the same matrix: ``∂L/∂context = Sᵀ · ∂L/∂bev`` and
``∂L/∂S[k, q] = ∂L/∂bev[k, :] · context[q, :]`` (a sampled dense-dense product, evaluated only at
the non-zeros of ``S``), and ``∂L/∂depth[d, q] = ∂L/∂S[cell(d, q), q]``.

The sparsity pattern depends only on the geometry, which is fixed for a batch (it changes with
every augmentation), so it can be built once with :func:`bev_pool_plan` and reused by several
poolings of the same batch (e.g. two lifted branches); it is never cached across batches.

:func:`naive_bev_pool` is the textbook reference that materialises the outer product; tests
compare the two and ``benchmarks/bev_pool_speed.py`` times them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from ..grid import BevGrid


@dataclass(frozen=True)
class BevPoolPlan:
    """Sparsity pattern of the pooling matrix ``S`` for one batch of frustum geometry.

    Rows of ``S`` are BEV cells ``b·Y·X + iy·X + ix``; columns are pixels
    ``((b·N + n)·h + r)·w + c``. Entries are stored in CSR order (row-major, columns sorted).

    Attributes:
        point_index: (P,) int64 index into ``depth.reshape(-1)`` of the frustum points that lie
            inside the grid (x, y and z range).
        entry_index: (P,) int64 entry of ``S`` each of those points adds its depth to.
        crow: (B·Y·X + 1,) int64 CSR row pointers of ``S``.
        col: (E,) int64 column (pixel) of each entry.
        crow_t: (B·N·h·w + 1,) int64 CSR row pointers of ``Sᵀ``.
        col_t: (E,) int64 column (cell) of each entry of ``Sᵀ``.
        perm_t: (E,) int64 entry of ``S`` that each entry of ``Sᵀ`` is.
        depth_shape: (B, N, D, h, w) the plan was built for.
        bev_shape: (Y, X) of the grid.
    """

    point_index: torch.Tensor
    entry_index: torch.Tensor
    crow: torch.Tensor
    col: torch.Tensor
    crow_t: torch.Tensor
    col_t: torch.Tensor
    perm_t: torch.Tensor
    depth_shape: tuple[int, int, int, int, int]
    bev_shape: tuple[int, int]

    @property
    def num_entries(self) -> int:
        """Non-zeros E of ``S`` (<= number of kept frustum points P)."""
        return int(self.col.numel())

    @property
    def num_points(self) -> int:
        """Kept frustum points P."""
        return int(self.point_index.numel())


def _cell_rows(geometry: torch.Tensor, grid: BevGrid) -> tuple[torch.Tensor, torch.Tensor]:
    """BEV row ``b·Y·X + iy·X + ix`` of every frustum point and which points lie in the grid.

    Args:
        geometry: (B, N, D, h, w, 3) points in the augmented ego frame.

    Returns:
        rows: (B·N·D·h·w,) int64 (meaningless where not kept).
        keep: (B·N·D·h·w,) bool, inside x/y cells and ``z_min <= z < z_max``.
    """
    B = geometry.shape[0]
    Y, X = grid.shape
    xyz = geometry.detach().reshape(B, -1, 3)
    ixy = grid.cell_index(xyz[..., :2])
    ix, iy, z = ixy[..., 0], ixy[..., 1], xyz[..., 2]
    keep = ((ix >= 0) & (ix < X) & (iy >= 0) & (iy < Y)
            & (z >= grid.z_range[0]) & (z < grid.z_range[1]))
    batch = torch.arange(B, device=geometry.device).view(B, 1)
    rows = (batch * Y + iy) * X + ix
    return rows.reshape(-1), keep.reshape(-1)


def _csr_pointers(rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    """(n_rows + 1,) CSR row pointers of sorted row indices."""
    counts = torch.bincount(rows, minlength=n_rows)
    crow = torch.zeros(n_rows + 1, dtype=torch.int64, device=rows.device)
    torch.cumsum(counts, 0, out=crow[1:])
    return crow


@torch.no_grad()
def bev_pool_plan(geometry: torch.Tensor, grid: BevGrid) -> BevPoolPlan:
    """Build the pooling pattern for a batch of frustum points.

    Args:
        geometry: (B, N, D, h, w, 3) frustum points in the augmented ego frame.
        grid: the BEV grid.
    """
    if geometry.dim() != 6 or geometry.shape[-1] != 3:
        raise ValueError(f"geometry must be (B, N, D, h, w, 3), got {tuple(geometry.shape)}")
    B, N, D, h, w, _ = geometry.shape
    Y, X = grid.shape
    rows, keep = _cell_rows(geometry, grid)
    point_index = torch.nonzero(keep).squeeze(1)
    # pixel of point (b, n, d, r, c) is (b, n, r, c): drop the depth digit of the flat index
    hw = h * w
    pixel = (point_index // (D * hw)) * hw + point_index % hw
    n_rows, n_cols = B * Y * X, B * N * hw
    # several depth bins of one pixel often share a cell: merge them into one entry so that the
    # sparse matrix is as small as the geometry allows; sorted unique keys are CSR order
    key = rows[point_index] * n_cols + pixel
    unique_key, entry_index = torch.unique(key, sorted=True, return_inverse=True)
    entry_rows, col = unique_key // n_cols, unique_key % n_cols
    perm_t = torch.argsort(col * n_rows + entry_rows)
    return BevPoolPlan(
        point_index=point_index, entry_index=entry_index,
        crow=_csr_pointers(entry_rows, n_rows), col=col,
        crow_t=_csr_pointers(col[perm_t], n_cols), col_t=entry_rows[perm_t], perm_t=perm_t,
        depth_shape=(B, N, D, h, w), bev_shape=(Y, X))


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor,
         size: tuple[int, int]) -> torch.Tensor:
    # torch warns that CSR is "beta" on every construction; the ops used here are stable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, size, check_invariants=False)


class _SparsePool(torch.autograd.Function):
    """``out = S(values) @ feats`` with gradients to both the values of ``S`` and ``feats``."""

    @staticmethod
    def forward(ctx, values: torch.Tensor, feats: torch.Tensor, plan: BevPoolPlan,
                n_rows: int) -> torch.Tensor:
        n_cols = feats.shape[0]
        ctx.plan, ctx.size = plan, (n_rows, n_cols)
        ctx.save_for_backward(values, feats)
        return torch.sparse.mm(_csr(plan.crow, plan.col, values, ctx.size), feats)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        values, feats = ctx.saved_tensors
        plan: BevPoolPlan = ctx.plan
        grad_out = grad_out.contiguous()
        grad_values = grad_feats = None
        if ctx.needs_input_grad[0]:
            # SDDMM: (grad_out @ featsᵀ) only at the entries of S, never the dense cells×pixels
            pattern = _csr(plan.crow, plan.col, values, ctx.size)
            grad_values = torch.sparse.sampled_addmm(pattern, grad_out, feats.t(),
                                                     beta=0.0).values()
        if ctx.needs_input_grad[1]:
            n_rows, n_cols = ctx.size
            s_t = _csr(plan.crow_t, plan.col_t, values[plan.perm_t], (n_cols, n_rows))
            grad_feats = torch.sparse.mm(s_t, grad_out)
        return grad_values, grad_feats, None, None


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    # sparse kernels do not cover half types everywhere; pooled sums also want fp32 accumulation
    return t.dtype if t.dtype in (torch.float32, torch.float64) else torch.float32


def bev_pool(depth: torch.Tensor, context: torch.Tensor, geometry: torch.Tensor | None,
             grid: BevGrid, plan: BevPoolPlan | None = None) -> torch.Tensor:
    """Splat ``depth ⊗ context`` onto the BEV grid without materialising the outer product.

    Args:
        depth: (B, N, D, h, w) depth probabilities (or any weights).
        context: (B, N, C, h, w) context features.
        geometry: (B, N, D, h, w, 3) frustum points in the augmented ego frame; may be None when
            ``plan`` is given.
        grid: the BEV grid; points outside its x/y cells or z range are dropped.
        plan: pattern from :func:`bev_pool_plan` for this batch's geometry (built here if None).

    Returns:
        (B, C, Y, X) in the dtype of ``context`` (accumulated in at least float32).
    """
    if plan is None:
        if geometry is None:
            raise ValueError("bev_pool needs geometry or a plan")
        plan = bev_pool_plan(geometry, grid)
    B, N, D, h, w = plan.depth_shape
    if tuple(depth.shape) != plan.depth_shape:
        raise ValueError(f"depth is {tuple(depth.shape)}, plan was built for {plan.depth_shape}")
    if context.dim() != 5 or (*context.shape[:2], *context.shape[3:]) != (B, N, h, w):
        raise ValueError(f"context must be (B, N, C, h, w) = ({B}, {N}, C, {h}, {w}), "
                         f"got {tuple(context.shape)}")
    C = context.shape[2]
    Y, X = plan.bev_shape
    dtype = _compute_dtype(context)
    with torch.autocast(device_type=context.device.type, enabled=False):
        feats = context.to(dtype).permute(0, 1, 3, 4, 2).reshape(B * N * h * w, C)
        kept = depth.to(dtype).reshape(-1).index_select(0, plan.point_index)
        values = torch.zeros(plan.num_entries, dtype=dtype, device=depth.device)
        values = values.index_add(0, plan.entry_index, kept)
        out = _SparsePool.apply(values, feats, plan, B * Y * X)
    return out.view(B, Y, X, C).permute(0, 3, 1, 2).contiguous().to(context.dtype)


def naive_bev_pool(depth: torch.Tensor, context: torch.Tensor, geometry: torch.Tensor,
                   grid: BevGrid) -> torch.Tensor:
    """Reference pooling that materialises the (B, N, D, h, w, C) outer product.

    Same arguments and result as :func:`bev_pool`; memory grows as N·D·h·w·C. For tests and
    benchmarks only.
    """
    B, N, D, h, w = depth.shape
    C = context.shape[2]
    Y, X = grid.shape
    outer = depth.unsqueeze(-1) * context.permute(0, 1, 3, 4, 2).unsqueeze(2)
    rows, keep = _cell_rows(geometry, grid)
    idx = torch.nonzero(keep).squeeze(1)
    bev = torch.zeros(B * Y * X, C, dtype=outer.dtype, device=outer.device)
    bev = bev.index_add(0, rows[idx], outer.reshape(-1, C).index_select(0, idx))
    return bev.view(B, Y, X, C).permute(0, 3, 1, 2).contiguous()

"""``segment_reduce``: reduce the rows of ``values`` over CSR segments.

    out[s] = REDUCE_{k in [rowptr[s], rowptr[s+1])} values[perm[k] if perm is not None else k]

``REDUCE`` is ``sum``, ``mean`` or ``max``; an empty segment gives 0 for all three. The gradient is deterministic;
for ``max`` the whole gradient of ``out[s, h]`` goes to the first position ``k`` of the segment attaining the
maximum in column ``h``. Backward passes of the other ops use it for their deterministic scatter-sums.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .backend import (
    TRITON_DTYPES, check_choice, check_features, check_same_device, debug_checks_enabled, jit, resolve_backend,
    tl, triton,
)
from .segments import check_index, check_index_range

__all__ = ["REDUCTIONS", "segment_reduce", "segment_reduce_reference", "SegmentReduceFunction"]

REDUCTIONS = ("sum", "mean", "max")
_REDUCE_CODE = {"sum": 0, "mean": 1, "max": 2}
BLOCK_K = 16  # positions of one segment loaded per loop step
MAX_BLOCK_H = 64  # columns per program


# ----------------------------------------------------------------------------------------------- Triton kernels
@jit
def _segment_program(rowptr_ptr, H, BLOCK_H: tl.constexpr):
    """What a (segment, block of columns) program works on: ``(s, cols, col_mask, start, end)``, the segment's
    positions being ``[start, end)``."""
    s = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    start = tl.load(rowptr_ptr + s).to(tl.int64)
    end = tl.load(rowptr_ptr + s + 1).to(tl.int64)
    return s, cols, cols < H, start, end


@jit
def _segment_rows(perm_ptr, k0, end, HAS_PERM: tl.constexpr, BLOCK_K: tl.constexpr):
    """``(pos, row_mask, rows)`` of the ``BLOCK_K`` positions from ``k0``: rows are ``perm[pos]`` or ``pos``."""
    pos = k0 + tl.arange(0, BLOCK_K)
    row_mask = pos < end
    rows = pos
    if HAS_PERM:
        rows = tl.load(perm_ptr + pos, mask=row_mask, other=0).to(tl.int64)
    return pos, row_mask, rows


@jit
def _reduce_start(REDUCE: tl.constexpr, BLOCK_H: tl.constexpr):
    """The running ``(acc, arg)`` of an empty segment: 0 (or -inf for max) and no argmax position (-1)."""
    acc = tl.zeros([BLOCK_H], dtype=tl.float32)
    if REDUCE == 2:
        acc = tl.full([BLOCK_H], float("-inf"), tl.float32)
    return acc, tl.full([BLOCK_H], -1, tl.int32)


@jit
def _store_reduced(out_ptr, arg_ptr, s, cols, col_mask, acc, arg, stride_om, stride_oh, REDUCE: tl.constexpr):
    """Write a segment's output row (and, for max, its argmax positions, laid out like the output)."""
    tl.store(out_ptr + s * stride_om + cols * stride_oh, acc.to(out_ptr.dtype.element_ty), mask=col_mask)
    if REDUCE == 2:
        tl.store(arg_ptr + s * stride_om + cols * stride_oh, arg, mask=col_mask)


@jit
def _reduce_tile(acc, arg, x, pos, mask, REDUCE: tl.constexpr):
    """Fold a ``[BLOCK_K, BLOCK_H]`` float32 tile ``x`` at positions ``pos`` into the running ``acc`` / ``arg``."""
    if REDUCE == 2:
        x = tl.where(mask, x, float("-inf"))
        tile_max = tl.max(x, axis=0)
        first = tl.min(tl.where(x == tile_max[None, :], pos[:, None], 2147483647), axis=0)
        better = tile_max > acc  # strict: on ties the earlier position wins
        acc = tl.where(better, tile_max, acc)
        arg = tl.where(better, first, arg)
    else:
        acc += tl.sum(tl.where(mask, x, 0.0), axis=0)
    return acc, arg


@jit
def _finish_reduce(acc, arg, count, REDUCE: tl.constexpr):
    """Turn the running ``acc`` of a segment with ``count`` positions into its output (empty segment -> 0)."""
    if REDUCE == 1:
        acc = acc / tl.maximum(count, 1).to(tl.float32)
    if REDUCE == 2:
        acc = tl.where(arg >= 0, acc, 0.0)
    return acc


@jit
def _segment_reduce_fwd_kernel(
    values_ptr, rowptr_ptr, perm_ptr, out_ptr, arg_ptr,
    H, stride_vm, stride_vh, stride_om, stride_oh,
    HAS_PERM: tl.constexpr, REDUCE: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """One program per (segment, block of columns): loop over the segment's positions."""
    s, cols, col_mask, start, end = _segment_program(rowptr_ptr, H, BLOCK_H)
    acc, arg = _reduce_start(REDUCE, BLOCK_H)
    for k0 in range(start, end, BLOCK_K):
        pos, row_mask, rows = _segment_rows(perm_ptr, k0, end, HAS_PERM, BLOCK_K)
        mask = row_mask[:, None] & col_mask[None, :]
        x = tl.load(values_ptr + rows[:, None] * stride_vm + cols[None, :] * stride_vh, mask=mask, other=0.0)
        acc, arg = _reduce_tile(acc, arg, x.to(tl.float32), pos.to(tl.int32), mask, REDUCE)
    acc = _finish_reduce(acc, arg, end - start, REDUCE)
    _store_reduced(out_ptr, arg_ptr, s, cols, col_mask, acc, arg, stride_om, stride_oh, REDUCE)


@jit
def _segment_reduce_bwd_kernel(
    grad_out_ptr, rowptr_ptr, perm_ptr, arg_ptr, grad_values_ptr,
    H, stride_gm, stride_gh, stride_am, stride_ah, stride_vm, stride_vh,
    HAS_PERM: tl.constexpr, REDUCE: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """One program per (segment, block of columns): each position of the segment gets its share of grad_out[s]."""
    s, cols, col_mask, start, end = _segment_program(rowptr_ptr, H, BLOCK_H)
    g = tl.load(grad_out_ptr + s * stride_gm + cols * stride_gh, mask=col_mask, other=0.0).to(tl.float32)
    if REDUCE == 2:  # only the first maximal position of each column
        arg = tl.load(arg_ptr + s * stride_am + cols * stride_ah, mask=col_mask, other=-1).to(tl.int64)
        hit = col_mask & (arg >= 0)
        rows = tl.where(hit, arg, 0)
        if HAS_PERM:
            rows = tl.load(perm_ptr + rows, mask=hit, other=0).to(tl.int64)
        ptrs = grad_values_ptr + rows * stride_vm + cols * stride_vh
        tl.store(ptrs, g.to(grad_values_ptr.dtype.element_ty), mask=hit)
    else:
        if REDUCE == 1:
            g = g / tl.maximum(end - start, 1).to(tl.float32)
        tile = tl.broadcast_to(g[None, :], [BLOCK_K, BLOCK_H]).to(grad_values_ptr.dtype.element_ty)
        for k0 in range(start, end, BLOCK_K):
            pos, row_mask, rows = _segment_rows(perm_ptr, k0, end, HAS_PERM, BLOCK_K)
            mask = row_mask[:, None] & col_mask[None, :]
            tl.store(grad_values_ptr + rows[:, None] * stride_vm + cols[None, :] * stride_vh, tile, mask=mask)


# ------------------------------------------------------------------------------------------------- launchers
def block_h(H: int) -> int:
    """Columns per program: the next power of two of ``H``, at most ``MAX_BLOCK_H``."""
    return min(triton.next_power_of_2(max(H, 1)), MAX_BLOCK_H)


def check_triton_inputs(*tensors: Optional[Tensor]) -> None:
    """The Triton path's device and dtype checks (the public functions checked shapes already)."""
    present = [t for t in tensors if t is not None]
    devices = {t.device for t in present}
    if len(devices) > 1:
        raise ValueError(f"expected all tensors on one device (got {sorted(str(d) for d in devices)})")
    for t in present:
        if t.is_floating_point() and t.dtype not in TRITON_DTYPES:
            raise ValueError(f"expected float32, float16 or bfloat16 on the Triton path (got {t.dtype})")


def flat(index: Optional[Tensor]) -> Optional[Tensor]:
    """A 1-D index tensor the kernels can address as ``ptr + i`` (contiguous), or ``None``."""
    return index.contiguous() if index is not None else None


def _segment_reduce_triton(values: Tensor, rowptr: Tensor, perm: Optional[Tensor], reduce: str,
                           out_dtype: Optional[torch.dtype] = None) -> tuple[Tensor, Optional[Tensor]]:
    """Launch the forward kernel: ``(out [S, H], argmax [S, H] int32 position k or -1 for max, else None)``."""
    check_triton_inputs(values, rowptr, perm)
    rowptr, perm = flat(rowptr), flat(perm)
    S, H = rowptr.numel() - 1, values.shape[1]
    out = torch.empty((S, H), dtype=out_dtype or values.dtype, device=values.device)
    arg = torch.empty((S, H), dtype=torch.int32, device=values.device) if reduce == "max" else None
    if S == 0 or H == 0:
        return out, arg
    BLOCK_H = block_h(H)
    grid = (S, triton.cdiv(H, BLOCK_H))
    _segment_reduce_fwd_kernel[grid](
        values, rowptr, perm if perm is not None else rowptr, out, arg if arg is not None else out,
        H, values.stride(0), values.stride(1), out.stride(0), out.stride(1),
        HAS_PERM=perm is not None, REDUCE=_REDUCE_CODE[reduce], BLOCK_K=BLOCK_K, BLOCK_H=BLOCK_H,
    )
    return out, arg


def _segment_reduce_bwd_triton(grad_out: Tensor, rowptr: Tensor, perm: Optional[Tensor], arg: Optional[Tensor],
                               reduce: str, num_rows: int, dtype: torch.dtype) -> Tensor:
    """Launch the backward kernel: the gradient wrt ``values`` (``[num_rows, H]``, zero outside the segments)."""
    check_triton_inputs(grad_out, rowptr, perm, arg)
    rowptr, perm = flat(rowptr), flat(perm)
    S, H = grad_out.shape
    grad_values = torch.zeros((num_rows, H), dtype=dtype, device=grad_out.device)
    if S == 0 or H == 0 or num_rows == 0:
        return grad_values
    BLOCK_H = block_h(H)
    arg_or_dummy = arg if arg is not None else grad_out
    _segment_reduce_bwd_kernel[(S, triton.cdiv(H, BLOCK_H))](
        grad_out, rowptr, perm if perm is not None else rowptr, arg_or_dummy, grad_values,
        H, grad_out.stride(0), grad_out.stride(1), arg_or_dummy.stride(0), arg_or_dummy.stride(1),
        grad_values.stride(0), grad_values.stride(1),
        HAS_PERM=perm is not None, REDUCE=_REDUCE_CODE[reduce], BLOCK_K=BLOCK_K, BLOCK_H=BLOCK_H,
    )
    return grad_values


# ------------------------------------------------------------------------------------------- torch reference
def segment_ids(rowptr: Tensor, perm: Optional[Tensor], num_rows: int) -> Tensor:
    """``segment[m] = s`` for every row ``m`` of ``values`` in segment ``s``; ``S`` for rows in no segment."""
    S, device = rowptr.numel() - 1, rowptr.device
    rowptr = rowptr.long()
    K = int(rowptr[-1])
    seg_k = torch.repeat_interleave(torch.arange(S, device=device), rowptr.diff(), output_size=K)
    if perm is None and K == num_rows:
        return seg_k
    segment = torch.full((num_rows,), S, dtype=torch.long, device=device)
    return segment.scatter_(0, _rows_in_order(perm, K, device), seg_k)


def _rows_in_order(perm: Optional[Tensor], K: int, device: torch.device) -> Tensor:
    """The rows at positions ``0..K-1``: ``perm[:K]`` or ``arange(K)``."""
    return perm[:K].long() if perm is not None else torch.arange(K, device=device)


def _positions(rowptr: Tensor, perm: Optional[Tensor], num_rows: int) -> Tensor:
    """``position[m] = k`` with ``perm[k] == m`` (or ``k == m``); ``num_rows`` for rows in no segment."""
    K, device = int(rowptr[-1]), rowptr.device
    rows = _rows_in_order(perm, K, device)
    position = torch.full((num_rows,), num_rows, dtype=torch.long, device=device)
    return position.scatter_(0, rows, torch.arange(K, device=device))


def _first_max_rows(values: Tensor, segment: Tensor, rowptr: Tensor, perm: Optional[Tensor]) -> Tensor:
    """``[S, H]`` row of ``values`` holding each segment's first maximum per column (-1 for empty segments)."""
    M, H = values.shape
    num_segments, position = rowptr.numel() - 1, _positions(rowptr, perm, M)
    index = segment[:, None].expand(M, H)
    peak = values.new_zeros((num_segments + 1, H)).scatter_reduce_(0, index, values, "amax", include_self=False)
    candidate = torch.where(values == peak.index_select(0, segment), position[:, None], M)
    first = torch.full((num_segments + 1, H), M, dtype=torch.long, device=values.device)
    first = first.scatter_reduce_(0, index, candidate, "amin")[:num_segments]
    rows = perm.long()[first.clamp(max=M - 1)] if perm is not None else first
    return torch.where(first < M, rows, -1)


def segment_reduce_reference(values: Tensor, rowptr: Tensor, perm: Optional[Tensor] = None,
                             reduce: str = "sum") -> Tensor:
    """The specification of ``segment_reduce`` in pure torch (differentiable by autograd; the CPU path)."""
    M, H = values.shape
    S = rowptr.numel() - 1
    segment = segment_ids(rowptr, perm, M)
    if reduce == "max" and M > 0:
        with torch.no_grad():
            first = _first_max_rows(values, segment, rowptr, perm)
        peak = values.gather(0, first.clamp(min=0))
        return torch.where(first >= 0, peak, 0.0)
    out = values.new_zeros((S + 1, H)).index_add_(0, segment, values)[:S]
    if reduce == "mean":
        count = rowptr.long().diff().clamp(min=1).to(values.dtype)
        out = out / count[:, None]
    return out


# -------------------------------------------------------------------------------------------------- autograd
class SegmentReduceFunction(torch.autograd.Function):
    """Triton path: forward saves only the CSR (and the int32 argmax for ``max``), never ``values``."""

    @staticmethod
    def forward(ctx, values: Tensor, rowptr: Tensor, perm: Optional[Tensor], reduce: str) -> Tensor:
        out, arg = _segment_reduce_triton(values, rowptr, perm, reduce)
        ctx.save_for_backward(rowptr, perm, arg)
        ctx.reduce, ctx.num_rows, ctx.dtype = reduce, values.shape[0], values.dtype
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        rowptr, perm, arg = ctx.saved_tensors
        grad_values = _segment_reduce_bwd_triton(grad_out, rowptr, perm, arg, ctx.reduce, ctx.num_rows, ctx.dtype)
        return grad_values, None, None, None


# ---------------------------------------------------------------------------------------------------- public
def check_csr(rowptr: Tensor, perm: Optional[Tensor], num_rows: int, rows_name: str = "values") -> None:
    """Shape checks of a CSR ``(rowptr, perm)`` over ``num_rows`` rows; value checks under ``GMNFX_DEBUG``."""
    check_index(rowptr, "rowptr")
    if rowptr.numel() == 0:
        raise ValueError("expected rowptr to have S + 1 >= 1 entries (got 0); use torch.zeros(1) for no segments")
    if perm is not None:
        check_index(perm, "perm")
        if perm.numel() != num_rows:
            raise ValueError(f"expected perm to have one entry per row of {rows_name} ({num_rows}) "
                             f"(got {perm.numel()})")
    if debug_checks_enabled():
        ends = rowptr.long()
        if int(ends[0]) != 0 or bool((ends.diff() < 0).any()) or int(ends[-1]) > num_rows:
            raise ValueError(f"expected rowptr to start at 0, be non-decreasing and end at <= {num_rows} "
                             f"(got {ends.tolist() if ends.numel() <= 10 else ends})")
        if perm is not None:
            check_index_range(perm, num_rows, "perm")


def segment_reduce(values: Tensor, rowptr: Tensor, perm: Optional[Tensor] = None, reduce: str = "sum") -> Tensor:
    """Reduce the rows of ``values`` over CSR segments.

    .. math:: out_s = \\mathrm{REDUCE}_{k \\in [rowptr_s, rowptr_{s+1})} values_{perm_k}

    Args:
        values: ``[M, H]`` floating tensor.
        rowptr: ``[S + 1]`` int64 segment boundaries (``Segments.rowptr``).
        perm: ``[M]`` int64 positions in segment order, or ``None`` (default) for the identity.
        reduce: ``"sum"`` (default), ``"mean"`` or ``"max"``; an empty segment gives 0.

    Shapes:
        values ``[M, H]``, rowptr ``[S + 1]``, perm ``[M]`` -> ``[S, H]``.

    Example:
        >>> from gmnfx.kernels import segments_of
        >>> rowptr, perm = segments_of(torch.tensor([1, 0, 1]), 3)
        >>> segment_reduce(torch.tensor([[1.0], [2.0], [4.0]]), rowptr, perm)
        tensor([[2.],
                [5.],
                [0.]])
    """
    check_features(values, "values")
    check_choice(reduce, "reduce", REDUCTIONS)
    check_csr(rowptr, perm, values.shape[0])
    check_same_device(values=values, rowptr=rowptr, perm=perm)
    if resolve_backend(values, rowptr, perm) == "torch":
        return segment_reduce_reference(values, rowptr, perm, reduce)
    return SegmentReduceFunction.apply(values, rowptr, perm, reduce)

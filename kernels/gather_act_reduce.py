"""``gather_act_reduce``: the GMN message aggregation without materializing the ``[E, H]`` messages.

    out[s] = REDUCE_{k in [rowptr[s], rowptr[s+1])} act(a[index_a[e]] + c[e]),   e = perm[k] (or k)

For messages into destination nodes: ``index_a = src``, ``(rowptr, perm) = segments_of(dst, N)``; the reverse
direction uses ``index_a = dst`` and ``segments_of(src, N)``. The Triton forward loops over each segment's edges
and never writes the messages; the backward recomputes them.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .backend import (
    check_choice, check_features, check_same_device, debug_checks_enabled, jit, resolve_backend, tl, triton,
)
from .gather_add_act import (
    ACTIVATION_CODE, ACTIVATIONS, _activate, _activate_grad, _or, _strides, activate, check_groups,
    segment_sum_triton,
)
from .segment_reduce import (
    _REDUCE_CODE, BLOCK_K, REDUCTIONS, _finish_reduce, _reduce_start, _reduce_tile, _segment_program,
    _segment_rows, _store_reduced, block_h, check_csr, check_triton_inputs, flat,
    segment_reduce_reference,
)
from .segments import Segments, check_index, check_index_range

__all__ = ["GatherActReduceFunction", "gather_act_reduce", "gather_act_reduce_reference"]


# ----------------------------------------------------------------------------------------------- Triton kernels
@jit
def _edge_pre(a_ptr, index_a_ptr, c_ptr, edges, row_mask, cols, mask,
              stride_am, stride_ah, stride_cm, stride_ch, HAS_C: tl.constexpr):
    """``pre = a[index_a[e]] + c[e]`` in float32 for the ``edges`` of a tile of a segment."""
    ia = tl.load(index_a_ptr + edges, mask=row_mask, other=0).to(tl.int64)
    pre = tl.load(a_ptr + ia[:, None] * stride_am + cols[None, :] * stride_ah, mask=mask, other=0.0).to(tl.float32)
    if HAS_C:
        pre += tl.load(c_ptr + edges[:, None] * stride_cm + cols[None, :] * stride_ch, mask=mask, other=0.0).to(
            tl.float32)
    return pre


@jit
def _gather_act_reduce_fwd_kernel(
    a_ptr, index_a_ptr, c_ptr, rowptr_ptr, perm_ptr, out_ptr, arg_ptr,
    H, stride_am, stride_ah, stride_cm, stride_ch, stride_om, stride_oh,
    HAS_C: tl.constexpr, HAS_PERM: tl.constexpr, REDUCE: tl.constexpr, ACT: tl.constexpr,
    BLOCK_K: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """One program per (segment, block of columns): loop over the segment's edges, computing messages on the fly."""
    s, cols, col_mask, start, end = _segment_program(rowptr_ptr, H, BLOCK_H)
    acc, arg = _reduce_start(REDUCE, BLOCK_H)
    for k0 in range(start, end, BLOCK_K):
        pos, row_mask, edges = _segment_rows(perm_ptr, k0, end, HAS_PERM, BLOCK_K)
        mask = row_mask[:, None] & col_mask[None, :]
        pre = _edge_pre(a_ptr, index_a_ptr, c_ptr, edges, row_mask, cols, mask,
                        stride_am, stride_ah, stride_cm, stride_ch, HAS_C)
        acc, arg = _reduce_tile(acc, arg, _activate(pre, ACT), pos.to(tl.int32), mask, REDUCE)
    acc = _finish_reduce(acc, arg, end - start, REDUCE)
    _store_reduced(out_ptr, arg_ptr, s, cols, col_mask, acc, arg, stride_om, stride_oh, REDUCE)


@jit
def _gather_act_reduce_bwd_kernel(
    grad_out_ptr, a_ptr, index_a_ptr, c_ptr, rowptr_ptr, perm_ptr, arg_ptr, grad_msg_ptr,
    H, stride_gm, stride_gh, stride_am, stride_ah, stride_cm, stride_ch, stride_xm, stride_xh,
    stride_pm, stride_ph,
    HAS_C: tl.constexpr, HAS_PERM: tl.constexpr, REDUCE: tl.constexpr, ACT: tl.constexpr,
    BLOCK_K: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """grad_pre[e] = grad_out[s] * (1 | 1/deg | [k is the argmax]) * act'(pre[e]) for every edge e of segment s."""
    s, cols, col_mask, start, end = _segment_program(rowptr_ptr, H, BLOCK_H)
    g = tl.load(grad_out_ptr + s * stride_gm + cols * stride_gh, mask=col_mask, other=0.0).to(tl.float32)
    if REDUCE == 1:
        g = g / tl.maximum(end - start, 1).to(tl.float32)
    arg = tl.full([BLOCK_H], -1, tl.int64)
    if REDUCE == 2:
        arg = tl.load(arg_ptr + s * stride_xm + cols * stride_xh, mask=col_mask, other=-1).to(tl.int64)
    for k0 in range(start, end, BLOCK_K):
        pos, row_mask, edges = _segment_rows(perm_ptr, k0, end, HAS_PERM, BLOCK_K)
        mask = row_mask[:, None] & col_mask[None, :]
        pre = _edge_pre(a_ptr, index_a_ptr, c_ptr, edges, row_mask, cols, mask,
                        stride_am, stride_ah, stride_cm, stride_ch, HAS_C)
        grad = g[None, :] * _activate_grad(pre, ACT)
        if REDUCE == 2:
            grad = tl.where(pos[:, None] == arg[None, :], grad, 0.0)
        tl.store(grad_msg_ptr + edges[:, None] * stride_pm + cols[None, :] * stride_ph,
                 grad.to(grad_msg_ptr.dtype.element_ty), mask=mask)


# ------------------------------------------------------------------------------------------------- launchers
def _gather_act_reduce_triton(a: Tensor, index_a: Tensor, c: Optional[Tensor], rowptr: Tensor,
                              perm: Optional[Tensor], reduce: str, activation: str
                              ) -> tuple[Tensor, Optional[Tensor]]:
    """Launch the forward kernel: ``(out [S, H], argmax [S, H] int32 position k or -1 for max, else None)``."""
    check_triton_inputs(a, index_a, c, rowptr, perm)
    index_a, rowptr, perm = flat(index_a), flat(rowptr), flat(perm)
    S, H = rowptr.numel() - 1, a.shape[1]
    out = torch.empty((S, H), dtype=a.dtype, device=a.device)
    arg = torch.empty((S, H), dtype=torch.int32, device=a.device) if reduce == "max" else None
    if S == 0 or H == 0:
        return out, arg
    BLOCK_H = block_h(H)
    _gather_act_reduce_fwd_kernel[(S, triton.cdiv(H, BLOCK_H))](
        a, index_a, _or(c, a), rowptr, _or(perm, rowptr), out, _or(arg, out),
        H, *_strides(a), *_strides(c), *_strides(out),
        HAS_C=c is not None, HAS_PERM=perm is not None, REDUCE=_REDUCE_CODE[reduce],
        ACT=ACTIVATION_CODE[activation], BLOCK_K=BLOCK_K, BLOCK_H=BLOCK_H,
    )
    return out, arg


def _gather_act_reduce_bwd_triton(grad_out: Tensor, a: Tensor, index_a: Tensor, c: Optional[Tensor],
                                  rowptr: Tensor, perm: Optional[Tensor], arg: Optional[Tensor], reduce: str,
                                  activation: str) -> Tensor:
    """Launch the backward kernel: the gradient wrt the pre-activations ``[E, H]`` in ``a``'s dtype."""
    check_triton_inputs(grad_out, a, index_a, c, rowptr, perm, arg)
    index_a, rowptr, perm = flat(index_a), flat(rowptr), flat(perm)
    (S, H), E = grad_out.shape, index_a.numel()
    grad_msg = torch.zeros((E, H), dtype=a.dtype, device=a.device)  # zero for edges outside every segment
    if S == 0 or H == 0 or E == 0:
        return grad_msg
    BLOCK_H = block_h(H)
    _gather_act_reduce_bwd_kernel[(S, triton.cdiv(H, BLOCK_H))](
        grad_out, a, index_a, _or(c, a), rowptr, _or(perm, rowptr), _or(arg, grad_out), grad_msg,
        H, *_strides(grad_out), *_strides(a), *_strides(c), *_strides(_or(arg, grad_out)), *_strides(grad_msg),
        HAS_C=c is not None, HAS_PERM=perm is not None, REDUCE=_REDUCE_CODE[reduce],
        ACT=ACTIVATION_CODE[activation], BLOCK_K=BLOCK_K, BLOCK_H=BLOCK_H,
    )
    return grad_msg


# ------------------------------------------------------------------------------------------- torch reference
def gather_act_reduce_reference(a: Tensor, index_a: Tensor, c: Optional[Tensor], rowptr: Tensor,
                                perm: Optional[Tensor] = None, reduce: str = "sum",
                                activation: str = "relu") -> Tensor:
    """The specification of ``gather_act_reduce`` in pure torch: materializes the ``[E, H]`` messages."""
    pre = a.index_select(0, index_a)
    if c is not None:
        pre = pre + c
    return segment_reduce_reference(activate(pre, activation), rowptr, perm, reduce)


# -------------------------------------------------------------------------------------------------- autograd
class GatherActReduceFunction(torch.autograd.Function):
    """Triton path: saves the inputs, the CSR and (``max``) the int32 argmax; backward recomputes the messages."""

    @staticmethod
    def forward(ctx, a, index_a, c, rowptr, perm, reduce, activation, groups_a):
        out, arg = _gather_act_reduce_triton(a, index_a, c, rowptr, perm, reduce, activation)
        ga = groups_a if groups_a is not None else Segments(None, None)
        ctx.save_for_backward(a, index_a, c, rowptr, perm, arg, ga.rowptr, ga.perm)
        ctx.reduce, ctx.activation = reduce, activation
        return out

    @staticmethod
    def backward(ctx, grad_out):
        a, index_a, c, rowptr, perm, arg, rowptr_a, perm_a = ctx.saved_tensors
        need_a, _, need_c = ctx.needs_input_grad[:3]
        grad_a = grad_c = None
        if need_a or need_c:
            grad_pre = _gather_act_reduce_bwd_triton(grad_out, a, index_a, c, rowptr, perm, arg, ctx.reduce,
                                                     ctx.activation)
            if need_a:
                groups_a = Segments(rowptr_a, perm_a) if rowptr_a is not None else None
                grad_a = segment_sum_triton(grad_pre, index_a, a.shape[0], groups_a, a.dtype)
            if need_c:
                grad_c = grad_pre
        return grad_a, None, grad_c, None, None, None, None, None


# ---------------------------------------------------------------------------------------------------- public
def gather_act_reduce(a: Tensor, index_a: Tensor, c: Optional[Tensor], rowptr: Tensor,
                      perm: Optional[Tensor] = None, reduce: str = "sum", activation: str = "relu", *,
                      groups_a: Optional[Segments] = None) -> Tensor:
    """Aggregate activated messages over CSR segments without materializing them (on the Triton path).

    .. math:: out_s = \\mathrm{REDUCE}_{k \\in [rowptr_s, rowptr_{s+1})} act(a_{index\\_a_e} + c_e),\\quad e = perm_k

    Args:
        a: ``[N_a, H]`` node features (e.g. ``Pm``, projected source features).
        index_a: ``[E]`` integer row of ``a`` per edge (e.g. ``src``).
        c: ``[E, H]`` per-edge term (e.g. ``Cm``), or ``None``.
        rowptr: ``[S + 1]`` int64 boundaries of the segments of edges (``segments_of(dst, N).rowptr``).
        perm: ``[E]`` int64 edge ids in segment order, or ``None`` (default) when the edges are already in order.
        reduce: ``"sum"`` (default), ``"mean"`` or ``"max"``; an empty segment gives 0.
        activation: ``"identity"``, ``"relu"`` (default) or ``"silu"``.
        groups_a: ``segments_of(index_a, N_a)``, reused by the Triton backward (built there when ``None``).

    Shapes:
        a ``[N_a, H]``, index_a ``[E]``, c ``[E, H]``, rowptr ``[S + 1]``, perm ``[E]`` -> ``[S, H]``.

    Example:
        >>> from gmnfx.kernels import segments_of
        >>> src, dst = torch.tensor([0, 1, 1]), torch.tensor([1, 0, 1])
        >>> a, c = torch.tensor([[1.0], [-3.0]]), torch.tensor([[0.0], [1.0], [5.0]])
        >>> gather_act_reduce(a, src, c, *segments_of(dst, 3), reduce="sum")
        tensor([[0.],
                [3.],
                [0.]])
    """
    check_features(a, "a")
    check_index(index_a, "index_a")
    E, H = index_a.numel(), a.shape[1]
    if c is not None:
        check_features(c, "c", rows=E, cols=H, like=a)
    check_csr(rowptr, perm, E, rows_name="index_a")
    check_choice(reduce, "reduce", REDUCTIONS)
    check_choice(activation, "activation", ACTIVATIONS)
    check_groups(groups_a, "groups_a", a.shape[0], E)
    check_same_device(a=a, index_a=index_a, c=c, rowptr=rowptr, perm=perm)
    if debug_checks_enabled():
        check_index_range(index_a, a.shape[0], "index_a")
    if resolve_backend(a, index_a, c, rowptr, perm) == "torch":
        return gather_act_reduce_reference(a, index_a, c, rowptr, perm, reduce, activation)
    return GatherActReduceFunction.apply(a, index_a, c, rowptr, perm, reduce, activation, groups_a)

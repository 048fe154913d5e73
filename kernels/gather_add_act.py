"""``gather_add_act``: the GMN edge update, gather two endpoint rows, add the edge's own row, activate.

    out[e] = act(a[index_a[e]] + b[index_b[e]] + c[e])        (b and c optional)

The gradient wrt ``a`` (and ``b``) sums ``grad_pre[e]`` over the edges ``e`` with ``index_a[e] == n``; the Triton
path does it as a deterministic CSR segment sum (``groups_a``, built with ``segments_of`` when not given).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .backend import (
    check_choice, check_features, check_same_device, debug_checks_enabled, jit, resolve_backend, tl, triton,
)
from .segment_reduce import _segment_reduce_triton, block_h, check_triton_inputs, flat
from .segments import Segments, _segments_of, check_index, check_index_range

__all__ = ["ACTIVATIONS", "GatherAddActFunction", "gather_add_act", "gather_add_act_reference"]

ACTIVATIONS = ("identity", "relu", "silu")
ACTIVATION_CODE = {"identity": 0, "relu": 1, "silu": 2}
BLOCK_E = 32  # edges per program


# ----------------------------------------------------------------------------------------------- Triton kernels
@jit
def _activate(x, ACT: tl.constexpr):
    """``act(x)`` in float32 (0 identity, 1 relu, 2 silu)."""
    if ACT == 1:
        x = tl.maximum(x, 0.0)
    if ACT == 2:
        x = x * tl.sigmoid(x)
    return x


@jit
def _activate_grad(x, ACT: tl.constexpr):
    """``act'(x)`` in float32; relu'(0) = 0 as in torch."""
    if ACT == 0:
        grad = tl.full(x.shape, 1.0, tl.float32)
    elif ACT == 1:
        grad = tl.where(x > 0, 1.0, 0.0)
    else:
        sig = tl.sigmoid(x)
        grad = sig * (1.0 + x * (1.0 - sig))
    return grad


@jit
def _gather_add(a_ptr, index_a_ptr, b_ptr, index_b_ptr, c_ptr, edges, cols, edge_mask, col_mask,
                stride_am, stride_ah, stride_bm, stride_bh, stride_cm, stride_ch,
                HAS_B: tl.constexpr, HAS_C: tl.constexpr):
    """The float32 pre-activation tile ``a[index_a[edges]] + b[index_b[edges]] + c[edges]`` (masked: 0)."""
    mask = edge_mask[:, None] & col_mask[None, :]
    ia = tl.load(index_a_ptr + edges, mask=edge_mask, other=0).to(tl.int64)
    pre = tl.load(a_ptr + ia[:, None] * stride_am + cols[None, :] * stride_ah, mask=mask, other=0.0).to(tl.float32)
    if HAS_B:
        ib = tl.load(index_b_ptr + edges, mask=edge_mask, other=0).to(tl.int64)
        pre += tl.load(b_ptr + ib[:, None] * stride_bm + cols[None, :] * stride_bh, mask=mask, other=0.0).to(
            tl.float32)
    if HAS_C:
        pre += tl.load(c_ptr + edges[:, None] * stride_cm + cols[None, :] * stride_ch, mask=mask, other=0.0).to(
            tl.float32)
    return pre


@jit
def _gather_add_act_fwd_kernel(
    a_ptr, index_a_ptr, b_ptr, index_b_ptr, c_ptr, out_ptr, E, H,
    stride_am, stride_ah, stride_bm, stride_bh, stride_cm, stride_ch, stride_om, stride_oh,
    HAS_B: tl.constexpr, HAS_C: tl.constexpr, ACT: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """One program per (block of edges, block of columns)."""
    edges = tl.program_id(0).to(tl.int64) * BLOCK_E + tl.arange(0, BLOCK_E)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    edge_mask, col_mask = edges < E, cols < H
    mask = edge_mask[:, None] & col_mask[None, :]
    pre = _gather_add(a_ptr, index_a_ptr, b_ptr, index_b_ptr, c_ptr, edges, cols, edge_mask, col_mask,
                      stride_am, stride_ah, stride_bm, stride_bh, stride_cm, stride_ch, HAS_B, HAS_C)
    out = _activate(pre, ACT)
    tl.store(out_ptr + edges[:, None] * stride_om + cols[None, :] * stride_oh, out.to(out_ptr.dtype.element_ty),
             mask=mask)


@jit
def _gather_add_act_bwd_kernel(
    grad_out_ptr, a_ptr, index_a_ptr, b_ptr, index_b_ptr, c_ptr, grad_pre_ptr, E, H,
    stride_gm, stride_gh, stride_am, stride_ah, stride_bm, stride_bh, stride_cm, stride_ch, stride_pm, stride_ph,
    HAS_B: tl.constexpr, HAS_C: tl.constexpr, ACT: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """grad_pre = grad_out * act'(pre), the pre-activation recomputed from the inputs."""
    edges = tl.program_id(0).to(tl.int64) * BLOCK_E + tl.arange(0, BLOCK_E)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    edge_mask, col_mask = edges < E, cols < H
    mask = edge_mask[:, None] & col_mask[None, :]
    g = tl.load(grad_out_ptr + edges[:, None] * stride_gm + cols[None, :] * stride_gh, mask=mask, other=0.0)
    pre = _gather_add(a_ptr, index_a_ptr, b_ptr, index_b_ptr, c_ptr, edges, cols, edge_mask, col_mask,
                      stride_am, stride_ah, stride_bm, stride_bh, stride_cm, stride_ch, HAS_B, HAS_C)
    grad_pre = g.to(tl.float32) * _activate_grad(pre, ACT)
    tl.store(grad_pre_ptr + edges[:, None] * stride_pm + cols[None, :] * stride_ph,
             grad_pre.to(grad_pre_ptr.dtype.element_ty), mask=mask)


# ------------------------------------------------------------------------------------------------- launchers
def _strides(x: Optional[Tensor]) -> tuple[int, int]:
    return (x.stride(0), x.stride(1)) if x is not None else (0, 0)


def _gather_add_act_triton(a: Tensor, index_a: Tensor, b: Optional[Tensor], index_b: Optional[Tensor],
                           c: Optional[Tensor], activation: str) -> Tensor:
    """Launch the forward kernel: ``[E, H]`` in ``a``'s dtype."""
    check_triton_inputs(a, index_a, b, index_b, c)
    index_a, index_b = flat(index_a), flat(index_b)
    E, H = index_a.numel(), a.shape[1]
    out = torch.empty((E, H), dtype=a.dtype, device=a.device)
    if E == 0 or H == 0:
        return out
    BLOCK_H = block_h(H)
    grid = (triton.cdiv(E, BLOCK_E), triton.cdiv(H, BLOCK_H))
    _gather_add_act_fwd_kernel[grid](
        a, index_a, _or(b, a), _or(index_b, index_a), _or(c, a), out, E, H,
        *_strides(a), *_strides(b), *_strides(c), *_strides(out),
        HAS_B=b is not None, HAS_C=c is not None, ACT=ACTIVATION_CODE[activation], BLOCK_E=BLOCK_E, BLOCK_H=BLOCK_H,
    )
    return out


def _gather_add_act_bwd_triton(grad_out: Tensor, a: Tensor, index_a: Tensor, b: Optional[Tensor],
                               index_b: Optional[Tensor], c: Optional[Tensor], activation: str) -> Tensor:
    """Launch the backward kernel: ``grad_pre [E, H]`` in ``a``'s dtype (``grad_out`` itself for identity)."""
    check_triton_inputs(grad_out, a, index_a, b, index_b, c)
    index_a, index_b = flat(index_a), flat(index_b)
    if activation == "identity":
        return grad_out
    E, H = grad_out.shape
    grad_pre = torch.empty((E, H), dtype=a.dtype, device=a.device)
    if E == 0 or H == 0:
        return grad_pre
    BLOCK_H = block_h(H)
    grid = (triton.cdiv(E, BLOCK_E), triton.cdiv(H, BLOCK_H))
    _gather_add_act_bwd_kernel[grid](
        grad_out, a, index_a, _or(b, a), _or(index_b, index_a), _or(c, a), grad_pre, E, H,
        *_strides(grad_out), *_strides(a), *_strides(b), *_strides(c), *_strides(grad_pre),
        HAS_B=b is not None, HAS_C=c is not None, ACT=ACTIVATION_CODE[activation], BLOCK_E=BLOCK_E, BLOCK_H=BLOCK_H,
    )
    return grad_pre


def segment_sum_triton(values: Tensor, index: Tensor, num_segments: int, groups: Optional[Segments],
                       dtype: torch.dtype) -> Tensor:
    """``out[n] = sum_{m: index[m] == n} values[m]`` as a deterministic CSR segment sum (``groups`` or built)."""
    groups = groups if groups is not None else _segments_of(index, num_segments)
    return _segment_reduce_triton(values, groups.rowptr, groups.perm, "sum", out_dtype=dtype)[0]


def _or(x: Optional[Tensor], fallback: Tensor) -> Tensor:
    """A pointer for an absent optional input (never read: its HAS_* flag is off)."""
    return x if x is not None else fallback


# ------------------------------------------------------------------------------------------- torch reference
def activate(x: Tensor, activation: str) -> Tensor:
    """``act(x)`` in torch (``identity``, ``relu`` or ``silu``)."""
    if activation == "relu":
        return torch.relu(x)
    if activation == "silu":
        return F.silu(x)
    return x


def gather_add_act_reference(a: Tensor, index_a: Tensor, b: Optional[Tensor] = None,
                             index_b: Optional[Tensor] = None, c: Optional[Tensor] = None,
                             activation: str = "relu") -> Tensor:
    """The specification of ``gather_add_act`` in pure torch (differentiable by autograd; the CPU path)."""
    pre = a.index_select(0, index_a)
    if b is not None:
        pre = pre + b.index_select(0, index_b)
    if c is not None:
        pre = pre + c
    return activate(pre, activation)


# -------------------------------------------------------------------------------------------------- autograd
class GatherAddActFunction(torch.autograd.Function):
    """Triton path: saves the inputs and indices only; backward recomputes the pre-activation."""

    @staticmethod
    def forward(ctx, a, index_a, b, index_b, c, activation, groups_a, groups_b):
        out = _gather_add_act_triton(a, index_a, b, index_b, c, activation)
        ga = groups_a if groups_a is not None else Segments(None, None)
        gb = groups_b if groups_b is not None else Segments(None, None)
        ctx.save_for_backward(a, index_a, b, index_b, c, ga.rowptr, ga.perm, gb.rowptr, gb.perm)
        ctx.activation = activation
        return out

    @staticmethod
    def backward(ctx, grad_out):
        a, index_a, b, index_b, c, rowptr_a, perm_a, rowptr_b, perm_b = ctx.saved_tensors
        need_a, _, need_b, _, need_c = ctx.needs_input_grad[:5]
        grad_a = grad_b = grad_c = None
        if need_a or need_b or need_c:
            grad_pre = _gather_add_act_bwd_triton(grad_out, a, index_a, b, index_b, c, ctx.activation)
            if need_a:
                groups_a = Segments(rowptr_a, perm_a) if rowptr_a is not None else None
                grad_a = segment_sum_triton(grad_pre, index_a, a.shape[0], groups_a, a.dtype)
            if need_b:
                groups_b = Segments(rowptr_b, perm_b) if rowptr_b is not None else None
                grad_b = segment_sum_triton(grad_pre, index_b, b.shape[0], groups_b, b.dtype)
            if need_c:
                grad_c = grad_pre
        return grad_a, None, grad_b, None, grad_c, None, None, None


# ---------------------------------------------------------------------------------------------------- public
def check_groups(groups: Optional[Segments], name: str, num_segments: int, num_positions: int) -> None:
    """Shape checks of a ``Segments`` grouping ``num_positions`` edges by ``num_segments`` nodes."""
    if groups is None:
        return
    if not isinstance(groups, tuple) or len(groups) != 2:
        raise TypeError(f"expected {name} to be a Segments(rowptr, perm) (got {type(groups).__name__}); "
                        f"build it with segments_of(index, num_nodes)")
    rowptr, perm = groups
    check_index(rowptr, f"{name}.rowptr")
    if rowptr.numel() != num_segments + 1:
        raise ValueError(f"expected {name}.rowptr to have {num_segments + 1} entries, one per row plus one "
                         f"(got {rowptr.numel()}); build it with segments_of(index, {num_segments})")
    if perm is not None:
        check_index(perm, f"{name}.perm")
        if perm.numel() != num_positions:
            raise ValueError(f"expected {name}.perm to have {num_positions} entries, one per edge "
                             f"(got {perm.numel()})")


def gather_add_act(a: Tensor, index_a: Tensor, b: Optional[Tensor] = None, index_b: Optional[Tensor] = None,
                   c: Optional[Tensor] = None, activation: str = "relu", *, groups_a: Optional[Segments] = None,
                   groups_b: Optional[Segments] = None) -> Tensor:
    """Gather rows by edge, add, activate: the GMN edge update.

    .. math:: out_e = act(a_{index\\_a_e} + b_{index\\_b_e} + c_e)

    Args:
        a: ``[N_a, H]`` node features (e.g. ``Pa``, projected source features).
        index_a: ``[E]`` integer row of ``a`` per edge (e.g. ``src``).
        b: ``[N_b, H]`` or ``None`` (default); needs ``index_b`` (e.g. ``Pb`` and ``dst``).
        index_b: ``[E]`` integer row of ``b`` per edge, or ``None`` (default).
        c: ``[E, H]`` per-edge term, or ``None`` (default).
        activation: ``"identity"``, ``"relu"`` (default) or ``"silu"``.
        groups_a: ``segments_of(index_a, N_a)``, reused by the Triton backward (built there when ``None``).
        groups_b: ``segments_of(index_b, N_b)``, likewise.

    Shapes:
        a ``[N_a, H]``, b ``[N_b, H]``, c ``[E, H]``, indices ``[E]`` -> ``[E, H]`` in ``a``'s dtype.

    Example:
        >>> a, b = torch.tensor([[1.0], [-3.0]]), torch.tensor([[10.0], [20.0]])
        >>> gather_add_act(a, torch.tensor([0, 1, 1]), b, torch.tensor([1, 0, 1]))
        tensor([[21.],
                [ 7.],
                [17.]])
    """
    check_features(a, "a")
    check_index(index_a, "index_a")
    E, H = index_a.numel(), a.shape[1]
    if (b is None) != (index_b is None):
        raise ValueError(f"expected b and index_b both given or both None (got b {'None' if b is None else 'given'}, "
                         f"index_b {'None' if index_b is None else 'given'})")
    if b is not None:
        check_features(b, "b", cols=H, like=a)
        check_index(index_b, "index_b")
        if index_b.numel() != E:
            raise ValueError(f"expected index_b to have one entry per edge, like index_a ({E}) "
                             f"(got {index_b.numel()})")
    if c is not None:
        check_features(c, "c", rows=E, cols=H, like=a)
    check_choice(activation, "activation", ACTIVATIONS)
    check_groups(groups_a, "groups_a", a.shape[0], E)
    if groups_b is not None and b is None:
        raise ValueError("expected groups_b only together with b (got groups_b but b is None)")
    check_groups(groups_b, "groups_b", b.shape[0] if b is not None else 0, E)
    check_same_device(a=a, index_a=index_a, b=b, index_b=index_b, c=c)
    if debug_checks_enabled():
        check_index_range(index_a, a.shape[0], "index_a")
        if b is not None:
            check_index_range(index_b, b.shape[0], "index_b")
    if resolve_backend(a, index_a, b, index_b, c) == "torch":
        return gather_add_act_reference(a, index_a, b, index_b, c, activation)
    return GatherAddActFunction.apply(a, index_a, b, index_b, c, activation, groups_a, groups_b)

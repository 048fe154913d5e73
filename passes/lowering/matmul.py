"""Lowering rules: matrix products (``@``, ``matmul``, ``mm``, ``bmm``, ``baddbmm``).

A product with a parameter is a dense layer (``x @ W`` is ``F.linear(x, W.T)``;
``W @ x`` mixes along ``x``'s second-to-last dim). A product of two
activations, ``out[..., t, s] = sum_k a[..., t, k] * b[..., k, s]`` (attention
scores, attention-weighted values), becomes:

* one PROD neuron per term ``a[..., t, k] * b[..., k, s]``, fed by two PRODUCT
  edges marked with the factor they come from (``operand`` 1 for ``a``, 2 for
  ``b``: a matrix product is not symmetric in its factors);
* one SUM neuron per output element, fed by its K products (weight ``alpha``).

Product neurons get the channel of their pair of factor channels and output
neurons the channel of their set of product channels. For ``q @ k^T`` split
into heads this gives one product node per query/key dimension (pairing
``q_j`` with ``k_j``) and one score node per head; for ``attn @ v`` one product
node per value dimension. The graph's symmetries are then exactly head
permutations and per-head permutations of the query/key and value dims.
"""
from __future__ import annotations

import operator
from typing import Any

import torch

from gmnfx.context import LoweringContext
from gmnfx.edge_blocks import BlockAttrs, PairEdges, combine_index_keys
from gmnfx.ir import Neurons, Params
from gmnfx.registry import method, register_lowering
from gmnfx.schema import EdgeType, NodeOp

from .elementwise import lower_add, lower_mul
from .linear import lower_linear
from .mirror import positional_index, squeeze_constant_dims

__all__ = ["lower_matmul", "lower_activation_product"]

aten = torch.ops.aten


def lower_matmul(ctx: LoweringContext, a: Any, b: Any, alpha: float = 1.0) -> Neurons:
    """``alpha * (a @ b)`` for activations and parameters, with ``torch.matmul``'s broadcasting rules."""
    if isinstance(b, Params) and isinstance(a, Neurons):
        if b.index.dim() == 1:  # x @ w: one output, squeezed
            out = lower_linear(ctx, a, Params(b.index[None, :], b.name), None)
            return _scaled(ctx, Neurons(out.ids.squeeze(-1), fusable=out.fusable), alpha)
        if b.index.dim() != 2:
            raise ctx.fail(f"expected a 1-d or 2-d parameter on the right of a product (got shape {b.shape})")
        return _scaled(ctx, lower_linear(ctx, a, Params(b.index.T, b.name), None), alpha)
    if isinstance(a, Params) and isinstance(b, Neurons):
        if a.index.dim() != 2 or b.ids.dim() < 2:
            raise ctx.fail(f"expected a 2-d parameter matrix times an activation with at least 2 dims "
                           f"(got {a.shape} @ {b.shape})")
        mixed = lower_linear(ctx, Neurons(b.ids.transpose(-1, -2)), a, None)
        return _scaled(ctx, Neurons(mixed.ids.transpose(-1, -2), fusable=mixed.fusable), alpha)
    if isinstance(a, Neurons) and isinstance(b, Neurons):
        return lower_activation_product(ctx, a, b, alpha)
    raise ctx.fail("expected a matrix product of activations and/or parameters (got "
                   f"{type(a).__name__} @ {type(b).__name__}); a product of two parameters is a transformed "
                   "parameter, which gmnfx cannot place on edges")


def _scaled(ctx: LoweringContext, x: Neurons, alpha: float) -> Neurons:
    return x if alpha == 1.0 else lower_mul(ctx, x, float(alpha))


def lower_activation_product(ctx: LoweringContext, a: Neurons, b: Neurons, alpha: float = 1.0) -> Neurons:
    """``alpha * (a @ b)`` for two activations: PROD neurons per term, SUM neurons per output."""
    a_ids, b_ids = a.ids, b.ids
    if a_ids.dim() < 2 or b_ids.dim() < 2:
        raise ctx.fail(f"expected both factors to have at least 2 dims besides the batch dim (got per-sample shapes "
                       f"{a.shape} @ {b.shape}); a product with a [batch, n] activation mixes samples")
    if a_ids.shape[-1] != b_ids.shape[-2]:
        raise ctx.fail(f"expected matching inner dims in a matrix product (got {a.shape} @ {b.shape})")
    lead = torch.broadcast_shapes(a_ids.shape[:-2], b_ids.shape[:-2])
    (t, k), s = a_ids.shape[-2:], b_ids.shape[-1]
    left = a_ids.expand(*lead, t, k)[..., :, None, :]  # [*lead, T, 1, K]
    right = b_ids.expand(*lead, k, s).transpose(-1, -2)[..., None, :, :]  # [*lead, 1, S, K]
    shape = (*lead, t, s, k)
    graph = ctx.graph
    term_key = _reduced_pair_key(graph.channel_of(left), graph.channel_of(right))
    out_key = _row_key(term_key, shape)
    # Parameter graphs only need the product neurons' channels, and the product neurons feed only this
    # block's own edges: build one per distinct channel pattern (term_key's reduced shape, O(heads * dims)
    # for attention) instead of one per term (O(T^2 d)); the edges broadcast over the rest.
    term_shape = tuple(term_key.shape) if ctx.compact else shape
    terms = graph.new_neurons(term_shape, layer=ctx.layer, op=NodeOp.PROD, channel_key=term_key.expand(term_shape),
                              pos=positional_index(term_key, term_shape))
    out = graph.new_neurons(shape[:-1], layer=ctx.layer, channel_key=out_key.expand(shape[:-1]),
                            pos=positional_index(out_key, shape[:-1]))
    source = ctx.source()
    graph.add_block(PairEdges(left, terms, EdgeType.PRODUCT, ctx.layer, source, attrs=BlockAttrs(operand=1)))
    graph.add_block(PairEdges(right, terms, EdgeType.PRODUCT, ctx.layer, source, attrs=BlockAttrs(operand=2)))
    graph.add_block(PairEdges(terms, out[..., None], EdgeType.SKIP, ctx.layer, source, weight=float(alpha)))
    return Neurons(out, fusable=True)


def _reduced_pair_key(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Dense key of the (left channel, right channel) pair, computed on the smallest broadcast that has it.

    Along a dim where both channel tensors are constant (a token dim: the channel of
    ``q[t, j]`` does not depend on ``t``), the key is too, so it is computed once and
    broadcast: the product layer of ``q @ k^T`` costs O(heads * dims) here, not O(T^2 d).
    """
    left, right = squeeze_constant_dims(left), squeeze_constant_dims(right)
    common = torch.broadcast_shapes(left.shape, right.shape)
    key = combine_index_keys([left.expand(common).reshape(-1), right.expand(common).reshape(-1)])
    return key.view(common)


def _row_key(term_key: torch.Tensor, shape) -> torch.Tensor:
    """Dense key per output element of the tuple of its terms' channels (the last dim), reduced like ``term_key``."""
    reduced = squeeze_constant_dims(term_key)
    rows = reduced.reshape(-1, reduced.shape[-1])
    _, key = torch.unique(rows, dim=0, return_inverse=True)
    return key.view(reduced.shape[:-1])


# ---------------------------------------------------------------------- registered ops
@register_lowering(torch.matmul, operator.matmul, torch.mm, torch.bmm, method("matmul"), method("mm"),
                   method("bmm"), method("__matmul__"), aten.matmul.default, aten.mm.default, aten.bmm.default)
def lower_matmul_op(ctx: LoweringContext, node) -> Neurons:
    a, b = ctx.bind(node, "input", "other")
    return lower_matmul(ctx, a, b)


@register_lowering(torch.baddbmm, method("baddbmm"), aten.baddbmm.default)
def lower_baddbmm(ctx: LoweringContext, node) -> Neurons:
    """``beta * input + alpha * (batch1 @ batch2)`` (the export form of attention scores with a mask)."""
    base, b1, b2, beta, alpha = ctx.bind(node, "input", "batch1", "batch2", beta=1.0, alpha=1.0)
    product = lower_matmul(ctx, b1, b2, float(alpha))
    if float(beta) == 0.0:
        return product
    if isinstance(base, (Neurons, Params)):
        if float(beta) != 1.0:
            raise ctx.fail(f"baddbmm with beta={beta} on an activation or parameter input is not supported")
    else:
        base = torch.as_tensor(base) * float(beta)
    return lower_add(ctx, product, base)

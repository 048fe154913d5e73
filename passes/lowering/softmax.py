"""Lowering rules: softmax and log_softmax, and the constant masks applied before them.

``softmax(x, dim)`` normalizes groups of neurons, like a LayerNorm does:

* one LOGSUMEXP node per group (the elements along ``dim``), fed by every
  member of the group (NORM_STATS_IN edges);
* one SOFTMAX node per element, ``exp(x - lse)``, reading its element
  (NORM_INPUT) and its group's LOGSUMEXP node (NORM_STATS_OUT).

A group node's channel is the tuple of its members' channels, so attention
scores of one head (one channel per head) get one LOGSUMEXP node per head in
the parameter graph.

Masks (a causal mask, ``masked_fill(mask, -inf)``, a boolean ``attn_mask``)
are constants: masked positions get a BIAS edge from a constant node with
weight ``finfo(float32).min`` instead of ``-inf``, which gives exactly the same
softmax (``exp`` underflows to 0) while keeping every edge weight finite.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from gmnfx.context import LoweringContext
from gmnfx.edge_blocks import PairEdges
from gmnfx.ir import Neurons
from gmnfx.registry import method, register_lowering
from gmnfx.schema import EdgeType, NodeOp

from .elementwise import MASK_VALUE
from .mirror import mirror_neurons, positional_index, squeeze_constant_dims

__all__ = ["lower_softmax", "add_constant_bias", "same_for_every_sample", "MASK_VALUE"]

aten = torch.ops.aten



def lower_softmax(ctx: LoweringContext, x: Neurons, dim: int, log: bool = False) -> Neurons:
    """``softmax(x, dim)``: a LOGSUMEXP node per group and a SOFTMAX node per element.

    ``log=True`` gives ``log_softmax``: SUM nodes ``x - lse`` (a SKIP edge from the element, a
    weight -1 SKIP edge from its group's LOGSUMEXP node) instead of SOFTMAX nodes.
    """
    if not x.shape:
        raise ctx.fail("expected an activation with at least one dim for softmax")
    dim = _check_dim(ctx, dim, len(x.shape))
    members = x.ids.movedim(dim, -1)  # [*groups, n]
    graph = ctx.graph
    channels = squeeze_constant_dims(graph.channel_of(members))  # attention scores: [heads, 1, 1]
    _, group_key = torch.unique(channels.reshape(-1, channels.shape[-1]), dim=0, return_inverse=True)
    group_key = group_key.view(channels.shape[:-1]).expand(members.shape[:-1])
    lse = graph.new_neurons(members.shape[:-1], layer=ctx.layer, op=NodeOp.LOGSUMEXP, channel_key=group_key,
                            pos=positional_index(group_key, members.shape[:-1]))
    out = mirror_neurons(ctx, members.shape, [members], op=NodeOp.SUM if log else NodeOp.SOFTMAX)
    source = ctx.source()
    graph.add_block(PairEdges(members, lse[..., None], EdgeType.NORM_STATS_IN, ctx.layer, source))
    if log:
        graph.add_block(PairEdges(members, out, EdgeType.SKIP, ctx.layer, source))
        graph.add_block(PairEdges(lse[..., None], out, EdgeType.SKIP, ctx.layer, source, weight=-1.0))
    else:
        graph.add_block(PairEdges(members, out, EdgeType.NORM_INPUT, ctx.layer, source))
        graph.add_block(PairEdges(lse[..., None], out, EdgeType.NORM_STATS_OUT, ctx.layer, source))
    return Neurons(out.movedim(-1, dim), fusable=log and x.ids.dim() > 0)


def _check_dim(ctx: LoweringContext, dim: Any, ndim: int) -> int:
    if dim is None:
        raise ctx.fail("expected softmax with an explicit dim (got dim=None)")
    dim = int(dim)
    if dim == 0 or dim == -ndim - 1:
        raise ctx.fail("softmax over the batch dimension mixes samples; gmnfx graphs describe one sample")
    return dim - 1 if dim > 0 else dim  # the batch dim is not part of the per-sample ids


@register_lowering(F.softmax, torch.softmax, method("softmax"), aten.softmax.int, aten._softmax.default)
def lower_softmax_function(ctx: LoweringContext, node) -> Neurons:
    x, dim = ctx.bind(node, "input", "dim")
    return lower_softmax(ctx, ctx.neurons(x), dim)


@register_lowering(nn.Softmax)
def lower_softmax_module(ctx: LoweringContext, node) -> Neurons:
    (x,) = ctx.bind(node, "input")
    return lower_softmax(ctx, ctx.neurons(x), ctx.module().dim)


@register_lowering(F.log_softmax, torch.log_softmax, method("log_softmax"), aten.log_softmax.int,
                   aten._log_softmax.default)
def lower_log_softmax_function(ctx: LoweringContext, node) -> Neurons:
    x, dim = ctx.bind(node, "input", "dim")
    return lower_softmax(ctx, ctx.neurons(x), dim, log=True)


@register_lowering(nn.LogSoftmax)
def lower_log_softmax_module(ctx: LoweringContext, node) -> Neurons:
    (x,) = ctx.bind(node, "input")
    return lower_softmax(ctx, ctx.neurons(x), ctx.module().dim, log=True)


# ---------------------------------------------------------------------- constant masks
def add_constant_bias(ctx: LoweringContext, x: Neurons, bias: torch.Tensor, replace: torch.Tensor | None = None) -> Neurons:
    """``x + bias`` (or ``where(replace, bias, x)``) for a constant tensor broadcastable to ``x``.

    Values below float32's range (``-inf``) become :data:`MASK_VALUE`; zero biases get no edge. New neurons
    mirror ``x``'s channels, so a mask never splits a channel.
    """
    shape = tuple(torch.broadcast_shapes(x.shape, tuple(bias.shape)))
    # -inf, and sums of masks below float32's range (a causal mask plus a padding mask), become MASK_VALUE
    bias = bias.to(torch.float64).clamp(MASK_VALUE, -MASK_VALUE).expand(shape)
    src = x.ids.expand(shape)
    graph = ctx.graph
    constant = graph.new_bias_node(ctx.layer)
    out = mirror_neurons(ctx, shape, [src])
    minus_one = torch.full((), -1, dtype=torch.long)
    through = src if replace is None else torch.where(replace.expand(shape), minus_one, src)
    biased = bias != 0 if replace is None else replace.expand(shape)
    source = ctx.source()
    graph.add_block(PairEdges(through, out, EdgeType.SKIP, ctx.layer, source))
    graph.add_block(PairEdges(torch.where(biased, constant, minus_one), out, EdgeType.BIAS, ctx.layer, source,
                              weight=bias))
    return Neurons(out, fusable=True)


def _constant_mask(ctx: LoweringContext, mask: Any, what: str) -> torch.Tensor:
    if isinstance(mask, Neurons) or not isinstance(mask, torch.Tensor):
        raise ctx.fail(f"expected the {what} to be a constant tensor (got {type(mask).__name__}); masks computed "
                       "from the input are data-dependent and have no graph form")
    return same_for_every_sample(ctx, mask, len(ctx.out_shape()))


def same_for_every_sample(ctx: LoweringContext, mask: torch.Tensor, ndim: int) -> torch.Tensor:
    """``mask`` without the leading (batch) dims beyond ``ndim``, which it must not vary along."""
    while mask.dim() > ndim:
        if not bool((mask == mask[:1]).all()):
            raise ctx.fail("expected a mask that is the same for every sample (it varies along the batch dim); "
                           "per-sample masks are data and have no graph form")
        mask = mask[0]
    return mask


@register_lowering(method("masked_fill"), torch.masked_fill, aten.masked_fill.Scalar, method("masked_fill_"))
def lower_masked_fill(ctx: LoweringContext, node) -> Neurons:
    x, mask, value = ctx.bind(node, "input", "mask", "value")
    mask = _constant_mask(ctx, mask, "mask").bool()
    return add_constant_bias(ctx, ctx.neurons(x), torch.as_tensor(float(value)).expand(mask.shape), replace=mask)


@register_lowering(torch.where, aten.where.self)
def lower_where(ctx: LoweringContext, node) -> Neurons:
    """``where(mask, x, value)`` / ``where(mask, value, x)`` with a constant mask and value."""
    cond, a, b = ctx.bind(node, "condition", "input", "other")
    cond = _constant_mask(ctx, cond, "condition").bool()
    if isinstance(a, Neurons) and not isinstance(b, Neurons):
        x, value, replace = a, b, ~cond
    elif isinstance(b, Neurons) and not isinstance(a, Neurons):
        x, value, replace = b, a, cond
    else:
        raise ctx.fail("torch.where is supported between one activation and a constant (got "
                       f"{type(a).__name__} and {type(b).__name__})")
    value = same_for_every_sample(ctx, torch.as_tensor(value, dtype=torch.float64), len(ctx.out_shape()))
    shape = torch.broadcast_shapes(replace.shape, value.shape)
    return add_constant_bias(ctx, x, value.expand(shape), replace=replace.expand(shape))

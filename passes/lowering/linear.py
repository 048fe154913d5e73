"""Lowering rules: dense layers (nn.Linear, F.linear, aten.linear)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from gmnfx.context import LoweringContext
from gmnfx.edge_blocks import DenseEdges, PairEdges
from gmnfx.ir import Neurons, Params
from gmnfx.registry import register_lowering
from gmnfx.schema import EdgeType

__all__ = ["lower_linear", "new_bias_node", "connect_bias"]

aten = torch.ops.aten


def new_bias_node(ctx: LoweringContext, bias: Optional[Params]) -> Optional[torch.Tensor]:
    """A bias node for this layer if it has a bias (create it before the neurons it feeds)."""
    return None if bias is None else ctx.graph.new_bias_node(ctx.layer)


def connect_bias(ctx: LoweringContext, node: Optional[torch.Tensor], out: torch.Tensor,
                 bias: Optional[Params], channel_dim: int = -1) -> None:
    """Edges from bias ``node`` to ``out``, carrying ``bias`` along ``channel_dim`` of ``out``."""
    if node is None:
        return
    view = [1] * out.dim()
    view[channel_dim] = -1
    ctx.graph.add_block(PairEdges(node, out, EdgeType.BIAS, ctx.layer, ctx.source(), param=bias.index.reshape(view)))


def lower_linear(ctx: LoweringContext, x: Neurons, weight: Params, bias: Optional[Params]) -> Neurons:
    """``y[..., o] = sum_i weight[o, i] x[..., i] + bias[o]``: complete bipartite edges per position."""
    if weight is None or weight.index.dim() != 2:
        raise ctx.fail(f"expected a 2-d linear weight (got shape {None if weight is None else weight.shape})")
    n_out, n_in = weight.shape
    if not x.shape or x.shape[-1] != n_in:
        raise ctx.fail(f"expected an input whose last dim is {n_in} (got per-sample shape {x.shape})")
    if bias is not None and bias.shape != (n_out,):
        raise ctx.fail(f"expected a bias of shape ({n_out},) (got {bias.shape})")
    bias_node = new_bias_node(ctx, bias)
    out = ctx.graph.new_neurons((*x.shape[:-1], n_out), layer=ctx.layer, channel_dim=-1)
    ctx.graph.add_block(DenseEdges(x.ids.reshape(-1, n_in), out.reshape(-1, n_out), weight.index, ctx.layer, ctx.source()))
    connect_bias(ctx, bias_node, out, bias)
    return Neurons(out, fusable=True)


@register_lowering(nn.Linear)
def lower_linear_module(ctx: LoweringContext, node) -> Neurons:
    (x,) = ctx.bind(node, "input")
    module = ctx.module()
    return lower_linear(ctx, ctx.neurons(x), ctx.module_param(module, "weight"), ctx.module_param(module, "bias"))


@register_lowering(F.linear, aten.linear.default)
def lower_linear_function(ctx: LoweringContext, node) -> Neurons:
    x, weight, bias = ctx.bind(node, "input", "weight", bias=None)
    return lower_linear(ctx, ctx.neurons(x), ctx.params_or_none(weight, "weight"), ctx.params_or_none(bias, "bias"))

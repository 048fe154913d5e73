"""Lowering rules: N-d convolutions (nn.Conv1d/2d/3d, F.conv*, aten.conv*/convolution)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from gmnfx.context import LoweringContext
from gmnfx.edge_blocks import ConvEdges
from gmnfx.ir import Neurons, Params
from gmnfx.registry import register_lowering

from .linear import connect_bias, new_bias_node

__all__ = ["lower_conv"]

aten = torch.ops.aten


def _per_dim(value, n: int, what: str, ctx: LoweringContext) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    value = tuple(int(v) for v in value)
    if len(value) == 1:
        return value * n
    if len(value) != n:
        raise ctx.fail(f"expected {n} values for {what} (got {value})")
    return value


def _left_padding(padding, kernel, dilation, n: int, ctx: LoweringContext) -> tuple[int, ...]:
    if padding == "valid":
        return (0,) * n
    if padding == "same":
        return tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    return _per_dim(padding, n, "padding", ctx)


def lower_conv(ctx: LoweringContext, x: Neurons, weight: Params, bias: Optional[Params], stride, padding,
               dilation, groups: int, padding_mode: str = "zeros") -> Neurons:
    """One edge per kernel tap, input channel and output position; collapses to channel edges."""
    if weight is None:
        raise ctx.fail("convolution without a weight parameter")
    n = weight.index.dim() - 2
    c_out, c_in_g = weight.shape[:2]
    if x.ids.dim() != n + 1 or x.shape[0] != c_in_g * groups:
        raise ctx.fail(f"expected a per-sample input of shape [{c_in_g * groups}, <{n} spatial dims>] (got {x.shape})")
    kernel = weight.shape[2:]
    stride, dilation = _per_dim(stride, n, "stride", ctx), _per_dim(dilation, n, "dilation", ctx)
    padding = _left_padding(padding, kernel, dilation, n, ctx)
    bias_node = new_bias_node(ctx, bias)
    out = ctx.graph.new_neurons(ctx.out_shape(), layer=ctx.layer, channel_dim=0)
    ctx.graph.add_block(ConvEdges(x.ids, out, weight.index, stride, padding, dilation, int(groups),
                                  padding_mode, ctx.layer, ctx.source()))
    connect_bias(ctx, bias_node, out, bias, channel_dim=0)
    return Neurons(out, fusable=True)


@register_lowering(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def lower_conv_module(ctx: LoweringContext, node) -> Neurons:
    (x,) = ctx.bind(node, "input")
    m = ctx.module()
    return lower_conv(ctx, ctx.neurons(x), ctx.module_param(m, "weight"), ctx.module_param(m, "bias"),
                      m.stride, m.padding, m.dilation, m.groups, m.padding_mode)


@register_lowering(F.conv1d, F.conv2d, F.conv3d, aten.conv1d.default, aten.conv2d.default, aten.conv3d.default,
                   aten.conv1d.padding, aten.conv2d.padding, aten.conv3d.padding)
def lower_conv_function(ctx: LoweringContext, node) -> Neurons:
    x, weight, bias, stride, padding, dilation, groups = ctx.bind(
        node, "input", "weight", bias=None, stride=1, padding=0, dilation=1, groups=1)
    return lower_conv(ctx, ctx.neurons(x), ctx.params_or_none(weight, "weight"), ctx.params_or_none(bias, "bias"),
                      stride, padding, dilation, groups)


@register_lowering(aten.convolution.default)
def lower_aten_convolution(ctx: LoweringContext, node) -> Neurons:
    x, weight, bias, stride, padding, dilation, transposed, _, groups = ctx.bind(
        node, "input", "weight", "bias", "stride", "padding", "dilation", "transposed", "output_padding", "groups")
    if transposed:
        raise ctx.fail("transposed convolution is not supported yet; register a lowering rule for it")
    return lower_conv(ctx, ctx.neurons(x), ctx.params_or_none(weight, "weight"), ctx.params_or_none(bias, "bias"),
                      stride, padding, dilation, groups)

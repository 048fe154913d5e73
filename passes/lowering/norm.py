"""Lowering rules: normalization layers.

A normalization ``y = gamma * (x - mean_G) / sqrt(var_G + eps) + beta`` becomes:

* one STATS node per normalization group G (per position for LayerNorm, per
  channel group for GroupNorm, per channel for InstanceNorm), fed by every
  member of its group (NORM_STATS_IN edges) - so GroupNorm's groups are
  visible in the graph;
* one NORMALIZE node per input neuron, reading its input (NORM_INPUT) and its
  group's STATS node (NORM_STATS_OUT);
* if affine, SUM nodes carrying gamma on SCALE edges and beta on BIAS edges.

BatchNorm in eval mode has fixed statistics: BATCHNORM nodes carry the running
mean and variance as node features instead of a STATS node.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from gmnfx.context import LoweringContext
from gmnfx.edge_blocks import PairEdges
from gmnfx.ir import Neurons, Params
from gmnfx.registry import register_lowering
from gmnfx.schema import EdgeType, NodeOp

from .linear import new_bias_node
from .mirror import mirror_neurons

__all__ = ["lower_group_statistics_norm", "lower_batch_norm"]

aten = torch.ops.aten


def _affine(ctx: LoweringContext, normalized: torch.Tensor, weight: Optional[Params], bias: Optional[Params],
            param_view: tuple[int, ...]) -> Neurons:
    if weight is None and bias is None:
        return Neurons(normalized)
    bias_node = new_bias_node(ctx, bias)
    out = mirror_neurons(ctx, normalized.shape, [normalized])
    if weight is not None:
        ctx.graph.add_block(PairEdges(normalized, out, EdgeType.SCALE, ctx.layer, ctx.source(),
                                      param=weight.index.reshape(param_view)))
    else:
        ctx.graph.add_block(PairEdges(normalized, out, EdgeType.SKIP, ctx.layer, ctx.source()))
    if bias is not None:
        ctx.graph.add_block(PairEdges(bias_node, out, EdgeType.BIAS, ctx.layer, ctx.source(),
                                      param=bias.index.reshape(param_view)))
    return Neurons(out, fusable=True)


def lower_group_statistics_norm(ctx: LoweringContext, x: Neurons, group_of: torch.Tensor, num_groups_shape,
                                eps: float, weight: Optional[Params], bias: Optional[Params],
                                param_view: tuple[int, ...], stats_channel_dim: Optional[int]) -> Neurons:
    """Normalize each neuron of ``x`` by the statistics of its group ``group_of[p]`` (ids into the stats tensor)."""
    graph = ctx.graph
    stats = graph.new_neurons(num_groups_shape, layer=ctx.layer, op=NodeOp.STATS, channel_dim=stats_channel_dim)
    stats_of = stats.reshape(-1)[group_of]
    graph.add_block(PairEdges(x.ids, stats_of, EdgeType.NORM_STATS_IN, ctx.layer, ctx.source()))
    normalized = mirror_neurons(ctx, x.shape, [x.ids], op=NodeOp.NORMALIZE, norm_eps=eps)
    graph.add_block(PairEdges(x.ids, normalized, EdgeType.NORM_INPUT, ctx.layer, ctx.source()))
    graph.add_block(PairEdges(stats_of, normalized, EdgeType.NORM_STATS_OUT, ctx.layer, ctx.source()))
    return _affine(ctx, normalized, weight, bias, param_view)


def _channel_view(x: Neurons) -> tuple[int, ...]:
    return (-1,) + (1,) * (x.ids.dim() - 1)


# ---------------------------------------------------------------------- LayerNorm
def lower_layer_norm(ctx, x: Neurons, normalized_shape, weight, bias, eps) -> Neurons:
    normalized_shape = tuple(int(s) for s in normalized_shape)
    k = len(normalized_shape)
    if x.shape[len(x.shape) - k:] != normalized_shape:
        raise ctx.fail(f"expected the last dims of the input to be {normalized_shape} (got {x.shape})")
    lead = x.shape[: len(x.shape) - k]
    group_of = torch.arange(math.prod(lead)).view(*lead, *([1] * k)).expand(x.shape)
    return lower_group_statistics_norm(ctx, x, group_of, lead, float(eps), weight, bias, normalized_shape, None)


@register_lowering(nn.LayerNorm)
def lower_layer_norm_module(ctx: LoweringContext, node) -> Neurons:
    (x,) = ctx.bind(node, "input")
    m = ctx.module()
    return lower_layer_norm(ctx, ctx.neurons(x), m.normalized_shape, ctx.module_param(m, "weight"),
                            ctx.module_param(m, "bias"), m.eps)


@register_lowering(F.layer_norm, aten.layer_norm.default)
def lower_layer_norm_function(ctx: LoweringContext, node) -> Neurons:
    x, shape, weight, bias, eps = ctx.bind(node, "input", "normalized_shape", weight=None, bias=None, eps=1e-5)
    return lower_layer_norm(ctx, ctx.neurons(x), shape, ctx.params_or_none(weight, "weight"),
                            ctx.params_or_none(bias, "bias"), eps)


# ---------------------------------------------------------------------- GroupNorm
def lower_group_norm(ctx, x: Neurons, num_groups: int, weight, bias, eps) -> Neurons:
    channels = x.shape[0] if x.shape else 0
    if not x.shape or channels % num_groups:
        raise ctx.fail(f"expected the channel count to be divisible by num_groups={num_groups} (got input {x.shape})")
    group_of = (torch.arange(channels) // (channels // num_groups)).view(_channel_view(x)).expand(x.shape)
    return lower_group_statistics_norm(ctx, x, group_of, (num_groups,), float(eps), weight, bias,
                                       _channel_view(x), 0)


@register_lowering(nn.GroupNorm)
def lower_group_norm_module(ctx: LoweringContext, node) -> Neurons:
    (x,) = ctx.bind(node, "input")
    m = ctx.module()
    return lower_group_norm(ctx, ctx.neurons(x), m.num_groups, ctx.module_param(m, "weight"),
                            ctx.module_param(m, "bias"), m.eps)


@register_lowering(F.group_norm, aten.group_norm.default)
def lower_group_norm_function(ctx: LoweringContext, node) -> Neurons:
    x, groups, weight, bias, eps = ctx.bind(node, "input", "num_groups", weight=None, bias=None, eps=1e-5)
    return lower_group_norm(ctx, ctx.neurons(x), int(groups), ctx.params_or_none(weight, "weight"),
                            ctx.params_or_none(bias, "bias"), eps)


# ---------------------------------------------------------------------- BatchNorm (eval) and InstanceNorm
def lower_batch_norm(ctx, x: Neurons, running_mean, running_var, weight, bias, eps) -> Neurons:
    """Eval-mode batch norm: fixed per-channel statistics stored on BATCHNORM nodes."""
    if running_mean is None or running_var is None:
        raise ctx.fail("batch norm without running statistics normalizes with batch statistics, which "
                       "depend on the other samples; gmnfx supports eval-mode BatchNorm with running stats")
    if not x.shape or running_mean.numel() != x.shape[0]:
        raise ctx.fail(f"expected {running_mean.numel()} channels in dim 1 of the input (got per-sample shape {x.shape})")
    normalized = ctx.graph.new_neurons(x.shape, layer=ctx.layer, op=NodeOp.BATCHNORM, channel_dim=0,
                                       norm_eps=float(eps), norm_mean=running_mean.detach().cpu().double(),
                                       norm_var=running_var.detach().cpu().double())
    ctx.graph.add_block(PairEdges(x.ids, normalized, EdgeType.NORM_INPUT, ctx.layer, ctx.source()))
    return _affine(ctx, normalized, weight, bias, _channel_view(x))


def lower_instance_norm(ctx, x: Neurons, weight, bias, eps) -> Neurons:
    channels = x.shape[0]
    group_of = torch.arange(channels).view(_channel_view(x)).expand(x.shape)
    return lower_group_statistics_norm(ctx, x, group_of, (channels,), float(eps), weight, bias, _channel_view(x), 0)


@register_lowering(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
def lower_batch_norm_module(ctx: LoweringContext, node) -> Neurons:
    (x,) = ctx.bind(node, "input")
    m = ctx.module()
    if m.training or not m.track_running_stats:
        return lower_batch_norm(ctx, ctx.neurons(x), None, None, None, None, m.eps)
    return lower_batch_norm(ctx, ctx.neurons(x), m.running_mean, m.running_var, ctx.module_param(m, "weight"),
                            ctx.module_param(m, "bias"), m.eps)


@register_lowering(F.batch_norm)
def lower_batch_norm_function(ctx: LoweringContext, node) -> Neurons:
    x, mean, var, weight, bias, training, _, eps = ctx.bind(
        node, "input", "running_mean", "running_var", weight=None, bias=None, training=False, momentum=0.1, eps=1e-5)
    if training:
        mean = var = None
    return lower_batch_norm(ctx, ctx.neurons(x), mean, var, ctx.params_or_none(weight, "weight"),
                            ctx.params_or_none(bias, "bias"), eps)


@register_lowering(aten.batch_norm.default, aten._native_batch_norm_legit_no_training.default)
def lower_batch_norm_aten(ctx: LoweringContext, node) -> Neurons:
    if node.target is aten.batch_norm.default:
        x, weight, bias, mean, var, training, _, eps = ctx.bind(
            node, "input", "weight", "bias", "running_mean", "running_var", "training", "momentum", "eps")
        if training:
            mean = var = None
    else:
        x, weight, bias, mean, var, _, eps = ctx.bind(
            node, "input", "weight", "bias", "running_mean", "running_var", "momentum", "eps")
    return lower_batch_norm(ctx, ctx.neurons(x), mean, var, ctx.params_or_none(weight, "weight"),
                            ctx.params_or_none(bias, "bias"), eps)


@register_lowering(nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
def lower_instance_norm_module(ctx: LoweringContext, node) -> Neurons:
    (x,) = ctx.bind(node, "input")
    m = ctx.module()
    weight, bias = ctx.module_param(m, "weight"), ctx.module_param(m, "bias")
    if m.track_running_stats and not m.training:
        return lower_batch_norm(ctx, ctx.neurons(x), m.running_mean, m.running_var, weight, bias, m.eps)
    return lower_instance_norm(ctx, ctx.neurons(x), weight, bias, m.eps)


@register_lowering(F.instance_norm, aten.instance_norm.default)
def lower_instance_norm_function(ctx: LoweringContext, node) -> Neurons:
    if node.target is aten.instance_norm.default:
        x, weight, bias, mean, var, use_input_stats, _, eps = ctx.bind(
            node, "input", "weight", "bias", "running_mean", "running_var", "use_input_stats", "momentum", "eps")
    else:
        x, mean, var, weight, bias, use_input_stats, _, eps = ctx.bind(
            node, "input", running_mean=None, running_var=None, weight=None, bias=None,
            use_input_stats=True, momentum=0.1, eps=1e-5)
    weight, bias = ctx.params_or_none(weight, "weight"), ctx.params_or_none(bias, "bias")
    if not use_input_stats:
        return lower_batch_norm(ctx, ctx.neurons(x), mean, var, weight, bias, eps)
    return lower_instance_norm(ctx, ctx.neurons(x), weight, bias, eps)

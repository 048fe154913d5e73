"""How a network input's elements group into parameter-graph nodes.

Input neurons are never permuted, but the layer that first reads an input
decides which of its elements must share a node: a convolution needs all
positions of one input channel on one node, a dense layer applied token-wise
needs all tokens of one feature on one node, and a dense layer reading the
input flattened (an MLP on images) gets one node per element.

The first reading layer is found by following the input through pure
bookkeeping ops (views, transposes, flatten, dropout). Those ops are then run
on a probe input holding each element's own index, which tells exactly which
input element lands on which channel of that layer, whatever transposes or
reshapes happened on the way.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from gmnfx.context import LoweringContext
from gmnfx.ir import META_TENSOR, META_VALUE, Constant
from gmnfx.passes.lowering.shape import lower_bookkeeping, lower_identity, lower_metadata
from gmnfx.registry import lookup_lowering

__all__ = ["input_channels"]

_LAST_DIM_CONSUMERS = (nn.Linear, nn.LayerNorm, F.linear, F.layer_norm,
                       torch.ops.aten.linear.default, torch.ops.aten.layer_norm.default)
_PASS_THROUGH = (lower_bookkeeping, lower_identity)


def input_channels(ctx: LoweringContext, node: fx.Node, shape: tuple[int, ...]) -> dict:
    """``new_neurons`` keyword arguments (``channel_dim`` or ``channel_key``) for input ``node``."""
    if not shape:
        return {}
    consumer, fed = _first_consumer(ctx, node)
    probe = _probe(ctx, node, fed, shape) if consumer is not None else None
    last_dim = consumer in _LAST_DIM_CONSUMERS
    if probe is None:
        return {"channel_dim": -1 if last_dim and len(shape) > 1 else 0}
    if probe.dim() == 0 or (last_dim and probe.dim() == 1):
        return {"channel_key": torch.arange(math.prod(shape)).view(shape)}  # one node per element
    axis = -1 if last_dim else 0
    view = [1] * probe.dim()
    view[axis] = -1
    channel_of_position = torch.arange(probe.shape[axis]).view(view).expand(probe.shape)
    key = torch.full((math.prod(shape),), -1, dtype=torch.long)
    key[probe.reshape(-1)] = channel_of_position.reshape(-1)
    unread = key < 0
    key[unread] = int(key.max()) + 1 + torch.arange(int(unread.sum()))  # elements the layer never reads
    key = key.view(shape)
    for dim in range(len(shape)):  # the common case: channels are one input dim
        along = torch.arange(shape[dim]).view([-1 if d == dim else 1 for d in range(len(shape))])
        if torch.equal(key, along.expand(shape)):
            return {"channel_dim": dim}
    return {"channel_key": key}


def _first_consumer(ctx: LoweringContext, node: fx.Node):
    """The first op reading ``node`` through bookkeeping, and the node whose value it reads."""
    frontier = [node]
    while frontier:
        current = frontier.pop(0)
        for user in current.users:
            if user.op not in ("call_module", "call_function", "call_method"):
                continue
            key = ctx.rule_key(user)
            rule = lookup_lowering(key)
            if rule in _PASS_THROUGH:
                frontier.append(user)
            elif rule is not lower_metadata:
                return key, current
    return None, node


def _probe(ctx: LoweringContext, node: fx.Node, fed: fx.Node, shape: tuple[int, ...]) -> Optional[torch.Tensor]:
    """Index of the input element at each position of ``fed`` (per sample), or None if it cannot be run."""
    needed = _ancestors(fed)
    interpreter = fx.Interpreter(ctx.graph_module)
    probe = torch.arange(math.prod(shape), dtype=torch.float64).view(1, *shape)
    try:
        with torch.no_grad():
            for current in ctx.graph_module.graph.nodes:
                if current not in needed:
                    continue
                if current is node:
                    interpreter.env[current] = probe.expand(ctx.batch_size, *shape).contiguous()
                elif isinstance(current.meta.get(META_VALUE), Constant):
                    interpreter.env[current] = current.meta[META_VALUE].value
                elif current.op == "placeholder":
                    info = current.meta[META_TENSOR]
                    interpreter.env[current] = torch.zeros(info.shape, dtype=torch.float64)
                else:
                    interpreter.env[current] = interpreter.run_node(current)
    except Exception:  # noqa: BLE001 - fall back to the simple rule
        return None
    value = interpreter.env.get(fed)
    if not isinstance(value, torch.Tensor) or value.dim() == 0:
        return None
    return value[0].round().long()


def _ancestors(node: fx.Node) -> set:
    seen, stack = set(), [node]
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(current.all_input_nodes)
    return seen

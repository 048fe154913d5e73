"""Lowering rules: constant padding of activations (``F.pad(x, pad, value=c)``).

The padded tensor is a layer of new SUM neurons that mirror ``x``'s channels
(a padded position belongs to the channel of the element it extends, so a
following convolution still sees one node per channel): interior neurons read
their element through a weight-1 SKIP edge, padded ones read nothing (value 0)
or, for ``value != 0``, a BIAS edge of that weight from a constant node.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from gmnfx.context import LoweringContext
from gmnfx.edge_blocks import PairEdges
from gmnfx.ir import Neurons
from gmnfx.registry import register_lowering
from gmnfx.schema import EdgeType

from .mirror import mirror_neurons

__all__ = ["lower_constant_pad"]

aten = torch.ops.aten


def lower_constant_pad(ctx: LoweringContext, x: Neurons, pad, value: float) -> Neurons:
    pad = [int(p) for p in pad]
    if len(pad) % 2 or len(pad) // 2 > x.ids.dim():
        raise ctx.fail(f"expected padding for at most the {x.ids.dim()} per-sample dims (got pad={pad}); "
                       "padding the batch dim mixes samples")
    if any(p < 0 for p in pad):
        raise ctx.fail(f"negative padding (cropping) is not supported (got pad={pad}); slice the tensor instead")
    nearest = _replicate(x.ids, pad)  # a padded position takes the channel of the element it extends
    inside = F.pad(x.ids, pad, value=-1)
    constant = ctx.graph.new_bias_node(ctx.layer) if float(value) != 0.0 else None  # older than what it feeds
    out = mirror_neurons(ctx, tuple(inside.shape), [nearest])
    ctx.graph.add_block(PairEdges(inside, out, EdgeType.SKIP, ctx.layer, ctx.source()))
    if constant is not None:
        padded = torch.where(inside < 0, constant, torch.full((), -1, dtype=torch.long))
        ctx.graph.add_block(PairEdges(padded, out, EdgeType.BIAS, ctx.layer, ctx.source(), weight=float(value)))
    return Neurons(out, fusable=True)


def _replicate(ids: torch.Tensor, pad: list[int]) -> torch.Tensor:
    """``ids`` padded by repeating the edge elements (index arithmetic, exact for any id)."""
    out = ids
    for i in range(len(pad) // 2):
        dim = ids.dim() - 1 - i
        left, right = pad[2 * i], pad[2 * i + 1]
        size = out.shape[dim]
        index = torch.cat([torch.zeros(left, dtype=torch.long), torch.arange(size),
                           torch.full((right,), size - 1, dtype=torch.long)])
        out = out.index_select(dim, index)
    return out


@register_lowering(F.pad, aten.pad.default, aten.constant_pad_nd.default)
def lower_pad(ctx: LoweringContext, node) -> Neurons:
    if node.target is aten.constant_pad_nd.default:
        x, pad, value = ctx.bind(node, "input", "pad", value=0.0)
        mode = "constant"
    else:
        x, pad, mode, value = ctx.bind(node, "input", "pad", mode="constant", value=None)
    if mode != "constant":
        raise ctx.fail(f"F.pad with mode={mode!r} is not supported yet (only mode='constant')")
    return lower_constant_pad(ctx, ctx.neurons(x), pad, 0.0 if value is None else float(value))

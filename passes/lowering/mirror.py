"""Creating neurons that mirror the channels of the neurons they read from.

An op like ``a + b``, a ReLU, a norm or a pooling window makes new neurons
whose parameter-graph channel is determined by their inputs: neurons reading
the same combination of input channels share a channel. Positions are taken
from the first source.
"""
from __future__ import annotations

from typing import Sequence

import torch

from gmnfx.context import LoweringContext
from gmnfx.edge_blocks import combine_index_keys
from gmnfx.schema import NodeOp

__all__ = ["mirror_neurons", "mirror_key", "squeeze_constant_dims"]


def mirror_key(ctx: LoweringContext, shape: Sequence[int], sources: Sequence[torch.Tensor]) -> torch.Tensor:
    """Channel key of new neurons of ``shape`` fed elementwise by ``sources`` (broadcastable id tensors).

    Computed on the smallest broadcast that has it (a LayerNorm's output channels vary along the
    feature dim only) and returned as a broadcast view of ``shape``.
    """
    shape = tuple(shape)
    channels = [squeeze_constant_dims(ctx.graph.channel_of(s)) for s in sources]
    common = torch.broadcast_shapes(*(c.shape for c in channels))
    key = combine_index_keys([c.expand(common).reshape(-1) for c in channels]).view(common)
    return key.reshape((1,) * (len(shape) - key.dim()) + tuple(common)).expand(shape)


def squeeze_constant_dims(t: torch.Tensor) -> torch.Tensor:
    """``t`` narrowed to size 1 along every dim where it is constant (a broadcastable view)."""
    for d in range(t.dim()):
        if t.shape[d] > 1 and bool((t == t.narrow(d, 0, 1)).all()):
            t = t.narrow(d, 0, 1)
    return t


def mirror_neurons(
    ctx: LoweringContext,
    shape: Sequence[int],
    sources: Sequence[torch.Tensor],
    *,
    op: NodeOp = NodeOp.SUM,
    **attrs,
) -> torch.Tensor:
    """New neurons of ``shape`` whose channels mirror those of elementwise ``sources``."""
    shape = tuple(shape)
    pos = ctx.graph.positions(sources[0].expand(shape))
    return ctx.graph.new_neurons(
        shape, layer=ctx.layer, op=op, channel_key=mirror_key(ctx, shape, sources), pos=pos, **attrs
    )

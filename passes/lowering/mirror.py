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

__all__ = ["mirror_neurons", "mirror_key"]


def mirror_key(ctx: LoweringContext, shape: Sequence[int], sources: Sequence[torch.Tensor]) -> torch.Tensor:
    """Channel key of new neurons of ``shape`` fed elementwise by ``sources`` (broadcastable id tensors)."""
    shape = tuple(shape)
    channels = [ctx.graph.channel_of(s).expand(shape).reshape(-1) for s in sources]
    return combine_index_keys(channels).view(shape)


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

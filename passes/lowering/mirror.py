"""Creating neurons that mirror the channels of the neurons they read from.

An op like ``a + b``, a ReLU, a norm or a pooling window makes new neurons
whose parameter-graph channel is determined by their inputs: neurons reading
the same combination of input channels share a channel. Positions are taken
from the first source. Also the two helpers rules that key channels themselves
need: :func:`squeeze_constant_dims` and :func:`positional_index`.
"""
from __future__ import annotations

from typing import Sequence

import torch

from gmnfx.context import LoweringContext
from gmnfx.edge_blocks import combine_index_keys
from gmnfx.schema import NodeOp

__all__ = ["mirror_neurons", "mirror_key", "squeeze_constant_dims", "positional_index"]


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


def positional_index(key: torch.Tensor, shape) -> torch.Tensor:
    """Positions ``[*shape, 3]`` of new neurons: their index along the dims their channel does not depend on.

    ``key`` is the (broadcastable) channel key; a dim where it has size 1 but
    ``shape`` does not is a position (a token), any other dim is part of the
    channel (a head, a feature) and is not recorded. Right-aligned into 3 columns.
    """
    shape = tuple(shape)
    key = squeeze_constant_dims(key.reshape((1,) * (len(shape) - key.dim()) + tuple(key.shape)))
    dims = [d for d in range(len(shape)) if shape[d] > 1 and key.shape[d] == 1][-3:]
    pos = torch.zeros(*shape, 3, dtype=torch.long)
    for column, dim in zip(range(3 - len(dims), 3), dims):
        view = [1] * len(shape)
        view[dim] = shape[dim]
        pos[..., column] = torch.arange(shape[dim]).view(view)
    return pos

"""Lowering rules: embedding lookups (``nn.Embedding``, ``F.embedding``, ``aten.embedding``).

An integer network input (token ids) is one-hot over the vocabulary: the
input placeholder owns one neuron per (position, vocabulary entry), and the
value flowing through views and slicing holds, per position, the id of the
first neuron of that position's one-hot block. A lookup ``E[ids]`` is then a
dense layer from the one-hot block to ``D`` feature neurons,

    y[t, d] = sum_v E[v, d] * onehot(ids[t])[v],

with one EMBEDDING edge per table entry in the parameter graph (vocabulary
node ``v`` -> feature node ``d``). A lookup with constant indices (a
``position_ids`` buffer, ``torch.arange(T)``) is a learned table: it returns
the selected rows as a :class:`~gmnfx.ir.Params` value, which ``x + pos``
places on BIAS edges.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from gmnfx.context import LoweringContext
from gmnfx.edge_blocks import CollapseContext, DenseEdges, EdgeColumns
from gmnfx.ir import META_TENSOR, Neurons, Params
from gmnfx.registry import register_lowering
from gmnfx.schema import EdgeType, NodeOp

__all__ = ["lower_embedding", "EmbeddingEdges", "embedding_vocabulary"]

aten = torch.ops.aten

_FUNCTION_TARGETS = (F.embedding, aten.embedding.default)


class EmbeddingEdges(DenseEdges):
    """A lookup as a dense layer from one-hot blocks ``src`` [T, V] to features ``dst`` [T, D].

    ``weight`` is ``[D, V]`` (the table transposed). Parameter-graph edges carry
    no position: every position reads the same table.
    """

    def parameter_edges(self, ctx: CollapseContext) -> EdgeColumns:
        edges = super().parameter_edges(ctx)
        edges.pos = torch.zeros(1, 1, 3)
        return edges


def embedding_vocabulary(ctx: LoweringContext, user: fx.Node, fed: fx.Node) -> Optional[int]:
    """Vocabulary size of the lookup ``user`` if ``fed`` is its index argument, else None."""
    if user.op == "call_module":
        module = ctx.module(user)
        if not isinstance(module, nn.Embedding) or not _first_arg_is(user, fed, "input"):
            return None
        return module.num_embeddings
    if user.op != "call_function" or user.target not in _FUNCTION_TARGETS:
        return None
    if user.target is F.embedding:
        index_arg, weight_arg = _arg(user, 0, "input"), _arg(user, 1, "weight")
    else:
        weight_arg, index_arg = _arg(user, 0, "weight"), _arg(user, 1, "indices")
    if index_arg is not fed or not isinstance(weight_arg, fx.Node):
        return None
    info = weight_arg.meta.get(META_TENSOR)
    return int(info.shape[0]) if info is not None and len(info.shape) == 2 else None


def _arg(node: fx.Node, position: int, name: str) -> Any:
    return node.args[position] if len(node.args) > position else node.kwargs.get(name)


def _first_arg_is(node: fx.Node, fed: fx.Node, name: str) -> bool:
    return _arg(node, 0, name) is fed


def lower_embedding(ctx: LoweringContext, indices: Any, weight: Optional[Params]) -> Any:
    """``weight[indices]``: a dense layer from token one-hots, or table rows for constant indices."""
    if weight is None or weight.index.dim() != 2:
        raise ctx.fail(f"expected a 2-d embedding table (got shape {None if weight is None else weight.shape})")
    if isinstance(indices, Neurons):
        return _lookup_tokens(ctx, indices, weight)
    if isinstance(indices, torch.Tensor) and not indices.is_floating_point() and not indices.is_complex():
        return _lookup_rows(ctx, indices, weight)
    raise ctx.fail(f"expected integer indices: token ids from a network input or a constant tensor "
                   f"(got {type(indices).__name__}); a lookup with computed or learned indices has no graph form")


def _lookup_rows(ctx: LoweringContext, indices: torch.Tensor, weight: Params) -> Params:
    """Constant indices select rows of the table: a learned table, placed on edges where it is used."""
    vocab = weight.shape[0]
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= vocab):
        raise ctx.fail(f"expected constant indices in [0, {vocab}) (got values from {int(indices.min())} "
                       f"to {int(indices.max())})")
    if indices.dim() >= 2 and indices.shape[0] == ctx.batch_size and bool((indices == indices[:1]).all()):
        indices = indices[:1]  # the same ids expanded over the batch (``ids.expand(batch, T)``)
    return Params(weight.index[indices.long()], weight.name)


def _lookup_tokens(ctx: LoweringContext, tokens: Neurons, weight: Params) -> Neurons:
    vocab, dim = weight.shape
    width = _one_hot_width(ctx, tokens.ids)
    if vocab > width:
        raise ctx.fail(f"expected an embedding with at most {width} entries, the one-hot width of its token "
                       f"input (got {vocab})")
    one_hot = tokens.ids.unsqueeze(-1) + torch.arange(vocab)  # [*S, V]: neuron of (position, entry)
    out = ctx.graph.new_neurons((*tokens.shape, dim), layer=ctx.layer, channel_dim=-1)
    ctx.graph.add_block(EmbeddingEdges(one_hot.reshape(-1, vocab), out.reshape(-1, dim), weight.index.T,
                                       ctx.layer, ctx.source(), edge_type=EdgeType.EMBEDDING))
    return Neurons(out, fusable=True)


def _one_hot_width(ctx: LoweringContext, ids: torch.Tensor) -> int:
    """The smallest one-hot width among the token inputs ``ids`` come from; errors for other activations."""
    graph = ctx.graph
    flat = ids.reshape(-1)
    is_input = graph.channels.column("op")[graph.channel_of(flat)] == NodeOp.INPUT
    io = graph.neurons.column("io_tensor")[flat]
    encoded = [graph.input_encodings.get(k) for k in torch.unique(io).tolist()]
    if not bool(is_input.all()) or None in encoded:
        raise ctx.fail("expected token ids read from an integer network input (got an activation computed by "
                       "the network); gmnfx lowers lookups of token inputs and of constant indices only")
    width_of = torch.zeros(int(io.max()) + 1 if io.numel() else 1, dtype=torch.long)
    for k, width in graph.input_encodings.items():
        if k < width_of.numel():
            width_of[k] = width
    if not bool((graph.neurons.column("io_index")[flat] % width_of[io] == 0).all()):
        raise ctx.fail("expected whole token ids (got a slice into a token's one-hot block)")
    return min(encoded) if encoded else 0


def _reject_max_norm(ctx: LoweringContext, max_norm) -> None:
    if max_norm is not None:
        raise ctx.fail(f"expected an embedding without max_norm (got max_norm={max_norm}); max_norm rescales "
                       "the table's rows in place during the forward pass, so the compiled weights would not be "
                       "the ones the model uses. Drop max_norm, or renormalize the table before compiling")


@register_lowering(nn.Embedding)
def lower_embedding_module(ctx: LoweringContext, node) -> Any:
    (indices,) = ctx.bind(node, "input")
    module = ctx.module()
    _reject_max_norm(ctx, module.max_norm)
    return lower_embedding(ctx, indices, ctx.module_param(module, "weight"))


@register_lowering(F.embedding)
def lower_embedding_function(ctx: LoweringContext, node) -> Any:
    indices, weight, _, max_norm = ctx.bind(node, "input", "weight", padding_idx=None, max_norm=None)
    _reject_max_norm(ctx, max_norm)
    return lower_embedding(ctx, indices, ctx.params_or_none(weight, "embedding table"))


@register_lowering(aten.embedding.default)
def lower_embedding_aten(ctx: LoweringContext, node) -> Any:
    weight, indices = ctx.bind(node, "weight", "indices")
    return lower_embedding(ctx, indices, ctx.params_or_none(weight, "embedding table"))

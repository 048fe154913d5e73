"""Constants joined to activations: class and register tokens concatenated to a sequence.

``torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)`` mixes a parameter
with activations in one bookkeeping op. The parameter's values become neurons,
each fed by one constant node through a BIAS edge carrying its value; the op
then moves neuron ids as usual. A constant tensor (a buffer) concatenated or
stacked with activations is handled the same way, its values on fixed-weight
BIAS edges.

Each such neuron joins the channel of the activations it lines up with along
the op's dim (class-token value ``d`` goes to the node of feature ``d``), so a
following dense layer still sees one channel per feature. The constant node
then feeds channels older than itself, so its channel's ``rank`` is set just
below theirs and ``collapse_weight_sharing`` numbers it before them. When
those channels apply an activation or a normalization (which would then be
applied to the constant too), the activations are first copied into plain
channels by weight-1 SKIP edges and the values join the copies. Values that
line up with no single channel (concatenating along the feature dim) get
channels of their own, one per parameter (per element for a buffer).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from gmnfx.context import LoweringContext
from gmnfx.edge_blocks import PairEdges
from gmnfx.ir import Neurons, Params
from gmnfx.schema import Activation, EdgeType, NodeOp

__all__ = ["joins_constants", "join_learned_constants"]

aten = torch.ops.aten

_JOINS = (torch.cat, torch.concat, torch.stack, aten.cat.default, aten.stack.default)


@dataclass
class _ConstantOperand:
    """One parameter or constant-tensor operand, per sample."""

    leaf: Any  # the Params value or constant tensor as the op sees it
    index: Optional[torch.Tensor]  # Params: flat parameter index of each value; None for a constant tensor
    values: Optional[torch.Tensor]  # constant tensor: its values; None for a parameter

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple((self.index if self.index is not None else self.values).shape)

    @property
    def numel(self) -> int:
        return (self.index if self.index is not None else self.values).numel()


def _leaves(value: Any):
    if isinstance(value, (list, tuple)):
        for v in value:
            yield from _leaves(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    else:
        yield value


def _replace(value: Any, table: dict, fn: Callable[[Any], Any] = None) -> Any:
    """``value`` with leaves found in ``table`` (by id) replaced; others mapped by ``fn`` if given."""
    if isinstance(value, (list, tuple)):
        return type(value)(_replace(v, table, fn) for v in value)
    if isinstance(value, dict):
        return {k: _replace(v, table, fn) for k, v in value.items()}
    if id(value) in table:
        return table[id(value)]
    return fn(value) if fn is not None else value


def _is_join(node) -> bool:
    return node.op == "call_function" and node.target in _JOINS


def _constant_leaves(node, values: Any) -> list:
    """The parameter operands of the op, and for cat / stack its floating-point constant operands, each once."""
    join = _is_join(node)
    found = {id(v): v for v in _leaves(values)
             if isinstance(v, Params) or (join and isinstance(v, torch.Tensor) and v.is_floating_point())}
    return list(found.values())


def joins_constants(node, values: Any) -> bool:
    """Whether the op's ``values`` mix activations with parameters (or, for cat / stack, constant tensors)."""
    return any(isinstance(v, Neurons) for v in _leaves(values)) and bool(_constant_leaves(node, values))


def join_learned_constants(ctx: LoweringContext, node, args: list, kwargs: dict, run: Callable):
    """``args`` and ``kwargs`` with every parameter (constant) operand replaced by neurons holding its values.

    Args:
        run: ``run(ctx, node, args, kwargs)`` applies the op to plain tensors (probes the alignment).
    """
    operands = [_per_sample(ctx, leaf) for leaf in _constant_leaves(node, [args, kwargs])]
    targets = _fibre_channels(ctx, node, args, kwargs, run, operands)
    layer = ctx.sublayer("constants", "learned_constant")
    bias = ctx.graph.new_bias_node(layer)
    if bool(((targets >= 0) & ~_plain_sum(ctx, targets)).any()):
        args, kwargs, remap = _relay_activations(ctx, layer, args, kwargs)
        targets = torch.where(targets >= 0, remap[targets.clamp(min=0)], -1)
    channels = [part.view(op.shape) if bool((part >= 0).all()) else None
                for part, op in zip(targets.split([op.numel for op in operands]), operands)]
    _rank_below(ctx, bias, [c for c in channels if c is not None])
    replacement = {}
    for op, channel in zip(operands, channels):
        if channel is not None:
            ids = ctx.graph.new_neurons(op.shape, layer=layer, channel=channel)
        else:  # channels of their own: one per parameter (per distinct element of a constant tensor)
            key = op.index if op.index is not None else _element_key(op.values)
            ids = ctx.graph.new_neurons(op.shape, layer=layer, channel_key=key)
        carried = {"param": op.index} if op.index is not None else {"weight": op.values.double()}
        ctx.graph.add_block(PairEdges(bias, ids, EdgeType.BIAS, layer, ctx.source(), **carried))
        replacement[id(op.leaf)] = Neurons(ids)
    return _replace(args, replacement), _replace(kwargs, replacement)


def _per_sample(ctx: LoweringContext, leaf: Any) -> _ConstantOperand:
    """The operand's values for one sample: it must be the same for every sample."""
    tensor = leaf.index if isinstance(leaf, Params) else leaf
    if tensor.dim() == 0 or tensor.shape[0] != ctx.batch_size or not bool((tensor == tensor[:1]).all()):
        what = f"parameter '{leaf.name}'" if isinstance(leaf, Params) else "the constant tensor"
        raise ctx.fail(
            f"expected {what} to be expanded over the batch where it joins activations (shape [batch, ...], "
            f"equal for every sample; got shape {tuple(tensor.shape)} with batch size {ctx.batch_size}); "
            "write e.g. torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)")
    if isinstance(leaf, Params):
        return _ConstantOperand(leaf, tensor[0], None)
    return _ConstantOperand(leaf, None, tensor[0])


def _element_key(values: torch.Tensor) -> torch.Tensor:
    """An id per element of ``values`` that repeats along the dims ``values`` is constant along (expanded dims)."""
    key = torch.arange(values.numel()).view(values.shape)
    for d, size in enumerate(values.shape):
        if size > 1 and bool((values == values.narrow(d, 0, 1)).all()):
            key = key.narrow(d, 0, 1).expand(values.shape)
    return key


def _rank_below(ctx: LoweringContext, bias: torch.Tensor, channels: list) -> None:
    """Order the constant's channel just below the lowest-ranked of the (older) ``channels`` it feeds."""
    rank = ctx.graph.channels.column("rank")
    own = ctx.graph.channel_of(bias)
    lowest = min((float(rank[c].min()) for c in channels), default=float(rank[own]))
    if lowest < float(rank[own]):
        ctx.graph.set_channel_attr(own, "rank", lowest - 0.5)


def _relay_activations(ctx: LoweringContext, layer: int, args, kwargs):
    """Copy the op's activations into fresh plain-sum channels (weight-1 SKIP edges), one per old channel.

    Returns the new args, kwargs and ``remap`` (old channel id -> its copy's channel id).
    """
    operands = list({id(v): v for v in _leaves([args, kwargs]) if isinstance(v, Neurons)}.values())
    unique, inverse = torch.unique(torch.cat([n.ids.reshape(-1) for n in operands]), return_inverse=True)
    old = ctx.graph.channel_of(unique)
    copy = ctx.graph.new_neurons(unique.shape, layer=layer, channel_key=old, pos=ctx.graph.positions(unique))
    ctx.graph.add_block(PairEdges(unique, copy, EdgeType.SKIP, layer, ctx.source()))
    remap = torch.arange(ctx.graph.num_channels)
    remap[old] = ctx.graph.channel_of(copy)
    parts = copy[inverse].split([n.ids.numel() for n in operands])
    replacement = {id(n): Neurons(part.view(n.shape)) for n, part in zip(operands, parts)}
    return _replace(args, replacement), _replace(kwargs, replacement), remap


def _fibre_channels(ctx: LoweringContext, node, args, kwargs, run, operands: list) -> torch.Tensor:
    """Per constant value (flat, operand after operand): the channel it lines up with, -1 for none.

    The op runs once on a probe sample in which activations hold their channel ids and
    constant values ``-(1 + slot)``; a value lines up with the channel shared by all
    activations in its fibre along the op's dim (every time it is placed).
    """
    sizes = [op.numel for op in operands]
    none = torch.full((sum(sizes),), -1, dtype=torch.long)
    if not _is_join(node):
        return none
    starts = torch.tensor([0] + sizes).cumsum(0).tolist()
    slots = {id(op.leaf): -(1 + torch.arange(start, start + op.numel).view(op.shape)).unsqueeze(0)
             for op, start in zip(operands, starts)}
    probe = lambda v: ctx.graph.channel_of(v.ids).unsqueeze(0) if isinstance(v, Neurons) else v  # noqa: E731
    try:
        result = run(ctx, node, _replace(args, slots, probe), _replace(kwargs, slots, probe))
    except Exception:  # noqa: BLE001 - the op does not run on one probe sample: no alignment
        return none
    _, dim = ctx.bind(node, "tensors", dim=0)
    dim = int(dim) % result.dim()
    if dim == 0:
        return none  # joined along the batch dim: decoding the op reports it
    fibres = result.movedim(dim, -1).reshape(-1, result.shape[dim])
    is_channel = fibres >= 0
    low = torch.where(is_channel, fibres, torch.iinfo(torch.long).max).amin(1)
    high = torch.where(is_channel, fibres, -1).amax(1)
    shared = torch.where(is_channel.any(1) & (low == high), low, -1)
    row_of = torch.arange(fibres.shape[0])[:, None].expand_as(fibres)
    slot, channel = -fibres[~is_channel] - 1, shared[row_of[~is_channel]]
    low = torch.full_like(none, torch.iinfo(torch.long).max).scatter_reduce(0, slot, channel, "amin")
    high = none.clone().scatter_reduce(0, slot, channel, "amax")
    return torch.where(low == high, high, -1)


def _plain_sum(ctx: LoweringContext, channels: torch.Tensor) -> torch.Tensor:
    """Which ``channels`` (-1: none) are weighted sums without activation, so a constant value can join them."""
    ch = channels.clamp(min=0)
    table = ctx.graph.channels
    plain = (table.column("op")[ch] == NodeOp.SUM) & (table.column("activation")[ch] == Activation.IDENTITY)
    return plain & (channels >= 0)

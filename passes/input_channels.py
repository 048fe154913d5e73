"""How a network input's elements group into parameter-graph nodes.

Input neurons are never permuted, but the layer that first reads an input
decides which of its elements must share a node: a convolution needs all
positions of one input channel on one node, a dense layer applied token-wise
needs all tokens of one feature on one node (as ``grid_sample`` needs all
points' coordinates along one axis), and a dense layer reading the input
flattened (an MLP on images) gets one node per element. Elements the layer
never reads get one node per index along the dim its channels follow.

The first reading layer is found by following the input through pure
bookkeeping ops (views, transposes, flatten, dropout) and through elementwise
ops that keep its shape (``x - x.mean(1, keepdim=True)``, an activation):
those create neurons that mirror the input's channels, so they decide nothing.
Reductions (``x.mean(1)``, a set pooling) decide nothing either: they are
passed over in favour of another reader, and only decide when nothing else
reads the input. The bookkeeping ops are then run on a probe input holding
each element's own index (elementwise ops pass it through unchanged), which
tells exactly which input element lands on which channel of that layer,
whatever transposes or reshapes happened on the way.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from gmnfx.context import LoweringContext, source_line
from gmnfx.errors import LoweringError
from gmnfx.ir import META_MODULE_PATH, META_TENSOR, META_VALUE, Constant, TensorInfo
from gmnfx.passes.lowering import elementwise
from gmnfx.passes.lowering.embedding import embedding_vocabulary
from gmnfx.passes.lowering.shape import lower_bookkeeping, lower_identity, lower_metadata
from gmnfx.registry import lookup_lowering, method

__all__ = ["input_channels", "token_vocabulary"]

_LAST_DIM_CONSUMERS = (nn.Linear, nn.LayerNorm, F.linear, F.layer_norm,
                       torch.ops.aten.linear.default, torch.ops.aten.layer_norm.default)
_LAST_DIM_CONSUMERS += (F.grid_sample, torch.ops.aten.grid_sampler.default)  # sample points: one node per axis
_LAST_DIM_CONSUMERS += (torch.addmm, torch.ops.aten.addmm.default)
_LAST_DIM_CONSUMERS += (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer,  # token-wise
                        nn.TransformerEncoder, nn.TransformerDecoder)
_PASS_THROUGH = (lower_bookkeeping, lower_identity)
_ELEMENTWISE_RULES = elementwise.__name__  # every rule registered there is elementwise
_REDUCTIONS = ("mean", "sum", "amax", "max")  # their function and ATen forms share the method's rule


def input_channels(ctx: LoweringContext, node: fx.Node, shape: tuple[int, ...]) -> dict:
    """``new_neurons`` keyword arguments (``channel_dim`` or ``channel_key``) for input ``node``."""
    if not shape:
        return {}
    consumer, fed, passed = _first_consumer(ctx, node)
    probe = _probe(ctx, node, fed, shape, passed) if consumer is not None else None
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
    from_input = probe >= 0  # positions holding a class token or another constant read no input element
    key[probe[from_input]] = channel_of_position[from_input]
    unread = key < 0  # elements the layer never reads: one node per index along the same input dim
    key[unread] = int(key.max()) + 1 + torch.unique(_index_along(shape, axis)[unread], return_inverse=True)[1]
    key = key.view(shape)
    for dim in range(len(shape)):  # the common case: channels are one input dim
        along = torch.arange(shape[dim]).view([-1 if d == dim else 1 for d in range(len(shape))])
        if torch.equal(key, along.expand(shape)):
            return {"channel_dim": dim}
    return {"channel_key": key}


def _index_along(shape: tuple[int, ...], dim: int) -> torch.Tensor:
    """Each element's index along ``dim`` of ``shape``, flat in element order."""
    view = [1] * len(shape)
    view[dim] = -1
    return torch.arange(shape[dim]).view(view).expand(shape).reshape(-1)


def _first_consumer(ctx: LoweringContext, node: fx.Node):
    """The first op reading ``node`` through bookkeeping and shape-keeping elementwise ops, the node whose
    value it reads, and the elementwise nodes passed on the way (each mapped to its operand on the path)."""
    frontier, passed, seen, skipped = [node], {}, {node}, None
    while frontier:
        current = frontier.pop(0)
        for user in current.users:
            if user.op not in ("call_module", "call_function", "call_method") or user in seen:
                continue
            seen.add(user)
            rule = lookup_lowering(ctx.rule_key(user))
            if rule in _PASS_THROUGH:
                frontier.append(user)
            elif _keeps_shape_elementwise(rule, user, current):
                passed[user] = current
                frontier.append(user)
            elif _is_reduction(rule):
                skipped = skipped or (ctx.rule_key(user), current)
            elif rule is not lower_metadata:
                return ctx.rule_key(user), current, passed
    return (*skipped, passed) if skipped else (None, node, passed)


def _keeps_shape_elementwise(rule, user: fx.Node, operand: fx.Node) -> bool:
    """Whether ``user`` is an elementwise op whose output has the shape of ``operand`` (no broadcast growth)."""
    if getattr(rule, "__module__", None) != _ELEMENTWISE_RULES:
        return False
    out, arg = user.meta.get(META_TENSOR), operand.meta.get(META_TENSOR)
    return isinstance(out, TensorInfo) and isinstance(arg, TensorInfo) and out.shape == arg.shape


def _is_reduction(rule) -> bool:
    return any(rule is lookup_lowering(method(name)) for name in _REDUCTIONS)


def _probe(ctx: LoweringContext, node: fx.Node, fed: fx.Node, shape: tuple[int, ...],
           passed: Optional[dict] = None) -> Optional[torch.Tensor]:
    """Index of the input element at each position of ``fed`` (per sample), or None if it cannot be run.

    The elementwise nodes in ``passed`` forward the probe of their operand on the path unchanged.
    """
    passed = passed or {}
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
                elif current in passed:
                    interpreter.env[current] = interpreter.env[passed[current]]
                elif isinstance(current.meta.get(META_VALUE), Constant):
                    interpreter.env[current] = _not_an_element(current.meta[META_VALUE].value)
                elif current.op == "placeholder":
                    info = current.meta[META_TENSOR]
                    interpreter.env[current] = torch.zeros(info.shape, dtype=torch.float64)
                elif current.op == "get_attr":
                    interpreter.env[current] = _not_an_element(interpreter.run_node(current))
                else:
                    interpreter.env[current] = interpreter.run_node(current)
    except Exception:  # noqa: BLE001 - fall back to the simple rule
        return None
    value = interpreter.env.get(fed)
    if not isinstance(value, torch.Tensor) or value.dim() == 0:
        return None
    value = torch.nan_to_num(value.double(), nan=-1.0)  # -1: a parameter or constant, no input element
    if value.shape[0] != ctx.batch_size and value.shape[0] % ctx.batch_size == 0:
        return value[: value.shape[0] // ctx.batch_size].round().long()  # batch merged into dim 0 (view(-1, D))
    return value[0].round().long()


def _not_an_element(value):
    """A parameter's or constant's values in the probe: NaN, which no input element index equals."""
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return torch.full(value.shape, float("nan"), dtype=torch.float64)
    return value


def _ancestors(node: fx.Node) -> set:
    seen, stack = set(), [node]
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(current.all_input_nodes)
    return seen


_CASTS = ("to", "type_as", "float", "double", "half")  # lower_metadata's pass-through methods


def token_vocabulary(ctx: LoweringContext, node: fx.Node) -> Optional[int]:
    """One-hot width of integer input ``node`` (token ids): the largest vocabulary of the embeddings reading it.

    None for floating-point (and boolean) inputs. An integer input may reach
    embeddings only, through bookkeeping ops and casts; anything else reading
    it raises a LoweringError naming that reader.
    """
    dtype = node.meta[META_TENSOR].dtype
    if dtype.is_floating_point or dtype.is_complex or dtype is torch.bool:
        return None
    sizes, frontier, seen = [], [node], {node}
    while frontier:
        current = frontier.pop(0)
        for user in current.users:
            if user in seen or isinstance(user.meta.get(META_VALUE), Constant):
                continue
            seen.add(user)
            vocab = embedding_vocabulary(ctx, user, current) if user.op != "output" else None
            rule = lookup_lowering(ctx.rule_key(user)) if user.op.startswith("call_") else None
            if vocab is not None:
                sizes.append(vocab)
            elif rule in _PASS_THROUGH or (rule is lower_metadata and user.target in _CASTS):
                frontier.append(user)
            elif rule is not lower_metadata:
                raise _token_reader_error(node, user)
    if not sizes:
        raise LoweringError(f"integer input '{node.name}' (token ids) is read by no embedding; expected an "
                            "nn.Embedding / F.embedding to read it, because gmnfx one-hot encodes integer inputs "
                            "over the embedding's vocabulary. Pass a float tensor for other inputs")
    return max(sizes)


def _token_reader_error(node: fx.Node, user: fx.Node) -> LoweringError:
    line = source_line(user)
    path = user.meta.get(META_MODULE_PATH) or "<root>"
    return LoweringError(
        f"integer input '{node.name}' (token ids) is read by {user.format_node()} in module '{path}'; expected "
        "it to reach embeddings only (nn.Embedding, F.embedding), possibly through views, slicing and "
        "concatenation: gmnfx one-hot encodes integer inputs over the embedding's vocabulary, so their values "
        "cannot enter other ops. Pass such values as a separate float input"
        + (f"\n  source: {line}" if line else ""))

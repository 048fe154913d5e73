"""Lowering rules: neuron bookkeeping (reshape, permute, slice, concatenate, ...).

These ops move values around without computing anything, so they create no
neurons: the rule runs the user's op itself on the *id tensors* of its inputs
and the result says which neuron each output element is. To keep samples
apart, sample ``b`` of the batched id tensor holds ``ids + b * num_neurons``;
an op that mixes samples (a reshape across the batch dim) is caught because
its output no longer decodes to one sample per row.

Dropout (eval mode) and identity modules return their input unchanged;
``size()``/``dim()`` and friends are constants from shape propagation.
"""
from __future__ import annotations

import operator
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from torch.utils import _pytree as pytree

from gmnfx.context import LoweringContext
from gmnfx.ir import Constant, Neurons, Params
from gmnfx.registry import method, register_lowering

__all__ = ["lower_bookkeeping"]

aten = torch.ops.aten

_BOOKKEEPING_METHODS = ("view", "reshape", "flatten", "permute", "transpose", "contiguous", "squeeze", "unsqueeze",
                        "expand", "expand_as", "split", "chunk", "unbind", "narrow", "select", "movedim", "swapaxes",
                        "unflatten", "repeat", "t", "clone", "view_as", "reshape_as", "roll", "flip",
                        "index_select", "gather")
_BOOKKEEPING_FUNCTIONS = (torch.flatten, torch.reshape, torch.permute, torch.transpose, torch.squeeze,
                          torch.unsqueeze, torch.cat, torch.concat, torch.stack, torch.split, torch.chunk,
                          torch.unbind, torch.narrow, torch.movedim, torch.swapaxes, torch.unflatten, torch.roll,
                          torch.flip, torch.t, torch.index_select, torch.gather, operator.getitem)
_BOOKKEEPING_ATEN = (aten.view.default, aten.reshape.default, aten._unsafe_view.default, aten.flatten.using_ints,
                     aten.permute.default, aten.transpose.int, aten.t.default, aten.clone.default, aten.alias.default,
                     aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default, aten.unsqueeze.default,
                     aten.expand.default, aten.cat.default, aten.stack.default, aten.split.Tensor,
                     aten.split_with_sizes.default, aten.chunk.default, aten.unbind.int, aten.slice.Tensor,
                     aten.select.int, aten.narrow.default, aten.contiguous.default, aten.unflatten.int,
                     aten.movedim.int, aten.roll.default, aten.flip.default, aten.lift_fresh_copy.default,
                     aten.index.Tensor, aten.index_select.default, aten.gather.default)
_INDEXING = {operator.getitem, torch.index_select, torch.gather, aten.index.Tensor, aten.index_select.default,
             aten.gather.default, "index_select", "gather"}


def _batched(ctx: LoweringContext, value: Any, found: list) -> Any:
    """Replace Neurons by batch-encoded id tensors and Params by their index tensors."""
    if isinstance(value, Neurons):
        found.append(value)
        offsets = torch.arange(ctx.batch_size).view(-1, *([1] * value.ids.dim())) * ctx.graph.num_neurons
        return value.ids.unsqueeze(0) + offsets
    if isinstance(value, Params):
        found.append(value)
        return value.index
    if isinstance(value, (list, tuple)):
        return type(value)(_batched(ctx, v, found) for v in value)
    return value


def _decode(ctx: LoweringContext, result: Any, kind: type, name: str, fusable: bool) -> Any:
    if isinstance(result, (list, tuple)):
        return tuple(_decode(ctx, r, kind, name, fusable) for r in result)
    if not isinstance(result, torch.Tensor):
        return Constant(result)
    if kind is Params:
        return Params(result, name)
    n = ctx.graph.num_neurons
    if result.dim() == 0 or result.shape[0] != ctx.batch_size:
        raise ctx.fail(f"this op moves the batch dimension (output shape {tuple(result.shape)}, batch size "
                       f"{ctx.batch_size}); gmnfx needs every activation to keep the batch dim first")
    offsets = torch.arange(ctx.batch_size).view(-1, *([1] * (result.dim() - 1))) * n
    decoded = result - offsets
    if bool(((decoded < 0) | (decoded >= n)).any()) or not bool((decoded == decoded[:1]).all()):
        raise ctx.fail("this op mixes elements of different samples (it reshapes or indexes across the "
                       "batch dimension); gmnfx graphs describe one sample at a time")
    return Neurons(decoded[0], fusable=fusable)


def _call(ctx: LoweringContext, node, args, kwargs):
    if node.op == "call_module":
        return ctx.module()(*args, **kwargs)
    if node.op == "call_method":
        self_arg, *rest = args
        return getattr(self_arg, node.target)(*rest, **kwargs)
    return node.target(*args, **kwargs)


@register_lowering(nn.Flatten, nn.Unflatten, *_BOOKKEEPING_FUNCTIONS, *_BOOKKEEPING_ATEN,
                   *[method(m) for m in _BOOKKEEPING_METHODS])
def lower_bookkeeping(ctx: LoweringContext, node) -> Any:
    """Apply the op to the id tensors of its inputs (see module docstring)."""
    found: list = []
    if node.target in _INDEXING:
        index_values = [ctx.value(a) for a in list(node.args[1:]) + list(node.kwargs.values())]
        if any(isinstance(v, Neurons) for v in pytree.tree_leaves(index_values)):
            raise ctx.fail("indexing with positions computed from the input is data-dependent; "
                           "gmnfx needs constant indices")
    args = _batched(ctx, ctx.value(list(node.args)), found)
    kwargs = {k: _batched(ctx, ctx.value(v), found) for k, v in node.kwargs.items()}
    kinds = {type(v) for v in found}
    if kinds == {Neurons, Params}:
        raise ctx.fail("this op combines activations and parameters (e.g. concatenating a learned token); "
                       "that needs its own lowering rule")
    if not kinds:
        raise ctx.fail("expected an activation or parameter operand")
    kind = kinds.pop()
    result = _call(ctx, node, args, kwargs)
    single_reader = len(found) == 1 and len(node.all_input_nodes) >= 1 and len(node.all_input_nodes[0].users) == 1
    fusable = kind is Neurons and single_reader and found[0].fusable
    name = found[0].name if kind is Params else ""
    return _decode(ctx, result, kind, name, fusable)


@register_lowering(nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                   F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, aten.dropout.default,
                   method("detach"), torch.detach, aten.detach.default)
def lower_identity(ctx: LoweringContext, node) -> Any:
    """Identity in eval mode: the output is the input's value."""
    value = ctx.value(node.args[0] if node.args else next(iter(node.kwargs.values())))
    if isinstance(value, Neurons):
        return Neurons(value.ids, fusable=value.fusable and len(node.all_input_nodes[0].users) == 1)
    return value


@register_lowering(method("size"), method("dim"), method("numel"), getattr, torch.numel, aten.sym_size.int,
                   method("type_as"), method("to"), method("float"), method("double"), method("half"))
def lower_metadata(ctx: LoweringContext, node) -> Any:
    """Shape queries are constants; dtype/device casts pass activations through unchanged."""
    if node.op == "call_method" and node.target in ("type_as", "to", "float", "double", "half"):
        return ctx.value(node.args[0])
    target = node.target
    info = ctx.tensor_info(node.args[0]) if isinstance(node.args[0], type(node)) else None
    if target == "size" or target is aten.sym_size.int:
        sizes = list(info.shape)
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        return Constant(torch.Size(sizes) if dim is None else sizes[dim])
    if target == "dim":
        return Constant(len(info.shape))
    if target == "numel" or target is torch.numel:
        return Constant(int(torch.Size(info.shape).numel()))
    if target is getattr:
        attr = node.args[1]
        if attr == "shape":
            return Constant(torch.Size(info.shape))
        if attr in ("ndim",):
            return Constant(len(info.shape))
        if attr in ("dtype", "device"):
            return Constant(getattr(torch.empty(0, dtype=info.dtype), attr))
        raise ctx.fail(f"attribute '.{attr}' of an activation is not supported")
    raise ctx.fail(f"unexpected metadata op {target}")

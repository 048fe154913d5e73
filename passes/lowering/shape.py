"""Lowering rules: neuron bookkeeping (reshape, permute, slice, concatenate, ...).

These ops move values around without computing anything, so they create no
neurons: the rule runs the user's op itself on the *id tensors* of its inputs
and the result says which neuron each output element is. To keep samples
apart, sample ``b`` of the batched id tensor holds ``ids + b * num_neurons``;
an op that mixes samples (a reshape across the batch dim) is caught because
its output no longer decodes to one sample per row.

A result may also merge the batch dim with the next one (``x.view(-1, D)`` of
``[batch, T, D]``, as HuggingFace's ``Conv1D`` does): it decodes when sample
``b`` fills rows ``b*T .. b*T + T - 1``, and becomes a ``Neurons(merged=True)``
that row-wise rules accept and a later ``view(batch, T, ...)`` un-merges.

Dropout (eval mode) and identity modules return their input unchanged;
``size()``/``dim()`` and friends are constants from shape propagation.
"""
from __future__ import annotations

import operator
from dataclasses import replace
from typing import Any, Optional

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from torch.utils import _pytree as pytree

from gmnfx.context import LoweringContext
from gmnfx.errors import LoweringError
from gmnfx.ir import META_TENSOR, META_VALUE, Constant, Neurons, Params
from gmnfx.registry import method, register_lowering

from .learned_constants import join_learned_constants, joins_constants

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
                     aten.index.Tensor, aten.index_select.default, aten.gather.default,
                     aten.numpy_T.default, aten.mT.default)
_TRANSPOSE_ATTRIBUTES = ("T", "mT")
_META_BATCH_TWO = "gmnfx.sizes_at_batch_two"  # graph_module.meta: node -> its tensor-free value on 2 samples
_INDEXING = {operator.getitem, torch.index_select, torch.gather, aten.index.Tensor, aten.index_select.default,
             aten.gather.default, "index_select", "gather"}


def _batched(ctx: LoweringContext, value: Any, found: list, batch: Optional[int] = None) -> Any:
    """Replace Neurons by batch-encoded id tensors and Params by their index tensors.

    Sample ``b`` holds ``ids + b * num_neurons``: ``[batch, *ids.shape]``, or for a
    merged value (``ids`` is ``[k, ...]``) ``[batch * k, ...]`` with sample ``b`` in
    rows ``b*k .. b*k + k - 1``. ``batch`` defaults to the example batch size.
    """
    batch = ctx.batch_size if batch is None else batch
    if isinstance(value, Neurons):
        found.append(value)
        offsets = torch.arange(batch).view(-1, *([1] * value.ids.dim())) * ctx.graph.num_neurons
        encoded = value.ids.unsqueeze(0) + offsets
        return encoded.flatten(0, 1) if value.merged else encoded
    if isinstance(value, Params):
        found.append(value)
        return value.index
    if isinstance(value, (list, tuple)):
        return type(value)(_batched(ctx, v, found, batch) for v in value)
    return value


def _decode(ctx: LoweringContext, result: Any, kind: type, name: str, fusable: bool,
            batch: Optional[int] = None) -> Any:
    """The values of a bookkeeping op's result: Neurons (merged or not), Params or constants."""
    if isinstance(result, (list, tuple)):
        return tuple(_decode(ctx, r, kind, name, fusable, batch) for r in result)
    if not isinstance(result, torch.Tensor):
        return Constant(result)
    if kind is Params:
        return Params(result, name)
    ids, merged = _decode_ids(ctx, result, ctx.batch_size if batch is None else batch)
    return Neurons(ids, fusable=fusable, merged=merged)


def _decode_ids(ctx: LoweringContext, result: torch.Tensor, batch: int) -> tuple[torch.Tensor, bool]:
    """Per-sample ids of a batch-encoded tensor, and whether its batch dim is merged with the next.

    ``result`` must be ``[batch * k, ...]`` with sample ``b`` in rows ``b*k .. b*k + k - 1``;
    ``k == 1`` is the usual ``[batch, ...]`` layout.
    """
    n = ctx.graph.num_neurons
    if result.dim() == 0 or result.shape[0] == 0 or result.shape[0] % batch:
        raise ctx.fail(f"this op moves the batch dimension (output shape {tuple(result.shape)}, batch size "
                       f"{batch}); gmnfx needs every activation to keep the batch dim first, alone or "
                       "merged with the next dim (the [batch*T, ...] of x.view(-1, D))")
    rows = result.shape[0] // batch
    blocks = result.reshape(batch, rows, *result.shape[1:])
    decoded = blocks - torch.arange(batch).view(-1, *([1] * (blocks.dim() - 1))) * n
    if bool(((decoded < 0) | (decoded >= n)).any()) or not bool((decoded == decoded[:1]).all()):
        raise ctx.fail("this op mixes elements of different samples (it reshapes or indexes across the "
                       "batch dimension); gmnfx graphs describe one sample at a time")
    return (decoded[0, 0], False) if rows == 1 else (decoded[0], True)


def _check_batch_layout(ctx: LoweringContext, node, decoded: Any) -> None:
    """With an example batch of 1, re-run the op on a batch of 2 to tell merged from moved batch dims.

    With one sample, ``[T, D]`` from ``x.view(-1, D)`` and from ``x.squeeze(0)`` or
    ``x.transpose(0, 1)`` look the same; with two, only a merge keeps the samples in
    contiguous row blocks. In a torch.fx graph, size arguments (``view(b * t, d)``)
    take their values from a run of the model on 2 samples. torch.export writes
    sizes into the graph as the example's numbers, so there only ATen ops without
    size arguments (``transpose.int``, ``squeeze.dims``) are re-run. An op that fails
    on 2 samples is left as decoded.
    """
    aten_op = hasattr(node.target, "_schema")
    sizes = None if aten_op else _sizes_at_batch_two(ctx)
    if (aten_op and "SymInt" in str(node.target._schema)) or (not aten_op and sizes is None):
        return

    def at_batch_two(arg: fx.Node) -> Any:
        value = arg.meta.get(META_VALUE)
        if isinstance(value, Constant):
            return sizes.get(arg, value.value) if sizes else value.value
        return _batched(ctx, value, [], batch=2)

    args, kwargs = fx.node.map_arg((node.args, node.kwargs), at_batch_two)
    try:
        result = _call(ctx, node, list(args), kwargs)
    except Exception:  # noqa: BLE001 - the op fixes the batch size: nothing to compare
        return
    try:
        again = _decode(ctx, result, Neurons, "", False, batch=2)
    except LoweringError:
        again = None
    if not _same_layout(decoded, again):
        raise ctx.fail("this op does not keep the batch dim first: on 2 samples it moves or mixes the batch dim "
                       "(like squeeze(0), unsqueeze(0) or transpose(0, 1)), which an example batch of 1 cannot "
                       "show; gmnfx graphs describe one sample at a time")


def _sizes_at_batch_two(ctx: LoweringContext) -> Optional[dict]:
    """Each tensor-free node value (sizes) when the model runs on 2 samples (zeros); None if it cannot run."""
    gm = ctx.graph_module
    if _META_BATCH_TWO not in gm.meta:
        interpreter = fx.Interpreter(gm)
        sizes = {}
        try:
            with torch.no_grad():
                for current in gm.graph.nodes:
                    if current.op == "output":
                        break
                    if current.op == "placeholder":
                        value = _sample_pair(current)
                    else:
                        value = interpreter.run_node(current)
                    interpreter.env[current] = value
                    if not any(isinstance(v, torch.Tensor) for v in pytree.tree_leaves(value)):
                        sizes[current] = value
        except Exception:  # noqa: BLE001 - a model that only runs on its example batch size
            sizes = None
        gm.meta[_META_BATCH_TWO] = sizes
    return gm.meta[_META_BATCH_TWO]


def _sample_pair(placeholder: fx.Node) -> Any:
    value = placeholder.meta.get(META_VALUE)
    if isinstance(value, Constant):
        return value.value
    info = placeholder.meta[META_TENSOR]
    return torch.zeros((2, *info.sample_shape), dtype=info.dtype)


def _same_layout(a: Any, b: Any) -> bool:
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(_same_layout(x, y) for x, y in zip(a, b))
    if isinstance(a, Neurons):
        return isinstance(b, Neurons) and a.merged == b.merged and torch.equal(a.ids, b.ids)
    return not isinstance(b, (Neurons, tuple))


def _involves_merged(values: Any) -> bool:
    return any(isinstance(v, Neurons) and v.merged for v in pytree.tree_leaves(values))


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
    arg_values, kwarg_values = ctx.value(list(node.args)), {k: ctx.value(v) for k, v in node.kwargs.items()}
    if joins_constants(node, [arg_values, kwarg_values]):  # a class token joining a sequence
        arg_values, kwarg_values = join_learned_constants(ctx, node, arg_values, kwarg_values, _call)
    args = _batched(ctx, arg_values, found)
    kwargs = {k: _batched(ctx, v, found) for k, v in kwarg_values.items()}
    kinds = {type(v) for v in found}
    if not kinds:
        raise ctx.fail("expected an activation or parameter operand")
    kind = kinds.pop()
    result = _call(ctx, node, args, kwargs)
    single_reader = len(found) == 1 and len(node.all_input_nodes) >= 1 and len(node.all_input_nodes[0].users) == 1
    fusable = kind is Neurons and single_reader and found[0].fusable
    name = found[0].name if kind is Params else ""
    decoded = _decode(ctx, result, kind, name, fusable)
    if kind is Neurons and ctx.batch_size == 1 and _involves_merged([found, decoded]):
        _check_batch_layout(ctx, node, decoded)
    return decoded


@register_lowering(nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                   F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, aten.dropout.default,
                   method("detach"), torch.detach, aten.detach.default)
def lower_identity(ctx: LoweringContext, node) -> Any:
    """Identity in eval mode: the output is the input's value."""
    value = ctx.value(node.args[0] if node.args else next(iter(node.kwargs.values())))
    if isinstance(value, Neurons):
        return replace(value, fusable=value.fusable and len(node.all_input_nodes[0].users) == 1)
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
        value = ctx.value(node.args[0])
        if attr in ("values", "indices") and isinstance(value, tuple) and len(value) == 2:
            if value[attr == "indices"] is None:
                raise ctx.fail("the indices of x.max(dim) are data-dependent (an argmax); gmnfx graphs can use "
                               "only its values")
            return value[attr == "indices"]  # a (values, indices) result such as x.max(dim)
        if attr in _TRANSPOSE_ATTRIBUTES and isinstance(value, Params):
            return Params(getattr(value.index, attr), value.name)  # W.T, W.mT: a view of the parameter
        what = "a parameter" if isinstance(value, Params) else "an activation"
        raise ctx.fail(f"attribute '.{attr}' of {what} is not supported")
    raise ctx.fail(f"unexpected metadata op {target}")

"""What a lowering rule sees: the node's values, its module, and the neuron graph."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Hashable, Optional

import torch.fx as fx
import torch.nn as nn
from torch.utils import _pytree as pytree

from gmnfx.errors import LoweringError
from gmnfx.ir import META_LAYER, META_MODULE_PATH, META_TENSOR, META_VALUE, Constant, Neurons, Params, TensorInfo
from gmnfx.neuron_graph import LayerInfo, NeuronGraph
from gmnfx.params import ParamTable
from gmnfx.registry import Method, lookup_lowering

__all__ = ["LoweringContext", "source_line", "accept_merged_batch"]

_MISSING = object()


@dataclass(frozen=True)
class _MergedBatchPolicy:
    when: Optional[Callable]  # (ctx, node) -> bool: whether this call is row-wise; None: always
    sets_flag: bool  # the rule decides its output's ``merged`` flag itself (bookkeeping)


_MERGED_BATCH_RULES: list[tuple[Hashable, _MergedBatchPolicy]] = []


def accept_merged_batch(*targets: Hashable, when: Optional[Callable] = None, sets_flag: bool = False) -> None:
    """Declare that the rules of ``targets`` may read activations whose batch dim is merged.

    A merged activation (``Neurons.merged``, e.g. ``x.view(-1, D)`` of ``[batch, T, D]``)
    holds ``k`` rows of each sample in one leading ``batch * k`` dim. A row-wise rule
    (dense layers, elementwise ops, a norm over the last dim) treats those rows like
    any other per-sample dim and is correct unchanged; the context marks its output
    merged. Every other rule reading a merged value fails with a clear error.

    Args:
        *targets: registry keys whose *current* rules are accepted (looked up on use).
        when: ``(ctx, node) -> bool``, for rules row-wise only on some calls (``x @ W``
            but not ``W @ x``); default None: always.
        sets_flag: the rule sets its outputs' ``merged`` flags itself (neuron
            bookkeeping, which can also un-merge); default False.
    """
    policy = _MergedBatchPolicy(when, sets_flag)
    _MERGED_BATCH_RULES.extend((target, policy) for target in targets)


def _merged_batch_policy(rule) -> Optional[_MergedBatchPolicy]:
    for target, policy in _MERGED_BATCH_RULES:
        if lookup_lowering(target) is rule:
            return policy
    return None


def source_line(node: fx.Node) -> str:
    """The user's source line that produced ``node`` (last frame of its stack trace), or ""."""
    trace = node.meta.get("stack_trace") or ""
    lines = [line.strip() for line in trace.strip().splitlines() if line.strip()]
    if len(lines) >= 2 and lines[-2].startswith("File "):
        return f"{lines[-2]}: {lines[-1]}"
    return lines[-1] if lines else ""


@dataclass
class LoweringContext:
    """Per-compilation state handed to every lowering rule."""

    graph_module: fx.GraphModule
    graph: NeuronGraph
    params: ParamTable
    batch_size: int
    compact: bool = False  # building a parameter graph: rules may skip neurons only their own edges read
    node: Optional[fx.Node] = None
    rule_name: str = ""
    _layer: Optional[int] = field(default=None, repr=False)
    _merged: Optional[tuple[int, _MergedBatchPolicy]] = field(default=None, repr=False)

    # ------------------------------------------------------------------ node context
    def begin(self, node: fx.Node, rule_name: str) -> None:
        self.node, self.rule_name, self._layer, self._merged = node, rule_name, None, None
        self._merged = self._check_merged_inputs(node)

    def _check_merged_inputs(self, node: fx.Node) -> Optional[tuple[int, _MergedBatchPolicy]]:
        """``(k, policy)`` when the node reads merged ``[batch * k, ...]`` activations its rule accepts."""
        leaves = pytree.tree_leaves([a.meta.get(META_VALUE) for a in node.all_input_nodes])
        rows = {value.ids.shape[0] for value in leaves if isinstance(value, Neurons) and value.merged}
        if not rows:
            return None
        policy = _merged_batch_policy(lookup_lowering(self.rule_key(node)))
        if policy is None or (policy.when is not None and not policy.when(self, node)):
            raise self.fail(
                "this op cannot read an activation whose batch dim is merged with its first dim (the "
                "[batch*T, ...] of x.view(-1, D) or x.flatten(0, 1)): gmnfx supports merged values only in "
                "row-wise ops (dense layers, addmm, x @ W, elementwise ops, activations, a norm over the "
                "last dim); reshape it back to [batch, T, ...] before this op")
        if len(rows) > 1:
            raise self.fail(f"expected the merged activations of one op to have the same rows per sample "
                            f"(got {sorted(rows)}); each would need a different batch layout")
        return rows.pop(), policy

    @property
    def layer(self) -> int:
        """This node's layer index, allocated the first time a rule asks for it."""
        if self._layer is None:
            self._layer = self.graph.add_layer(
                LayerInfo(self.node.name, self.rule_name, self.module_path, source_line(self.node))
            )
            self.node.meta[META_LAYER] = self._layer
        return self._layer

    def sublayer(self, suffix: str, kind: str, submodule: str = "") -> int:
        """Start a new layer inside the current node (a composite rule's q/k/v projection, ...).

        ``ctx.layer`` returns it until the next call; the layer table lists it as
        ``<node>.<suffix>`` of kind ``kind`` in module ``<node's module>.<submodule>``.
        """
        path = ".".join(p for p in (self.module_path, submodule) if p)
        self._layer = self.graph.add_layer(LayerInfo(f"{self.node.name}.{suffix}", kind, path, source_line(self.node)))
        self.node.meta.setdefault(META_LAYER, self._layer)
        return self._layer

    @property
    def module_path(self) -> str:
        return self.node.meta.get(META_MODULE_PATH, "") if self.node is not None else ""

    @property
    def where(self) -> str:
        """``"relu (module 'block.act')"``: where the current node is, for error messages."""
        path = self.module_path or "<root>"
        return f"{self.node.format_node()} in module '{path}'"

    def source(self) -> str:
        return f"{self.node.name} ({self.module_path or '<root>'})"

    def fail(self, message: str) -> LoweringError:
        """A LoweringError that names the current node, module and source line."""
        line = source_line(self.node)
        return LoweringError(f"{message}\n  at {self.where}" + (f"\n  source: {line}" if line else ""))

    # ------------------------------------------------------------------ values
    def value(self, arg: Any) -> Any:
        """The lowered value of an argument: fx nodes resolve to their meta value, literals stay."""
        if isinstance(arg, fx.Node):
            value = arg.meta[META_VALUE]
            return value.value if isinstance(value, Constant) else value
        if isinstance(arg, (list, tuple)):
            return type(arg)(self.value(a) for a in arg)
        if isinstance(arg, slice):  # x[:, :T] with T = x.shape[1] from the graph
            return slice(self.value(arg.start), self.value(arg.stop), self.value(arg.step))
        return arg

    def neurons(self, arg: Any, what: str = "input") -> Neurons:
        value = self.value(arg)
        if not isinstance(value, Neurons):
            raise self.fail(f"expected the {what} to be an activation of the network (got {_kind(value)})")
        return value

    def params_or_none(self, arg: Any, what: str) -> Optional[Params]:
        """A parameter argument, None for ``None``; constants and activations are errors."""
        value = self.value(arg)
        if value is None or isinstance(value, Params):
            return value
        raise self.fail(
            f"expected the {what} to be a parameter of the model (got {_kind(value)}); "
            "gmnfx places parameters on edges, so weights computed from the input or from "
            "buffers need their own lowering rule"
        )

    def module(self, node: Optional[fx.Node] = None) -> nn.Module:
        node = node or self.node
        return self.graph_module.get_submodule(node.target)

    def rule_key(self, node: fx.Node):
        """The registry key of a call node: its module type, method name key or function/ATen op."""
        if node.op == "call_module":
            return type(self.module(node))
        if node.op == "call_method":
            return Method(node.target)
        return node.target

    def module_param(self, module: nn.Module, name: str) -> Optional[Params]:
        """The module's parameter ``name`` as a Params value (None if absent or None)."""
        tensor = getattr(module, name, None)
        if tensor is None:
            return None
        entry = self.params.entry_for(tensor)
        if entry is None:
            raise self.fail(f"'{name}' of {type(module).__name__} is not a registered parameter of the model")
        return Params(self.params.index_tensor(entry), entry.name)

    def tensor_info(self, node: Optional[fx.Node] = None) -> TensorInfo:
        node = node or self.node
        info = node.meta.get(META_TENSOR)
        if isinstance(info, tuple) and info and isinstance(info[0], TensorInfo):
            info = info[0]  # ops returning (values, indices) are described by their values
        if not isinstance(info, TensorInfo):
            raise self.fail("expected this op to produce a single tensor")
        return info

    def out_shape(self) -> tuple[int, ...]:
        """Per-sample shape of the current node's output, from shape propagation.

        For a row-wise op reading merged ``[batch * k, ...]`` activations, the merged
        per-sample shape ``(k, ...)``.
        """
        info = self.tensor_info()
        if self._merged is not None:
            rows = self._merged[0]
            if not info.shape or info.shape[0] != self.batch_size * rows:
                raise self.fail(
                    f"expected the output to keep the merged batch dim first (batch size {self.batch_size} "
                    f"times {rows} rows, got shape {tuple(info.shape)}); this op mixes samples")
            return (rows, *info.shape[1:])
        if not info.shape or info.shape[0] != self.batch_size:
            raise self.fail(
                f"expected the output to keep the batch dimension first (batch size {self.batch_size}, "
                f"got shape {tuple(info.shape)}); gmnfx needs every activation to be [batch, ...]"
            )
        return info.sample_shape

    def finish(self, value: Any) -> Any:
        """The rule's output, marked merged when a row-wise rule read merged activations.

        Checks that the output lines up with the traced ``[batch * k, ...]`` tensor, so
        a rule that moved rows across samples fails here instead of mis-wiring.
        """
        if self._merged is None or self._merged[1].sets_flag:
            return value
        rows = self._merged[0]
        shape = tuple(value.ids.shape) if isinstance(value, Neurons) else None
        traced = self.node.meta.get(META_TENSOR)
        traced = tuple(traced.shape) if isinstance(traced, TensorInfo) else None
        if not shape or shape[0] != rows or traced != (self.batch_size * rows, *shape[1:]):
            raise self.fail(
                f"expected this row-wise op to keep the merged batch dim first (per-sample rows {rows}, "
                f"batch size {self.batch_size}; got per-sample shape {shape} for a traced output of shape "
                f"{traced}); gmnfx graphs describe one sample at a time")
        return replace(value, merged=True)

    def bind(self, node: fx.Node, *names: str, **defaults: Any) -> list:
        """Values of the node's arguments by name: positional first, then keywords, then defaults."""
        order = list(names) + list(defaults)
        args = list(node.args)
        if len(args) > len(order):
            args = args[: len(order)]
        bound = dict(zip(order, args))
        for key, val in node.kwargs.items():
            if key in order:
                bound[key] = val
        out = []
        for name in order:
            if name in bound:
                out.append(self.value(bound[name]))
            elif name in defaults:
                out.append(defaults[name])
            else:
                raise self.fail(f"missing argument '{name}'")
        return out


def _kind(value: Any) -> str:
    if isinstance(value, Neurons):
        return "an activation"
    if isinstance(value, Params):
        return f"parameter '{value.name}'"
    if isinstance(value, Constant):
        return f"a constant {type(value.value).__name__}"
    return f"{type(value).__name__} {value!r}"[:80]

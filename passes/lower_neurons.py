"""Pass 3: neuron-level lowering.

Walks the traced graph in order and asks the registry for each op's lowering
rule. Rules read their inputs' :class:`~gmnfx.ir.Neurons` / :class:`~gmnfx.ir.Params`
values, create neurons and edge blocks in the :class:`~gmnfx.neuron_graph.NeuronGraph`,
and return the op's output value, stored under ``META_VALUE``.
"""
from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn as nn
from torch.utils import _pytree as pytree

import gmnfx.passes.lowering  # noqa: F401  (registers the built-in rules)
from gmnfx.passes.input_channels import input_channels, token_vocabulary
from gmnfx.context import LoweringContext, source_line
from gmnfx.errors import GmnfxError, LoweringError, UnsupportedOpError
from gmnfx.ir import META_MODULE_PATH, META_TENSOR, META_VALUE, Constant, Neurons, Params
from gmnfx.neuron_graph import LayerInfo, NeuronGraph
from gmnfx.output_structure import is_container_node, output_structure
from gmnfx.registry import Method, lookup_lowering
from gmnfx.schema import NodeOp, NodeType

__all__ = ["lower_to_neurons"]


def lower_to_neurons(state):
    """Lower every node of ``state.graph_module`` into ``state.neuron_graph``."""
    gm = state.graph_module
    graph = NeuronGraph()
    ctx = LoweringContext(gm, graph, state.param_table, state.batch_size, compact=state.target == "parameter")
    state.neuron_graph, state.lowering = graph, ctx
    input_layer = graph.add_layer(LayerInfo("inputs", "input", ""))
    nodes = list(gm.graph.nodes)
    placeholders = [n for n in nodes if n.op == "placeholder" and not isinstance(n.meta.get(META_VALUE), Constant)]
    for index, node in enumerate(placeholders):
        _lower_input(ctx, node, index, input_layer)
    for node in state.progress_iter(nodes, "lowering"):
        if node.op == "placeholder" or isinstance(node.meta.get(META_VALUE), Constant):
            continue
        if node.op == "output":
            _lower_output(state, ctx, node)
        elif node.op == "get_attr":
            node.meta[META_VALUE] = _lower_get_attr(ctx, node)
        elif is_container_node(node):
            continue  # a returned dataclass / NamedTuple: _lower_output reads its fields
        else:
            node.meta[META_VALUE] = _lower_call(ctx, node)
    return state


def _lower_input(ctx: LoweringContext, node: fx.Node, index: int, layer: int) -> None:
    shape = node.meta[META_TENSOR].sample_shape  # non-tensor placeholders are constants (shape propagation)
    vocab = token_vocabulary(ctx, node)
    if vocab is not None:
        _lower_token_input(ctx, node, index, layer, shape, vocab)
        return
    ids = ctx.graph.new_neurons(shape, layer=layer, op=NodeOp.INPUT, node_type=NodeType.INPUT,
                                **input_channels(ctx, node, shape))
    ctx.graph.mark_io(ids, index, NodeType.INPUT)
    node.meta[META_VALUE] = Neurons(ids)


def _lower_token_input(ctx: LoweringContext, node: fx.Node, index: int, layer: int, shape: tuple,
                       vocab: int) -> None:
    """Token ids, one-hot over ``vocab`` entries: one input neuron per (position, entry), one channel per entry.

    The value is the first neuron of each position's one-hot block (the input's own
    shape), which bookkeeping ops move like any activation and embeddings expand.
    """
    ids = ctx.graph.new_neurons((*shape, vocab), layer=layer, op=NodeOp.INPUT, node_type=NodeType.INPUT,
                                channel_dim=-1)
    ctx.graph.input_encodings[index] = vocab
    ctx.graph.mark_io(ids, index, NodeType.INPUT)
    node.meta[META_VALUE] = Neurons(ids[..., 0])


def _lower_get_attr(ctx: LoweringContext, node: fx.Node):
    entry = ctx.params.entry_for_name(node.target)
    if entry is None:
        tensor = _resolve_attr(ctx.graph_module, node.target)
        entry = ctx.params.entry_for(tensor) if isinstance(tensor, torch.Tensor) else None
    if entry is None:
        raise LoweringError(f"get_attr '{node.target}' is neither a parameter nor a constant of the model")
    return Params(ctx.params.index_tensor(entry), entry.name)


def _resolve_attr(root: nn.Module, target: str):
    obj = root
    for atom in target.split("."):
        obj = getattr(obj, atom, None)
    return obj


def _is_constant(ctx: LoweringContext, node: fx.Node) -> bool:
    if node.op == "call_module" and next(ctx.module(node).parameters(), None) is not None:
        return False  # a layer with parameters applied to a constant (an embedding of position ids)
    leaves = pytree.tree_leaves([ctx.value(a) for a in node.all_input_nodes])
    return not any(isinstance(v, (Neurons, Params)) for v in leaves)


def _fold_constant(ctx: LoweringContext, node: fx.Node) -> Constant:
    """Evaluate an op whose inputs are all constants (``x.shape[0] * 2``) on those constants."""
    args, kwargs = ctx.value(list(node.args)), {k: ctx.value(v) for k, v in node.kwargs.items()}
    if node.op == "call_module":
        return Constant(ctx.module(node)(*args, **kwargs))
    if node.op == "call_method":
        return Constant(getattr(args[0], node.target)(*args[1:], **kwargs))
    return Constant(node.target(*args, **kwargs))


def _lower_call(ctx: LoweringContext, node: fx.Node):
    if node.all_input_nodes and _is_constant(ctx, node):
        return _fold_constant(ctx, node)
    key = ctx.rule_key(node)
    rule = lookup_lowering(key)
    if rule is None:
        raise _unsupported(ctx, node, key)
    ctx.begin(node, _rule_kind(rule))
    try:
        value = ctx.finish(rule(ctx, node))  # marks row-wise outputs of merged-batch inputs merged
        if isinstance(value, Neurons) and value.fusable and len(node.users) != 1:
            # another reader still needs the pre-activation values
            value = Neurons(value.ids, fusable=False, merged=value.merged)
        return value
    except GmnfxError:
        raise
    except Exception as exc:  # noqa: BLE001 - wrapped with the node and rule that failed
        raise ctx.fail(f"lowering rule {rule.__module__}.{rule.__qualname__} failed: {type(exc).__name__}: {exc}") from exc


def _rule_kind(rule) -> str:
    """``lower_conv_module`` -> ``conv``: the layer kind shown in layer tables."""
    kind = rule.__name__.removeprefix("lower_")
    for suffix in ("_module", "_function", "_aten", "_op"):
        kind = kind.removesuffix(suffix)
    return kind


def _unsupported(ctx: LoweringContext, node: fx.Node, key) -> UnsupportedOpError:
    if isinstance(key, type):
        what, how = f"module type {key.__module__}.{key.__qualname__}", f"@register_lowering({key.__qualname__})"
    elif isinstance(key, Method):
        what, how = f"tensor method .{key.name}()", f"@register_lowering(gmnfx.registry.method({key.name!r}))"
    else:
        name = getattr(key, "__name__", None) or str(key)
        what, how = f"op {getattr(key, '__module__', '') or ''}.{name}".replace(" .", " "), f"@register_lowering({name})"
    line = source_line(node)
    path = node.meta.get(META_MODULE_PATH) or ""
    stack = list((node.meta.get("nn_module_stack") or {}).values())
    if node.op == "call_module":
        module_type = f" ({type(ctx.module(node)).__name__})"
    elif stack:
        kind = stack[-1][1]
        module_type = f" ({getattr(kind, '__name__', None) or str(kind).rsplit('.', 1)[-1]})"
    else:
        module_type = ""
    return UnsupportedOpError(
        f"no lowering rule for {what}\n"
        f"  node: {node.format_node()}\n"
        f"  module: '{path or '<root>'}'{module_type}\n"
        + (f"  source: {line}\n" if line else "")
        + f"  Fix: write a rule in passes/lowering/ decorated with {how} (see README, 'Adding a lowering rule')."
    )


def _lower_output(state, ctx: LoweringContext, node: fx.Node) -> None:
    output = _output_arg(state.graph_module, node)
    structure, state.output_types = output_structure(output, _real_output(state, output))
    # a node whose value is itself a tuple (a module returning (out, weights)) nests into the structure
    structure = pytree.tree_map(lambda leaf: _nested_value(ctx, leaf), structure)
    leaves, spec = pytree.tree_flatten(structure)
    values = [ctx.value(leaf) for leaf in leaves]
    for k, value in enumerate(values):
        if not isinstance(value, Neurons):
            raise LoweringError(
                f"output {k} of the model is not an activation of the network input "
                f"(got {type(value).__name__}); gmnfx graphs need every output to depend on the input"
            )
        if value.merged:
            raise LoweringError(
                f"output {k} of the model has its batch dim merged with its first dim (per-sample shape "
                f"{tuple(value.ids.shape)} inside a [batch * {value.ids.shape[0]}, ...] tensor); gmnfx graphs "
                "describe one sample at a time: reshape the output back to [batch, ...]"
            )
        ctx.graph.mark_io(value.ids, k, NodeType.OUTPUT)
    inputs = [n.meta[META_VALUE] for n in state.graph_module.graph.nodes
              if n.op == "placeholder" and isinstance(n.meta.get(META_VALUE), Neurons)]
    state.output_spec = spec
    state.output_shapes = [tuple(v.ids.shape) for v in values]
    state.input_shapes = [tuple(v.ids.shape) for v in inputs]
    state.output_neurons = torch.cat([v.ids.reshape(-1) for v in values])
    widths = [ctx.graph.input_encodings.get(k) for k in range(len(inputs))]
    state.input_encodings = [None if w is None else {"one_hot": w} for w in widths]
    state.input_neurons = torch.cat([_input_neurons(v.ids, w) for v, w in zip(inputs, widths)]) if inputs \
        else torch.empty(0, dtype=torch.long)


def _nested_value(ctx: LoweringContext, leaf):
    """A tuple/list-valued output node as a tuple of its parts (still lowered values); any other leaf as is."""
    if isinstance(leaf, fx.Node) and isinstance(leaf.meta.get(META_VALUE), (tuple, list)):
        return tuple(leaf.meta[META_VALUE])
    return leaf


def _input_neurons(ids: torch.Tensor, one_hot: int | None) -> torch.Tensor:
    """Every neuron of an input in element order; a token input's one-hot block per element."""
    if one_hot is not None:
        ids = ids.unsqueeze(-1) + torch.arange(one_hot)
    return ids.reshape(-1)


def _output_arg(gm: fx.GraphModule, node: fx.Node):
    """The traced output in the model's structure (torch.export graphs return it flat, with the spec aside)."""
    info = getattr(gm.graph._codegen, "pytree_info", None)
    if info is None or info.out_spec is None:
        return node.args[0]
    try:
        return pytree.tree_unflatten(pytree.tree_leaves(node.args[0]), info.out_spec)
    except Exception:  # noqa: BLE001 - a spec that does not fit: keep the flat output
        return node.args[0]


def _real_output(state, output):
    """The model's own output on the example inputs, when torch.fx may have hidden a dict's class; else None."""
    has_dict = any(isinstance(c, dict) for c in _containers(output))
    if state.frontend != "fx" or not has_dict:
        return None
    try:
        with torch.no_grad():
            return state.model(*state.example_inputs)
    except Exception:  # noqa: BLE001 - the classes are a nicety: simulate then returns plain dicts
        return None


def _containers(obj):
    if isinstance(obj, (dict, list, tuple)):
        yield obj
        for child in (obj.values() if isinstance(obj, dict) else obj):
            yield from _containers(child)

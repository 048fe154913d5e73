"""Pass 2: run the example inputs through the traced graph, recording shapes.

Stores :class:`~gmnfx.ir.TensorInfo` under ``META_TENSOR`` on every node, and
the concrete value (as :class:`~gmnfx.ir.Constant`) under ``META_VALUE`` on
nodes that depend on neither the input nor a parameter (buffers, sizes,
literals), which lowering rules then read as plain constants.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from gmnfx.context import source_line
from gmnfx.errors import InputShapeError, MissingExampleInputsError
from gmnfx.ir import META_MODULE_PATH, META_TENSOR, META_VALUE, Constant, TensorInfo

__all__ = ["propagate_shapes", "infer_example_inputs"]


def _info(value: Any):
    if isinstance(value, torch.Tensor):
        return TensorInfo(tuple(value.shape), value.dtype)
    if isinstance(value, (tuple, list)):
        return tuple(_info(v) for v in value)
    return None


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, (tuple, list)):
        return type(value)(_to_cpu(v) for v in value)
    return value


class _ShapeInterpreter(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm)
        self.param_ids = {id(p) for p in gm.parameters()}
        self.dependent: set[fx.Node] = set()  # nodes whose value depends on the input or a parameter

    def run_node(self, node: fx.Node) -> Any:
        try:
            result = super().run_node(node)
        except Exception as exc:  # noqa: BLE001
            line = source_line(node)
            raise InputShapeError(
                f"running the example inputs failed at {node.format_node()} in module "
                f"'{node.meta.get(META_MODULE_PATH) or '<root>'}': {type(exc).__name__}: {_first_line(exc)}"
                + (f"\n  source: {line}" if line else "")
                + "\n  Check that example_inputs have the shape the model expects (batch dimension first)."
            ) from exc
        node.meta[META_TENSOR] = _info(result)
        dependent = (node.op == "placeholder" and isinstance(result, torch.Tensor)) or any(
            a in self.dependent for a in node.all_input_nodes)
        if node.op == "get_attr" and isinstance(result, torch.Tensor) and id(result) in self.param_ids:
            dependent = True
        if node.op == "call_module" and next(self.module.get_submodule(node.target).parameters(), None) is not None:
            dependent = True  # a layer with parameters applied to a constant (an embedding of position ids)
        if dependent:
            self.dependent.add(node)
        elif node.op not in ("output",):
            node.meta[META_VALUE] = Constant(_to_cpu(result))  # graphs are built on the CPU
        return result


def _first_line(exc: BaseException) -> str:
    """The error's own message, without the notes torch.fx appends (graph dumps, tracebacks)."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else ""


def propagate_shapes(state):
    """Run ``state.example_inputs`` through ``state.graph_module`` and record shapes."""
    if state.example_inputs is None:
        state.example_inputs = infer_example_inputs(state.graph_module, state.model)
    inputs = state.example_inputs
    for i, x in enumerate(inputs):
        if not isinstance(x, torch.Tensor) or x.dim() == 0:
            raise InputShapeError(
                f"example input {i} must be a tensor with a leading batch dimension (got {type(x).__name__}"
                f"{'' if not isinstance(x, torch.Tensor) else ' with shape ()'})"
            )
    batch = {int(x.shape[0]) for x in inputs}
    if len(batch) != 1:
        raise InputShapeError(f"all example inputs must share the batch size (got batch sizes {sorted(batch)})")
    state.batch_size = batch.pop()
    interpreter = _ShapeInterpreter(state.graph_module)
    interpreter.args_iter = iter(inputs)
    with torch.no_grad():
        for node in state.graph_module.graph.nodes:  # not Interpreter.run: it appends graph dumps to errors
            interpreter.env[node] = interpreter.run_node(node)
    return state


def infer_example_inputs(gm: fx.GraphModule, model: nn.Module) -> tuple:
    """Example inputs for a model whose first layer fixes the input size (an ``nn.Linear``)."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) == 1:
        for user in placeholders[0].users:
            if user.op == "call_module" and isinstance(gm.get_submodule(user.target), nn.Linear):
                return (torch.zeros(1, gm.get_submodule(user.target).in_features),)
            weight = user.args[1] if user.target is F.linear and len(user.args) > 1 else None
            if isinstance(weight, fx.Node) and weight.op == "get_attr" and user.args[0] is placeholders[0]:
                tensor = gm.get_parameter(weight.target)
                if tensor.dim() == 2:
                    return (torch.zeros(1, tensor.shape[1]),)
    first = [n.name for n in placeholders]
    raise MissingExampleInputsError(
        f"{type(model).__name__} needs example inputs: its input(s) {first} do not go straight into an "
        "nn.Linear that fixes their size. Pass example_inputs, e.g. "
        "gmnfx.compile(model, (torch.randn(1, 3, 32, 32),)) or --input-shape 1,3,32,32 on the command line."
    )

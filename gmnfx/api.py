"""``gmnfx.compile``: the public entry point of the compiler."""
from __future__ import annotations

import os
from typing import Optional, Union

import torch
import torch.nn as nn

from gmnfx.errors import GmnfxError
from gmnfx.graphs import ComputationGraph, ParameterGraph
from gmnfx.params import ParamTable, flat_parameters
from gmnfx.pipeline import CompileState, run_pipeline

__all__ = ["compile"]

_GRAPH_KINDS = ("parameter", "computation")
_FRONTENDS = ("auto", "fx", "export")


def compile(  # noqa: A001 - the public name the project promises
    model: nn.Module,
    example_inputs: Union[torch.Tensor, tuple, list, None] = None,
    *,
    graph: str = "parameter",
    frontend: str = "auto",
    debug: Optional[bool] = None,
    progress: bool = False,
) -> Union[ParameterGraph, ComputationGraph]:
    """Compile ``model`` into the graph a Graph Metanetwork learns on.

    The model is traced in eval mode (dropout off, BatchNorm on running
    statistics) and its training flag restored afterwards.

    Args:
        model: any ``nn.Module`` built from supported layers and ops.
        example_inputs: a tensor or tuple of tensors with a leading batch dim,
            used for shapes. May be omitted when the model's input goes
            straight into an ``nn.Linear``.
        graph: ``"parameter"`` (default; every parameter on exactly one edge)
            or ``"computation"`` (one node per neuron, one edge per weight use).
        frontend: ``"auto"`` (torch.fx, falling back to torch.export when fx
            cannot trace the model), ``"fx"`` or ``"export"`` (ATen-level graph).
        debug: check IR invariants after every pass (default: ``GMNFX_DEBUG=1``).
        progress: print pass timings and progress bars to stderr.

    Returns:
        A :class:`ParameterGraph` or :class:`ComputationGraph`.

    Example:
        >>> g = compile(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
        >>> g.num_nodes, g.num_edges
        (11, 26)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"gmnfx.compile: expected an nn.Module (got {type(model).__name__})")
    if graph not in _GRAPH_KINDS:
        raise ValueError(f"gmnfx.compile: graph must be one of {_GRAPH_KINDS} (got {graph!r})")
    if frontend not in _FRONTENDS:
        raise ValueError(f"gmnfx.compile: frontend must be one of {_FRONTENDS} (got {frontend!r})")
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    elif isinstance(example_inputs, list):
        example_inputs = tuple(example_inputs)
    elif example_inputs is not None and not isinstance(example_inputs, tuple):
        raise TypeError(f"gmnfx.compile: example_inputs must be a tensor or a tuple of tensors "
                        f"(got {type(example_inputs).__name__})")
    lazy = [name for name, p in model.named_parameters() if isinstance(p, nn.parameter.UninitializedParameter)]
    if lazy:
        raise GmnfxError(f"gmnfx.compile: parameters {lazy[:5]} are not initialized yet (lazy modules); "
                         "run one forward pass with a real input before compiling")
    if debug is None:
        debug = os.environ.get("GMNFX_DEBUG", "") not in ("", "0")
    was_training = model.training
    model.eval()
    try:
        state = CompileState(model, example_inputs, graph, frontend=frontend, debug=debug, progress=progress,
                             param_table=ParamTable(model), flat_params=flat_parameters(model).cpu())
        return run_pipeline(state).result
    finally:
        model.train(was_training)

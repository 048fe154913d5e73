"""gmnfx: compile PyTorch networks into the graphs Graph Metanetworks learn on.

Public API::

    graph = gmnfx.compile(model, example_inputs)                      # ParameterGraph
    cgraph = gmnfx.compile(model, example_inputs, graph="computation")
    gmnfx.simulate(cgraph, x)                                        # == model(x)
    gmnfx.write_parameters(model, graph, new_edge_values)            # round trip
"""
from gmnfx.api import compile
from gmnfx.errors import (
    GmnfxError,
    GraphFormatError,
    InputShapeError,
    InvariantError,
    LoweringError,
    MissingExampleInputsError,
    ParameterPlacementError,
    RegistryError,
    UnsupportedOpError,
    UntraceableModuleError,
)
from gmnfx.graphs import ComputationGraph, ParameterGraph, load_graph
from gmnfx.params import flat_parameters, write_parameters
from gmnfx.registry import method, register_lowering
from gmnfx.simulate import simulate

__version__ = "0.1.0"

__all__ = [
    "compile", "simulate", "flat_parameters", "write_parameters", "load_graph",
    "ParameterGraph", "ComputationGraph", "register_lowering", "method",
    "GmnfxError", "UntraceableModuleError", "UnsupportedOpError", "LoweringError",
    "ParameterPlacementError", "MissingExampleInputsError", "InputShapeError",
    "GraphFormatError", "InvariantError", "RegistryError",
]

"""gmnfx: compile PyTorch networks into the graphs Graph Metanetworks learn on.

Public API::

    graph = gmnfx.compile(model, example_inputs)                      # ParameterGraph
    cgraph = gmnfx.compile(model, example_inputs, graph="computation")
    gmnfx.simulate(cgraph, x)                                        # == model(x)
    gmnfx.write_parameters(model, graph, new_edge_values)            # round trip
    gmnfx.symmetry.group_order(graph), gmnfx.symmetry.sample(graph)  # the graph's symmetries
    batch = gmnfx.batch([graph, ...])                                # GraphBatch: many graphs, one union
    gmnfx.nn.GMN(out_dim, hidden_dim=64, num_layers=4, readout="graph")(batch)  # the metanetwork
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
from gmnfx.batch import GraphBatch, batch
from gmnfx import symmetry  # noqa: E402  (after the modules it builds on)
from gmnfx import nn  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "compile", "simulate", "flat_parameters", "write_parameters", "load_graph", "symmetry", "nn",
    "batch", "GraphBatch",
    "ParameterGraph", "ComputationGraph", "register_lowering", "method",
    "GmnfxError", "UntraceableModuleError", "UnsupportedOpError", "LoweringError",
    "ParameterPlacementError", "MissingExampleInputsError", "InputShapeError",
    "GraphFormatError", "InvariantError", "RegistryError",
]

"""``check_compiles``: everything a lowering rule must satisfy, asserted on one model."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

import gmnfx
from gmnfx.output_structure import output_structure
from gmnfx.schema import EDGE_FEATURES, NODE_FEATURES
from gmnfx.simulate import topological_levels

__all__ = ["check_compiles", "simulation_error", "default_test_inputs"]


def default_test_inputs(graph, example_inputs: tuple) -> tuple:
    """Random inputs like ``example_inputs`` with one more sample: normal floats, or for token inputs
    (``graph.input_encodings[k] == {"one_hot": V}``) ids drawn uniformly from ``[0, V)``."""
    out = []
    for x, encoding in zip(example_inputs, graph.input_encodings):
        shape = (x.shape[0] + 1, *x.shape[1:])
        out.append(torch.randint(0, encoding["one_hot"], shape, dtype=x.dtype) if encoding
                   else torch.randn(shape, dtype=x.dtype))
    return tuple(out)


def simulation_error(model: nn.Module, graph, *inputs: torch.Tensor) -> float:
    """Max relative error of ``simulate(graph, *inputs)`` against ``model(*inputs)`` (eval mode)."""
    model.eval()
    with torch.no_grad():
        expected = model(*inputs)
    got = gmnfx.simulate(graph, *inputs)
    exp_leaves = _tensor_leaves(expected)
    got_leaves = _tensor_leaves(got)
    assert len(exp_leaves) == len(got_leaves), f"simulate returned {len(got_leaves)} outputs, model {len(exp_leaves)}"
    worst = 0.0
    for e, g in zip(exp_leaves, got_leaves):
        assert e.shape == g.shape, f"simulate output shape {tuple(g.shape)} != model output shape {tuple(e.shape)}"
        scale = e.abs().max().clamp(min=1.0)
        worst = max(worst, float((e.double() - g.double()).abs().max() / scale))
    return worst


def _tensor_leaves(output) -> list:
    """The tensors of an output in order (dataclasses and dict subclasses read as dicts, None fields left out)."""
    return [leaf for leaf in torch.utils._pytree.tree_leaves(output_structure(output)[0]) if leaf is not None]


def check_compiles(model: nn.Module, example_inputs, test_inputs=None, *, rtol: float = 1e-5, frontend: str = "auto"):
    """Assert everything gmnfx promises for ``model``; returns (parameter_graph, computation_graph)."""
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    model.eval()
    flat = gmnfx.flat_parameters(model)
    pg = gmnfx.compile(model, example_inputs, frontend=frontend, debug=True)
    cg = gmnfx.compile(model, example_inputs, graph="computation", frontend=frontend, debug=True)
    if test_inputs is None:
        test_inputs = default_test_inputs(cg, example_inputs)
    elif isinstance(test_inputs, torch.Tensor):
        test_inputs = (test_inputs,)

    # exact coverage and values: every parameter once in the parameter graph
    params = pg.edge_param[pg.edge_param >= 0]
    assert torch.equal(torch.sort(params).values, torch.arange(flat.numel())), "parameter coverage is not exact"
    assert torch.equal(pg.edge_weight[pg.edge_param >= 0], flat[params]), "edge weights differ from parameters"
    cparams = cg.edge_param >= 0
    assert torch.equal(cg.edge_weight[cparams], flat[cg.edge_param[cparams]])
    for g in (pg, cg):
        assert g.edge_feat.shape == (g.num_edges, len(EDGE_FEATURES))
        assert g.node_feat.shape == (g.num_nodes, len(NODE_FEATURES))

    # DAG (independently of the src < dst certificate)
    for g in (pg, cg):
        topological_levels(g.num_nodes, g.edge_index)

    # round trip: write edited values back, the model holds exactly those values
    edited = copy.deepcopy(model)
    new_values = torch.randn(pg.num_edges)
    gmnfx.write_parameters(edited, pg, new_values)
    expected = flat.clone()
    expected[params] = new_values[pg.edge_param >= 0]
    assert torch.equal(gmnfx.flat_parameters(edited), expected), "write_parameters round trip is not exact"
    again = gmnfx.compile(edited, example_inputs, frontend=frontend)
    mask = again.edge_param >= 0
    assert torch.equal(again.edge_weight[mask], expected[again.edge_param[mask]])

    # simulate == forward on a different input (and batch size)
    error = simulation_error(model, cg, *test_inputs)
    assert error <= rtol, f"simulate differs from forward: max relative error {error:.3g} > {rtol}"
    return pg, cg

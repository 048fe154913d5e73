"""Checks of the symmetry guarantees: symmetric copies compute the same function, and compile
commutes with permutation."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

import gmnfx
from gmnfx.testing.compile_checks import _tensor_leaves, default_test_inputs

__all__ = ["assert_graphs_equal", "symmetry_error", "assert_symmetries_preserve_function"]


def _edge_rows(graph) -> torch.Tensor:
    """Edges as sorted rows (src, dst, features..., value, tied?) in float64, ignoring which parameter index."""
    rows = torch.cat([graph.edge_index.t().double(), graph.edge_feat.double(),
                      (graph.edge_tied >= 0)[:, None].double()], dim=1)
    for column in reversed(range(rows.shape[1])):  # lexicographic sort, last key first
        rows = rows[torch.argsort(rows[:, column], stable=True)]
    return rows


def assert_graphs_equal(a, b, *, edge_order: bool = False) -> None:
    """Assert two compiled graphs have the same nodes and edges (features and values).

    Edges are compared as a multiset of (src, dst, features, value) unless
    ``edge_order`` is True; which flat parameter an edge holds (``edge_param``)
    is not compared: a symmetric copy of a model holds each value in another
    parameter.
    """
    assert a.num_nodes == b.num_nodes, f"node counts differ: {a.num_nodes} != {b.num_nodes}"
    rows = (a.node_feat != b.node_feat).any(1).nonzero().flatten()
    assert rows.numel() == 0, f"node features differ at {rows.numel()} nodes, first at node {int(rows[0]) if rows.numel() else -1}"
    assert torch.equal(a.input_nodes, b.input_nodes) and torch.equal(a.output_nodes, b.output_nodes), \
        "input or output nodes differ"
    assert a.num_edges == b.num_edges, f"edge counts differ: {a.num_edges} != {b.num_edges}"
    if edge_order:
        ea = torch.cat([a.edge_index.t().double(), a.edge_feat.double()], 1)
        eb = torch.cat([b.edge_index.t().double(), b.edge_feat.double()], 1)
    else:
        ea, eb = _edge_rows(a), _edge_rows(b)
    bad = (ea != eb).any(1).nonzero().flatten()
    assert bad.numel() == 0, (f"{bad.numel()} edges differ; first: {ea[int(bad[0])].tolist()} vs {eb[int(bad[0])].tolist()}"
                              if bad.numel() else "")


def symmetry_error(model: nn.Module, graph, perm, *inputs: torch.Tensor) -> float:
    """Max relative difference between ``model`` and ``permute_model(model, graph, perm)`` on ``inputs``."""
    from gmnfx.symmetry import permute_model

    model.eval()
    twin = permute_model(model, graph, perm).eval()
    with torch.no_grad():
        expected, got = _tensor_leaves(model(*inputs)), _tensor_leaves(twin(*inputs))
    worst = 0.0
    for e, g in zip(expected, got):
        scale = e.abs().max().clamp(min=1.0) if e.numel() else 1.0
        worst = max(worst, float((e.double() - g.double()).abs().max() / scale) if e.numel() else 0.0)
    return worst


def assert_symmetries_preserve_function(model: nn.Module, example_inputs, *, samples: int = 3, rtol: float = 1e-5,
                                        generator: Optional[torch.Generator] = None, graph=None) -> None:
    """Sample symmetries of ``model``'s parameter graph; each symmetric copy must compute the same
    function, and compiling it must give the permuted graph.

    Use it in the tests of a lowering rule you add: a rule that loses structure the
    function depends on (an operand order, a position) lets the group grow past
    the network's true symmetries, and this check fails on the first such sample.
    """
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    from gmnfx.symmetry import permute_graph, permute_model, symmetry_structure

    model.eval()
    graph = gmnfx.compile(model, example_inputs) if graph is None else graph
    structure = symmetry_structure(graph)
    test_inputs = default_test_inputs(graph, example_inputs)
    for k in range(samples):
        perm = structure.sample(generator)
        error = symmetry_error(model, graph, perm, *test_inputs)
        assert error <= rtol, (f"symmetry #{k + 1} of {samples} (group order {structure.order}) changes the "
                               f"function: max relative error {error:.3g} > {rtol}; perm = {perm.tolist()}")
        assert_graphs_equal(gmnfx.compile(permute_model(model, graph, perm), example_inputs),
                            permute_graph(graph, perm))

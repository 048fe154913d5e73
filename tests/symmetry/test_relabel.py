"""permute_graph: relabelling by any permutation."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import gmnfx
from gmnfx.errors import InputShapeError
from gmnfx.symmetry import permute_graph
from gmnfx.testing import assert_graphs_equal


@pytest.fixture
def graph():
    return gmnfx.compile(nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2)),
                         torch.randn(1, 2, 4, 4))


def test_node_features_and_edges_follow_their_nodes(graph):
    perm = torch.randperm(graph.num_nodes)
    moved = permute_graph(graph, perm)
    assert torch.equal(moved.node_feat[perm], graph.node_feat)
    assert torch.equal(moved.edge_index, perm[graph.edge_index])
    assert torch.equal(moved.edge_weight, graph.edge_weight) and torch.equal(moved.edge_param, graph.edge_param)
    assert torch.equal(moved.input_nodes, perm[graph.input_nodes])
    assert torch.equal(moved.output_nodes, perm[graph.output_nodes])


def test_relabelling_composes_and_inverts(graph):
    p, q = torch.randperm(graph.num_nodes), torch.randperm(graph.num_nodes)
    assert_graphs_equal(permute_graph(permute_graph(graph, p), q), permute_graph(graph, q[p]), edge_order=True)
    inverse = torch.argsort(p)
    assert_graphs_equal(permute_graph(permute_graph(graph, p), inverse), graph, edge_order=True)


def test_relabelled_graph_simulates_like_the_original():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    cgraph = gmnfx.compile(model, torch.randn(1, 3), graph="computation")
    x = torch.randn(5, 3)
    moved = permute_graph(cgraph, torch.randperm(cgraph.num_nodes))
    assert torch.allclose(gmnfx.simulate(moved, x), model(x), atol=1e-6)


def test_a_non_permutation_is_refused(graph):
    with pytest.raises(InputShapeError, match="outside"):
        permute_graph(graph, torch.arange(graph.num_nodes) + 1)
    with pytest.raises(InputShapeError, match="expected shape"):
        permute_graph(graph, torch.arange(3))

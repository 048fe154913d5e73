"""gmnfx.simulate: neuron-level message passing reproduces the forward pass."""
from __future__ import annotations

import torch
import torch.nn as nn

import gmnfx
from gmnfx.simulate import topological_levels
from gmnfx.testing import check_compiles, simulation_error


def test_neuron_with_no_incoming_edges_still_applies_its_activation():
    # output positions 0 and 4 read only zero padding: their value is sigmoid(0) = 0.5
    model = nn.Sequential(nn.Conv1d(1, 1, 1, padding=1, bias=False), nn.Sigmoid())
    check_compiles(model, torch.randn(1, 1, 3))


def test_simulate_other_batch_sizes_and_dtypes():
    model = nn.Sequential(nn.Linear(3, 5), nn.GELU(), nn.Linear(5, 2)).double()
    graph = gmnfx.compile(model, torch.randn(1, 3, dtype=torch.float64), graph="computation")
    x = torch.randn(7, 3, dtype=torch.float64)
    out = gmnfx.simulate(graph, x)
    assert out.dtype == torch.float64
    assert torch.allclose(out, model(x), rtol=1e-12, atol=1e-12)


def test_simulation_error_detects_a_wrong_graph():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    graph = gmnfx.compile(model, torch.randn(1, 3), graph="computation")
    graph.edge_weight[graph.edge_index[1] == graph.output_nodes[0]] += 1.0  # corrupt the weights into an output
    assert simulation_error(model, graph, torch.randn(5, 3)) > 1e-3


def test_topological_levels_are_longest_paths():
    edge_index = torch.tensor([[0, 1, 0, 2], [1, 2, 2, 3]])
    assert topological_levels(4, edge_index).tolist() == [0, 1, 2, 3]

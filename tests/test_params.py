"""flat_parameters and write_parameters: the round trip weight-editing metanetworks need."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

import gmnfx
from gmnfx.schema import EdgeType
from gmnfx.testing import check_compiles


class Tied(nn.Module):
    """The same Linear used twice, and an output head tied to the input layer's weight."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(4, 4, bias=False)
        self.mid = nn.Linear(4, 4)
        self.out = nn.Linear(4, 4, bias=False)
        self.out.weight = self.inp.weight  # tied

    def forward(self, x):
        h = torch.tanh(self.inp(x))
        h = torch.tanh(self.mid(h))
        h = torch.tanh(self.mid(h))  # reused
        return self.out(h)


def test_flat_parameters_counts_tied_parameters_once():
    model = Tied()
    assert gmnfx.flat_parameters(model).numel() == 16 + 20
    assert torch.equal(gmnfx.flat_parameters(model), torch.cat([p.reshape(-1) for p in model.parameters()]))


def test_tied_and_reused_parameters_are_one_edge_each_plus_tied_edges():
    pg, cg = check_compiles(Tied(), torch.randn(2, 4))
    tied = pg.edge_type == EdgeType.TIED
    assert int(tied.sum()) == 16 + 20  # the second use of each tied/reused parameter
    assert bool((pg.edge_param[tied] == -1).all())
    assert int((cg.edge_param >= 0).sum()) == 16 * 2 + 20 * 2


def test_write_parameters_round_trip_is_exact():
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2))
    graph = gmnfx.compile(model, torch.randn(1, 2, 4, 4))
    values = torch.randn(graph.num_edges)
    edited = gmnfx.write_parameters(copy.deepcopy(model), graph, values)
    flat = gmnfx.flat_parameters(edited)
    mask = graph.edge_param >= 0
    assert torch.equal(flat[graph.edge_param[mask]], values[mask])


def test_write_parameters_on_a_computation_graph_averages_shared_uses():
    model = nn.Sequential(nn.Conv1d(1, 1, 2, bias=False))
    graph = gmnfx.compile(model, torch.randn(1, 1, 3), graph="computation")
    values = torch.arange(graph.num_edges, dtype=torch.float32)
    gmnfx.write_parameters(model, graph, values)
    expected = torch.stack([values[graph.edge_param == k].mean() for k in range(2)])
    assert torch.allclose(gmnfx.flat_parameters(model), expected)


def test_write_parameters_checks_its_inputs():
    graph = gmnfx.compile(nn.Linear(3, 2))
    with pytest.raises(gmnfx.InputShapeError, match=r"expected edge_values of shape \(8,\)"):
        gmnfx.write_parameters(nn.Linear(3, 2), graph, torch.zeros(5))
    with pytest.raises(gmnfx.GmnfxError, match="does not match the graph"):
        gmnfx.write_parameters(nn.Linear(4, 2), graph, torch.zeros(8))

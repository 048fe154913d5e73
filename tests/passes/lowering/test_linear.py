"""Lowering of dense layers: nn.Linear, F.linear, ATen linear (via the export frontend)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import gmnfx
from gmnfx.schema import EdgeType, NodeCol, NodeType
from gmnfx.testing import check_compiles


def _mlp(bias: bool) -> nn.Module:
    return nn.Sequential(nn.Linear(5, 7, bias=bias), nn.ReLU(), nn.Linear(7, 3, bias=bias))


@pytest.mark.parametrize("bias", [True, False])
def test_linear_module_compiles_exactly(bias):
    check_compiles(_mlp(bias), torch.randn(2, 5), torch.randn(4, 5))


@pytest.mark.parametrize("bias", [True, False])
def test_linear_parameter_graph_is_complete_bipartite_per_layer(bias):
    g = gmnfx.compile(_mlp(bias))
    types = g.node_type
    assert int((types == NodeType.INPUT).sum()) == 5
    assert int((types == NodeType.OUTPUT).sum()) == 3
    assert int((types == NodeType.HIDDEN).sum()) == 7
    assert int((types == NodeType.BIAS).sum()) == (2 if bias else 0)
    assert int((g.edge_type == EdgeType.LINEAR).sum()) == 5 * 7 + 7 * 3
    assert int((g.edge_type == EdgeType.BIAS).sum()) == (7 + 3 if bias else 0)
    # edge j of the first layer carries weight[o, i] from input i to hidden o
    w = g.edge_param < 35
    src, dst = g.edge_index[:, w & (g.edge_param >= 0)]
    inputs = torch.nonzero(types == NodeType.INPUT).squeeze(1)
    assert set(src.tolist()) == set(inputs.tolist())


def test_hidden_neurons_have_no_io_index_but_inputs_and_outputs_do():
    g = gmnfx.compile(_mlp(True))
    io = g.node_feat[:, NodeCol.IO_INDEX].long()
    types = g.node_type
    assert bool((io[types == NodeType.HIDDEN] == -1).all())
    assert sorted(io[types == NodeType.INPUT].tolist()) == list(range(5))
    assert sorted(io[types == NodeType.OUTPUT].tolist()) == list(range(3))


def test_activation_is_fused_into_the_linear_neurons():
    g = gmnfx.compile(_mlp(True))
    hidden = g.node_type == NodeType.HIDDEN
    assert bool((g.node_feat[hidden, NodeCol.ACTIVATION] == 1).all())  # Activation.RELU


class FunctionalLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 6))
        self.b = nn.Parameter(torch.randn(4))
        self.w2 = nn.Parameter(torch.randn(4, 2))  # used transposed

    def forward(self, x):
        h = torch.tanh(F.linear(x, self.w, self.b))
        return F.linear(h, self.w2.t())


def test_functional_linear_with_transposed_parameter_view():
    g, _ = check_compiles(FunctionalLinear(), torch.randn(3, 6))
    assert g.num_parameters == 4 * 6 + 4 + 8


class TokenLinear(nn.Module):
    """A Linear applied to every position of a sequence: weights shared across positions."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 5)
        self.fc2 = nn.Linear(5, 2)

    def forward(self, x):  # x: [batch, tokens, 4]
        return self.fc2(F.silu(self.fc1(x)))


def test_linear_over_a_sequence_collapses_positions():
    pg, cg = check_compiles(TokenLinear(), torch.randn(2, 3, 4))
    assert int((pg.edge_type == EdgeType.LINEAR).sum()) == 4 * 5 + 5 * 2
    assert int((cg.edge_type == EdgeType.LINEAR).sum()) == 3 * (4 * 5 + 5 * 2)


def test_linear_after_flatten_gets_positions_on_parallel_edges():
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    pg, _ = check_compiles(model, torch.randn(2, 2, 4, 4))
    linear = pg.edge_type == EdgeType.LINEAR
    pos = pg.edge_pos[linear]
    # 16 parallel edges per (channel, output) pair, told apart by their (h, w) position
    assert torch.unique(pos, dim=0).shape[0] == 16
    pairs = torch.unique(pg.edge_index[:, linear], dim=1)
    assert pairs.shape[1] == 3 * 5


def test_model_without_example_inputs_infers_them_from_first_linear():
    g = gmnfx.compile(_mlp(True))
    assert g.input_shapes == [(5,)]
    assert g.frontend == "fx"


def test_linear_via_export_frontend():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 4)
            self.out = nn.Linear(4, 2)

        def forward(self, x):
            if x.shape[-1] == 3:  # shape-dependent Python control flow: fx cannot trace it
                x = self.fc(x)
            return self.out(torch.relu(x))

    pg, cg = check_compiles(Branchy(), torch.randn(2, 3))
    assert pg.frontend == cg.frontend == "export"


def test_mlp_on_images_has_one_input_node_per_pixel():
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, 5), nn.ReLU(), nn.Linear(5, 2))
    pg, _ = check_compiles(model, torch.randn(2, 2, 4, 4))
    inputs = pg.node_type == NodeType.INPUT
    assert int(inputs.sum()) == 32
    assert sorted(pg.node_feat[inputs, NodeCol.IO_INDEX].long().tolist()) == list(range(32))
    assert torch.equal(pg.input_nodes, torch.nonzero(inputs).squeeze(1))


def test_conv_input_has_one_node_per_channel():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 2 * 2, 2))
    pg = gmnfx.compile(model, torch.randn(1, 3, 4, 4))
    assert int((pg.node_type == NodeType.INPUT).sum()) == 3

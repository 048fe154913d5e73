"""Tests of the test helpers in gmnfx.testing: equivariance checks and the automorphism-count oracle."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import gmnfx
from gmnfx.testing import assert_equivariant, brute_force_group_order, equivariance_error


# ---------------------------------------------------------------- toy functions of a graph
def message_passing(graph) -> torch.Tensor:
    """Equivariant toy layer: own features plus the weighted mean of in-neighbour features, per node."""
    x = graph.node_feat.double()
    src, dst = graph.edge_index
    messages = graph.edge_weight.double()[:, None] * x[src]
    total = torch.zeros_like(x).index_add_(0, dst, messages)
    degree = torch.zeros(graph.num_nodes, dtype=torch.float64).index_add_(0, dst, torch.ones(graph.num_edges,
                                                                                               dtype=torch.float64))
    return x + total / degree.clamp(min=1)[:, None]


def graph_readout(graph) -> torch.Tensor:
    return message_passing(graph).sum(0)


def edge_readout(graph) -> torch.Tensor:
    h = message_passing(graph)
    src, dst = graph.edge_index
    return torch.cat([h[src], h[dst], graph.edge_weight.double()[:, None]], dim=1)


def node_index_leak(graph) -> torch.Tensor:
    """Broken: the node's number becomes a feature."""
    return message_passing(graph) + torch.arange(graph.num_nodes, dtype=torch.float64)[:, None]


def edge_source_leak(graph) -> torch.Tensor:
    """Broken: reads the source node's number as a value."""
    return torch.cat([edge_readout(graph), graph.edge_index[0].double()[:, None]], dim=1)


@pytest.fixture
def mlp_graph():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2))
    return gmnfx.compile(model, torch.randn(2, 3))


# ---------------------------------------------------------------- equivariance_error / assert_equivariant
@pytest.mark.parametrize("fn, readout", [(graph_readout, "graph"), (message_passing, "node"),
                                         (edge_readout, "edge")])
def test_equivariant_function_has_no_error(mlp_graph, fn, readout):
    perm = torch.randperm(mlp_graph.num_nodes)
    assert equivariance_error(fn, mlp_graph, perm, readout=readout) < 1e-12
    assert_equivariant(fn, mlp_graph, readout=readout, trials=2)


def test_node_index_leak_is_caught_with_readout_and_error_in_message(mlp_graph):
    with pytest.raises(AssertionError, match=r"\(node readout\): max error \d\.\de[-+]\d\d at node \d+, .*"
                                             r"tolerance 1e-10 for torch.float64.*permutation #1 of 1"):
        assert_equivariant(node_index_leak, mlp_graph, torch.randperm(mlp_graph.num_nodes), readout="node")


def test_edge_source_leak_is_caught(mlp_graph):
    with pytest.raises(AssertionError, match=r"\(edge readout\): max error .* at edge \d+, column \(\d+,\)"):
        assert_equivariant(edge_source_leak, mlp_graph, readout="edge")


def test_identity_permutation_hides_the_leak(mlp_graph):
    assert equivariance_error(node_index_leak, mlp_graph, torch.arange(mlp_graph.num_nodes), readout="node") == 0.0


def test_node_readout_checks_rows_follow_nodes(mlp_graph):
    """Row i of fn(graph) must reappear at row perm[i], not at row i."""
    perm = torch.roll(torch.arange(mlp_graph.num_nodes), 1)
    assert equivariance_error(message_passing, mlp_graph, perm, readout="node") < 1e-12
    assert equivariance_error(message_passing, mlp_graph, perm, readout="graph") > 0.1  # rows not realigned


def test_error_is_relative_to_outputs_larger_than_one(mlp_graph):
    perm = torch.randperm(mlp_graph.num_nodes)
    error = equivariance_error(node_index_leak, mlp_graph, perm, readout="node")
    scaled = equivariance_error(lambda g: 1e3 * node_index_leak(g), mlp_graph, perm, readout="node")
    tiny = equivariance_error(lambda g: 1e-3 * node_index_leak(g), mlp_graph, perm, readout="node")
    assert scaled == pytest.approx(error, rel=1e-9)
    assert tiny == pytest.approx(1e-3 * error * node_index_leak(mlp_graph).abs().max().item(), rel=1e-9)


def noisy(dtype):
    """An invariant function plus fresh uniform noise of size 1e-3 on every call, returned in ``dtype``."""
    def fn(graph):
        return (graph_readout(graph) + 1e-3 * (torch.rand(graph.node_feat.shape[1]) - 0.5)).to(dtype)
    return fn


def test_float16_tolerance_accepts_noise_that_float64_rejects(mlp_graph):
    assert_equivariant(noisy(torch.float16), mlp_graph, trials=3)
    with pytest.raises(AssertionError, match="tolerance 1e-10 for torch.float64"):
        assert_equivariant(noisy(torch.float64), mlp_graph, trials=3)


def test_explicit_atol_overrides_the_dtype_table(mlp_graph):
    assert_equivariant(noisy(torch.float64), mlp_graph, trials=3, atol=1e-2)


def test_list_of_permutations_and_generator_are_accepted(mlp_graph):
    n = mlp_graph.num_nodes
    assert_equivariant(message_passing, mlp_graph, [torch.randperm(n), torch.arange(n)], readout="node")
    assert_equivariant(message_passing, mlp_graph, readout="node", generator=torch.Generator().manual_seed(1))


def test_bad_readout_lists_the_choices(mlp_graph):
    with pytest.raises(ValueError, match="readout: expected one of 'graph', 'node', 'edge' \\(got 'nodes'\\)"):
        equivariance_error(message_passing, mlp_graph, torch.arange(mlp_graph.num_nodes), readout="nodes")


def test_node_readout_with_wrong_rows_says_expected_and_got(mlp_graph):
    n = mlp_graph.num_nodes
    with pytest.raises(ValueError, match=rf"{n} rows \(got shape \(13,\)\)"):
        assert_equivariant(graph_readout, mlp_graph, readout="node")
    with pytest.raises(ValueError, match=rf"one row per edge, {mlp_graph.num_edges} rows \(got shape \({n}, 13\)\)"):
        equivariance_error(message_passing, mlp_graph, torch.arange(n), readout="edge")


def test_not_a_permutation_is_refused(mlp_graph):
    with pytest.raises(gmnfx.InputShapeError, match="permutation #2"):
        assert_equivariant(message_passing, mlp_graph, [torch.arange(mlp_graph.num_nodes), torch.zeros(3)])


# ---------------------------------------------------------------- brute_force_group_order
class Residual(nn.Module):
    """x + W x: the hidden neurons feed the (fixed) outputs one to one."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        return x + self.lin(x)


class ResidualMLP(nn.Module):
    """x + W2 relu(W1 x): only the 3 neurons inside the branch are free."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 3)

    def forward(self, x):
        return x + self.b(torch.relu(self.a(x)))


class AppliedTwice(nn.Module):
    """lin(relu(lin(x))): one Linear, two uses."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        return self.lin(torch.relu(self.lin(x)))


class TwoLinears(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 3)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


class SharedHead(nn.Module):
    """c(relu(a x)) + c(relu(b x)): two hidden layers read by one shared head."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 2)

    def forward(self, x):
        return self.c(torch.relu(self.a(x))) + self.c(torch.relu(self.b(x)))


def compile_parameter_graph(model, example=None):
    return gmnfx.compile(model, torch.randn(2, 3) if example is None else example)


def test_mlp_order_is_product_of_hidden_factorials(mlp_graph):
    assert brute_force_group_order(mlp_graph) == math.factorial(4) * math.factorial(5)


def test_residual_pins_hidden_neurons_to_fixed_outputs():
    assert brute_force_group_order(compile_parameter_graph(Residual())) == 1


def test_residual_branch_hidden_neurons_permute():
    assert brute_force_group_order(compile_parameter_graph(ResidualMLP())) == math.factorial(3)


def test_separate_linears_permute_their_hidden_layer():
    assert brute_force_group_order(compile_parameter_graph(TwoLinears())) == math.factorial(3)


def test_tying_a_linear_to_itself_leaves_no_symmetry():
    """W must move to P W (first use) and to W P^T (second use) at once: only P = I keeps the tie groups."""
    assert brute_force_group_order(compile_parameter_graph(AppliedTwice())) == 1


def test_tying_a_shared_head_forces_one_permutation_on_both_branches():
    """Without tying the two hidden layers permute independently (3! * 3!); the shared head links them."""
    graph = compile_parameter_graph(SharedHead())
    assert int((graph.edge_tied >= 0).sum()) > 0
    assert brute_force_group_order(graph) == math.factorial(3)


def test_batchnorm_running_statistics_do_not_break_symmetry():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).eval()
    model[1].running_mean.normal_()
    model[1].running_var.uniform_(0.5, 2.0)
    assert brute_force_group_order(compile_parameter_graph(model)) == math.factorial(4)


def test_conv_channels_permute():
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 2, 1))
    assert brute_force_group_order(compile_parameter_graph(model, torch.randn(1, 1, 5, 5))) == math.factorial(3)


def test_too_many_nodes_is_refused(mlp_graph):
    with pytest.raises(gmnfx.GmnfxError, match=f"{mlp_graph.num_nodes} nodes, more than max_nodes=10"):
        brute_force_group_order(mlp_graph, max_nodes=10)


def test_too_many_automorphisms_stops_at_the_limit():
    model = nn.Sequential(nn.Linear(2, 5), nn.ReLU(), nn.Linear(5, 1))
    with pytest.raises(gmnfx.GmnfxError, match="more than limit=50 automorphisms"):
        brute_force_group_order(compile_parameter_graph(model, torch.randn(2, 2)), limit=50)


def test_computation_graph_is_refused():
    graph = gmnfx.compile(TwoLinears(), torch.randn(2, 3), graph="computation")
    with pytest.raises(TypeError, match='compile with graph="parameter"'):
        brute_force_group_order(graph)

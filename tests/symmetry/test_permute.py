"""permute_model: symmetric copies compute the same function, and compiling them commutes with permuting."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import gmnfx
from gmnfx.errors import GmnfxError, InputShapeError
from gmnfx.symmetry import permute_model, sample
from gmnfx.testing import assert_symmetries_preserve_function, symmetry_error

from models import batchnorm_mlp, cases

CASES = cases()


@pytest.mark.parametrize("name,model,example,expected", CASES, ids=[c[0] for c in CASES])
def test_symmetric_copies_compute_the_same_function_and_compile_to_the_permuted_graph(name, model, example, expected):
    assert_symmetries_preserve_function(model.eval(), example, samples=3, generator=torch.Generator().manual_seed(1))


def test_permute_model_moves_parameters_and_leaves_the_original_alone():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    graph = gmnfx.compile(model, torch.randn(1, 3))
    before = gmnfx.flat_parameters(model).clone()
    perm = sample(graph, torch.Generator().manual_seed(3))
    twin = permute_model(model, graph, perm)
    assert torch.equal(gmnfx.flat_parameters(model), before)
    assert not torch.equal(gmnfx.flat_parameters(twin), before)
    assert torch.equal(torch.sort(gmnfx.flat_parameters(twin)).values, torch.sort(before).values)


def test_batchnorm_running_statistics_move_with_their_channels():
    model = batchnorm_mlp()
    graph = gmnfx.compile(model, torch.randn(2, 3))
    perm = sample(graph, torch.Generator().manual_seed(0))
    twin = permute_model(model, graph, perm)
    assert not torch.equal(twin[1].running_mean, model[1].running_mean)
    assert symmetry_error(model, graph, perm, torch.randn(5, 3)) < 1e-6


def test_a_permutation_that_is_not_a_symmetry_is_refused_with_the_edge_it_breaks():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    graph = gmnfx.compile(model, torch.randn(1, 2))
    perm = torch.arange(graph.num_nodes)
    hidden = (graph.node_type == 1).nonzero().flatten()
    bias = (graph.node_type == 3).nonzero().flatten()
    perm[hidden[0]], perm[bias[0]] = bias[0], hidden[0]  # a hidden neuron swapped with a bias node
    with pytest.raises(InputShapeError, match="not a symmetry"):
        permute_model(model, graph, perm)
    perm = torch.arange(graph.num_nodes)
    perm[graph.input_nodes[0]], perm[graph.input_nodes[1]] = graph.input_nodes[1], graph.input_nodes[0]
    with pytest.raises(InputShapeError, match="input node"):
        permute_model(model, graph, perm)


def test_separating_the_uses_of_a_tied_weight_is_refused():
    from models import LinearTwice

    model = LinearTwice()
    graph = gmnfx.compile(model, torch.randn(1, 2))
    untied = gmnfx.compile(LinearTwice(share=False), torch.randn(1, 2))
    # a symmetry of the untied twin permutes the three hidden layers independently; on the tied model it is not one
    for seed in range(20):
        perm = sample(untied, torch.Generator().manual_seed(seed))
        try:
            permute_model(model, graph, perm)
        except InputShapeError as error:
            assert "tied" in str(error) or "not a symmetry" in str(error)
            return
    raise AssertionError("no sampled untied symmetry was refused")


def test_bad_permutations_and_models_give_clear_errors():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    graph = gmnfx.compile(model, torch.randn(1, 2))
    with pytest.raises(InputShapeError, match="expected shape"):
        permute_model(model, graph, torch.arange(graph.num_nodes - 1))
    with pytest.raises(InputShapeError, match="not a permutation"):
        permute_model(model, graph, torch.zeros(graph.num_nodes, dtype=torch.long))
    with pytest.raises(InputShapeError, match="integer"):
        permute_model(model, graph, torch.arange(graph.num_nodes).float())
    with pytest.raises(GmnfxError, match="does not match the graph"):
        permute_model(nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2)), graph, torch.arange(graph.num_nodes))

"""group_order, sample and orbits against hand-derived groups and the VF2 oracle."""
from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
import torch.nn as nn

import gmnfx
from gmnfx.symmetry import group_order, orbits, sample, symmetry_structure
from gmnfx.symmetry.relabel import permute_graph
from gmnfx.testing import assert_graphs_equal, brute_force_group_order

from models import cases

CASES = cases()
VF2_CASES = [c for c in CASES if c[0] not in ("mlp", "attention 3 heads x 2")]  # VF2 is slow on larger groups


@pytest.mark.parametrize("name,model,example,expected", CASES, ids=[c[0] for c in CASES])
def test_group_order_matches_the_hand_derived_group(name, model, example, expected):
    assert group_order(gmnfx.compile(model.eval(), example)) == expected


@pytest.mark.parametrize("name,model,example,expected", VF2_CASES, ids=[c[0] for c in VF2_CASES])
def test_group_order_matches_vf2_enumeration(name, model, example, expected):
    graph = gmnfx.compile(model.eval(), example)
    assert group_order(graph) == brute_force_group_order(graph, max_nodes=45)


@pytest.mark.parametrize("name,model,example,expected", CASES, ids=[c[0] for c in CASES])
def test_samples_are_automorphisms(name, model, example, expected):
    graph = gmnfx.compile(model.eval(), example)
    for seed in range(3):
        perm = sample(graph, torch.Generator().manual_seed(seed))
        assert sorted(perm.tolist()) == list(range(graph.num_nodes))
        relabelled = permute_graph(graph, perm)
        relabelled.edge_weight = relabelled.edge_weight.clone()
        assert_graphs_equal(_structure_only(relabelled), _structure_only(graph))


def _structure_only(graph):
    """The graph with parameter values and BatchNorm statistics zeroed (what a symmetry must keep)."""
    from dataclasses import replace

    from gmnfx.schema import NodeCol

    feat = graph.node_feat.clone()
    feat[:, [NodeCol.NORM_MEAN, NodeCol.NORM_VAR]] = 0
    weight = torch.where(graph.edge_param >= 0, torch.zeros_like(graph.edge_weight), graph.edge_weight)
    weight = torch.where(graph.edge_tied >= 0, torch.zeros_like(weight), weight)
    return replace(graph, node_feat=feat, edge_weight=weight)


def test_samples_are_uniform_over_a_small_group():
    graph = gmnfx.compile(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)),
                          torch.randn(1, 2))
    assert group_order(graph) == 12
    structure, generator = symmetry_structure(graph), torch.Generator().manual_seed(0)
    counts = Counter(tuple(structure.sample(generator).tolist()) for _ in range(2400))
    assert len(counts) == 12
    # each element expected 200 times; a chi-square statistic with 11 dof above 35 has p < 3e-4
    chi2 = sum((c - 200) ** 2 / 200 for c in counts.values())
    assert chi2 < 35, counts


def test_orbits_group_interchangeable_neurons_and_fix_inputs_and_outputs():
    graph = gmnfx.compile(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), torch.randn(1, 3))
    ids = orbits(graph)
    hidden = (graph.node_type == 1).nonzero().flatten()
    assert len(set(ids[hidden].tolist())) == 1
    fixed = torch.cat([graph.input_nodes, graph.output_nodes])
    assert len(set(ids[fixed].tolist())) == fixed.numel()
    assert not set(ids[fixed].tolist()) & set(ids[hidden].tolist())


def test_group_order_of_a_large_network_is_exact_without_enumeration():
    widths = [16, 64, 64, 64, 10]
    layers = []
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    graph = gmnfx.compile(nn.Sequential(*layers[:-1]), torch.randn(1, 16))
    assert group_order(graph) == math.factorial(64) ** 3
    assert repr(symmetry_structure(graph)).endswith("order=2.042e+267)")


def test_symmetries_are_defined_on_parameter_graphs_only():
    graph = gmnfx.compile(nn.Linear(2, 2), torch.randn(1, 2), graph="computation")
    with pytest.raises(TypeError, match="ParameterGraph"):
        group_order(graph)

"""A zoo as graphs: compiled from the stored weights, cached, and the cache never stale."""
from __future__ import annotations

import os

import pytest
import torch

import gmnfx
from gmnfx.zoo.build import build_zoo
from gmnfx.zoo.graphs import cache_dir, load_model, zoo_graphs
from gmnfx.zoo.storage import Zoo


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    build_zoo(root, "diverse", 2, progress=False, log=None)
    return Zoo.open(root)


def test_graphs_hold_the_trained_weights(zoo):
    graphs = zoo_graphs(zoo)
    assert len(graphs) == 2
    for model_id, graph in zip(zoo.ids(), graphs):
        model = load_model(zoo, model_id)
        flat = gmnfx.flat_parameters(model)
        owned = graph.edge_param >= 0
        torch.testing.assert_close(graph.edge_weight[owned], flat[graph.edge_param[owned]])
        assert int(graph.edge_param[owned].unique().numel()) == flat.numel()


def test_second_load_reads_the_cache_and_equals_the_first(zoo):
    first = zoo_graphs(zoo)
    cached = sorted(os.listdir(cache_dir(zoo)))
    assert len(cached) == 2
    second = zoo_graphs(zoo)
    for a, b in zip(first, second):
        assert torch.equal(a.edge_weight, b.edge_weight) and torch.equal(a.edge_index, b.edge_index)
    assert Zoo.open(zoo.root).ids() == zoo.ids()  # the cache does not disturb the zoo


def test_unknown_model_id_is_named(zoo):
    with pytest.raises(KeyError, match="model 7 is not in the zoo"):
        zoo_graphs(zoo, [7])

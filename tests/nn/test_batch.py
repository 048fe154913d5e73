"""gmnfx.batch / GraphBatch: a disjoint union that keeps every graph's columns and numbering."""
from __future__ import annotations

import pytest
import torch

import gmnfx
from graphs import example_graphs


def test_batch_offsets_edges_by_node_counts_and_records_graph_ids():
    graphs = example_graphs()
    batch = gmnfx.batch(graphs)
    assert batch.num_graphs == 3
    assert batch.num_nodes == sum(g.num_nodes for g in graphs)
    assert batch.num_edges == sum(g.num_edges for g in graphs)
    for k, g in enumerate(graphs):
        n0, n1 = int(batch.node_ptr[k]), int(batch.node_ptr[k + 1])
        e0, e1 = int(batch.edge_ptr[k]), int(batch.edge_ptr[k + 1])
        assert torch.equal(batch.edge_index[:, e0:e1] - n0, g.edge_index)
        assert torch.equal(batch.node_feat[n0:n1], g.node_feat)
        assert torch.equal(batch.edge_feat[e0:e1], g.edge_feat)
        assert torch.equal(batch.edge_param[e0:e1], g.edge_param)
        assert bool((batch.node_graph[n0:n1] == k).all()) and bool((batch.edge_graph[e0:e1] == k).all())
        assert int(batch.param_ptr[k + 1] - batch.param_ptr[k]) == g.num_parameters


def test_split_edges_returns_each_graphs_edges_in_order():
    graphs = example_graphs()
    batch = gmnfx.batch(graphs)
    parts = batch.split_edges(batch.edge_weight)
    assert [len(p) for p in parts] == [g.num_edges for g in graphs]
    assert all(torch.equal(p, g.edge_weight) for p, g in zip(parts, graphs))
    assert [len(p) for p in batch.split_nodes(batch.node_feat)] == [g.num_nodes for g in graphs]


def test_split_edges_rejects_a_tensor_with_the_wrong_number_of_rows():
    batch = gmnfx.batch(example_graphs())
    with pytest.raises(ValueError, match=f"one row per edge \\({batch.num_edges} rows\\)"):
        batch.split_edges(torch.zeros(batch.num_edges + 1))


def test_in_and_out_segments_group_edges_by_destination_and_source():
    batch = gmnfx.batch(example_graphs())
    for segments, side in ((batch.in_segments(), 1), (batch.out_segments(), 0)):
        rowptr, perm = segments
        order = perm if perm is not None else torch.arange(batch.num_edges)
        nodes = batch.edge_index[side, order]
        expected = torch.repeat_interleave(torch.arange(batch.num_nodes), torch.diff(rowptr))
        assert torch.equal(nodes, expected)


def test_to_moves_every_tensor_and_cached_segments():
    batch = gmnfx.batch(example_graphs())
    batch.in_segments()
    moved = batch.to("cpu")
    assert moved is not batch and torch.equal(moved.edge_index, batch.edge_index)
    assert torch.equal(moved.in_segments().rowptr, batch.in_segments().rowptr)


def test_to_pyg_has_a_batch_vector_and_edge_attributes():
    batch = gmnfx.batch(example_graphs())
    data = batch.to_pyg()
    assert data.num_nodes == batch.num_nodes
    assert torch.equal(data.batch, batch.node_graph)
    assert data.edge_attr.shape == (batch.num_edges, batch.edge_feat.shape[1])


def test_batch_of_a_saved_and_loaded_graph_equals_the_original(tmp_path):
    graph = example_graphs()[1]
    graph.save(tmp_path / "g.safetensors")
    a, b = gmnfx.batch([graph]), gmnfx.batch([gmnfx.load_graph(tmp_path / "g.safetensors")])
    assert torch.equal(a.edge_feat, b.edge_feat) and torch.equal(a.node_feat, b.node_feat)


@pytest.mark.parametrize("bad, error, match", [
    ([], ValueError, "at least one graph"),
    ([object()], TypeError, r"graphs\[0\] is a object"),
])
def test_batch_rejects_bad_input_naming_it(bad, error, match):
    with pytest.raises(error, match=match):
        gmnfx.batch(bad)


def test_batch_of_a_single_graph_not_in_a_list_says_to_wrap_it():
    with pytest.raises(TypeError, match="wrap it in a list"):
        gmnfx.batch(example_graphs()[0])

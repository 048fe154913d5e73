"""gmnfx.nn.GMNLayer on plain tensors: gradients, chunked recomputation, PyG interop, edge cases, errors."""
from __future__ import annotations

import pytest
import torch

import gmnfx
from gmnfx.nn import GMNLayer, message_plan
from graphs import example_graphs


def _graph(num_nodes=6):
    edge_index = torch.tensor([[0, 0, 1, 2, 2, 3, 0], [2, 3, 3, 4, 4, 4, 4]])  # node 5 isolated, a double edge
    return edge_index, num_nodes


@pytest.mark.parametrize("options", [dict(), dict(aggregation="max"), dict(aggregation="pna", activation="silu"),
                                     dict(aggregation="sum", residual=True)])
@pytest.mark.parametrize("edge_chunk_size", [None, 2])
def test_layer_gradcheck_in_float64(options, edge_chunk_size):
    torch.manual_seed(0)
    edge_index, n = _graph()
    layer = GMNLayer(3, **options).double()
    plan = message_plan(edge_index, n, edge_chunk_size=edge_chunk_size)
    x = torch.randn(n, 3, dtype=torch.float64, requires_grad=True)
    e = torch.randn(edge_index.shape[1], 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, e: layer(x, edge_index, e, plan=plan), (x, e))


def test_layer_with_global_feature_gradcheck_over_two_graphs():
    torch.manual_seed(0)
    edge_index = torch.tensor([[0, 1, 3], [1, 2, 4]])
    batch = torch.tensor([0, 0, 0, 1, 1])
    layer = GMNLayer(2, global_feature=True, residual=True).double()
    plan = message_plan(edge_index, 5, node_graph=batch, edge_chunk_size=1)
    inputs = (torch.randn(5, 2, dtype=torch.float64, requires_grad=True),
              torch.randn(3, 2, dtype=torch.float64, requires_grad=True),
              torch.randn(2, 2, dtype=torch.float64, requires_grad=True))
    assert torch.autograd.gradcheck(lambda x, e, u: layer(x, edge_index, e, u, plan=plan), inputs)


def test_layer_runs_on_pyg_data():
    data = gmnfx.batch(example_graphs()).to_pyg()
    torch.manual_seed(0)
    x = torch.nn.Linear(data.x.shape[1], 16)(data.x)
    e = torch.nn.Linear(data.edge_attr.shape[1], 16)(data.edge_attr)
    layer = GMNLayer(16, global_feature=True)
    x_new, e_new, u_new = layer(x, data.edge_index, e, torch.zeros(3, 16), batch=data.batch)
    assert x_new.shape == x.shape and e_new.shape == e.shape and u_new.shape == (3, 16)


def test_a_graph_without_edges_keeps_shapes_and_messages_are_zero():
    layer = GMNLayer(4)
    x = torch.randn(3, 4)
    x_new, e_new = layer(x, torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, 4))
    assert x_new.shape == (3, 4) and e_new.shape == (0, 4)
    expected = layer.node_mlp(torch.cat([x, torch.zeros(3, 8)], dim=1))
    torch.testing.assert_close(x_new, expected)


def test_an_isolated_node_receives_no_messages():
    edge_index, n = _graph()
    layer = GMNLayer(4)
    x = torch.randn(n, 4)
    x_new, _ = layer(x, edge_index, torch.randn(edge_index.shape[1], 4))
    expected = layer.node_mlp(torch.cat([x[5], torch.zeros(8)]))
    torch.testing.assert_close(x_new[5], expected)


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 100])
def test_edge_chunks_cover_every_edge_once_at_node_boundaries(chunk_size):
    edge_index, n = _graph()
    plan = message_plan(edge_index, n, edge_chunk_size=chunk_size)
    for chunks, side in ((plan.in_chunks, 1), (plan.out_chunks, 0)):
        ids = torch.cat([c.edge_ids if c.edge_ids is not None else torch.arange(edge_index.shape[1]) for c in chunks])
        assert sorted(ids.tolist()) == list(range(edge_index.shape[1]))
        for c in chunks:
            if c.edge_ids is not None:
                nodes = edge_index[side, c.edge_ids]
                assert bool(((nodes >= c.node_start) & (nodes < c.node_stop)).all())


@pytest.mark.parametrize("call, match", [
    (lambda l: l(torch.randn(3, 5), torch.tensor([[0], [1]]), torch.randn(1, 4)), r"x of shape \[num_nodes, 4\]"),
    (lambda l: l(torch.randn(3, 4), torch.tensor([[0], [1]]), torch.randn(2, 4)), r"edge_attr of shape \[1, 4\]"),
    (lambda l: l(torch.randn(3, 4), torch.tensor([[0], [7]]), torch.randn(1, 4)), r"edge 0 \(0 -> 7\)"),
    (lambda l: l(torch.randn(3, 4), torch.tensor([0, 1]), torch.randn(1, 4)), r"edge_index of shape \[2, num_edges\]"),
])
def test_bad_inputs_are_refused_naming_the_problem(call, match):
    with pytest.raises(ValueError, match=match):
        call(GMNLayer(4))


def test_layer_with_a_global_feature_requires_u():
    with pytest.raises(ValueError, match=r"expected u of shape \[1, 4\]"):
        GMNLayer(4, global_feature=True)(torch.randn(3, 4), torch.tensor([[0], [1]]), torch.randn(1, 4))

"""gmnfx.nn.GMN: readout shapes, symmetry (invariance / equivariance), batching, chunking, errors."""
from __future__ import annotations

import pytest
import torch

import gmnfx
from gmnfx.nn import GMN
from gmnfx.symmetry import permute_model, sample
from gmnfx.symmetry.permute import edge_images
from gmnfx.testing import assert_equivariant
from graphs import example_graphs, tiny_model_and_input


def _gmn(readout="graph", **kwargs):
    torch.manual_seed(0)
    return GMN(out_dim=3, hidden_dim=8, num_layers=2, readout=readout, **kwargs).double().eval()


def _run(gmn):
    return lambda graph: gmn(graph).detach()


@pytest.mark.parametrize("readout, rows", [("graph", "graphs"), ("node", "nodes"), ("edge", "edges")])
def test_readout_shapes(readout, rows):
    graphs = example_graphs()
    batch = gmnfx.batch(graphs)
    out = _gmn(readout)(batch)
    expected = {"graphs": batch.num_graphs, "nodes": batch.num_nodes, "edges": batch.num_edges}[rows]
    assert out.shape == (expected, 3) and out.dtype == torch.float64 and bool(torch.isfinite(out).all())


@pytest.mark.parametrize("readout", ["graph", "node", "edge"])
def test_outputs_are_equivariant_to_node_relabelling(readout):
    gmn = _gmn(readout)
    for graph in example_graphs():
        assert_equivariant(_run(gmn), graph, readout=readout, trials=2, generator=torch.Generator().manual_seed(1),
                           atol=1e-9)


@pytest.mark.parametrize("options", [dict(aggregation="sum"), dict(aggregation="max"), dict(aggregation="pna"),
                                     dict(global_feature=True), dict(residual=True, activation="silu"),
                                     dict(global_feature=True, residual=True, aggregation="pna")])
def test_every_layer_option_keeps_the_graph_readout_invariant(options):
    gmn = _gmn("graph", **options)
    graph = example_graphs()[1]
    assert_equivariant(_run(gmn), graph, readout="graph", trials=2, atol=1e-9)
    assert_equivariant(_run(_gmn("node", **options)), graph, readout="node", trials=1, atol=1e-9)


def test_outputs_do_not_depend_on_the_order_of_the_edges():
    graph = example_graphs()[1]
    order = torch.randperm(graph.num_edges, generator=torch.Generator().manual_seed(2))
    shuffled = type(graph)(**{**graph.__dict__, **{name: getattr(graph, name)[..., order] if name == "edge_index"
                                                   else getattr(graph, name)[order]
                                                   for name in ("edge_index", "edge_weight", "edge_param", "edge_type",
                                                                "edge_pos", "edge_block", "edge_tied")}})
    for readout in ("graph", "node"):
        gmn = _gmn(readout)
        torch.testing.assert_close(gmn(shuffled), gmn(graph), rtol=1e-10, atol=1e-10)
    gmn = _gmn("edge")
    torch.testing.assert_close(gmn(shuffled), gmn(graph)[order], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_symmetric_copies_of_the_input_model_give_permuted_outputs(kind):
    model, x = tiny_model_and_input(kind)
    graph = gmnfx.compile(model, x)
    generator = torch.Generator().manual_seed(3)
    outputs = {r: _gmn(r)(graph) for r in ("graph", "node", "edge")}
    for _ in range(3):
        perm = sample(graph, generator)
        twin = gmnfx.compile(permute_model(model, graph, perm), x)
        image = edge_images(graph, perm)
        torch.testing.assert_close(_gmn("graph")(twin), outputs["graph"], rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(_gmn("node")(twin)[perm], outputs["node"], rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(_gmn("edge")(twin)[image], outputs["edge"], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("readout", ["graph", "node", "edge"])
def test_a_batch_of_mixed_architectures_equals_running_graphs_one_by_one(readout):
    gmn = _gmn(readout, global_feature=True)
    graphs = example_graphs()
    batch = gmnfx.batch(graphs)
    together = gmn(batch)
    alone = [gmn(g) for g in graphs]
    if readout == "graph":
        torch.testing.assert_close(together, torch.cat(alone), rtol=1e-10, atol=1e-10)
    else:
        parts = batch.split_nodes(together) if readout == "node" else batch.split_edges(together)
        for part, one in zip(parts, alone):
            torch.testing.assert_close(part, one, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("readout", ["graph", "edge"])
@pytest.mark.parametrize("aggregation", ["mean", "max", "pna"])
def test_edge_chunking_changes_neither_outputs_nor_gradients(readout, aggregation):
    batch = gmnfx.batch(example_graphs())
    whole = _gmn(readout, aggregation=aggregation, global_feature=True)
    chunked = _gmn(readout, aggregation=aggregation, global_feature=True, edge_chunk_size=97)
    chunked.load_state_dict(whole.state_dict())
    outputs, grads = [], []
    for gmn in (whole, chunked):
        out = gmn(batch)
        weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
        (out * weights).sum().backward()
        outputs.append(out.detach())
        grads.append({name: torch.zeros_like(p) if p.grad is None else p.grad for name, p in gmn.named_parameters()})
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-10, atol=1e-10)
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-9, atol=1e-10, msg=name)


def test_gradients_reach_every_parameter():
    gmn = _gmn("graph", global_feature=True, residual=True)
    gmn(gmnfx.batch(example_graphs())).sum().backward()
    missing = [name for name, p in gmn.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    # embeddings of codes these graphs never use receive zero gradient by construction
    assert all("encoder" in name and name.split(".")[1] in ("layer", "io_tensor", "padding_mode", "operand",
                                                            "node_type", "op", "activation", "edge_type")
               for name in missing), missing


def test_gmn_accepts_a_single_graph_or_a_list():
    gmn = _gmn("graph")
    graphs = example_graphs()
    torch.testing.assert_close(gmn(graphs[0]), gmn([graphs[0]]))
    assert gmn(list(graphs)).shape == (3, 3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(readout="nodes"), "readout must be one of"),
    (dict(aggregation="median"), "aggregation must be one of"),
    (dict(activation="gelu"), "activation must be one of"),
    (dict(hidden_dim=0), "hidden_dim >= 1"),
])
def test_bad_options_are_refused_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GMN(out_dim=1, **kwargs)


def test_a_graph_deeper_than_the_layer_table_is_refused_with_the_fix():
    gmn = GMN(out_dim=1, hidden_dim=4, max_layers=2)
    with pytest.raises(ValueError, match="larger max_layers"):
        gmn(example_graphs()[0])


def test_gmn_refuses_something_that_is_not_a_graph():
    with pytest.raises(TypeError, match="gmnfx.batch"):
        _gmn()(torch.zeros(3))


def test_a_freshly_initialized_gmn_keeps_its_signal_through_the_layers():
    """PyTorch's default Linear init shrinks features about 3x per map: a 4-layer GMN would start out constant."""
    torch.manual_seed(0)
    graph = example_graphs()[1]
    with torch.no_grad():
        node_out = GMN(out_dim=4, hidden_dim=32, num_layers=4, readout="node")(graph)
        assert float(node_out.std()) > 0.1
        gmn = GMN(out_dim=1, hidden_dim=32, num_layers=4)
        scaled = gmnfx.batch([graph])
        scaled.edge_weight = scaled.edge_weight * 3
        assert float((gmn(graph) - gmn(scaled)).abs()) > 1e-3

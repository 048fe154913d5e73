"""Graph containers: storage, interop with PyG and networkx, summaries."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

import gmnfx
from gmnfx.schema import EDGE_FEATURES, NODE_FEATURES, EdgeCol, EdgeType


def _model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)).eval()


@pytest.fixture(params=["parameter", "computation"])
def graph(request):
    return gmnfx.compile(_model(), torch.randn(1, 2, 4, 4), graph=request.param)


def test_save_and_load_round_trip(graph, tmp_path):
    path = tmp_path / "g.safetensors"
    graph.save(path)
    loaded = gmnfx.load_graph(path)
    assert type(loaded) is type(graph)
    for name in ("edge_index", "edge_weight", "edge_param", "edge_type", "edge_pos", "edge_block", "block_attrs",
                 "node_feat", "input_nodes", "output_nodes"):
        assert torch.equal(getattr(loaded, name), getattr(graph, name)), name
    assert torch.equal(loaded.edge_feat, graph.edge_feat)
    assert loaded.layers == graph.layers and loaded.param_signature == graph.param_signature
    assert loaded.input_shapes == graph.input_shapes and loaded.output_shapes == graph.output_shapes
    assert [p.name for p in tmp_path.iterdir()] == ["g.safetensors"]  # no temp file left behind


def test_loaded_computation_graph_still_simulates(tmp_path):
    model = _model()
    graph = gmnfx.compile(model, torch.randn(1, 2, 4, 4), graph="computation")
    graph.save(tmp_path / "c.safetensors")
    x = torch.randn(3, 2, 4, 4)
    out = gmnfx.simulate(gmnfx.load_graph(tmp_path / "c.safetensors"), x)
    assert torch.allclose(out, model(x), rtol=1e-5, atol=1e-6)


def test_edge_feat_columns(graph):
    feat = graph.edge_feat
    assert feat.shape == (graph.num_edges, len(EDGE_FEATURES))
    assert torch.equal(feat[:, EdgeCol.VALUE], graph.edge_weight)
    assert torch.equal(feat[:, EdgeCol.EDGE_TYPE].long(), graph.edge_type)
    conv = graph.edge_type == EdgeType.CONV
    assert bool((feat[conv, EdgeCol.KERNEL_1] == 3).all()) and bool((feat[conv, EdgeCol.PADDING_2] == 1).all())
    assert graph.node_feat.shape == (graph.num_nodes, len(NODE_FEATURES))


def test_to_pyg(graph):
    data = graph.to_pyg()
    assert data.num_nodes == graph.num_nodes
    assert torch.equal(data.edge_index, graph.edge_index)
    assert data.edge_attr.shape == (graph.num_edges, len(EDGE_FEATURES))
    assert torch.equal(data.edge_param, graph.edge_param)
    data.validate(raise_on_error=True)


def test_to_networkx(graph):
    import networkx as nx

    g = graph.to_networkx()
    assert g.number_of_nodes() == graph.num_nodes and g.number_of_edges() == graph.num_edges
    assert nx.is_directed_acyclic_graph(g)
    u, v = graph.edge_index[:, 0].tolist()
    attrs = next(iter(g.get_edge_data(u, v).values()))
    assert set(EDGE_FEATURES) <= set(attrs) and "param" in attrs


def test_layer_table_accounts_for_every_edge_and_parameter():
    graph = gmnfx.compile(_model(), torch.randn(1, 2, 4, 4))
    table = graph.layer_table()
    assert sum(row["edges"] for row in table) == graph.num_edges
    assert sum(row["nodes"] for row in table) == graph.num_nodes
    assert sum(row["parameters"] for row in table) == graph.num_parameters
    assert [row["kind"] for row in table][:2] == ["input", "conv"]
    assert "edges:" in graph.summary()


def test_load_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(gmnfx.GraphFormatError, match="no graph file"):
        gmnfx.load_graph(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(gmnfx.GraphFormatError, match="not a readable safetensors file"):
        gmnfx.load_graph(junk)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, str(foreign))
    with pytest.raises(gmnfx.GraphFormatError, match="not a gmnfx graph"):
        gmnfx.load_graph(foreign)


def test_load_rejects_inconsistent_tensors(tmp_path):
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    graph = gmnfx.compile(_model(), torch.randn(1, 2, 4, 4))
    path = tmp_path / "g.safetensors"
    graph.save(path)
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(path))
    tensors["edge_weight"] = tensors["edge_weight"][:-1]
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(gmnfx.GraphFormatError, match="inconsistent tensor shapes"):
        gmnfx.load_graph(path)
    meta = json.loads(metadata["gmnfx"])
    meta["format_version"] = 99
    save_file(load_file(str(path)), str(path), metadata={"gmnfx": json.dumps(meta)})
    with pytest.raises(gmnfx.GraphFormatError, match="format version 99"):
        gmnfx.load_graph(path)

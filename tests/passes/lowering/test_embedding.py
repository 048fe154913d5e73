"""Token inputs and embeddings: one-hot vocabulary inputs, learned position tables, weight tying."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import gmnfx
from gmnfx.params import ParamTable
from gmnfx.schema import EdgeType, NodeCol, NodeOp, NodeType
from gmnfx.testing import check_compiles

V, D, T = 7, 3, 4


class TokenClassifier(nn.Module):
    def __init__(self, vocab: int = V, dim: int = D, padding_idx=None):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim, padding_idx=padding_idx)
        self.fc = nn.Linear(dim, 2)

    def forward(self, ids):
        return self.fc(torch.tanh(self.emb(ids)))


class TiedLM(nn.Module):
    """GPT-2 style: a learned position table and an output head sharing the token embedding matrix."""

    def __init__(self, functional_head: bool = False):
        super().__init__()
        self.emb = nn.Embedding(V, D)
        self.pos = nn.Parameter(torch.randn(1, T, D))
        self.mlp = nn.Linear(D, D)
        self.functional_head = functional_head
        if not functional_head:
            self.head = nn.Linear(D, V, bias=False)
            self.head.weight = self.emb.weight

    def forward(self, ids):
        h = self.emb(ids) + self.pos[:, : ids.shape[1]]
        h = h + torch.relu(self.mlp(h))
        return F.linear(h, self.emb.weight) if self.functional_head else self.head(h)


def _ids(batch: int = 2, length: int = T, vocab: int = V) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, length))


def test_token_ids_are_one_hot_inputs_read_by_embedding_edges():
    model = TokenClassifier()
    pg, cg = check_compiles(model, _ids())
    assert pg.input_shapes == [(T,)] and pg.input_encodings == [{"one_hot": V}]
    inputs = pg.node_type == NodeType.INPUT
    assert int(inputs.sum()) == V  # one node per vocabulary entry, shared by all positions
    emb = pg.edge_type == EdgeType.EMBEDDING
    assert int(emb.sum()) == V * D
    table = model.emb.weight.detach()
    src, dst = pg.edge_index[:, emb]
    flat = pg.edge_param[emb]
    assert torch.equal(pg.edge_weight[emb], table.reshape(-1)[flat])
    vocab_of_src = pg.node_feat[src, NodeCol.IO_INDEX].long()  # io_index of an input node: its vocabulary entry
    assert torch.equal(vocab_of_src, flat // D)
    assert len(set(zip(dst.tolist(), (flat % D).tolist()))) == D  # feature d of every entry goes to one node
    assert int((cg.node_type == NodeType.INPUT).sum()) == T * V  # one input neuron per (position, entry)
    assert cg.input_nodes.numel() == T * V and cg.input_encodings == [{"one_hot": V}]


@pytest.mark.parametrize("frontend", ["fx", "export"])
def test_functional_and_aten_embeddings(frontend):
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.table = nn.Parameter(torch.randn(V, D))
            self.fc = nn.Linear(D, 1)

        def forward(self, ids):
            return self.fc(F.embedding(ids, self.table))

    pg, _ = check_compiles(Functional(), _ids(), frontend=frontend)
    assert int((pg.edge_type == EdgeType.EMBEDDING).sum()) == V * D


def test_token_ids_move_through_bookkeeping_ops():
    class Shifted(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(V, D)
            self.fc = nn.Linear(2 * D, 2)

        def forward(self, ids):  # ids: [batch, 2, T]
            pairs = ids.transpose(1, 2).flip(1)[:, 1:]  # [batch, T - 1, 2]
            return self.fc(self.emb(pairs).flatten(2))

    pg, _ = check_compiles(Shifted(), torch.randint(0, V, (2, 2, T)))
    assert pg.input_shapes == [(2, T)]


def test_scalar_token_per_sample():
    pg, cg = check_compiles(TokenClassifier(), torch.randint(0, V, (3,)))
    assert pg.input_shapes == [()] and cg.input_nodes.numel() == V


def test_input_read_by_two_tables_is_one_hot_over_the_larger_vocabulary():
    class TwoTables(nn.Module):
        def __init__(self):
            super().__init__()
            self.small, self.large = nn.Embedding(V, D), nn.Embedding(V + 3, D)

        def forward(self, ids):
            return self.small(ids) + self.large(ids)

    pg, _ = check_compiles(TwoTables(), _ids(), _ids(batch=3))  # ids valid for both tables
    assert pg.input_encodings == [{"one_hot": V + 3}]


def test_padding_row_stays_a_parameter_on_its_edges():
    model = TokenClassifier(padding_idx=0)
    ids = _ids()
    ids[:, 0] = 0
    pg, _ = check_compiles(model, ids)
    row0 = (pg.edge_type == EdgeType.EMBEDDING) & (pg.edge_param < D)
    assert int(row0.sum()) == D and bool((pg.edge_weight[row0] == 0).all())


def test_embedding_with_max_norm_is_rejected():
    model = TokenClassifier()
    model.emb.max_norm = 1.0
    with pytest.raises(gmnfx.LoweringError, match="max_norm"):
        gmnfx.compile(model, _ids())


def test_integer_input_reaching_another_op_is_rejected():
    class MaskedSum(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(V, D)

        def forward(self, ids):
            mask = (ids > 0).float()
            return self.emb(ids).sum(-1) * mask

    with pytest.raises(gmnfx.LoweringError, match=r"integer input 'ids' .* is read by .*gt"):
        gmnfx.compile(MaskedSum(), _ids())


def test_integer_input_read_by_no_embedding_is_rejected():
    class Cast(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(T, 1)

        def forward(self, ids):
            return self.fc(ids.float())

    with pytest.raises(gmnfx.LoweringError, match="integer input 'ids'"):
        gmnfx.compile(Cast(), _ids())


def test_simulate_rejects_ids_outside_the_vocabulary_and_float_ids():
    cg = gmnfx.compile(TokenClassifier(), _ids(), graph="computation")
    with pytest.raises(gmnfx.InputShapeError, match=r"in \[0, 7\)"):
        gmnfx.simulate(cg, torch.full((1, T), V))
    with pytest.raises(gmnfx.InputShapeError, match="integer token ids"):
        gmnfx.simulate(cg, torch.zeros(1, T))


def test_token_graph_saves_loads_and_simulates(tmp_path):
    model = TokenClassifier()
    cg = gmnfx.compile(model, _ids(), graph="computation")
    cg.save(tmp_path / "tokens.safetensors")
    loaded = gmnfx.load_graph(tmp_path / "tokens.safetensors")
    assert loaded.input_encodings == [{"one_hot": V}]
    ids = _ids(batch=5)
    assert torch.allclose(gmnfx.simulate(loaded, ids), model(ids), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("frontend", ["fx", "export"])
def test_position_ids_buffer_selects_rows_of_a_learned_table(frontend):
    class Positions(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.pos = nn.Embedding(V, D), nn.Embedding(T, D)
            self.register_buffer("position_ids", torch.arange(T).expand(1, -1))
            self.fc = nn.Linear(D, 2)

        def forward(self, ids):
            return self.fc(self.tok(ids) + self.pos(self.position_ids[:, : ids.shape[1]]))

    model = Positions()
    pg, _ = check_compiles(model, _ids(), frontend=frontend)
    pos_params = torch.arange(V * D, (V + T) * D)
    on_bias = pg.edge_param[pg.edge_type == EdgeType.BIAS]
    assert set(pos_params.tolist()) <= set(on_bias.tolist())  # the table's rows sit on BIAS edges
    assert "position_ids" not in [name for name, _ in pg.param_signature]


def test_arange_positions_and_segment_ids_expanded_over_the_batch():
    class Segments(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.pos, self.seg = nn.Embedding(V, D), nn.Embedding(T, D), nn.Embedding(2, D)
            self.register_buffer("segments", torch.tensor([[0, 0, 1, 1]]), persistent=False)

        def forward(self, ids):
            batch, length = ids.shape
            segments = self.segments[:, :length].expand(batch, length)  # the same ids for every sample
            return self.tok(ids) + self.pos(torch.arange(length)) + self.seg(segments)

    model = Segments()
    pg, _ = check_compiles(model, _ids(batch=3))
    bias = pg.edge_param[pg.edge_type == EdgeType.BIAS]
    for table in (model.pos.weight, model.seg.weight):
        entry = ParamTable(model).entry_for(table)
        assert set(range(entry.offset, entry.offset + entry.numel)) <= set(bias.tolist())


@pytest.mark.parametrize("functional_head", [False, True])
def test_tied_output_head_reuses_the_embedding_parameters(functional_head):
    model = TiedLM(functional_head)
    pg, cg = check_compiles(model, _ids())
    flat = gmnfx.flat_parameters(model)
    assert torch.equal(torch.sort(pg.edge_param[pg.edge_param >= 0]).values, torch.arange(flat.numel()))
    tied = pg.edge_type == EdgeType.TIED
    assert int(tied.sum()) == V * D
    assert bool((pg.edge_param[tied] == -1).all())
    repeats = pg.edge_tied[tied]
    table = ParamTable(model).entry_for(model.emb.weight)
    assert torch.equal(torch.sort(repeats).values, torch.arange(table.offset, table.offset + V * D))
    assert torch.equal(pg.edge_weight[tied], flat[repeats])
    assert bool((pg.edge_tied[~tied] == -1).all()) and bool((cg.edge_tied == -1).all())
    head_dst = pg.edge_index[1, tied]
    assert bool((pg.node_type[head_dst] == NodeType.OUTPUT).all())


def test_edge_tied_is_saved_and_exported(tmp_path):
    pg = gmnfx.compile(TiedLM(), _ids())
    pg.save(tmp_path / "tied.safetensors")
    loaded = gmnfx.load_graph(tmp_path / "tied.safetensors")
    assert torch.equal(loaded.edge_tied, pg.edge_tied)
    # to_networkx, not to_pyg: importing torch_geometric patches torch.index_select, which fx then traces into
    exported = sorted(pg.to_networkx().edges(data="tied"))
    assert exported == sorted(zip(*pg.edge_index.tolist(), pg.edge_tied.tolist()))


def test_default_test_inputs_are_ids_within_the_vocabulary():
    from gmnfx.testing import default_test_inputs

    cg = gmnfx.compile(TokenClassifier(vocab=3), _ids(vocab=3), graph="computation")
    (ids,) = default_test_inputs(cg, (_ids(vocab=3),))
    assert ids.dtype == torch.long and ids.shape == (3, T) and 0 <= int(ids.min()) and int(ids.max()) < 3


def test_token_inputs_are_input_nodes_with_the_input_op():
    pg = gmnfx.compile(TokenClassifier(), _ids())
    inputs = pg.node_type == NodeType.INPUT
    assert bool((pg.node_feat[inputs, NodeCol.OP] == NodeOp.INPUT).all())
    assert sorted(pg.node_feat[inputs, NodeCol.IO_INDEX].long().tolist()) == list(range(V))

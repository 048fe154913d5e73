"""Activations whose batch dim is merged with the next one: ``x.view(-1, D)`` of ``[batch, T, D]``."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import gmnfx
from gmnfx.schema import EdgeType
from gmnfx.testing import check_compiles

FRONTENDS = ["fx", "export"]
BATCHES = [1, 3]


class RowWise(nn.Module):
    """Every row-wise rule on merged ``[batch * T, ...]`` rows (or, with ``merge=False``, on ``[batch, T, ...]``)."""

    def __init__(self, merge: bool = True, d: int = 4, hidden: int = 6):
        super().__init__()
        self.merge = merge
        self.fc = nn.Linear(d, hidden)
        self.ln = nn.LayerNorm(hidden)
        self.scale = nn.Parameter(torch.randn(hidden))
        self.shift = nn.Parameter(torch.randn(hidden))
        self.act = nn.GELU()
        self.drop = nn.Dropout(0.2)
        self.out = nn.Linear(hidden, d)

    def forward(self, x):
        b, t, d = x.shape
        h = torch.relu(self.fc(x.view(-1, d) if self.merge else x))
        g = self.ln(h) * self.scale + self.shift
        g = g - 0.5 * h + g * torch.sigmoid(h) - h / 3.0
        g = torch.tanh(-g) + g ** 2
        g = F.linear(self.drop(self.act(g)), self.out.weight, self.out.bias)
        return g.view(b, t, -1)


@pytest.mark.parametrize("frontend", FRONTENDS)
@pytest.mark.parametrize("batch", BATCHES)
def test_row_wise_rules_accept_merged_rows(frontend, batch):
    check_compiles(RowWise(), torch.randn(batch, 5, 4), torch.randn(2, 5, 4), frontend=frontend)


@pytest.mark.parametrize("batch", BATCHES)
def test_merged_rows_give_the_same_graphs_as_per_sample_rows(batch):
    x = torch.randn(batch, 5, 4)
    merged, per_sample = RowWise(merge=True).eval(), RowWise(merge=False).eval()
    per_sample.load_state_dict(merged.state_dict())
    for kind in ("parameter", "computation"):
        a, b = gmnfx.compile(merged, x, graph=kind), gmnfx.compile(per_sample, x, graph=kind)
        assert torch.equal(a.edge_index, b.edge_index)
        assert torch.equal(a.edge_weight, b.edge_weight)
        assert torch.equal(a.edge_feat, b.edge_feat)
        assert torch.equal(a.node_feat, b.node_feat)


def test_a_dense_layer_on_merged_rows_shares_its_weights_across_rows():
    class TokenDense(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(x.reshape(-1, 4)).view(x.shape[0], 7, 3)

    pg, cg = check_compiles(TokenDense(), torch.randn(2, 7, 4))
    assert int((pg.edge_type == EdgeType.LINEAR).sum()) == 4 * 3
    assert int((cg.edge_type == EdgeType.LINEAR).sum()) == 7 * 4 * 3


MERGES = {  # form: (merge [batch, T, D] into rows, unmerge the rows h back to [batch, T, ...])
    "view": (lambda x: x.view(-1, x.size(-1)),
             lambda h, x: h.view(x.size()[:-1] + (h.size(-1),))),
    "reshape": (lambda x: x.reshape(x.shape[0] * x.shape[1], x.shape[2]),
                lambda h, x: h.reshape(x.shape[0], x.shape[1], -1)),
    "flatten": (lambda x: x.flatten(0, 1),
                lambda h, x: h.unflatten(0, (x.shape[0], x.shape[1]))),
    "flatten_3d_rows": (lambda x: x.unsqueeze(2).flatten(0, 1),
                        lambda h, x: h.reshape(x.shape[0], x.shape[1], -1)),
}


class Merge(nn.Module):
    def __init__(self, form: str):
        super().__init__()
        self.merge, self.unmerge = MERGES[form]
        self.fc0 = nn.Linear(4, 4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.fc0(x)
        return self.unmerge(torch.sigmoid(self.fc(self.merge(x))), x)


@pytest.mark.parametrize("frontend", FRONTENDS)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("form", sorted(MERGES))
def test_every_way_of_merging_and_unmerging_the_batch_dim(form, batch, frontend):
    check_compiles(Merge(form), torch.randn(batch, 5, 4), torch.randn(2, 5, 4), frontend=frontend)


class Bookkeeping(nn.Module):
    """Neuron bookkeeping on merged rows: chunk, slice, cat, expand, transpose of the last dims, identity."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 8)
        self.out = nn.Linear(4, 4)

    def forward(self, x):
        h = self.fc(x).view(-1, 8)
        a, b = h.chunk(2, dim=-1)
        g = torch.cat([a[:, :2] * b[:, 2:], nn.functional.dropout(b[:, :2], 0.1, False)], dim=-1)
        g = g.unflatten(-1, (2, 2)).transpose(-1, -2).reshape(-1, 4) + a[:, :1].expand(-1, 4)
        return self.out(g).view(x.shape)


@pytest.mark.parametrize("frontend", FRONTENDS)
@pytest.mark.parametrize("batch", BATCHES)
def test_bookkeeping_keeps_rows_merged(frontend, batch):
    check_compiles(Bookkeeping(), torch.randn(batch, 3, 4), torch.randn(2, 3, 4), frontend=frontend)


@pytest.mark.parametrize("batch", BATCHES)
def test_a_product_with_a_parameter_matrix_accepts_merged_rows(batch):
    class TimesWeight(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.weight = nn.Parameter(torch.randn(4, 3))

        def forward(self, x):
            h = self.fc(x).view(-1, 4)
            return (torch.mm(h, self.weight) + h @ self.weight).view(x.shape[0], x.shape[1], 3)

    check_compiles(TimesWeight(), torch.randn(batch, 5, 4), torch.randn(2, 5, 4))


# ---------------------------------------------------------------------- errors
class Misuse(nn.Module):
    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode
        self.fc = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x):
        b, t, d = x.shape
        h = self.fc(x.view(-1, d))
        if self.mode == "output":
            return h
        if self.mode == "batchnorm":  # channels are dim 1 of [b*t, 4]: T == C must not be mistaken for them
            return self.bn(h).view(b, t, d)
        if self.mode == "mean":
            return h.mean(0)
        if self.mode == "two_activations":
            return torch.mm(h, h).view(b, t, d)
        if self.mode == "rows":
            return (h.view(-1, 1, d) + x[:, :2].reshape(-1, d)).sum(-1)
        if self.mode == "broadcast":
            return (h + self.fc(x[:, :1])).sum(0)
        raise ValueError(self.mode)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("mode, message", [
    ("output", "output 0 of the model has its batch dim merged"),
    ("batchnorm", "cannot read an activation whose batch dim is merged"),
    ("mean", "cannot read an activation whose batch dim is merged"),
    ("rows", "same rows per sample"),
    ("broadcast", "keep the merged batch dim first"),
])
def test_misuse_of_merged_rows_is_a_clear_error(mode, message, batch):
    with pytest.raises(gmnfx.GmnfxError, match=message):
        gmnfx.compile(Misuse(mode), torch.randn(batch, 4, 4))


def test_a_product_of_two_merged_activations_is_rejected():
    with pytest.raises(gmnfx.GmnfxError, match="cannot read an activation whose batch dim is merged"):
        gmnfx.compile(Misuse("two_activations"), torch.randn(1, 4, 4))


class MovesBatch(nn.Module):
    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        if self.mode == "transpose":
            return self.fc(x.transpose(0, 1)).transpose(0, 1)
        return self.fc(x.squeeze(0)).unsqueeze(0)


@pytest.mark.parametrize("mode", ["transpose", "squeeze"])
def test_with_batch_size_one_moving_the_batch_dim_is_not_taken_for_a_merge(mode):
    with pytest.raises(gmnfx.GmnfxError, match="does not keep the batch dim first"):
        gmnfx.compile(MovesBatch(mode), torch.randn(1, 5, 4))


def test_with_batch_size_three_moving_the_batch_dim_is_an_error():
    with pytest.raises(gmnfx.GmnfxError, match="moves the batch dimension"):
        gmnfx.compile(MovesBatch("transpose"), torch.randn(3, 5, 4))


def test_merging_rows_of_different_samples_is_an_error():
    class Interleave(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            h = self.fc(x.transpose(0, 1).reshape(-1, 4))  # rows ordered token-major: samples interleaved
            return h.view(x.shape[1], x.shape[0], 4).transpose(0, 1)

    with pytest.raises(gmnfx.GmnfxError, match="mixes elements of different samples"):
        gmnfx.compile(Interleave(), torch.randn(2, 4, 4))

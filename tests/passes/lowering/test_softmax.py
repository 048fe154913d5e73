"""Lowering of softmax (LOGSUMEXP + SOFTMAX nodes) and of the constant masks applied before it."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import gmnfx
from gmnfx.errors import LoweringError
from gmnfx.schema import EdgeType, NodeCol, NodeOp
from gmnfx.testing import check_compiles


class Softmaxed(nn.Module):
    def __init__(self, dim: int, form: str = "function"):
        super().__init__()
        self.fc = nn.Linear(4, 6)
        self.dim, self.form = dim, form
        self.softmax = nn.Softmax(dim)

    def forward(self, x):  # x: [B, 3, 4]
        y = self.fc(x)
        if self.form == "module":
            return self.softmax(y)
        if self.form == "method":
            return y.softmax(self.dim)
        return F.softmax(y, dim=self.dim)


@pytest.mark.parametrize("dim", [-1, 1, 2])
@pytest.mark.parametrize("form", ["function", "module", "method"])
def test_softmax_simulates_exactly(dim, form):
    check_compiles(Softmaxed(dim, form), torch.randn(2, 3, 4) * 3)


def test_softmax_over_features_has_one_group_node_and_one_node_per_feature():
    pg, cg = check_compiles(Softmaxed(-1), torch.randn(2, 3, 4))
    op = pg.node_feat[:, NodeCol.OP].long()
    assert int((op == NodeOp.LOGSUMEXP).sum()) == 1  # the group of all 6 features, for every token
    assert int((op == NodeOp.SOFTMAX).sum()) == 6
    cop = cg.node_feat[:, NodeCol.OP].long()
    assert int((cop == NodeOp.LOGSUMEXP).sum()) == 3  # one group per token in the computation graph
    assert int((cg.edge_type == EdgeType.NORM_STATS_IN).sum()) == 18


def test_softmax_over_the_batch_dim_is_rejected():
    with pytest.raises(LoweringError, match="softmax over the batch dimension"):
        gmnfx.compile(Softmaxed(0), torch.randn(2, 3, 4))


class MaskedScores(nn.Module):
    def __init__(self, form: str):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.form = form
        self.register_buffer("keep", torch.tril(torch.ones(3, 3, dtype=torch.bool)))

    def forward(self, x):  # x: [B, 3, 4]
        scores = self.fc(x)
        if self.form == "masked_fill":
            scores = scores.masked_fill(~self.keep, float("-inf"))
        elif self.form == "where":
            scores = torch.where(self.keep, scores, torch.tensor(float("-inf")))
        else:
            scores = scores + torch.zeros(3, 3).masked_fill(~self.keep, float("-inf"))
        return torch.softmax(scores, dim=-1)


@pytest.mark.parametrize("form", ["masked_fill", "where", "additive"])
@pytest.mark.parametrize("frontend", ["fx", "export"])
def test_constant_masks_give_exact_zeros_and_finite_edge_weights(form, frontend):
    pg, cg = check_compiles(MaskedScores(form), torch.randn(2, 3, 4), frontend=frontend)
    for g in (pg, cg):
        assert bool(torch.isfinite(g.edge_weight).all())
    out = gmnfx.simulate(cg, torch.randn(5, 3, 4))
    assert bool((out[:, 0, 1:] == 0).all())


class SampleMask(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x, mask):
        return torch.softmax(self.fc(x).masked_fill(mask, float("-inf")), dim=-1)


def test_a_mask_given_as_input_is_rejected():
    x, mask = torch.randn(2, 3, 4), torch.rand(2, 3, 3) > 0.5
    with pytest.raises(gmnfx.GmnfxError, match="mask"):
        gmnfx.compile(SampleMask(), (x, mask))


class LogSoftmaxed(nn.Module):
    def __init__(self, form: str):
        super().__init__()
        self.fc, self.form, self.log_softmax = nn.Linear(4, 5), form, nn.LogSoftmax(dim=-1)

    def forward(self, x):
        y = self.fc(x)
        if self.form == "module":
            return self.log_softmax(y)
        return F.log_softmax(y, dim=-1) if self.form == "function" else y.log_softmax(1)


@pytest.mark.parametrize("form", ["function", "module", "method"])
@pytest.mark.parametrize("frontend", ["fx", "export"])
def test_log_softmax_is_the_input_minus_its_group_logsumexp(form, frontend):
    pg, _ = check_compiles(LogSoftmaxed(form), torch.randn(2, 4) * 3, frontend=frontend)
    op = pg.node_feat[:, NodeCol.OP].long()
    assert int((op == NodeOp.LOGSUMEXP).sum()) == 1 and int((op == NodeOp.SOFTMAX).sum()) == 0
    assert sorted(pg.edge_weight[pg.edge_type == EdgeType.SKIP].tolist()) == [-1.0] * 5 + [1.0] * 5

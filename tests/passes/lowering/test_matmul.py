"""Lowering of matrix products: with parameters (dense layers) and between activations (PROD nodes)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import gmnfx
from gmnfx.errors import LoweringError
from gmnfx.schema import EdgeCol, EdgeType, NodeCol, NodeOp
from gmnfx.testing import check_compiles


class RightWeight(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 6))

    def forward(self, x):
        return torch.relu(x @ self.w)


class TokenMixing(nn.Module):
    """MLP-Mixer style: a parameter matrix on the left mixes the token dim."""

    def __init__(self):
        super().__init__()
        self.mix = nn.Parameter(torch.randn(3, 5))

    def forward(self, x):  # x: [B, 5, 4]
        return torch.matmul(self.mix, x)


class Bilinear(nn.Module):
    def __init__(self, form: str):
        super().__init__()
        self.form = form
        self.a, self.b = nn.Linear(4, 6), nn.Linear(4, 6)

    def forward(self, x):  # x: [B, 3, 4]
        a, b = self.a(x), self.b(x)
        if self.form == "bmm":
            return torch.bmm(a, b.transpose(1, 2))
        if self.form == "matvec":
            return (a @ b[:, 0, :].unsqueeze(-1)).squeeze(-1)
        if self.form == "vecmat":
            return b[:, :1, :] @ a.transpose(1, 2)
        if self.form == "broadcast":
            return a.unsqueeze(1) @ b.transpose(1, 2).unsqueeze(1)
        return a.transpose(-1, -2).matmul(b)


def test_activation_times_parameter_is_a_dense_layer():
    pg, _ = check_compiles(RightWeight(), torch.randn(2, 4))
    assert int((pg.edge_type == EdgeType.LINEAR).sum()) == 24


class WeightVector(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4))

    def forward(self, x):
        return x @ self.w


def test_activation_times_parameter_vector_is_a_single_output_dense_layer():
    pg, _ = check_compiles(WeightVector(), torch.randn(2, 4))
    assert int((pg.edge_type == EdgeType.LINEAR).sum()) == 4


class BatchMixing(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):  # [B, 4] @ [B, 4, 4] broadcasts x's batch dim as a matrix row dim
        return x @ self.fc(x).unsqueeze(1).expand(-1, 4, -1)


def test_a_product_that_mixes_samples_is_rejected():
    with pytest.raises(LoweringError, match="mixes samples"):
        gmnfx.compile(BatchMixing(), torch.randn(4, 4))


def test_parameter_times_activation_mixes_the_second_to_last_dim():
    pg, _ = check_compiles(TokenMixing(), torch.randn(2, 5, 4))
    assert int((pg.edge_type == EdgeType.LINEAR).sum()) == 15
    assert len(pg.output_nodes.unique()) == 3  # one node per mixed token


@pytest.mark.parametrize("form", ["bmm", "matvec", "vecmat", "broadcast", "transposed"])
def test_products_of_activations_simulate_exactly(form):
    check_compiles(Bilinear(form), torch.randn(2, 3, 4))


def test_product_nodes_pair_one_channel_of_each_factor_and_mark_the_operand():
    pg, _ = check_compiles(Bilinear("bmm"), torch.randn(2, 3, 4))
    op = pg.node_feat[:, NodeCol.OP].long()
    products = torch.nonzero(op == NodeOp.PROD).squeeze(1)
    assert products.numel() == 6  # one per inner-dim pair (a_j, b_j)
    product_edges = pg.edge_type == EdgeType.PRODUCT
    operand = pg.edge_feat[:, EdgeCol.OPERAND]
    assert sorted(operand[product_edges].tolist()) == [1.0] * 6 + [2.0] * 6
    dst = pg.edge_index[1][product_edges]
    assert torch.equal(torch.bincount(dst)[products], torch.full((6,), 2))


class ScoresWithMask(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k = nn.Linear(4, 4), nn.Linear(4, 4)
        self.register_buffer("mask", torch.triu(torch.full((3, 3), -1e4), diagonal=1))

    def forward(self, x):
        return torch.baddbmm(self.mask.unsqueeze(0), self.q(x), self.k(x).transpose(1, 2),
                             beta=0.5, alpha=0.25)


@pytest.mark.parametrize("frontend", ["fx", "export"])
def test_baddbmm_adds_a_scaled_constant_to_a_scaled_product(frontend):
    check_compiles(ScoresWithMask(), torch.randn(2, 3, 4), frontend=frontend)


class ParamProduct(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Parameter(torch.randn(3, 3)), nn.Parameter(torch.randn(3, 3))

    def forward(self, x):
        return x + self.a @ self.b


def test_a_product_of_two_parameters_is_rejected_with_the_reason():
    with pytest.raises(LoweringError, match="product of two parameters is a transformed parameter"):
        gmnfx.compile(ParamProduct(), torch.randn(2, 3, 3))

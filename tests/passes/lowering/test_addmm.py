"""Lowering of addmm with a parameter matrix: HuggingFace-style Conv1D and GPT-2-like MLP blocks, and x ** n."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import gmnfx
from gmnfx.schema import EdgeType, NodeCol, NodeOp, NodeType
from gmnfx.testing import check_compiles

FRONTENDS = ["fx", "export"]


class Conv1D(nn.Module):
    """HuggingFace's GPT-2 ``Conv1D``, written here: a dense layer with its weight stored ``[in, out]``."""

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.3)
        self.bias = nn.Parameter(torch.randn(nf) * 0.1)

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


def gelu_new(x):
    """GPT-2's tanh approximation of GELU, as HuggingFace writes it."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class GPT2MLP(nn.Module):
    def __init__(self, d: int = 4, hidden: int = 8):
        super().__init__()
        self.c_fc = Conv1D(hidden, d)
        self.c_proj = Conv1D(d, hidden)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x):
        return self.dropout(self.c_proj(gelu_new(self.c_fc(x))))


class GPT2MLPBlock(nn.Module):
    """Pre-norm residual MLP block, as in GPT-2 (``x + mlp(ln_2(x))``), twice."""

    def __init__(self, d: int = 4):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.mlp_1, self.mlp_2 = GPT2MLP(d), GPT2MLP(d)

    def forward(self, x):
        x = x + self.mlp_1(self.ln_1(x))
        return x + self.mlp_2(self.ln_2(x))


# ---------------------------------------------------------------------- Conv1D and GPT-2 MLP blocks
@pytest.mark.parametrize("frontend", FRONTENDS)
@pytest.mark.parametrize("batch", [1, 3])
def test_gpt2_mlp_compiles_exactly(frontend, batch):
    check_compiles(GPT2MLP(), torch.randn(batch, 5, 4), torch.randn(2, 5, 4), frontend=frontend)


@pytest.mark.parametrize("frontend", FRONTENDS)
@pytest.mark.parametrize("batch", [1, 3])
def test_gpt2_residual_mlp_blocks_compile_exactly(frontend, batch):
    check_compiles(GPT2MLPBlock(), torch.randn(batch, 6, 4), torch.randn(4, 6, 4), frontend=frontend)


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_conv1d_on_unbatched_rows_compiles(frontend):
    model = nn.Sequential(Conv1D(6, 3), nn.ReLU(), Conv1D(2, 6))  # [batch, in]: view(-1, in) merges nothing
    check_compiles(model, torch.randn(2, 3), torch.randn(5, 3), frontend=frontend)


def test_export_graph_of_the_mlp_uses_the_aten_ops_that_are_lowered():
    exported = torch.export.export(GPT2MLP().eval(), (torch.randn(2, 5, 4),))
    targets = {n.target for n in exported.graph_module.graph.nodes if n.op == "call_function"}
    aten = torch.ops.aten
    assert {aten.addmm.default, aten.view.default, aten.pow.Tensor_Scalar, aten.tanh.default,
            aten.mul.Tensor, aten.add.Tensor} <= targets
    for target in targets:
        assert gmnfx.registry.lookup_lowering(target) is not None, f"no lowering rule for {target}"


def test_conv1d_graph_is_the_linear_graph_with_the_transposed_weight():
    conv = nn.Sequential(Conv1D(5, 3), nn.Tanh(), Conv1D(2, 5)).eval()
    linear = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).eval()
    with torch.no_grad():
        for c, l in ((conv[0], linear[0]), (conv[2], linear[2])):
            l.weight.copy_(c.weight.T)
            l.bias.copy_(c.bias)
    x = torch.randn(2, 7, 3)
    g_conv, g_linear = gmnfx.compile(conv, x), gmnfx.compile(linear, x)
    assert torch.equal(g_conv.edge_index, g_linear.edge_index)
    assert torch.equal(g_conv.edge_type, g_linear.edge_type)
    assert torch.equal(g_conv.edge_weight, g_linear.edge_weight)
    assert torch.equal(g_conv.node_feat, g_linear.node_feat)


def test_conv1d_edge_from_input_i_to_output_o_carries_weight_i_o():
    model = Conv1D(4, 3).eval()
    g = gmnfx.compile(model, torch.randn(2, 5, 3))
    linear = g.edge_type == EdgeType.LINEAR
    assert int(linear.sum()) == 12
    src, dst = g.edge_index[:, linear]
    i, o = g.node_feat[src, NodeCol.IO_INDEX].long(), g.node_feat[dst, NodeCol.IO_INDEX].long()
    assert torch.equal(g.edge_weight[linear], model.weight.detach()[i, o])
    assert int((g.node_type == NodeType.INPUT).sum()) == 3  # one node per feature, as for a token-wise nn.Linear


# ---------------------------------------------------------------------- addmm forms and arguments
class Addmm(nn.Module):
    def __init__(self, form: str):
        super().__init__()
        self.form = form
        self.fc = nn.Linear(3, 4)
        self.weight = nn.Parameter(torch.randn(4, 2))
        self.bias = nn.Parameter(torch.randn(2))

    def forward(self, x):
        h = self.fc(x)
        if self.form == "method":
            return self.bias.addmm(h, self.weight)
        if self.form == "alpha":
            return torch.addmm(self.bias, h, self.weight, alpha=0.5)
        if self.form == "constant_bias":
            return torch.addmm(torch.tensor([1.0, -2.0]), h, self.weight) + self.bias
        if self.form == "beta_constant":
            return torch.addmm(torch.ones(1, 2), h, self.weight, beta=3.0) + self.bias
        if self.form == "activation_input":
            return torch.addmm(h[:, :2], h, self.weight) + self.bias
        raise ValueError(self.form)


@pytest.mark.parametrize("form", ["method", "alpha", "constant_bias", "beta_constant", "activation_input"])
def test_addmm_forms_compile_exactly(form):
    check_compiles(Addmm(form), torch.randn(2, 3))


@pytest.mark.parametrize("batch", [1, 3])
def test_addmm_with_alpha_beta_and_a_constant_input_on_merged_rows(batch):
    class ScaledConv1D(Conv1D):
        def forward(self, x):
            rows = torch.addmm(torch.full((self.nf,), 0.5), x.view(-1, x.size(-1)), self.weight, beta=2.0, alpha=0.3)
            return (rows + self.bias).view(x.size()[:-1] + (self.nf,))

    check_compiles(ScaledConv1D(3, 4), torch.randn(batch, 5, 4), torch.randn(2, 5, 4))


def test_addmm_with_a_transposed_weight_view():
    class TransposedWeight(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 4)
            self.weight = nn.Parameter(torch.randn(2, 4))  # [out, in], as in nn.Linear
            self.bias = nn.Parameter(torch.randn(2))

        def forward(self, x):
            return torch.addmm(self.bias, self.fc(x), self.weight.t())

    for frontend in FRONTENDS:
        check_compiles(TransposedWeight(), torch.randn(2, 3), frontend=frontend)


def test_addmm_of_two_activations_is_rejected():
    class Products(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 4), nn.Linear(3, 4)

        def forward(self, x):
            return torch.addmm(torch.zeros(4), self.a(x), self.b(x))  # b(x) is [batch, 4]: batch 4 fits

    with pytest.raises(gmnfx.GmnfxError, match="addmm of two activations"):
        gmnfx.compile(Products(), torch.randn(4, 3))


def test_addmm_with_a_scaled_parameter_bias_is_rejected():
    class ScaledBias(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(3, 2))
            self.bias = nn.Parameter(torch.randn(2))

        def forward(self, x):
            return torch.addmm(self.bias, x, self.weight, beta=2.0)

    with pytest.raises(gmnfx.GmnfxError, match="parameter may only be added"):
        gmnfx.compile(ScaledBias(), torch.randn(2, 3))


def test_addmm_with_a_per_row_bias_parameter_is_rejected():
    class RowBias(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(3, 2))
            self.bias = nn.Parameter(torch.randn(2, 2))

        def forward(self, x):
            return torch.addmm(self.bias, x, self.weight)

    with pytest.raises(gmnfx.GmnfxError, match=r"addmm bias of shape \(2,\)"):
        gmnfx.compile(RowBias(), torch.randn(2, 3))


# ---------------------------------------------------------------------- x ** n (gelu_new's x ** 3)
class Power(nn.Module):
    def __init__(self, form: str):
        super().__init__()
        self.form = form
        self.fc = nn.Linear(2, 3)
        self.out = nn.Linear(3, 1)

    def forward(self, x):
        h = self.fc(x)
        powers = {"operator": lambda: h ** 3, "torch": lambda: torch.pow(h, 3.0), "method": lambda: h.pow(2),
                  "one": lambda: h ** 1, "tensor": lambda: h ** torch.tensor(4)}
        return self.out(powers[self.form]())


@pytest.mark.parametrize("frontend", FRONTENDS)
@pytest.mark.parametrize("form, n", [("operator", 3), ("torch", 3), ("method", 2), ("tensor", 4)])
def test_integer_power_is_one_product_node_with_n_factor_edges(frontend, form, n):
    pg, cg = check_compiles(Power(form), torch.randn(2, 2), frontend=frontend)
    for g in (pg, cg):
        prod = g.node_feat[:, NodeCol.OP] == NodeOp.PROD
        assert int(prod.sum()) == 3
        factors = torch.bincount(g.edge_index[1, g.edge_type == EdgeType.PRODUCT])
        assert factors[factors > 0].tolist() == [n] * 3


def test_power_one_is_the_identity():
    pg, _ = check_compiles(Power("one"), torch.randn(2, 2))
    assert not bool((pg.node_feat[:, NodeCol.OP] == NodeOp.PROD).any())


@pytest.mark.parametrize("exponent", [0.5, -1, 2.5, 0, 9])
def test_other_powers_are_rejected_with_a_clear_error(exponent):
    class OtherPower(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 3)

        def forward(self, x):
            return self.fc(x) ** exponent

    with pytest.raises(gmnfx.GmnfxError, match="positive integer exponent of at most 8"):
        gmnfx.compile(OtherPower(), torch.randn(2, 2))

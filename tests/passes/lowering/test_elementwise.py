"""Lowering of activations, residual adds, scaling and other elementwise arithmetic."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import gmnfx
from gmnfx.schema import Activation, EdgeType, NodeCol, NodeOp, NodeType
from gmnfx.testing import check_compiles

ACTIVATIONS = [
    (nn.ReLU(), Activation.RELU), (nn.LeakyReLU(0.2), Activation.LEAKY_RELU), (nn.GELU(), Activation.GELU),
    (nn.GELU(approximate="tanh"), Activation.GELU_TANH), (nn.SiLU(), Activation.SILU), (nn.Tanh(), Activation.TANH),
    (nn.Sigmoid(), Activation.SIGMOID), (nn.ReLU6(), Activation.RELU6), (nn.Identity(), Activation.IDENTITY),
    (nn.Hardtanh(0.0, 6.0), Activation.RELU6),
]


@pytest.mark.parametrize("module,code", ACTIVATIONS, ids=[type(m).__name__ for m, _ in ACTIVATIONS])
def test_activation_modules_are_encoded_on_neurons(module, code):
    model = nn.Sequential(nn.Linear(3, 6), module, nn.Linear(6, 2))
    pg, _ = check_compiles(model, torch.randn(2, 3) * 3)
    hidden = pg.node_type == NodeType.HIDDEN
    assert bool((pg.node_feat[hidden, NodeCol.ACTIVATION] == code).all())


class FunctionalActivations(nn.Module):
    def __init__(self):
        super().__init__()
        self.fcs = nn.ModuleList(nn.Linear(4, 4) for _ in range(9))

    def forward(self, x):
        f = self.fcs
        x = F.relu(f[0](x))
        x = torch.sigmoid(f[1](x))
        x = f[2](x).tanh()
        x = F.leaky_relu(f[3](x), negative_slope=0.3)
        x = F.gelu(f[4](x), approximate="tanh")
        x = torch.sin(f[5](x))
        x = F.silu(f[6](x))
        x = F.relu6(f[7](x) * 4)
        return f[8](x).relu()


def test_functional_and_method_activations():
    pg, _ = check_compiles(FunctionalActivations(), torch.randn(2, 4) * 2)
    slopes = pg.node_feat[pg.node_feat[:, NodeCol.ACTIVATION] == Activation.LEAKY_RELU, NodeCol.ACTIVATION_PARAM]
    assert torch.allclose(slopes, torch.full_like(slopes, 0.3))


def test_activation_on_a_value_read_twice_gets_its_own_neurons():
    class TwoReaders(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 4)
            self.out = nn.Linear(4, 2)

        def forward(self, x):
            h = self.fc(x)
            return self.out(torch.relu(h) + h)  # the pre-activation is read again: no fusion

    pg, _ = check_compiles(TwoReaders(), torch.randn(2, 3))
    acts = pg.node_feat[:, NodeCol.ACTIVATION]
    assert int((acts == Activation.RELU).sum()) == 4


def test_activation_on_the_network_input():
    check_compiles(nn.Sequential(nn.Tanh(), nn.Linear(3, 2)), torch.randn(2, 3))


class Residual(nn.Module):
    def __init__(self, projection: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.shortcut = nn.Conv2d(3, 4, 1) if projection else None
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = self.conv2(F.relu(self.conv1(x)))
        skip = self.shortcut(x) if self.shortcut is not None else x.repeat(1, 2, 1, 1)[:, :4]
        return self.head(F.relu(h + skip).mean(dim=(2, 3)))


@pytest.mark.parametrize("projection", [True, False])
def test_residual_add_has_fixed_weight_skip_edges(projection):
    pg, _ = check_compiles(Residual(projection), torch.randn(2, 3, 5, 5))
    skip = pg.edge_type == EdgeType.SKIP
    assert bool((pg.edge_param[skip] == -1).all())
    assert bool((pg.edge_weight[skip] == 1).all())
    assert int(skip.sum()) >= 8  # both branches into the 4 sum channels


class LayerScale(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.gamma = nn.Parameter(torch.rand(4, 1, 1) + 0.5)
        self.gamma2 = nn.Parameter(torch.rand(1, 4, 1, 1))
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = self.conv(x)
        h = x.sum(dim=1, keepdim=True) + self.gamma * h
        h = h * self.gamma2
        return self.head(h.mean(dim=(2, 3)))


def test_layer_scale_puts_each_scale_on_one_edge():
    pg, _ = check_compiles(LayerScale(), torch.randn(2, 3, 4, 4))
    scale = pg.edge_type == EdgeType.SCALE
    assert int(scale.sum()) == 8


class Arithmetic(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(3, 4)
        self.bias = nn.Parameter(torch.randn(4))
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        a, b = self.a(x), self.b(x)
        h = a - 2.0 * b + 1.5
        h = -h / 4 + self.bias
        h = torch.add(h, a, alpha=0.5) - torch.tensor([1.0, 2.0, 3.0, 4.0])
        h = 3.0 - h
        return self.out(h * torch.sigmoid(b))  # gating: a product of two activations


def test_arithmetic_and_products():
    pg, cg = check_compiles(Arithmetic(), torch.randn(2, 3))
    prod = cg.node_feat[:, NodeCol.OP] == NodeOp.PROD
    assert int(prod.sum()) == 4
    assert int((cg.edge_type == EdgeType.PRODUCT).sum()) == 8


def test_square_is_a_product_of_a_neuron_with_itself():
    class Square(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 3)
            self.out = nn.Linear(3, 1)

        def forward(self, x):
            h = self.fc(x)
            return self.out(h * h)

    check_compiles(Square(), torch.randn(4, 2))


def test_transformed_parameter_is_rejected_with_a_clear_error():
    class Softplus(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 3)
            self.scale = nn.Parameter(torch.ones(3))

        def forward(self, x):
            return self.fc(x) * F.softplus(self.scale)

    with pytest.raises(gmnfx.UnsupportedOpError, match="softplus"):
        gmnfx.compile(Softplus(), torch.randn(1, 2))


def test_division_by_an_activation_is_rejected():
    class Ratio(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 3)

        def forward(self, x):
            h = self.fc(x)
            return h / (h + 1)

    with pytest.raises(gmnfx.LoweringError, match="division of an activation by a constant"):
        gmnfx.compile(Ratio(), torch.randn(1, 2))


def test_clamp_as_relu_and_relu6():
    class Clamps(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 4)
            self.b = nn.Linear(4, 4)
            self.c = nn.Linear(4, 2)

        def forward(self, x):
            h = self.a(x).clamp(min=0)
            h = torch.clamp(self.b(h), 0, 6)
            return self.c(h)

    pg, _ = check_compiles(Clamps(), torch.randn(2, 3) * 4)
    acts = pg.node_feat[:, NodeCol.ACTIVATION]
    assert int((acts == Activation.RELU).sum()) == 4 and int((acts == Activation.RELU6).sum()) == 4


def test_clamp_with_other_bounds_is_rejected():

    class Clamp(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 4)

        def forward(self, x):
            return self.fc(x).clamp(-1, 1)

    with pytest.raises(gmnfx.LoweringError, match="clamp is supported as ReLU"):
        gmnfx.compile(Clamp())

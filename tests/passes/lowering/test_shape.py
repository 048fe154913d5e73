"""Neuron bookkeeping: reshape, permute, slicing, concatenation, split, dropout, shape queries."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import gmnfx
from gmnfx.testing import check_compiles


class Bookkeeping(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 6)
        self.fc2 = nn.Linear(5, 2)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        h = self.drop(F.relu(self.conv(x)))
        h = h.permute(0, 2, 3, 1).contiguous().transpose(1, 2)  # [B, W, H, C]
        h = h.reshape(h.size(0), -1)
        h = torch.flatten(h.view(x.shape[0], 4, 16), 1)
        h = self.fc(h)
        a, b = torch.split(h, [2, 4], dim=1)
        c, d = b.chunk(2, dim=-1)
        h = torch.cat([a[:, :1], c, d.unsqueeze(1).squeeze(1), a[:, 1:]], dim=1)[:, 1:]
        return self.fc2(F.dropout(h, 0.3, training=self.training))


def test_bookkeeping_ops_only_move_neurons():
    pg, cg = check_compiles(Bookkeeping(), torch.randn(2, 3, 4, 4), torch.randn(3, 3, 4, 4))
    g = gmnfx.compile(Bookkeeping(), torch.randn(2, 3, 4, 4))
    kinds = {layer["kind"] for layer in g.layers}
    assert "bookkeeping" not in kinds  # moving values creates no layers


def test_indexing_with_steps_and_ellipsis():
    class Index(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 6)
            self.out = nn.Linear(3, 1)

        def forward(self, x):
            h = torch.tanh(self.fc(x))
            return self.out(h[..., ::2])

    check_compiles(Index(), torch.randn(2, 6))


def test_stack_and_unbind():
    class StackUnbind(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.out = nn.Linear(8, 2)

        def forward(self, x):
            h = self.fc(x)
            parts = h.unbind(dim=1)
            return self.out(torch.stack([parts[0], parts[1]] * 4, dim=1))

    check_compiles(StackUnbind(), torch.randn(2, 4))


def test_tuple_and_dict_outputs():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(3, 5)
            self.a = nn.Linear(5, 2)
            self.b = nn.Linear(5, 1)

        def forward(self, x):
            h = F.relu(self.body(x))
            return {"logits": self.a(h), "aux": (self.b(h), h)}

    pg, cg = check_compiles(TwoHeads(), torch.randn(2, 3))
    out = gmnfx.simulate(cg, torch.randn(4, 3))
    assert set(out) == {"logits", "aux"} and out["aux"][1].shape == (4, 5)
    assert pg.output_shapes == [(2,), (1,), (5,)]


def test_two_inputs():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 4)
            self.b = nn.Linear(2, 4)
            self.out = nn.Linear(4, 1)

        def forward(self, x, y):
            return self.out(torch.relu(self.a(x) + self.b(y)))

    pg, _ = check_compiles(TwoInputs(), (torch.randn(2, 3), torch.randn(2, 2)))
    assert pg.input_shapes == [(3,), (2,)]


def test_reshape_across_the_batch_dimension_is_rejected():
    class MixBatch(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x).reshape(-1, 2)

    with pytest.raises(gmnfx.LoweringError, match="batch"):
        gmnfx.compile(MixBatch(), torch.randn(2, 4))


def test_concatenation_along_the_batch_dimension_is_rejected():
    class CatBatch(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            h = self.fc(x)
            return torch.cat([h, h], dim=0)

    with pytest.raises(gmnfx.LoweringError, match="batch"):
        gmnfx.compile(CatBatch(), torch.randn(2, 4))


def test_reduction_over_the_batch_dimension_is_rejected():
    class MeanBatch(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x).mean(dim=0, keepdim=True)

    with pytest.raises(gmnfx.LoweringError, match="batch"):
        gmnfx.compile(MeanBatch(), torch.randn(2, 4))


def test_non_tensor_forward_arguments_are_constants():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x, scale: float = 2.0):
            return self.fc(x) * scale

    pg, _ = check_compiles(Scaled(), torch.randn(2, 3))
    assert pg.input_shapes == [(3,)]


def test_indexing_with_constant_index_tensors():
    class Gather(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 4)
            self.register_buffer("order", torch.tensor([2, 0, 1]))
            self.out = nn.Linear(5, 2)

        def forward(self, x):  # x: [batch, 3 tokens, 3]
            h = torch.tanh(self.fc(x))[:, self.order]
            h = torch.index_select(h, 2, self.order[:2])
            return self.out(h.flatten(1)[:, :5])

    for frontend in ("fx", "export"):
        check_compiles(Gather(), torch.randn(2, 3, 3), frontend=frontend)


def test_indexing_with_input_dependent_positions_is_rejected():
    class ArgmaxIndex(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            h = self.fc(x)
            return torch.gather(h, 1, (h * 0).to(torch.long))  # indices computed from the input

    with pytest.raises(gmnfx.LoweringError, match="data-dependent"):
        gmnfx.compile(ArgmaxIndex())


class TransposedAttribute(nn.Module):
    """A weight stored [in, out] and used through ``.T`` / ``.mT``."""

    def __init__(self, attr: str):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 3))
        self.attr = attr

    def forward(self, x):
        return F.linear(x, getattr(self.weight, self.attr))


@pytest.mark.parametrize("frontend", ["fx", "export"])
@pytest.mark.parametrize("attr", ["T", "mT"])
def test_transpose_attributes_of_a_parameter_are_views_of_it(attr, frontend):
    check_compiles(TransposedAttribute(attr), torch.randn(2, 4), frontend=frontend)

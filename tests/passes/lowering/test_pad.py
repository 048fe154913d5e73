"""Lowering of constant padding of activations (F.pad), e.g. TensorFlow-style 'same' padding before a conv."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import gmnfx
from gmnfx.errors import LoweringError
from gmnfx.testing import check_compiles


class PaddedConv(nn.Module):
    def __init__(self, pad, value: float = 0.0, activation: nn.Module | None = None):
        super().__init__()
        self.pad, self.value = pad, value
        self.first = nn.Conv2d(3, 4, 3)
        self.act = activation or nn.Identity()
        self.conv = nn.Conv2d(4, 5, 3, stride=2)

    def forward(self, x):
        return self.conv(F.pad(self.act(self.first(x)), self.pad, value=self.value))


@pytest.mark.parametrize("pad,value", [((0, 1, 0, 1), 0.0), ((1, 2, 2, 0), 0.0), ((1, 1), 0.5)])
@pytest.mark.parametrize("frontend", ["fx", "export"])
def test_constant_padding_before_a_conv_simulates_exactly(pad, value, frontend):
    check_compiles(PaddedConv(pad, value, nn.Sigmoid()), torch.randn(2, 3, 9, 9), frontend=frontend)


def test_padding_the_network_input_keeps_one_node_per_channel():
    class PadInput(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, stride=2)

        def forward(self, x):
            return self.conv(F.pad(x, (0, 1, 0, 1)))

    pg, _ = check_compiles(PadInput(), torch.randn(2, 3, 8, 8))
    assert pg.num_nodes == 3 + 3 + 1 + 4  # inputs, padded copies, conv bias node, outputs


def test_non_constant_padding_modes_are_rejected():
    class Reflect(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.conv2 = nn.Conv2d(4, 4, 3)

        def forward(self, x):
            return self.conv2(F.pad(self.conv(x), (1, 1, 1, 1), mode="reflect"))

    with pytest.raises(LoweringError, match="mode='reflect'"):
        gmnfx.compile(Reflect(), torch.randn(1, 3, 8, 8))

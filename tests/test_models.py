"""Whole networks written the way people write them, compiled exactly (core families only)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from gmnfx.schema import EdgeType, NodeCol, NodeOp, NodeType
from gmnfx.testing import check_compiles


class InvertedResidual(nn.Module):
    """MobileNetV2 block: expand 1x1, depthwise 3x3, project 1x1, ReLU6, identity shortcut."""

    def __init__(self, channels: int, expand: int = 3):
        super().__init__()
        hidden = channels * expand
        self.block = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False), nn.BatchNorm2d(channels),
        )

    def forward(self, x):
        return x + self.block(x)


class MobileNetish(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU6())
        self.blocks = nn.Sequential(InvertedResidual(4), InvertedResidual(4))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(4, 3))

    def forward(self, x):
        x = self.blocks(self.stem(x))
        x = F.adaptive_avg_pool2d(x, (1, 1))
        return self.classifier(torch.flatten(x, 1))


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7, channels-last LayerNorm, inverted MLP with GELU, layer scale, residual."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.rand(dim) + 0.5)

    def forward(self, x):
        shortcut = x
        x = self.dwconv(x).permute(0, 2, 3, 1)
        x = self.pwconv2(self.act(self.pwconv1(self.norm(x))))
        x = (self.gamma * x).permute(0, 3, 1, 2)
        return shortcut + x


class ConvNeXtish(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 2, stride=2)
        self.block = ConvNeXtBlock(4)
        self.head_norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        x = self.block(self.stem(x))
        return self.head(self.head_norm(x.mean([-2, -1])))


class SequenceCNN(nn.Module):
    """1-D CNN over a sequence of feature vectors given as [batch, length, features]."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(5, 6, 3, padding="same")
        self.conv2 = nn.Conv1d(6, 6, 3, dilation=2, padding=2)
        self.norm = nn.GroupNorm(3, 6)
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        h = F.silu(self.conv1(x.transpose(1, 2)))
        h = h + F.silu(self.norm(self.conv2(h)))
        return self.out(h.amax(dim=-1))


class VGGish(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Linear(6 * 2 * 2, 8), nn.ReLU(True), nn.Dropout(), nn.Linear(8, 3))

    def forward(self, x):
        x = self.features(x)
        x = x.view(x.size(0), -1)
        return self.classifier(x)


def _randomize_norms(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.5, 0.5)
    return model.eval()


def test_mobilenet_style_network():
    pg, _ = check_compiles(_randomize_norms(MobileNetish()), torch.randn(2, 3, 8, 8))
    bn = pg.node_feat[:, NodeCol.OP] == NodeOp.BATCHNORM
    assert int(bn.sum()) == 4 + 2 * (12 + 12 + 4)


def test_convnext_style_network():
    pg, _ = check_compiles(ConvNeXtish(), torch.randn(2, 3, 8, 8))
    assert int((pg.edge_type == EdgeType.SCALE).sum()) == 4 + 4 + 4  # two LayerNorm gammas and the layer scale


def test_sequence_cnn_input_channels_follow_the_transpose():
    pg, _ = check_compiles(SequenceCNN(), torch.randn(2, 7, 5))
    inputs = pg.node_type == NodeType.INPUT
    assert int(inputs.sum()) == 5  # one node per feature: the conv's channels, read through x.transpose(1, 2)


def test_vgg_style_network():
    check_compiles(VGGish(), torch.randn(2, 3, 8, 8))

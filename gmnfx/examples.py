"""Small example models to try gmnfx on (plain torch, no torchvision).

Each factory takes no arguments and returns a freshly built ``nn.Module`` in
eval mode, initialised from a fixed seed so repeated calls give identical
weights. They are meant for the command line, docs and tests::

    gmnfx compile gmnfx.examples:mlp -o mlp.safetensors
    gmnfx compile gmnfx.examples:small_cnn --input-shape 1,3,32,32 -o cnn.safetensors
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["mlp", "small_cnn", "resnet_tiny", "attention", "BasicBlock", "TinyAttention", "SEED"]

SEED = 0


def _finish(model: nn.Module) -> nn.Module:
    """Give BatchNorm layers non-trivial running statistics and return ``model`` in eval mode."""
    generator = torch.Generator().manual_seed(SEED + 1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(0.1 * torch.randn(module.num_features, generator=generator))
            module.running_var.copy_(1.0 + 0.1 * torch.rand(module.num_features, generator=generator))
    return model.eval()


def mlp() -> nn.Module:
    """A 3-layer MLP 16 -> 32 -> 32 -> 10 with ReLU. Input: ``[N, 16]``; output ``[N, 10]``."""
    torch.manual_seed(SEED)
    model = nn.Sequential(
        nn.Linear(16, 32), nn.ReLU(),
        nn.Linear(32, 32), nn.ReLU(),
        nn.Linear(32, 10),
    )
    return _finish(model)


class _SmallCNN(nn.Module):
    """Two conv/BN/ReLU/max-pool stages, global mean over space, linear classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))
        return self.fc(x.mean(dim=(2, 3)))


def small_cnn() -> nn.Module:
    """A small CNN (Conv2d 3->8->16, BatchNorm2d, ReLU, max-pool, global mean, Linear 16->10).

    Input: ``[N, 3, 32, 32]`` (any spatial size >= 4 works); output ``[N, 10]``.
    """
    torch.manual_seed(SEED)
    return _finish(_SmallCNN())


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with a residual connection.

    When the stride or channel count changes, the shortcut is a projection
    (1x1 conv with the block's stride followed by BatchNorm); otherwise identity.
    ``norm="group"`` uses GroupNorm (2 groups) instead of BatchNorm in the main path.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, norm: str = "batch") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _norm(norm, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = _norm(norm, out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def _norm(kind: str, channels: int) -> nn.Module:
    """A BatchNorm2d (``kind="batch"``) or 2-group GroupNorm (``kind="group"``) over ``channels``."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(2, channels)
    raise ValueError(f"expected norm 'batch' or 'group' (got {kind!r})")


class _ResNetTiny(nn.Module):
    """Stem conv + 3 basic blocks (one with a stride-2 projection shortcut) + pooled linear head."""

    def __init__(self, width: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        self.layer1 = BasicBlock(width, width)
        self.layer2 = BasicBlock(width, 2 * width, stride=2)
        self.layer3 = BasicBlock(2 * width, 2 * width, norm="group")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def resnet_tiny() -> nn.Module:
    """A tiny ResNet: stem, 3 BasicBlocks (stride-2 projection shortcut, GroupNorm in the last), linear head.

    Input: ``[N, 3, 32, 32]`` (any spatial size >= 2 works); output ``[N, 10]``.
    """
    torch.manual_seed(SEED)
    return _finish(_ResNetTiny())


class TinyAttention(nn.Module):
    """One multi-head self-attention layer with separate q/k/v/o projections (no biases)."""

    def __init__(self, dim: int = 4, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim, bias=False) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (f(x).view(b, t, self.heads, d // self.heads).transpose(1, 2) for f in (self.q, self.k, self.v))
        attn = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5, dim=-1)
        return self.o((attn @ v).transpose(1, 2).reshape(b, t, d))


def attention() -> nn.Module:
    """Self-attention with 2 heads of width 2 on 4 features. Input: ``[N, T, 4]``; output ``[N, T, 4]``."""
    torch.manual_seed(SEED)
    return TinyAttention().eval()

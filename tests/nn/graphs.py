"""Small compiled graphs of mixed architectures shared by the gmnfx.nn tests."""
from __future__ import annotations

import functools

import torch
from torch import nn

import gmnfx
from gmnfx.examples import attention, mlp, small_cnn


def tiny_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2)).eval()


def tiny_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 3, 1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)).eval()


@functools.lru_cache(maxsize=None)
def example_graphs() -> tuple:
    """MLP, CNN with BatchNorm, and a two-head attention layer: three architectures in one batch."""
    return (gmnfx.compile(mlp(), torch.randn(1, 16)),
            gmnfx.compile(small_cnn(), torch.randn(1, 3, 8, 8)),
            gmnfx.compile(attention(), torch.randn(1, 3, 4)))


def tiny_model_and_input(kind: str):
    if kind == "mlp":
        return tiny_mlp(), torch.randn(1, 3)
    return tiny_cnn(), torch.randn(1, 2, 5, 5)

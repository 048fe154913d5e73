"""Small models with hand-derived symmetry group orders, shared by the symmetry tests."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

f = math.factorial


class LinearTwice(nn.Module):
    """A hidden Linear(3, 3) applied twice between two other layers: tying links the three hidden layers."""

    def __init__(self, share: bool = True):
        super().__init__()
        self.a, self.mid, self.head = nn.Linear(2, 3), nn.Linear(3, 3), nn.Linear(3, 2)
        self.mid2 = self.mid if share else nn.Linear(3, 3)

    def forward(self, x):
        return self.head(torch.relu(self.mid2(torch.relu(self.mid(self.a(x))))))


class Residual(nn.Module):
    """x -> a(x) -> + relu(b(.)) -> head: the branch's output channels follow the stream's."""

    def __init__(self, d: int = 3):
        super().__init__()
        self.a, self.b, self.head = nn.Linear(2, d), nn.Linear(d, d), nn.Linear(d, 2)

    def forward(self, x):
        h = self.a(x)
        return self.head(h + torch.relu(self.b(h)))


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0]


class TiedTokenModel(nn.Module):
    """Embedding -> LayerNorm -> head whose weight is the embedding's (GPT-2 style)."""

    def __init__(self, vocab: int = 5, dim: int = 3):
        super().__init__()
        self.embed, self.norm = nn.Embedding(vocab, dim), nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens):
        return self.head(self.norm(self.embed(tokens)))


def batchnorm_mlp() -> nn.Module:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).eval()
    model[1].running_mean.uniform_(-1, 1)
    model[1].running_var.uniform_(0.5, 2)
    return model


def cases():
    """(name, model, example input, expected group order)."""
    return [
        ("mlp", nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2)),
         torch.randn(2, 3), f(4) * f(5)),
        ("residual stream", Residual(), torch.randn(2, 2), f(3)),
        ("grouped conv", nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 3, groups=2), nn.Flatten(),
                                       nn.Linear(6 * 2 * 2, 2)), torch.randn(2, 2, 6, 6), f(2) * (f(2) * f(3)) ** 2),
        ("depthwise conv", nn.Sequential(nn.Conv2d(2, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 3, groups=4), nn.ReLU(),
                                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)),
         torch.randn(2, 2, 5, 5), f(4)),
        ("group norm", nn.Sequential(nn.Conv2d(2, 4, 1), nn.GroupNorm(2, 4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                     nn.Flatten(), nn.Linear(4, 2)), torch.randn(2, 2, 5, 5), f(2) * f(2) ** 2),
        ("batch norm", batchnorm_mlp(), torch.randn(3, 3), f(4)),
        ("linear applied twice", LinearTwice(), torch.randn(2, 2), f(3)),
        ("two linears", LinearTwice(share=False), torch.randn(2, 2), f(3) ** 3),
        # heads! * (d_k!)^heads * (d_v!)^heads
        ("attention 2 heads x 2", SelfAttention(4, 2), torch.randn(2, 3, 4), f(2) * f(2) ** 2 * f(2) ** 2),
        ("attention 3 heads x 2", SelfAttention(6, 3), torch.randn(2, 3, 6), f(3) * f(2) ** 3 * f(2) ** 3),
        ("attention 1 head x 3", SelfAttention(3, 1), torch.randn(2, 2, 3), f(3) * f(3)),
        ("tied embedding head", TiedTokenModel(), torch.randint(0, 5, (2, 4)), f(3)),
    ]

"""Whole sequence models built from the families: token embeddings, 1-D convolutions over time, patch embeddings."""
from __future__ import annotations

import torch
import torch.nn as nn

from gmnfx.schema import EdgeType
from gmnfx.testing import check_compiles


class TextCNN(nn.Module):
    """Embedding -> Conv1d over the sequence -> ReLU -> max over time -> Linear."""

    def __init__(self, vocab: int = 12, dim: int = 6, channels: int = 5):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.conv = nn.Conv1d(dim, channels, kernel_size=3, padding=1)
        self.head = nn.Linear(channels, 2)

    def forward(self, tokens):
        x = self.embed(tokens).transpose(1, 2)  # [B, dim, T]
        return self.head(torch.relu(self.conv(x)).amax(dim=-1))


def test_text_cnn_convolves_token_embeddings_over_time():
    model = TextCNN()
    pg, _ = check_compiles(model, torch.randint(0, 12, (2, 7)), torch.randint(0, 12, (3, 7)))
    assert int((pg.edge_type == EdgeType.EMBEDDING).sum()) == 12 * 6
    assert int((pg.edge_type == EdgeType.CONV).sum()) == 5 * 6 * 3


class PatchEmbedding(nn.Module):
    """ViT-style: a stride-p convolution cuts patches, flattened into a token sequence, then a dense layer."""

    def __init__(self):
        super().__init__()
        self.patches = nn.Conv2d(3, 8, kernel_size=4, stride=4)
        self.norm = nn.LayerNorm(8)
        self.mlp = nn.Linear(8, 8)

    def forward(self, images):
        tokens = self.patches(images).flatten(2).transpose(1, 2)  # [B, 4, 8]
        return self.mlp(self.norm(tokens))


def test_patch_embedding_feeds_token_wise_layers():
    pg, _ = check_compiles(PatchEmbedding(), torch.randn(2, 3, 8, 8))
    assert int((pg.edge_type == EdgeType.LINEAR).sum()) == 64  # one edge per weight: patches collapse to features

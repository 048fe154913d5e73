"""Lowering of nn.TransformerEncoderLayer/DecoderLayer and their stacks (pre- and post-norm)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from gmnfx.schema import NodeCol, NodeOp
from gmnfx.testing import check_compiles

RTOL = 1e-4  # eval-mode encoder layers run torch's fused fast path, whose float32 rounding differs


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
@pytest.mark.parametrize("activation", ["relu", "gelu", nn.GELU(approximate="tanh")], ids=["relu", "gelu", "gelu_tanh"])
def test_encoder_layer_simulates_exactly(norm_first, activation):
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True, norm_first=norm_first,
                                       activation=activation)
    pg, _ = check_compiles(layer, torch.randn(2, 5, 8), rtol=RTOL)
    op = pg.node_feat[:, NodeCol.OP].long()
    assert int((op == NodeOp.LOGSUMEXP).sum()) == 2  # one softmax group node per head
    kinds = [layer["name"].split(".", 1)[-1] for layer in pg.layers]
    for part in ("self_attn.q_proj", "self_attn.out_proj", "linear1", "linear2", "norm1", "norm2"):
        assert any(k.endswith(part) for k in kinds), part


def test_encoder_stack_with_final_norm_and_causal_mask():
    class CausalEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(8), enable_nested_tensor=False)
            self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(5))

        def forward(self, x):
            return self.encoder(x, mask=self.mask, is_causal=True)

    check_compiles(CausalEncoder(), torch.randn(2, 5, 8), rtol=RTOL)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_decoder_layer_with_memory_and_causal_self_attention(norm_first):
    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.TransformerDecoder(
                nn.TransformerDecoderLayer(8, 2, 16, batch_first=True, norm_first=norm_first), 2)
            self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(5))

        def forward(self, x, memory):
            return self.layers(x, memory, tgt_mask=self.mask, tgt_is_causal=True)

    check_compiles(Decoder(), (torch.randn(2, 5, 8), torch.randn(2, 4, 8)), rtol=RTOL)

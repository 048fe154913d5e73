"""Model code written by others: HuggingFace transformers definitions, small configs, random weights.

Nothing is downloaded: every model is built from a config. Skipped cleanly
when ``transformers`` is not installed (``pip install -e ".[models]"``).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from gmnfx.schema import EdgeType, NodeCol, NodeOp
from gmnfx.testing import check_compiles

transformers = pytest.importorskip("transformers")

RTOL = 1e-4  # float32 forward of a deep model against the float64 simulation


class BertEncoder(nn.Module):
    """BERT with token ids and token types as inputs (so every embedding row is read)."""

    def __init__(self):
        super().__init__()
        config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=32, max_position_embeddings=6)
        self.bert = transformers.BertModel(config)

    def forward(self, input_ids, token_type_ids):
        return self.bert(input_ids=input_ids, token_type_ids=token_type_ids).last_hidden_state


class Gpt2LanguageModel(nn.Module):
    """GPT-2 with its LM head tied to the token embedding; Conv1D layers are addmm with transposed weights."""

    def __init__(self):
        super().__init__()
        config = transformers.GPT2Config(vocab_size=40, n_embd=16, n_layer=2, n_head=2, n_positions=6,
                                         use_cache=False, bos_token_id=0, eos_token_id=0)
        self.gpt2 = transformers.GPT2LMHeadModel(config)

    def forward(self, input_ids):
        return self.gpt2(input_ids=input_ids, use_cache=False).logits


def _tokens(batch: int, *, vocab: int = 40, types: bool = False):
    ids = torch.randint(0, vocab, (batch, 6))
    return (ids, torch.randint(0, 2, (batch, 6))) if types else (ids,)


def test_bert():
    pg, _ = check_compiles(BertEncoder(), _tokens(2, types=True), _tokens(3, types=True), rtol=RTOL)
    op = pg.node_feat[:, NodeCol.OP].long()
    assert int((op == NodeOp.LOGSUMEXP).sum()) == 2 * 2  # layers x heads


def test_gpt2_ties_the_lm_head_to_the_token_embedding():
    model = Gpt2LanguageModel()
    pg, _ = check_compiles(model, _tokens(2), _tokens(3), rtol=RTOL)
    vocab, width = model.gpt2.transformer.wte.weight.shape
    assert int((pg.edge_type == EdgeType.TIED).sum()) == vocab * width  # the head's uses of wte
    op = pg.node_feat[:, NodeCol.OP].long()
    assert int((op == NodeOp.LOGSUMEXP).sum()) == 2 * 2


def test_vit_with_class_token_and_patch_embedding():
    config = transformers.ViTConfig(image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=32)
    check_compiles(transformers.ViTModel(config, add_pooling_layer=False), torch.randn(2, 3, 16, 16), rtol=RTOL)


def test_resnet():
    config = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    check_compiles(transformers.ResNetModel(config), torch.randn(2, 3, 32, 32), rtol=RTOL)


def test_convnext():
    config = transformers.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)
    check_compiles(transformers.ConvNextModel(config), torch.randn(2, 3, 32, 32), rtol=RTOL)


def test_mobilenet_v2():
    config = transformers.MobileNetV2Config(depth_multiplier=0.25, image_size=16)  # TF "same" padding: F.pad
    check_compiles(transformers.MobileNetV2Model(config), torch.randn(2, 3, 16, 16), rtol=RTOL)

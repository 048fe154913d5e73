"""Strategies for attention and mixtures of families (CNN+MLP, pre-norm blocks, encoder layers)."""
from __future__ import annotations


import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import strategies as st

from strategies._base import Architecture, ENCODER_RTOL, PADDING_MODES, _activation, _finish, _mlp_head, _name, _seed
from strategies.conv import _conv_layer
from strategies.sets_grids import _deepset


# ---------------------------------------------------------------------- attention
class _DrawnAttention(nn.Module):
    """Self-attention written one of three ways, with an optional causal mask, then a readout layer."""

    def __init__(self, dim: int, heads: int, form: str, causal: bool):
        super().__init__()
        self.heads, self.form, self.causal = heads, form, causal
        self.out = nn.Linear(dim, dim)
        self.mha = nn.MultiheadAttention(dim, heads, batch_first=True) if form == "mha" else None
        self.qkv = nn.Linear(dim, 3 * dim) if form != "mha" else None
        self.register_buffer("mask", torch.ones(8, 8).tril().bool())

    def forward(self, x):
        b, t, d = x.shape
        if self.mha is not None:
            mask = ~self.mask[:t, :t] if self.causal else None
            return self.out(self.mha(x, x, x, attn_mask=mask, need_weights=False)[0])
        qkv = self.qkv(x)
        q, k, v = (qkv[..., i * d:(i + 1) * d].view(b, t, self.heads, d // self.heads).transpose(1, 2)
                   for i in range(3))
        if self.form == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        else:
            scores = q @ k.transpose(-2, -1) / (d // self.heads) ** 0.5
            if self.causal:
                scores = scores.masked_fill(~self.mask[:t, :t], float("-inf"))
            y = scores.softmax(dim=-1) @ v
        return self.out(y.transpose(1, 2).reshape(b, t, d))


ATTENTION_FORMS = ("hand_written", "sdpa", "mha")


@st.composite
def attention_architectures(draw, *, max_heads: int = 3, max_head_dim: int = 3, max_tokens: int = 4,
                            forms: tuple = ATTENTION_FORMS) -> Architecture:
    """Self-attention: hand-written, F.scaled_dot_product_attention or nn.MultiheadAttention (fx only)."""
    seed = _seed(draw)
    heads, head_dim = draw(st.integers(1, max_heads)), draw(st.integers(1, max_head_dim))
    form, causal, tokens = draw(st.sampled_from(forms)), draw(st.booleans()), draw(st.integers(1, max_tokens))
    dim = heads * head_dim
    model = _DrawnAttention(dim, heads, form, causal)
    return _finish(draw, model, (tokens, dim), f"{form} attention, {heads} heads x {head_dim}, causal={causal}",
                   seed)

# ---------------------------------------------------------------------- mixtures
class _PreNormBlock(nn.Module):
    """[Linear(d, d) and a class token joined to the sequence ->] a hand-assembled pre-norm transformer block
    ``x + attn(ln1(x)); x + mlp(ln2(x))`` -> a readout."""

    def __init__(self, dim: int, heads: int, form: str, causal: bool, hidden: int, act: nn.Module, readout: str,
                 tokens: int, cls: bool):
        super().__init__()
        # ViT-style: the token joins projected tokens. Joined to the raw input it breaks gmnfx's input-channel
        # probe, which reads the token's values as input element indices (a known gmnfx bug)
        self.cls = nn.Parameter(torch.randn(1, 1, dim)) if cls else None
        self.proj = nn.Linear(dim, dim) if cls else None
        tokens += int(cls)
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = _DrawnAttention(dim, heads, form, causal)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), act, nn.Linear(hidden, dim))
        self.readout = readout
        self.head = nn.Linear(dim * tokens if readout == "flatten" else dim, 2)

    def forward(self, x):
        if self.cls is not None:
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), self.proj(x)], dim=1)
        x = x + self.attn(self.ln1(x))
        x = x + self.mlp(self.ln2(x))
        return self.head(_readout(x, self.readout))


def _readout(x: torch.Tensor, kind: str) -> torch.Tensor:
    """[batch, tokens, dim] -> per sample: the first token, the token mean, all tokens flattened, or per token."""
    if kind == "first":
        return x[:, 0]
    if kind == "mean":
        return x.mean(dim=1)
    return x.flatten(1) if kind == "flatten" else x


class _Encoder(nn.Module):
    """nn.TransformerEncoderLayer (or an nn.TransformerEncoder stack of them), optionally causal, then a readout;
    with ``vocab``, on token ids through an Embedding plus positions: a learned table ``[1, T, D]`` added, or
    an Embedding(T, D) read at a ``position_ids`` buffer."""

    def __init__(self, encoder: nn.Module, causal: bool, tokens: int, readout: str, dim: int, vocab: int = 0,
                 positions: str = "table"):
        super().__init__()
        self.encoder, self.causal, self.readout = encoder, causal, readout
        self.emb = nn.Embedding(vocab, dim) if vocab else None
        self.pos = nn.Parameter(torch.randn(1, tokens, dim)) if vocab and positions == "table" else None
        self.pos_emb = nn.Embedding(tokens, dim) if vocab and positions == "embedding" else None
        self.register_buffer("position_ids", torch.arange(tokens)[None])
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(tokens) if causal else None)
        self.head = nn.Linear(dim, 2)

    def forward(self, x):
        if self.emb is not None:
            x = self.emb(x) + (self.pos if self.pos is not None else self.pos_emb(self.position_ids))
        if self.causal:
            x = self.encoder(x, self.mask, is_causal=True)
        else:
            x = self.encoder(x)
        return self.head(_readout(x, self.readout))


def _encoder(draw, dim: int, heads: int, tokens: int, max_width: int, max_layers: int, vocab: int = 0,
             positions: str = "table"):
    """A drawn tiny nn.TransformerEncoderLayer / nn.TransformerEncoder (dropout 0): (module, description)."""
    options = dict(dim_feedforward=draw(st.integers(1, max_width)),
                   activation=draw(st.sampled_from(["relu", "gelu"])), norm_first=draw(st.booleans()),
                   bias=draw(st.booleans()),
                   layer_norm_eps=draw(st.sampled_from([1e-5, 1e-3])))
    layer = nn.TransformerEncoderLayer(dim, heads, dropout=0.0, batch_first=True, **options)
    stack, final_norm = draw(st.integers(0, max_layers)), draw(st.booleans())  # 0: the bare layer
    encoder = nn.TransformerEncoder(layer, stack, norm=nn.LayerNorm(dim) if final_norm else None,
                                    enable_nested_tensor=False) if stack else layer
    causal, readout = draw(st.booleans()), draw(st.sampled_from(["first", "mean", "tokens"]))
    where = f"nn.TransformerEncoder({stack} layers, final norm={final_norm})" if stack else "one layer"
    desc = (f"TransformerEncoderLayer(d={dim},heads={heads},{options}) {where}, causal={causal}, "
            f"readout {readout} -> Linear({dim},2)")
    return _Encoder(encoder, causal, tokens, readout, dim, vocab, positions), desc


def _cnn_mlp(draw, max_width: int, dims: tuple, padding_modes: tuple):
    nd = draw(st.sampled_from(dims))
    size = in_size = draw(st.integers(2, 3) if nd == 3 else st.integers(3, 5))
    channels = c = draw(st.integers(1, max_width))
    layers, desc = [], []
    for _ in range(draw(st.integers(1, 2))):
        conv, c, size, text = _conv_layer(draw, nd, c, size, max_channels=max_width, padding_modes=padding_modes,
                                          functional=True)
        layers.append(conv)
        if draw(st.booleans()):
            layers.append((nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[nd - 1](c))
            text += " BatchNorm"
        layers.append(_activation(draw))
        desc.append(f"{text} {_name(layers[-1])}")
    pool = draw(st.sampled_from(["flatten", "adaptive_avg", "adaptive_max"]))
    if pool != "flatten":
        layers.append(getattr(nn, f"Adaptive{'Avg' if pool == 'adaptive_avg' else 'Max'}Pool{nd}d")(1))
        size = 1
    head, head_desc = _mlp_head(draw, c * size**nd, max_hidden=2, max_width=max_width)
    model = nn.Sequential(*layers, nn.Flatten(), head)
    return model, (channels,) + (in_size,) * nd, " -> ".join(desc) + f" -> {pool} -> {head_desc}", 0


def _attention_shape(draw, max_heads: int, max_head_dim: int, max_tokens: int):
    heads, head_dim = draw(st.integers(1, max_heads)), draw(st.integers(1, max_head_dim))
    tokens = draw(st.integers(1, max_tokens))
    return heads, heads * head_dim, tokens


MIXED_FORMS = ("cnn_mlp", "prenorm_block", "encoder_layer", "deepsets_mlp", "token_encoder")


@st.composite
def mixed_architectures(draw, *, forms: tuple = MIXED_FORMS, attention_forms: tuple = ATTENTION_FORMS,
                        max_width: int = 4, max_heads: int = 2, max_head_dim: int = 2, max_tokens: int = 3,
                        dims: tuple = (1, 2), padding_modes: tuple = PADDING_MODES,
                        max_vocab: int = 5, max_encoder_layers: int = 1) -> Architecture:
    """Mixtures of families:

    cnn_mlp: a conv trunk (drawn convs, optional BatchNorm) -> flatten or adaptive pool -> an MLP head;
    prenorm_block: [a Linear, a class token joined ->] a hand-assembled pre-norm transformer block (attention of
    ``attention_forms``, token-wise MLP, residuals, LayerNorms) -> a readout;
    encoder_layer: a tiny nn.TransformerEncoderLayer (dropout 0, pre/post-norm, relu/gelu, bias or not,
    optionally causal), bare or in an nn.TransformerEncoder of up to ``max_encoder_layers`` (fx only);
    deepsets_mlp: DeepSets layers then an MLP head;
    token_encoder: token ids -> Embedding + a position table or position Embedding -> an encoder (fx only).
    """
    seed = _seed(draw)
    form = draw(st.sampled_from(forms))
    vocab, rtol = 0, 1e-5
    if form == "cnn_mlp":
        model, shape, desc, vocab = _cnn_mlp(draw, max_width, dims, padding_modes)
    elif form == "deepsets_mlp":
        set_size, features = draw(st.integers(1, 4)), draw(st.integers(1, max_width))
        model, desc = _deepset(draw, max_layers=2, max_features=max_width, features=features, max_hidden=2)
        shape = (set_size, features)
    elif form == "prenorm_block":
        heads, dim, tokens = _attention_shape(draw, max_heads, max_head_dim, max_tokens)
        attn, causal = draw(st.sampled_from(attention_forms)), draw(st.booleans())
        hidden = draw(st.integers(1, max_width))
        act, readout = _activation(draw), draw(st.sampled_from(["first", "mean", "flatten", "tokens"]))
        cls = draw(st.booleans())
        model = _PreNormBlock(dim, heads, attn, causal, hidden, act, readout, tokens, cls)
        desc = (f"pre-norm block: {f'Linear({dim},{dim}) + class token, ' if cls else ''}{attn} attention "
                f"({heads} heads, d={dim}, causal={causal}), MLP({dim},{hidden},{_name(act)}), readout {readout}")
        shape = (tokens, dim)
    else:
        heads, dim, tokens = _attention_shape(draw, max_heads, max_head_dim, max_tokens)
        vocab = draw(st.integers(2, max_vocab)) if form == "token_encoder" else 0
        positions = draw(st.sampled_from(["table", "embedding"])) if vocab else "table"
        model, desc = _encoder(draw, dim, heads, tokens, max_width, max_encoder_layers, vocab, positions)
        desc = (f"Embedding({vocab},{dim}) + {positions} positions -> " if vocab else "") + desc
        shape, rtol = (tokens,) if vocab else (tokens, dim), ENCODER_RTOL
    return _finish(draw, model, shape, f"{form}: {desc}", seed, vocab=vocab, rtol=rtol)

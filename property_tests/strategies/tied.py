"""Strategies for weight tying: reused layers, tied autoencoders, token LMs with tied heads, shared branches."""
from __future__ import annotations


import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import strategies as st

from strategies._base import Architecture, _activation, _finish, _name, _seed


# ---------------------------------------------------------------------- weight tying
class _ReusedLinear(nn.Module):
    """Linear(d_in, d) -> act -> a square Linear(d, d) applied ``times`` times (one module, or copies whose
    weight is the first's) with activations between -> Linear(d, 2)."""

    def __init__(self, d_in: int, d: int, times: int, tie: str, bias: bool, acts: list):
        super().__init__()
        self.inp, self.head, self.acts = nn.Linear(d_in, d), nn.Linear(d, 2), nn.ModuleList(acts)
        shared = nn.Linear(d, d, bias=bias)
        self.steps = nn.ModuleList([shared] * times if tie == "module" else
                                   [shared] + [nn.Linear(d, d, bias=bias) for _ in range(times - 1)])
        for step in self.steps[1:]:
            step.weight = shared.weight

    def forward(self, x):
        h = self.acts[0](self.inp(x))
        for step, act in zip(self.steps, self.acts[1:]):
            h = act(step(h))
        return self.head(h)


class _TokenLM(nn.Module):
    """Embedding(V, d) on token ids [+ a learned position table] [-> LayerNorm] [-> token-wise MLP, residual or
    not] -> a head whose weight is the embedding table (``head.weight = emb.weight``, or F.linear)."""

    def __init__(self, vocab: int, d: int, tokens: int, *, padding_idx, position: bool, norm: bool, hidden: int,
                 act: nn.Module, residual: bool, head_bias: bool, functional_head: bool):
        super().__init__()
        self.emb = nn.Embedding(vocab, d, padding_idx=padding_idx)
        self.pos = nn.Parameter(torch.randn(1, tokens, d)) if position else None
        self.norm = nn.LayerNorm(d) if norm else None
        self.mlp = nn.Sequential(nn.Linear(d, hidden), act, nn.Linear(hidden, d)) if hidden else None
        self.residual, self.functional_head = residual, functional_head
        self.head = nn.Linear(d, vocab, bias=head_bias)
        self.head.weight = self.emb.weight

    def forward(self, ids):
        h = self.emb(ids)
        if self.pos is not None:
            h = h + self.pos
        if self.norm is not None:
            h = self.norm(h)
        if self.mlp is not None:
            h = h + self.mlp(h) if self.residual else self.mlp(h)
        return F.linear(h, self.emb.weight, self.head.bias) if self.functional_head else self.head(h)


class _SharedBranches(nn.Module):
    """Two branches ``act(a(x))`` and ``act(b(x))`` meeting a shared part, then added, then a head.

    shared "linear" / "conv": one layer applied to both branches; "bias": one bias parameter added to both.
    """

    def __init__(self, kind: str, a: nn.Module, b: nn.Module, shared, acts: list, head: nn.Module):
        super().__init__()
        self.kind, self.a, self.b, self.acts, self.head = kind, a, b, nn.ModuleList(acts), head
        if kind == "bias":
            self.shared_bias = shared
        else:
            self.shared = shared

    def forward(self, x):
        if self.kind == "bias":
            y = self.acts[0](self.a(x) + self.shared_bias) + self.acts[1](self.b(x) + self.shared_bias)
        else:
            y = self.shared(self.acts[0](self.a(x))) + self.shared(self.acts[1](self.b(x)))
        return self.head(y)


class _TiedAutoencoder(nn.Module):
    """``h = act(enc(x))`` [-> a hidden Linear(d, d) and act], decoded with the encoder's weight transposed:
    ``F.linear(h, enc.weight.t(), b)``, ``h @ enc.weight (+ b)`` or ``torch.addmm(b, h, enc.weight)``."""

    def __init__(self, d_in: int, d: int, decode: str, bias: bool, acts: list, hidden: bool):
        super().__init__()
        self.enc, self.acts, self.decode = nn.Linear(d_in, d), nn.ModuleList(acts), decode
        self.hidden = nn.Linear(d, d) if hidden else None
        self.b = nn.Parameter(torch.randn(d_in)) if bias or decode == "addmm" else None

    def forward(self, x):
        h = self.acts[0](self.enc(x))
        if self.hidden is not None:
            h = self.acts[1](self.hidden(h))
        if self.decode == "F.linear":
            return F.linear(h, self.enc.weight.t(), self.b)
        if self.decode == "addmm":
            return torch.addmm(self.b, h, self.enc.weight)
        y = h @ self.enc.weight
        return y if self.b is None else y + self.b


def _tied_autoencoder(draw, max_width: int):
    d_in, d = draw(st.integers(1, max_width)), draw(st.integers(1, max_width))
    decode = draw(st.sampled_from(["F.linear", "matmul", "addmm"]))
    bias, hidden = draw(st.booleans()), draw(st.booleans())
    acts = [_activation(draw) for _ in range(2)]
    model = _TiedAutoencoder(d_in, d, decode, bias, acts, hidden)
    desc = (f"autoencoder: Linear({d_in},{d}) {_name(acts[0])}"
            + (f" -> Linear({d},{d}) {_name(acts[1])}" if hidden else "")
            + f" -> decoded by {decode} with the encoder weight transposed, decoder bias={model.b is not None}; "
            "tied: encoder weight = decoder weight^T")
    return model, (d_in,), desc, 0


def _reused_linear(draw, max_width: int):
    d_in, d, times = draw(st.integers(1, max_width)), draw(st.integers(1, max_width)), draw(st.integers(2, 3))
    tie, bias = draw(st.sampled_from(["module", "weight"])), draw(st.booleans())
    acts = [_activation(draw) for _ in range(times + 1)]
    what = "one Linear module" if tie == "module" else "Linear copies sharing .weight (own biases)"
    desc = (f"reused: Linear({d_in},{d}) {_name(acts[0])} -> {what} ({d},{d},bias={bias}) applied {times}x with "
            f"{[_name(a) for a in acts[1:]]} -> Linear({d},2); tied: the square layer's weight"
            + (" and bias" if bias and tie == "module" else ""))
    return _ReusedLinear(d_in, d, times, tie, bias, acts), (d_in,), desc, 0


def _token_lm(draw, max_width: int, max_vocab: int, max_tokens: int):
    vocab, d = draw(st.integers(2, max_vocab)), draw(st.integers(1, max_width))
    tokens = draw(st.integers(1, max_tokens))
    options = dict(padding_idx=draw(st.sampled_from([None, 0])), position=draw(st.booleans()),
                   norm=draw(st.booleans()), hidden=draw(st.integers(0, max_width)), act=_activation(draw),
                   residual=draw(st.booleans()), head_bias=draw(st.booleans()), functional_head=draw(st.booleans()))
    model = _TokenLM(vocab, d, tokens, **options)
    shown = {k: (_name(v) if k == "act" else v) for k, v in options.items()}
    desc = f"token LM: Embedding({vocab},{d}) on {tokens} ids, {shown}; tied: head.weight = emb.weight"
    return model, (tokens,), desc, vocab


def _shared_branches(draw, max_width: int):
    kind = draw(st.sampled_from(["linear", "conv", "bias"]))
    c_in, c, c_out = (draw(st.integers(1, max_width)) for _ in range(3))
    acts = [_activation(draw) for _ in range(2)]
    if kind == "conv":
        nd, size, k = draw(st.integers(1, 2)), draw(st.integers(2, 4)), draw(st.sampled_from([1, 3]))
        conv = (nn.Conv1d, nn.Conv2d)[nd - 1]  # every conv keeps the side, so the branches line up
        a, b, shared = conv(c_in, c, k, padding=k // 2), conv(c_in, c, 1), conv(c, c_out, 3, padding=1)
        head, shape = nn.Sequential(nn.Flatten(), nn.Linear(c_out * size**nd, 2)), (c_in,) + (size,) * nd
        parts = (f"Conv{nd}d({c_in},{c},k={k},p={k // 2}) | Conv{nd}d({c_in},{c},k=1); "
                 f"shared Conv{nd}d({c},{c_out},k=3,p=1)")
    else:
        a, b, shape = nn.Linear(c_in, c), nn.Linear(c_in, c, bias=False), (c_in,)
        if kind == "linear":
            shared, head = nn.Linear(c, c_out, bias=draw(st.booleans())), nn.Linear(c_out, 2)
            parts = f"Linear({c_in},{c}) | Linear({c_in},{c},bias=False); shared {shared}"
        else:
            shared, head = nn.Parameter(torch.randn(c)), nn.Linear(c, 2)
            parts = f"Linear({c_in},{c}) + b | Linear({c_in},{c},bias=False) + b; shared bias b[{c}]"
    model = _SharedBranches(kind, a, b, shared, acts, head)
    desc = f"shared branches: {parts}; activations {[_name(x) for x in acts]}; branches added -> head; tied: {kind}"
    return model, shape, desc, 0


TIED_FORMS = ("reused_linear", "autoencoder", "token_lm", "shared_branches")


@st.composite
def tied_architectures(draw, *, forms: tuple = TIED_FORMS, max_width: int = 4, max_vocab: int = 6,
                       max_tokens: int = 4) -> Architecture:
    """Weight tying drawn several ways (the description says what is tied):

    reused_linear: a square Linear applied 2-3 times (one module, or copies sharing ``.weight``);
    autoencoder: a decoder using the encoder's weight transposed (F.linear with ``.t()``, ``@``, addmm);
    token_lm: Embedding on token ids whose table is also the output head's weight (``head.weight = emb.weight``
    or ``F.linear(h, emb.weight)``), optional position table, LayerNorm, token-wise MLP; inputs are token ids;
    shared_branches: a Linear, a conv or a bias parameter shared by two branches that are then added.
    """
    seed = _seed(draw)
    form = draw(st.sampled_from(forms))
    if form == "reused_linear":
        model, shape, desc, vocab = _reused_linear(draw, max_width)
    elif form == "autoencoder":
        model, shape, desc, vocab = _tied_autoencoder(draw, max_width)
    elif form == "token_lm":
        model, shape, desc, vocab = _token_lm(draw, max_width, max_vocab, max_tokens)
    else:
        model, shape, desc, vocab = _shared_branches(draw, max_width)
    return _finish(draw, model, shape, desc, seed, vocab=vocab)

"""Lowering rules: ``nn.TransformerEncoderLayer``/``DecoderLayer`` and their stacks.

These modules' ``forward`` branches on tensor properties (and takes a fused
fast path in eval mode), which neither torch.fx nor torch.export can turn
into plain ops. The rules below restate the (pre- or post-norm) layer from its
submodules, each part as its own layer of the graph: self-attention and
cross-attention (see :mod:`.attention`), the feed-forward block, the residual
adds and the LayerNorms. Dropout is the identity in eval mode.
"""
from __future__ import annotations

from typing import Any, Optional

import torch.nn as nn
import torch.nn.functional as F

from gmnfx.context import LoweringContext
from gmnfx.ir import Neurons
from gmnfx.registry import register_lowering
from gmnfx.schema import Activation

from .attention import lower_multihead_attention
from .elementwise import apply_activation, lower_add
from .linear import lower_linear
from .norm import lower_layer_norm

__all__ = ["lower_encoder_layer", "lower_decoder_layer"]

_ACTIVATION_FUNCTIONS = {F.relu: Activation.RELU, F.gelu: Activation.GELU}


class _Builder:
    """Lowers the parts of one transformer layer, each into its own sublayer of the graph."""

    def __init__(self, ctx: LoweringContext, module: nn.Module, path: str):
        self.ctx, self.module, self.path = ctx, module, path

    def _prefixed(self, part: str) -> str:
        return f"{self.path}.{part}" if self.path else part

    def _enter(self, part: str, kind: str, submodule: Optional[str] = None) -> None:
        """A sublayer named ``path.part`` in module ``path.part`` (``path.submodule`` if given)."""
        self.ctx.sublayer(self._prefixed(part), kind, self._prefixed(part) if submodule is None else submodule)

    def norm(self, name: str, x: Neurons) -> Neurons:
        m = getattr(self.module, name)
        if not isinstance(m, nn.LayerNorm):
            raise self.ctx.fail(f"expected {name} to be an nn.LayerNorm (got {type(m).__name__})")
        self._enter(name, "layer_norm")
        ctx = self.ctx
        return lower_layer_norm(ctx, x, m.normalized_shape, ctx.module_param(m, "weight"), ctx.module_param(m, "bias"),
                                m.eps)

    def linear(self, name: str, x: Neurons) -> Neurons:
        m = getattr(self.module, name)
        self._enter(name, "linear")
        return lower_linear(self.ctx, x, self.ctx.module_param(m, "weight"), self.ctx.module_param(m, "bias"))

    def attention(self, name: str, query: Neurons, memory: Optional[Neurons], mask: Any, padding: Any,
                  causal: bool) -> Neurons:
        """``name(query, memory, memory)``; self-attention when ``memory`` is None."""
        memory = query if memory is None else memory
        m = getattr(self.module, name)
        out, _ = lower_multihead_attention(self.ctx, m, query, memory, memory, mask, padding, need_weights=False,
                                           is_causal=causal, prefix=self._prefixed(name))
        return out

    def residual(self, x: Neurons, y: Neurons) -> Neurons:
        self._enter("residual", "add", submodule=self.path)
        return lower_add(self.ctx, x, y)

    def feed_forward(self, x: Neurons) -> Neurons:
        hidden = self.linear("linear1", x)
        hidden = apply_activation(self.ctx, Neurons(hidden.ids, fusable=True), _activation(self.ctx, self.module))
        return self.linear("linear2", hidden)


def _activation(ctx: LoweringContext, layer: nn.Module) -> Activation:
    act = layer.activation
    if act in _ACTIVATION_FUNCTIONS:
        return _ACTIVATION_FUNCTIONS[act]
    if isinstance(act, nn.ReLU):
        return Activation.RELU
    if isinstance(act, nn.GELU):
        return Activation.GELU_TANH if act.approximate == "tanh" else Activation.GELU
    raise ctx.fail(f"transformer layer activation {act!r} is not supported (use 'relu', 'gelu', nn.ReLU or nn.GELU)")


def lower_encoder_layer(ctx: LoweringContext, m: nn.TransformerEncoderLayer, x: Neurons, mask=None,
                        padding=None, causal: bool = False, path: str = "") -> Neurons:
    b = _Builder(ctx, m, path)
    if m.norm_first:
        x = b.residual(x, b.attention("self_attn", b.norm("norm1", x), None, mask, padding, causal))
        return b.residual(x, b.feed_forward(b.norm("norm2", x)))
    x = b.norm("norm1", b.residual(x, b.attention("self_attn", x, None, mask, padding, causal)))
    return b.norm("norm2", b.residual(x, b.feed_forward(x)))


def lower_decoder_layer(ctx: LoweringContext, m: nn.TransformerDecoderLayer, x: Neurons, memory: Neurons,
                        masks: dict, path: str = "") -> Neurons:
    b = _Builder(ctx, m, path)
    self_args = (masks.get("tgt_mask"), masks.get("tgt_key_padding_mask"), bool(masks.get("tgt_is_causal")))
    cross_args = (masks.get("memory_mask"), masks.get("memory_key_padding_mask"), bool(masks.get("memory_is_causal")))
    if m.norm_first:
        x = b.residual(x, _self_attention(b, b.norm("norm1", x), *self_args))
        x = b.residual(x, b.attention("multihead_attn", b.norm("norm2", x), memory, *cross_args))
        return b.residual(x, b.feed_forward(b.norm("norm3", x)))
    x = b.norm("norm1", b.residual(x, _self_attention(b, x, *self_args)))
    x = b.norm("norm2", b.residual(x, b.attention("multihead_attn", x, memory, *cross_args)))
    return b.norm("norm3", b.residual(x, b.feed_forward(x)))


def _self_attention(b: _Builder, x: Neurons, mask, padding, causal) -> Neurons:
    return b.attention("self_attn", x, None, mask, padding, causal)


@register_lowering(nn.TransformerEncoderLayer)
def lower_transformer_encoder_layer(ctx: LoweringContext, node) -> Neurons:
    x, mask, padding, causal = ctx.bind(node, "src", src_mask=None, src_key_padding_mask=None, is_causal=False)
    return lower_encoder_layer(ctx, ctx.module(), ctx.neurons(x), mask, padding, bool(causal))


@register_lowering(nn.TransformerEncoder)
def lower_transformer_encoder(ctx: LoweringContext, node) -> Neurons:
    x, mask, padding, causal = ctx.bind(node, "src", mask=None, src_key_padding_mask=None, is_causal=None)
    m = ctx.module()
    x = ctx.neurons(x)
    for i, layer in enumerate(m.layers):
        x = lower_encoder_layer(ctx, layer, x, mask, padding, bool(causal), path=f"layers.{i}")
    return _final_norm(ctx, m, x)


@register_lowering(nn.TransformerDecoderLayer)
def lower_transformer_decoder_layer(ctx: LoweringContext, node) -> Neurons:
    x, memory, *rest = ctx.bind(node, "tgt", "memory", **_DECODER_MASKS)
    masks = dict(zip(_DECODER_MASKS, rest))
    return lower_decoder_layer(ctx, ctx.module(), ctx.neurons(x), ctx.neurons(memory, "memory"), masks)


@register_lowering(nn.TransformerDecoder)
def lower_transformer_decoder(ctx: LoweringContext, node) -> Neurons:
    x, memory, *rest = ctx.bind(node, "tgt", "memory", **_DECODER_MASKS)
    masks = dict(zip(_DECODER_MASKS, rest))
    m = ctx.module()
    x, memory = ctx.neurons(x), ctx.neurons(memory, "memory")
    for i, layer in enumerate(m.layers):
        x = lower_decoder_layer(ctx, layer, x, memory, masks, path=f"layers.{i}")
    return _final_norm(ctx, m, x)


_DECODER_MASKS = dict(tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None, memory_key_padding_mask=None,
                      tgt_is_causal=False, memory_is_causal=False)


def _final_norm(ctx: LoweringContext, m: nn.Module, x: Neurons) -> Neurons:
    if m.norm is None:
        return x
    return _Builder(ctx, m, "").norm("norm", x)


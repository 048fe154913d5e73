"""Lowering rules: scaled dot-product attention and ``nn.MultiheadAttention``.

Attention is lowered from its parts, so heads are explicit in the graph:

* ``q``, ``k``, ``v`` projections: dense layers, one node per feature;
* scores ``q @ k^T * scale``: one product node per query/key dim ``j`` (fed by
  ``q_j`` and ``k_j``), one score node per head (see :mod:`.matmul`);
* a constant mask (causal, boolean or additive): BIAS edges (see :mod:`.softmax`);
* softmax per head: a LOGSUMEXP and a SOFTMAX node per head;
* ``attn @ v``: one product and one output node per value dim;
* the output projection reading the heads' value dims back as features.

Hand-written attention (separate q/k/v Linear layers, views into heads,
transposes, ``@``, ``softmax``) lowers to the same graph through the generic
rules; ``F.scaled_dot_product_attention`` and ``nn.MultiheadAttention`` are
rules of their own because their internals are fused kernels.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from gmnfx.context import LoweringContext
from gmnfx.edge_blocks import PairEdges
from gmnfx.ir import Neurons, Params
from gmnfx.registry import register_lowering
from gmnfx.schema import EdgeType

from .linear import lower_linear
from .matmul import lower_activation_product
from .mirror import mirror_neurons
from .softmax import MASK_VALUE, add_constant_bias, lower_softmax, same_for_every_sample

__all__ = ["lower_attention", "attention_bias", "lower_multihead_attention"]

aten = torch.ops.aten


def attention_bias(ctx: LoweringContext, length: int, source_length: int, attn_mask: Any = None,
                   is_causal: bool = False, mask_means_keep: bool = True) -> Optional[torch.Tensor]:
    """The constant additive score bias ([..., L, S] float64) from a causal flag and/or a constant mask.

    A boolean mask keeps positions where it is True (``F.scaled_dot_product_attention``)
    or masks them (``nn.MultiheadAttention``, ``mask_means_keep=False``).
    """
    bias = None
    if is_causal:
        keep = torch.ones(length, source_length, dtype=torch.bool).tril()
        bias = torch.where(keep, 0.0, MASK_VALUE).to(torch.float64)
    if attn_mask is None:
        return bias
    if isinstance(attn_mask, (Neurons, Params)) or not isinstance(attn_mask, torch.Tensor):
        raise ctx.fail(f"expected attn_mask to be a constant tensor (got {type(attn_mask).__name__}); masks "
                       "computed from the input are data-dependent and have no graph form")
    if attn_mask.dtype == torch.bool:
        keep = attn_mask if mask_means_keep else ~attn_mask
        extra = torch.where(keep, 0.0, MASK_VALUE).to(torch.float64)
    else:
        extra = attn_mask.to(torch.float64)  # -inf: clamped where the bias is added
    return extra if bias is None else bias + extra


def lower_attention(ctx: LoweringContext, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                    bias: Optional[torch.Tensor] = None) -> tuple[Neurons, Neurons]:
    """``softmax(q @ k^T * scale + bias) @ v`` on id tensors ``[..., L, E]``, ``[..., S, E]``, ``[..., S, Ev]``.

    Returns the output and the attention weights.
    """
    scores = lower_activation_product(ctx, Neurons(q), Neurons(k.transpose(-1, -2)), alpha=scale)
    if bias is not None:
        scores = add_constant_bias(ctx, scores, same_for_every_sample(ctx, bias, scores.ids.dim()))
    attn = lower_softmax(ctx, scores, -1)
    return lower_activation_product(ctx, attn, Neurons(v)), attn


@register_lowering(F.scaled_dot_product_attention, aten.scaled_dot_product_attention.default)
def lower_scaled_dot_product_attention(ctx: LoweringContext, node) -> Neurons:
    q, k, v, attn_mask, dropout_p, is_causal, scale, enable_gqa = ctx.bind(
        node, "query", "key", "value", attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False)
    q, k, v = (ctx.neurons(t, what).ids for t, what in ((q, "query"), (k, "key"), (v, "value")))
    if q.dim() < 2:
        raise ctx.fail(f"expected query of per-sample shape [..., L, E] (got {tuple(q.shape)})")
    if enable_gqa and q.dim() >= 3 and k.shape[-3] != q.shape[-3]:
        repeat = q.shape[-3] // k.shape[-3]
        k, v = k.repeat_interleave(repeat, dim=-3), v.repeat_interleave(repeat, dim=-3)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    bias = attention_bias(ctx, q.shape[-2], k.shape[-2], attn_mask, bool(is_causal))
    return lower_attention(ctx, q, k, v, scale, bias)[0]


# ---------------------------------------------------------------------- nn.MultiheadAttention
def _enter(ctx: LoweringContext, prefix: str, part: str, kind: str, submodule: str = "") -> None:
    """A sublayer named ``prefix.part`` in module ``prefix`` (``prefix.submodule`` if given)."""
    join = lambda *names: ".".join(n for n in names if n)  # noqa: E731
    ctx.sublayer(join(prefix, part), kind, join(prefix, submodule))


def _rows(p: Optional[Params], start: int, stop: int) -> Optional[Params]:
    return None if p is None else Params(p.index[start:stop], p.name)


def lower_multihead_attention(ctx: LoweringContext, m: nn.MultiheadAttention, query: Neurons, key: Neurons,
                              value: Neurons, attn_mask=None, key_padding_mask=None, need_weights: bool = True,
                              average_attn_weights: bool = True, is_causal: bool = False, prefix: str = ""):
    """``nn.MultiheadAttention.forward`` (batch_first) as projections, per-head attention and out_proj.

    ``prefix`` is the path of ``m`` below the current node's module (for a rule lowering a whole
    transformer layer); the projections, the attention and out_proj become sublayers named after it.
    """
    if not m.batch_first:
        raise ctx.fail("nn.MultiheadAttention with batch_first=False takes [seq, batch, embed] inputs; gmnfx needs "
                       "the batch dim first: construct it with batch_first=True")
    if m.bias_k is not None or m.add_zero_attn:
        raise ctx.fail("nn.MultiheadAttention with add_bias_kv=True or add_zero_attn=True is not supported yet")
    if m.dropout and m.training:
        raise ctx.fail("attention dropout in training mode is random; compile the model in eval mode")
    e, heads = m.embed_dim, m.num_heads
    if m._qkv_same_embed_dim:
        packed = ctx.module_param(m, "in_proj_weight")
        weights = [_rows(packed, i * e, (i + 1) * e) for i in range(3)]
    else:
        weights = [ctx.module_param(m, name) for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight")]
    in_bias = ctx.module_param(m, "in_proj_bias")
    biases = [_rows(in_bias, i * e, (i + 1) * e) for i in range(3)]
    projected = []
    for x, w, b, part in zip((query, key, value), weights, biases, ("q_proj", "k_proj", "v_proj")):
        _enter(ctx, prefix, part, "linear")
        projected.append(lower_linear(ctx, x, w, b).ids)
    q, k, v = projected
    split = lambda t: t.unflatten(-1, (heads, e // heads)).transpose(-2, -3)  # [..., H, L, dh]  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    _enter(ctx, prefix, "attention", "attention")
    if key_padding_mask is not None:
        pad = _constant_padding_mask(ctx, key_padding_mask)
        attn_mask = pad if attn_mask is None else _merge_masks(attn_mask, pad)
    bias = attention_bias(ctx, q.shape[-2], k.shape[-2], attn_mask, is_causal and attn_mask is None,
                          mask_means_keep=False)
    out, attn = lower_attention(ctx, q, k, v, 1.0 / math.sqrt(e // heads), bias)
    merged = Neurons(out.ids.transpose(-2, -3).flatten(-2))
    out_proj = m.out_proj
    _enter(ctx, prefix, "out_proj", "linear", submodule="out_proj")
    result = lower_linear(ctx, merged, ctx.module_param(out_proj, "weight"), ctx.module_param(out_proj, "bias"))
    if not need_weights:
        return result, None
    return result, _attention_weights(ctx, attn, average_attn_weights)


def _constant_padding_mask(ctx: LoweringContext, mask: Any) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2:
        raise ctx.fail("expected key_padding_mask to be a constant [batch, S] tensor")
    if not bool((mask == mask[:1]).all()):
        raise ctx.fail("expected a key_padding_mask that is the same for every sample; per-sample padding is "
                       "data and has no graph form (compile with unpadded example inputs)")
    return mask[0][None, :]  # [1, S], broadcast over queries


def _merge_masks(attn_mask: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    if attn_mask.dtype == torch.bool and pad.dtype == torch.bool:
        return attn_mask | pad
    as_bias = lambda m: torch.where(m, MASK_VALUE, 0.0).double() if m.dtype == torch.bool else m.double()  # noqa: E731
    return as_bias(attn_mask) + as_bias(pad)


def _attention_weights(ctx: LoweringContext, attn: Neurons, average: bool) -> Neurons:
    """The returned attention weights: per head ``[H, L, S]``, or averaged over heads ``[L, S]``."""
    if not average:
        return Neurons(attn.ids)
    heads = attn.ids.shape[-3]
    ids = attn.ids.movedim(-3, -1)  # [..., L, S, H]
    mean = mirror_neurons(ctx, ids.shape[:-1], [ids[..., h] for h in range(heads)])
    ctx.graph.add_block(PairEdges(ids, mean[..., None], EdgeType.SKIP, ctx.layer, ctx.source(), weight=1.0 / heads))
    return Neurons(mean)


@register_lowering(nn.MultiheadAttention)
def lower_multihead_attention_module(ctx: LoweringContext, node) -> tuple:
    query, key, value, key_padding_mask, need_weights, attn_mask, average, is_causal = ctx.bind(
        node, "query", "key", "value", key_padding_mask=None, need_weights=True, attn_mask=None,
        average_attn_weights=True, is_causal=False)
    return lower_multihead_attention(ctx, ctx.module(), ctx.neurons(query, "query"), ctx.neurons(key, "key"),
                                     ctx.neurons(value, "value"), attn_mask, key_padding_mask, need_weights,
                                     average, is_causal)


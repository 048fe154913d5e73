"""Lowering rules: activation functions and elementwise arithmetic.

Activations are fused into the neurons that produce their input when those
are fresh weighted-sum neurons nobody else reads (the usual ``relu(linear(x))``);
otherwise a layer of neurons with a fixed weight-1 edge is added. ``+``, ``-``,
``*`` and ``/`` make new neurons: residual adds get fixed weight-1 SKIP
edges, multiplication by a parameter (layer scale) gets SCALE edges carrying
it, a product of two activations becomes a PROD node, and ``x ** n`` (small
positive integer ``n``) a PROD node with ``n`` PRODUCT edges from ``x``.
"""
from __future__ import annotations

import operator
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from gmnfx.context import LoweringContext
from gmnfx.edge_blocks import PairEdges
from gmnfx.ir import META_FUSED, Neurons, Params
from gmnfx.registry import method, register_lowering
from gmnfx.schema import Activation, EdgeType, NodeOp

from .mirror import mirror_neurons

__all__ = ["apply_activation", "lower_add", "lower_mul", "lower_power", "MASK_VALUE"]

aten = torch.ops.aten

MASK_VALUE = float(torch.finfo(torch.float32).min)
"""The weight a constant ``-inf`` (an attention mask) gets on an edge: same softmax, finite features."""


def apply_activation(ctx: LoweringContext, x: Neurons, activation: Activation, param: float = 0.0) -> Neurons:
    """``activation(x)``: fused into ``x``'s neurons when possible, else a new layer of neurons."""
    graph = ctx.graph
    if x.fusable:
        channels = graph.whole_channels(x.ids)
        if channels is not None:
            ops = graph.channels.column("op")[channels]
            acts = graph.channels.column("activation")[channels]
            if bool((ops == NodeOp.SUM).all()) and bool((acts == Activation.IDENTITY).all()):
                graph.set_channel_attr(channels, "activation", int(activation))
                graph.set_channel_attr(channels, "activation_param", float(param))
                ctx.node.meta[META_FUSED] = True
                return Neurons(x.ids, fusable=False)
    out = mirror_neurons(ctx, x.shape, [x.ids], activation=activation, activation_param=param)
    graph.add_block(PairEdges(x.ids, out, EdgeType.SKIP, ctx.layer, ctx.source()))
    return Neurons(out, fusable=False)


def _register_activation(activation: Activation, *targets, param_name: str | None = None, default: float = 0.0):
    @register_lowering(*targets)
    def lower_activation(ctx: LoweringContext, node) -> Neurons:
        if node.op == "call_module":
            (x,) = ctx.bind(node, "input")
            param = float(getattr(ctx.module(), param_name)) if param_name else 0.0
        elif param_name:
            x, param = ctx.bind(node, "input", **{param_name: default})
        else:
            x = ctx.bind(node, "input")[0]
            param = 0.0
        return apply_activation(ctx, ctx.neurons(x), activation, float(param))

    lower_activation.__name__ = f"lower_{activation.name.lower()}"
    return lower_activation


_register_activation(Activation.RELU, nn.ReLU, F.relu, torch.relu, torch.relu_, method("relu"), method("relu_"),
                     aten.relu.default, aten.relu_.default)
_register_activation(Activation.LEAKY_RELU, nn.LeakyReLU, F.leaky_relu, method("leaky_relu"),
                     aten.leaky_relu.default, aten.leaky_relu_.default, param_name="negative_slope", default=0.01)
_register_activation(Activation.SILU, nn.SiLU, F.silu, aten.silu.default, aten.silu_.default)
_register_activation(Activation.TANH, nn.Tanh, torch.tanh, F.tanh, method("tanh"), aten.tanh.default)
_register_activation(Activation.SIGMOID, nn.Sigmoid, torch.sigmoid, F.sigmoid, method("sigmoid"), aten.sigmoid.default)
_register_activation(Activation.RELU6, nn.ReLU6, F.relu6)
_register_activation(Activation.SIN, torch.sin, method("sin"), aten.sin.default)


@register_lowering(nn.GELU, F.gelu, aten.gelu.default)
def lower_gelu(ctx: LoweringContext, node) -> Neurons:
    if node.op == "call_module":
        (x,) = ctx.bind(node, "input")
        approximate = ctx.module().approximate
    else:
        x, approximate = ctx.bind(node, "input", approximate="none")
    activation = Activation.GELU_TANH if approximate == "tanh" else Activation.GELU
    return apply_activation(ctx, ctx.neurons(x), activation)


@register_lowering(nn.Hardtanh, F.hardtanh, aten.hardtanh.default, aten.hardtanh_.default)
def lower_hardtanh(ctx: LoweringContext, node) -> Neurons:
    if node.op == "call_module":
        (x,) = ctx.bind(node, "input")
        low, high = ctx.module().min_val, ctx.module().max_val
    else:
        x, low, high = ctx.bind(node, "input", min_val=-1.0, max_val=1.0)
    if (float(low), float(high)) != (0.0, 6.0):
        raise ctx.fail(f"hardtanh is supported as ReLU6 only (min_val=0, max_val=6; got {low}, {high})")
    return apply_activation(ctx, ctx.neurons(x), Activation.RELU6)


@register_lowering(torch.clamp, torch.clip, method("clamp"), method("clip"), method("clamp_"),
                   aten.clamp.default, aten.clamp_min.default)
def lower_clamp(ctx: LoweringContext, node) -> Neurons:
    """``clamp(x, min=0)`` is a ReLU and ``clamp(x, 0, 6)`` a ReLU6; other bounds have no neuron op."""
    if node.target is aten.clamp_min.default:
        x, low, high = *ctx.bind(node, "input", "min"), None
    else:
        x, low, high = ctx.bind(node, "input", min=None, max=None)
    bounds = (None if low is None else float(low), None if high is None else float(high))
    if bounds == (0.0, None):
        return apply_activation(ctx, ctx.neurons(x), Activation.RELU)
    if bounds == (0.0, 6.0):
        return apply_activation(ctx, ctx.neurons(x), Activation.RELU6)
    raise ctx.fail(f"clamp is supported as ReLU (min=0) or ReLU6 (min=0, max=6) only (got min={low}, max={high})")


# ---------------------------------------------------------------------- arithmetic
def _weighted_sum(ctx: LoweringContext, terms: list[tuple[Any, float]]) -> Neurons:
    """``sum_k scale_k * term_k`` where each term is an activation, a parameter or a constant."""
    shape = torch.broadcast_shapes(*[_shape_of(t) for t, _ in terms])
    neurons = [(t, s) for t, s in terms if isinstance(t, Neurons)]
    params = [(t, s) for t, s in terms if isinstance(t, Params)]
    constants = [(t, s) for t, s in terms if not isinstance(t, (Neurons, Params))]
    if not neurons:
        raise ctx.fail("expected at least one activation operand")
    if any(s != 1.0 for _, s in params):
        raise ctx.fail("a parameter may only be added, not subtracted or scaled, so it stays one edge with its own value")
    out_shape = tuple(shape)
    bias_node = ctx.graph.new_bias_node(ctx.layer) if params or constants else None
    out = mirror_neurons(ctx, out_shape, [t.ids for t, _ in neurons])
    for term, scale in neurons:
        ctx.graph.add_block(PairEdges(term.ids, out, EdgeType.SKIP, ctx.layer, ctx.source(), weight=float(scale)))
    for term, _ in params:
        ctx.graph.add_block(PairEdges(bias_node, out, EdgeType.BIAS, ctx.layer, ctx.source(), param=term.index))
    for term, scale in constants:
        value = torch.nan_to_num(torch.as_tensor(term, dtype=torch.float64) * scale, neginf=MASK_VALUE,
                                 posinf=-MASK_VALUE)
        ctx.graph.add_block(PairEdges(bias_node, out, EdgeType.BIAS, ctx.layer, ctx.source(), weight=value))
    return Neurons(out, fusable=True)


def _shape_of(term: Any) -> tuple[int, ...]:
    if isinstance(term, (Neurons, Params)):
        return term.shape
    return tuple(torch.as_tensor(term).shape)


def _strip_batch(term: Any, ctx: LoweringContext) -> Any:
    """Drop a size-1 leading dim that lines up with the batch dim (``gamma`` of shape [1, C, 1, 1])."""
    tensor = term.index if isinstance(term, Params) else term
    if not isinstance(term, Neurons) and isinstance(tensor, torch.Tensor) and tensor.dim() == len(ctx.out_shape()) + 1:
        if tensor.shape[0] != 1:
            raise ctx.fail(f"an operand of shape {tuple(tensor.shape)} varies along the batch dimension")
        return Params(tensor[0], term.name) if isinstance(term, Params) else tensor[0]
    return term


def lower_add(ctx: LoweringContext, a: Any, b: Any, alpha: float = 1.0) -> Neurons:
    return _weighted_sum(ctx, [(_strip_batch(a, ctx), 1.0), (_strip_batch(b, ctx), float(alpha))])


@register_lowering(operator.add, operator.iadd, torch.add, method("add"), method("add_"), aten.add.Tensor, aten.add_.Tensor)
def lower_add_op(ctx: LoweringContext, node) -> Neurons:
    a, b, alpha = ctx.bind(node, "input", "other", alpha=1)
    return lower_add(ctx, a, b, alpha)


@register_lowering(operator.sub, operator.isub, torch.sub, method("sub"), aten.sub.Tensor, aten.rsub.Scalar)
def lower_sub_op(ctx: LoweringContext, node) -> Neurons:
    a, b, alpha = ctx.bind(node, "input", "other", alpha=1)
    if node.target is aten.rsub.Scalar:
        a, b = b, a
    return _weighted_sum(ctx, [(_strip_batch(a, ctx), 1.0), (_strip_batch(b, ctx), -float(alpha))])


@register_lowering(operator.neg, torch.neg, method("neg"), aten.neg.default)
def lower_neg(ctx: LoweringContext, node) -> Neurons:
    (x,) = ctx.bind(node, "input")
    return _weighted_sum(ctx, [(ctx.neurons(x), -1.0)])


def lower_mul(ctx: LoweringContext, a: Any, b: Any) -> Neurons:
    """Scalar/constant scaling (SKIP edges), parameter scaling (SCALE edges) or a product (PROD node)."""
    a, b = _strip_batch(a, ctx), _strip_batch(b, ctx)
    if not isinstance(a, Neurons):
        a, b = b, a
    if not isinstance(a, Neurons):
        raise ctx.fail("expected at least one activation operand (a parameter times a constant is a "
                       "transformed parameter, which gmnfx cannot place on an edge)")
    shape = tuple(torch.broadcast_shapes(a.shape, _shape_of(b)))
    if isinstance(b, Neurons):
        out = mirror_neurons(ctx, shape, [a.ids, b.ids], op=NodeOp.PROD)
        for factor in (a, b):
            ctx.graph.add_block(PairEdges(factor.ids, out, EdgeType.PRODUCT, ctx.layer, ctx.source()))
        return Neurons(out)
    out = mirror_neurons(ctx, shape, [a.ids])
    if isinstance(b, Params):
        ctx.graph.add_block(PairEdges(a.ids, out, EdgeType.SCALE, ctx.layer, ctx.source(), param=b.index))
    else:
        ctx.graph.add_block(PairEdges(a.ids, out, EdgeType.SKIP, ctx.layer, ctx.source(),
                                      weight=torch.as_tensor(b, dtype=torch.float64)))
    return Neurons(out, fusable=True)


@register_lowering(operator.mul, operator.imul, torch.mul, method("mul"), method("mul_"), aten.mul.Tensor, aten.mul_.Tensor)
def lower_mul_op(ctx: LoweringContext, node) -> Neurons:
    a, b = ctx.bind(node, "input", "other")
    return lower_mul(ctx, a, b)


_MAX_POWER = 8


def lower_power(ctx: LoweringContext, x: Neurons, exponent: Any) -> Neurons:
    """``x ** n`` for a small positive integer ``n``: one PROD neuron per element with ``n`` PRODUCT edges from it."""
    power = _small_integer(exponent)
    if power is None:
        raise ctx.fail(f"expected a positive integer exponent of at most {_MAX_POWER} (got {exponent!r}); "
                       "gmnfx lowers x ** n as a product of n factors, other powers have no neuron op")
    if power == 1:
        return x
    out = mirror_neurons(ctx, x.shape, [x.ids], op=NodeOp.PROD)
    for _ in range(power):
        ctx.graph.add_block(PairEdges(x.ids, out, EdgeType.PRODUCT, ctx.layer, ctx.source()))
    return Neurons(out)


def _small_integer(exponent: Any) -> "int | None":
    """``exponent`` as an int in ``1 .. _MAX_POWER`` (``3``, ``3.0``, a one-element tensor), else None."""
    if isinstance(exponent, torch.Tensor):
        exponent = exponent.item() if exponent.numel() == 1 else None
    if isinstance(exponent, bool) or not isinstance(exponent, (int, float)) or not 1 <= exponent <= _MAX_POWER:
        return None
    return int(exponent) if exponent == int(exponent) else None


@register_lowering(operator.pow, torch.pow, method("pow"), aten.pow.Tensor_Scalar, aten.pow.Tensor_Tensor)
def lower_pow_op(ctx: LoweringContext, node) -> Neurons:
    x, exponent = ctx.bind(node, "input", "exponent")
    if not isinstance(x, Neurons) or isinstance(exponent, (Neurons, Params)):
        raise ctx.fail("only an activation raised to a constant power is supported (x ** n)")
    return lower_power(ctx, x, exponent)


@register_lowering(operator.truediv, operator.itruediv, torch.div, method("div"), aten.div.Tensor)
def lower_div_op(ctx: LoweringContext, node) -> Neurons:
    a, b, rounding = ctx.bind(node, "input", "other", rounding_mode=None)
    if rounding is not None or not isinstance(a, Neurons) or isinstance(b, (Neurons, Params)):
        raise ctx.fail("only division of an activation by a constant is supported")
    return lower_mul(ctx, a, 1.0 / torch.as_tensor(b, dtype=torch.float64))

"""Lowering rules: pooling and reductions over positions.

Max pooling makes MAX nodes fed by their window (POOL edges). Average pooling
and adaptive average pooling make SUM nodes whose POOL edges carry the exact
averaging weights PyTorch uses (padding, ``ceil_mode``, ``count_include_pad``
and ``divisor_override`` included), found by probing the 1-d op per spatial
dim: these pools are separable, so the N-d weights are products.
``mean``/``sum``/``amax`` over dims are reductions with weight 1/n, 1 or MAX.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from gmnfx.context import LoweringContext
from gmnfx.edge_blocks import BlockAttrs, PairEdges, combine_index_keys, window_taps
from gmnfx.ir import Neurons, Params
from gmnfx.registry import method, register_lowering
from gmnfx.schema import EdgeType, NodeOp

__all__ = ["lower_window_pool", "lower_reduction"]

aten = torch.ops.aten

# A per-dim window: (input index, output index, weight) triples.
Window1d = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _probe_1d(op: Callable[[torch.Tensor], torch.Tensor], n_in: int) -> Window1d:
    """Weights of a linear 1-d pooling op, read off its response to each unit impulse."""
    response = op(torch.eye(n_in, dtype=torch.float64)[:, None, :])[:, 0, :]  # [n_in, n_out]
    p, q = torch.nonzero(response, as_tuple=True)
    return p, q, response[p, q]


def _max_window_1d(n_in: int, n_out: int, k: int, s: int, pad: int, d: int) -> Window1d:
    taps = window_taps((n_in,), (n_out,), (k,), (s,), (pad,), (d,))  # [k, n_out], -1 outside the input
    q = torch.arange(n_out)[None, :].expand_as(taps)
    ok = taps >= 0
    return taps[ok], q[ok], torch.ones(int(ok.sum()), dtype=torch.float64)


def _adaptive_max_window_1d(n_in: int, n_out: int) -> Window1d:
    """PyTorch's adaptive windows: output q reads [floor(q n_in / n_out), ceil((q + 1) n_in / n_out))."""
    q_all = torch.arange(n_out)
    starts = (q_all * n_in) // n_out
    ends = -((-(q_all + 1) * n_in) // n_out)
    lengths = ends - starts
    q = torch.repeat_interleave(q_all, lengths)
    first_of_window = torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
    p = torch.repeat_interleave(starts, lengths) + torch.arange(q.numel()) - first_of_window
    return p, q, torch.ones(p.numel(), dtype=torch.float64)


def _combine(windows: Sequence[Window1d], in_size, out_size) -> Window1d:
    """Cartesian product of per-dim windows: flat input index, flat output index, product weight."""
    p = torch.zeros(1, dtype=torch.long)
    q = torch.zeros(1, dtype=torch.long)
    w = torch.ones(1, dtype=torch.float64)
    for (pd, qd, wd), n_in, n_out in zip(windows, in_size, out_size):
        p = (p[:, None] * n_in + pd[None, :]).reshape(-1)
        q = (q[:, None] * n_out + qd[None, :]).reshape(-1)
        w = (w[:, None] * wd[None, :]).reshape(-1)
    return p, q, w


def lower_window_pool(ctx: LoweringContext, x: Neurons, windows: Sequence[Window1d], op: NodeOp,
                      attrs: BlockAttrs = BlockAttrs()) -> Neurons:
    """Per-channel pooling of ``x`` [C, *S] with the given separable windows."""
    out_shape = ctx.out_shape()
    if len(out_shape) != x.ids.dim() or out_shape[0] != x.shape[0]:
        raise ctx.fail(f"expected pooling to keep the channel dim (input {x.shape}, output {out_shape})")
    p, q, w = _combine(windows, x.shape[1:], out_shape[1:])
    out = ctx.graph.new_neurons(out_shape, layer=ctx.layer, op=op, channel_dim=0)
    c = x.shape[0]
    src = x.ids.reshape(c, -1)[:, p]
    dst = out.reshape(c, -1)[:, q]
    ctx.graph.add_block(PairEdges(src, dst, EdgeType.POOL, ctx.layer, ctx.source(), weight=w[None, :], attrs=attrs))
    return Neurons(out, fusable=op == NodeOp.SUM)


def _tuple(value, n: int) -> tuple[int, ...]:
    if value is None:
        return (None,) * n
    if isinstance(value, int):
        return (value,) * n
    value = tuple(value)
    return value * n if len(value) == 1 else value


def _pad3(values) -> tuple[int, int, int]:
    values = [int(v) for v in values][-3:]
    return tuple([0] * (3 - len(values)) + values)


def _spatial_dims(ctx: LoweringContext, x: Neurons, n: int) -> None:
    if x.ids.dim() != n + 1:
        raise ctx.fail(f"expected a per-sample input [C, <{n} spatial dims>] (got {x.shape})")


def lower_max_pool(ctx, x: Neurons, n: int, kernel, stride, padding, dilation, ceil_mode, return_indices=False):
    if return_indices:
        raise ctx.fail("max pooling with return_indices=True is not supported (indices are data-dependent)")
    _spatial_dims(ctx, x, n)
    kernel = _tuple(kernel, n)
    stride = _tuple(stride, n) if stride not in (None, [], ()) else kernel
    padding, dilation = _tuple(padding, n), _tuple(dilation, n)
    out = ctx.out_shape()
    windows = [_max_window_1d(x.shape[1 + d], out[1 + d], kernel[d], stride[d], padding[d], dilation[d]) for d in range(n)]
    attrs = BlockAttrs(_pad3(kernel), _pad3(stride), _pad3(dilation), _pad3(padding))
    return lower_window_pool(ctx, x, windows, NodeOp.MAX, attrs)


def lower_avg_pool(ctx, x: Neurons, n: int, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    _spatial_dims(ctx, x, n)
    kernel = _tuple(kernel, n)
    stride = _tuple(stride, n) if stride not in (None, [], ()) else kernel
    padding = _tuple(padding, n)
    windows = [
        _probe_1d(lambda t, d=d: F.avg_pool1d(t, kernel[d], stride[d], padding[d], bool(ceil_mode), bool(count_include_pad)),
                  x.shape[1 + d])
        for d in range(n)
    ]
    if divisor_override:
        windows = [(p, q, torch.ones_like(w)) for p, q, w in windows]
        windows[0] = (windows[0][0], windows[0][1], windows[0][2] / float(divisor_override))
    attrs = BlockAttrs(_pad3(kernel), _pad3(stride), _pad3((1,) * n), _pad3(padding))
    return lower_window_pool(ctx, x, windows, NodeOp.SUM, attrs)


def lower_adaptive_pool(ctx, x: Neurons, n: int, op: NodeOp):
    _spatial_dims(ctx, x, n)
    out = ctx.out_shape()
    if op == NodeOp.MAX:
        windows = [_adaptive_max_window_1d(x.shape[1 + d], out[1 + d]) for d in range(n)]
    else:
        windows = [_probe_1d(lambda t, d=d: F.adaptive_avg_pool1d(t, out[1 + d]), x.shape[1 + d]) for d in range(n)]
    return lower_window_pool(ctx, x, windows, op)


def _register_pools(n: int) -> None:
    max_module = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)[n - 1]
    avg_module = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)[n - 1]
    max_fn = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[n - 1]
    avg_fn = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[n - 1]
    aten_max = (aten.max_pool1d.default, aten.max_pool2d.default, aten.max_pool3d.default)[n - 1]
    aten_avg = (aten.avg_pool1d.default, aten.avg_pool2d.default, aten.avg_pool3d.default)[n - 1]

    @register_lowering(max_module, max_fn, aten_max)
    def lower_max_pool_op(ctx: LoweringContext, node) -> Neurons:
        if node.op == "call_module":
            (x,) = ctx.bind(node, "input")
            m = ctx.module()
            args = (m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, m.return_indices)
        else:
            x, *args = ctx.bind(node, "input", "kernel_size", stride=None, padding=0, dilation=1,
                                ceil_mode=False, return_indices=False)
        return lower_max_pool(ctx, ctx.neurons(x), n, *args)

    @register_lowering(avg_module, avg_fn, aten_avg)
    def lower_avg_pool_op(ctx: LoweringContext, node) -> Neurons:
        if node.op == "call_module":
            (x,) = ctx.bind(node, "input")
            m = ctx.module()
            args = (m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                    getattr(m, "divisor_override", None))
        else:
            x, *args = ctx.bind(node, "input", "kernel_size", stride=None, padding=0, ceil_mode=False,
                                count_include_pad=True, divisor_override=None)
        return lower_avg_pool(ctx, ctx.neurons(x), n, *args)

    adaptive_avg = ((nn.AdaptiveAvgPool1d, F.adaptive_avg_pool1d, aten.adaptive_avg_pool1d.default),
                    (nn.AdaptiveAvgPool2d, F.adaptive_avg_pool2d, aten.adaptive_avg_pool2d.default,
                     aten._adaptive_avg_pool2d.default),
                    (nn.AdaptiveAvgPool3d, F.adaptive_avg_pool3d, aten.adaptive_avg_pool3d.default,
                     aten._adaptive_avg_pool3d.default))[n - 1]
    adaptive_max = ((nn.AdaptiveMaxPool1d, F.adaptive_max_pool1d),
                    (nn.AdaptiveMaxPool2d, F.adaptive_max_pool2d),
                    (nn.AdaptiveMaxPool3d, F.adaptive_max_pool3d))[n - 1]

    @register_lowering(*adaptive_avg)
    def lower_adaptive_avg_pool(ctx: LoweringContext, node) -> Neurons:
        return lower_adaptive_pool(ctx, ctx.neurons(node.args[0] if node.args else node.kwargs["input"]), n, NodeOp.SUM)

    @register_lowering(*adaptive_max)
    def lower_adaptive_max_pool(ctx: LoweringContext, node) -> Neurons:
        if node.op == "call_module" and ctx.module().return_indices or node.kwargs.get("return_indices"):
            raise ctx.fail("adaptive max pooling with return_indices=True is not supported")
        return lower_adaptive_pool(ctx, ctx.neurons(node.args[0] if node.args else node.kwargs["input"]), n, NodeOp.MAX)

    aten_adaptive_max = (aten.adaptive_max_pool1d.default, aten.adaptive_max_pool2d.default,
                         aten.adaptive_max_pool3d.default)[n - 1]

    @register_lowering(aten_adaptive_max)
    def lower_aten_adaptive_max_pool(ctx: LoweringContext, node) -> tuple:
        """The ATen op returns (values, indices); indices are data-dependent and become None."""
        values = lower_adaptive_pool(ctx, ctx.neurons(node.args[0]), n, NodeOp.MAX)
        return values, None


for _n in (1, 2, 3):
    _register_pools(_n)


# ---------------------------------------------------------------------- reductions
def lower_reduction(ctx: LoweringContext, x: Neurons, dims, keepdim: bool, op: NodeOp, mean: bool) -> Neurons:
    """Reduce ``x`` over per-sample ``dims`` (given in batched numbering) by sum, mean or max."""
    ndim = x.ids.dim()
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        raise ctx.fail("reducing over every dim includes the batch dim; reduce over explicit non-batch dims")
    dims = [dims] if isinstance(dims, int) else list(dims)
    dims = sorted({d % (ndim + 1) for d in dims})
    if 0 in dims:
        raise ctx.fail("reducing over the batch dim mixes samples; gmnfx graphs describe one sample")
    sample_dims = [d - 1 for d in dims]
    kept_shape = [1 if d in sample_dims else s for d, s in enumerate(x.shape)]
    count = math.prod(x.shape[d] for d in sample_dims)
    out_kept = _reduction_neurons(ctx, x, kept_shape, sample_dims, op)
    weight = 1.0 / count if mean else 1.0
    ctx.graph.add_block(PairEdges(x.ids, out_kept, EdgeType.POOL, ctx.layer, ctx.source(), weight=weight))
    out = out_kept if keepdim else out_kept.reshape([s for d, s in enumerate(kept_shape) if d not in sample_dims])
    return Neurons(out, fusable=op == NodeOp.SUM)


def _reduction_neurons(ctx, x: Neurons, kept_shape, sample_dims, op: NodeOp) -> torch.Tensor:
    """Output neurons (in keepdim shape); channel = the (min, max) input channel they read."""
    channels = ctx.graph.channel_of(x.ids)
    low, high = channels, channels
    for d in sample_dims:
        low = low.amin(dim=d, keepdim=True)
        high = high.amax(dim=d, keepdim=True)
    key = combine_index_keys([low.reshape(-1), high.reshape(-1)])
    first = x.ids
    for d in sample_dims:
        first = first.narrow(d, 0, 1)
    return ctx.graph.new_neurons(kept_shape, layer=ctx.layer, op=op, channel_key=key.view(kept_shape),
                                 pos=ctx.graph.positions(first))


def _register_reduction(op: NodeOp, mean: bool, *targets):
    @register_lowering(*targets)
    def lower_reduce(ctx: LoweringContext, node) -> Neurons:
        x, dims, keepdim = ctx.bind(node, "input", dim=None, keepdim=False)
        return lower_reduction(ctx, ctx.neurons(x), dims, bool(keepdim), op, mean)

    lower_reduce.__name__ = f"lower_{'mean' if mean else 'sum' if op == NodeOp.SUM else 'amax'}"


_register_reduction(NodeOp.SUM, True, torch.mean, method("mean"), aten.mean.dim)
_register_reduction(NodeOp.SUM, False, torch.sum, method("sum"), aten.sum.dim_IntList)
_register_reduction(NodeOp.MAX, False, torch.amax, method("amax"), aten.amax.default)


@register_lowering(torch.max, method("max"), aten.max.dim)
def lower_max(ctx: LoweringContext, node) -> tuple:
    """``x.max(dim)``: (values, indices); the values are a MAX reduction, the data-dependent indices None."""
    x, dim, keepdim = ctx.bind(node, "input", dim=None, keepdim=False)
    if not isinstance(dim, int) or isinstance(dim, bool):
        got = "a second tensor" if isinstance(dim, (Neurons, Params)) else f"dim={dim!r}"
        raise ctx.fail(f"max is supported as a reduction over one dim, x.max(dim) (got {got}); the elementwise "
                       "maximum of two tensors has no neuron op, and reducing every dim includes the batch dim")
    return lower_reduction(ctx, ctx.neurons(x), dim, bool(keepdim), NodeOp.MAX, False), None

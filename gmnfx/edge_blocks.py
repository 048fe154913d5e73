"""Blocks of edges added by lowering rules, and their two materializations.

A block knows how to list its edges at neuron level (``computation_edges``:
one edge per use of a weight) and at channel level (``parameter_edges``: one
edge per parameter, weight sharing collapsed). The generic collapse in
:class:`PairEdges` materializes neuron-level edges and merges them by
parameter; :class:`DenseEdges` and :class:`ConvEdges` collapse structurally
without ever materializing the per-position edges, so a ResNet's parameter
graph costs O(parameters), not O(multiply-adds).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from gmnfx.errors import ParameterPlacementError
from gmnfx.schema import EdgeType

__all__ = ["EdgeColumns", "BlockAttrs", "PairEdges", "DenseEdges", "ConvEdges", "CollapseContext", "collapse_edges", "window_taps", "combine_index_keys",
           "PADDING_MODES", "NUM_BLOCK_ATTRS"]

_LONG = torch.long


@dataclass
class EdgeColumns:
    """Edges as columns. ``param`` is -1 for parameter-free edges, whose value is ``weight``.

    Columns are usually flat ([E], pos [E, 3]); a block may instead return
    columns that *broadcast* to a common edge shape S (pos to [*S, 3]), e.g.
    expanded views, so that the only copy is the one into the final graph
    (see :meth:`write_into`).
    """

    src: torch.Tensor
    dst: torch.Tensor
    param: torch.Tensor
    weight: torch.Tensor  # float32; meaningful where param == -1
    pos: torch.Tensor  # [*S, 3] float32

    @property
    def shape(self) -> torch.Size:
        return torch.broadcast_shapes(self.src.shape, self.dst.shape, self.param.shape, self.weight.shape,
                                      self.pos.shape[:-1])

    def __len__(self) -> int:
        return math.prod(self.shape)

    def write_into(self, out: "EdgeColumns", start: int, flat_params: torch.Tensor) -> None:
        """Copy into rows ``start:start+len(self)`` of flat ``out``; parameter edges get their value."""
        shape = self.shape
        n = math.prod(shape)
        for name in ("src", "dst", "param"):
            getattr(out, name)[start : start + n].view(shape).copy_(getattr(self, name).expand(shape))
        out.pos[start : start + n].view(*shape, 3).copy_(self.pos.expand(*shape, 3))
        param = out.param[start : start + n]
        weight = out.weight[start : start + n]
        if n and int(param.min()) >= 0:
            torch.index_select(flat_params, 0, param, out=weight)
        else:
            weight.view(shape).copy_(self.weight.expand(shape))
            with_param = param >= 0
            weight[with_param] = flat_params[param[with_param]]

    @staticmethod
    def empty(n: int, weight_dtype: torch.dtype = torch.float32) -> "EdgeColumns":
        """Uninitialized columns for ``n`` edges; ``src`` and ``dst`` are the rows of one [2, n] tensor."""
        index = torch.empty(2, n, dtype=_LONG)
        return EdgeColumns(index[0], index[1], torch.empty(n, dtype=_LONG), torch.empty(n, dtype=weight_dtype),
                           torch.empty(n, 3))

    @property
    def edge_index(self) -> torch.Tensor:
        """``[2, E]``: a view when src/dst are rows of one tensor (as from :meth:`empty`), else a stacked copy."""
        base = self.src._base
        if (base is not None and base is self.dst._base and base.shape == (2, self.src.numel())
                and self.src.data_ptr() == base.data_ptr() and self.dst.data_ptr() == base[1].data_ptr()):
            return base
        return torch.stack([self.src, self.dst])

    @staticmethod
    def cat(parts: Sequence["EdgeColumns"]) -> "EdgeColumns":
        if not parts:
            return EdgeColumns.empty(0)
        return EdgeColumns(*(torch.cat([getattr(p, f) for p in parts]) for f in ("src", "dst", "param", "weight", "pos")))


@dataclass(frozen=True)
class BlockAttrs:
    """Per-block edge features: kernel size, stride, dilation and padding per spatial dim, groups, padding mode,
    and which factor of a matrix product the block's PRODUCT edges feed (``operand``)."""

    kernel: tuple[int, int, int] = (0, 0, 0)
    stride: tuple[int, int, int] = (0, 0, 0)
    dilation: tuple[int, int, int] = (0, 0, 0)
    padding: tuple[int, int, int] = (0, 0, 0)
    groups: int = 1
    padding_mode: int = 0  # PADDING_MODES index: zeros, reflect, replicate, circular
    operand: int = 0  # matrix-product factor: 1 left, 2 right (0: not a matrix-product edge)

    def as_row(self) -> list[float]:
        return [*self.kernel, *self.stride, *self.dilation, *self.padding, self.groups, self.padding_mode,
                self.operand]


PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
NUM_BLOCK_ATTRS = len(BlockAttrs().as_row())


@dataclass
class CollapseContext:
    """What a block needs to collapse itself: neuron -> channel/position, parameter names."""

    channel: torch.Tensor  # [num_neurons] channel id of each neuron
    pos: torch.Tensor  # [num_neurons, 3] position of each neuron
    describe_param: Callable[[int], str]  # flat index -> "name[i, j]"


def _pad3(values: Sequence[int]) -> tuple[int, int, int]:
    values = list(values)[-3:]
    return tuple([0] * (3 - len(values)) + values)


@dataclass
class PairEdges:
    """Explicit neuron-level edges ``src[p] -> dst[p]`` (tensors broadcast together).

    ``param`` gives the flat parameter index of each edge (-1: parameter-free,
    carrying ``weight``). Collapsing merges edges that carry the same
    parameter (they must join the same pair of channels) and parameter-free
    edges joining the same pair of channels (their weights averaged).
    """

    src: torch.Tensor
    dst: torch.Tensor
    edge_type: EdgeType
    layer: int
    source: str
    param: Optional[torch.Tensor] = None
    weight: object = 1.0
    attrs: BlockAttrs = field(default_factory=BlockAttrs)

    def _param_and_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        param = torch.full((), -1, dtype=_LONG) if self.param is None else self.param
        return param, torch.as_tensor(self.weight, dtype=torch.float64)

    def computation_edges(self, ctx: CollapseContext) -> EdgeColumns:
        param, weight = self._param_and_weight()
        src, dst, param, weight = torch.broadcast_tensors(self.src, self.dst, param, weight)
        src, dst, param, weight = (t.reshape(-1) for t in (src, dst, param, weight))
        keep = (src >= 0) & (dst >= 0)
        if not bool(keep.all()):
            src, dst, param, weight = src[keep], dst[keep], param[keep], weight[keep]
        return EdgeColumns(src, dst, param, weight.float(), ctx.pos[dst].float())

    def parameter_edges(self, ctx: CollapseContext) -> EdgeColumns:
        return collapse_edges(self._without_repeated_dims(ctx).computation_edges(ctx), ctx)

    def _without_repeated_dims(self, ctx: CollapseContext) -> "PairEdges":
        """The same block narrowed to index 0 along every dim where nothing the collapse sees changes.

        Along such a dim (typically a spatial dim of an elementwise op on a
        feature map) every edge repeats the channel pair, parameter and weight
        of its first copy, so collapsing the narrowed block gives exactly the
        same parameter-graph edges at a fraction of the cost.
        """
        param, weight = self._param_and_weight()
        tensors = [self.src, self.dst, param, weight]
        seen = [_channels_or_minus_one(ctx, self.src), _channels_or_minus_one(ctx, self.dst), param, weight]
        shape = torch.broadcast_shapes(*(t.shape for t in tensors))
        for d in range(len(shape)):
            if shape[d] > 1 and all(_constant_along(t, d, len(shape)) for t in seen):
                tensors = [_first_along(t, d, len(shape)) for t in tensors]
                seen = [_first_along(t, d, len(shape)) for t in seen]
        src, dst, param, weight = tensors
        return PairEdges(src, dst, self.edge_type, self.layer, self.source, param=param, weight=weight, attrs=self.attrs)


def _channels_or_minus_one(ctx: CollapseContext, ids: torch.Tensor) -> torch.Tensor:
    """Channel of each id (-1 for -1), computed once per distinct element of a broadcast (stride-0) view."""
    small = ids
    for d in range(ids.dim()):
        if ids.shape[d] > 1 and ids.stride(d) == 0:
            small = small.narrow(d, 0, 1)
    return torch.where(small >= 0, ctx.channel[small.clamp(min=0)], -1).expand(ids.shape)


def _constant_along(t: torch.Tensor, d: int, ndim: int) -> bool:
    """Whether ``t`` (right-aligned in an ``ndim``-d broadcast) is constant along broadcast dim ``d``."""
    own = d - (ndim - t.dim())
    return (own < 0 or t.shape[own] == 1 or t.stride(own) == 0
            or bool((t == t.narrow(own, 0, 1)).all()))


def _first_along(t: torch.Tensor, d: int, ndim: int) -> torch.Tensor:
    own = d - (ndim - t.dim())
    return t if own < 0 or t.shape[own] == 1 else t.narrow(own, 0, 1)


def collapse_edges(edges: EdgeColumns, ctx: CollapseContext) -> EdgeColumns:
    """Merge neuron-level edges into channel-level edges (the generic weight-sharing collapse).

    Uses of one parameter joining the same pair of channels become one edge; uses
    joining different pairs stay apart here and are resolved globally (the first
    keeps the parameter, the others become TIED edges) by ``collapse_weight_sharing``.
    """
    src_ch, dst_ch = ctx.channel[edges.src], ctx.channel[edges.dst]
    with_param = edges.param >= 0
    parts = []
    if bool(with_param.any()):
        p, s, d = edges.param[with_param], src_ch[with_param], dst_ch[with_param]
        _, inverse = torch.unique(p, return_inverse=True)
        first = _first_occurrence(inverse)
        if not bool(((s == s[first][inverse]) & (d == d[first][inverse])).all()):
            # a parameter joins several channel pairs: keep one edge per (parameter, pair)
            first = _first_occurrence(combine_index_keys([p, s, d]))
        parts.append(EdgeColumns(s[first], d[first], p[first], torch.zeros(first.numel()),
                                 edges.pos[with_param][first]))
    free = ~with_param
    if bool(free.any()):
        s, d, w = src_ch[free], dst_ch[free], edges.weight[free]
        inverse = combine_index_keys([s, d])
        first = _first_occurrence(inverse)
        count = torch.bincount(inverse, minlength=first.numel()).double()
        mean_w = torch.zeros(first.numel(), dtype=torch.float64).index_add_(0, inverse, w.double()) / count
        minus_one = torch.full((first.numel(),), -1, dtype=_LONG)
        parts.append(EdgeColumns(s[first], d[first], minus_one, mean_w[inverse[first]].float(), torch.zeros(first.numel(), 3)))
    return EdgeColumns.cat(parts)


def combine_index_keys(keys: Sequence[torch.Tensor]) -> torch.Tensor:
    """Dense id (0..K-1) of each distinct tuple of non-negative integer keys."""
    combined = keys[0]
    for key in keys[1:]:
        _, combined = torch.unique(combined * (int(key.max()) + 1 if key.numel() else 1) + key, return_inverse=True)
    if len(keys) == 1:
        _, combined = torch.unique(combined, return_inverse=True)
    return combined


def _first_occurrence(group: torch.Tensor) -> torch.Tensor:
    """Index of the first element of every group (groups are dense ids), sorted by position."""
    first = torch.full((int(group.max()) + 1,), group.numel(), dtype=_LONG)
    first.scatter_reduce_(0, group, torch.arange(group.numel()), reduce="amin")
    return first.sort().values


def _uniform_channels(ids: torch.Tensor, ctx: CollapseContext, what: str, source: str) -> torch.Tensor:
    """Channel of each slice ``ids[c]`` along dim 0; all its elements must share it."""
    flat = ids.reshape(ids.shape[0], -1)
    channels = ctx.channel[flat]
    if flat.shape[1] and not bool((channels == channels[:, :1]).all()):
        raise ParameterPlacementError(
            f"{source}: the {what} neurons of one channel belong to several parameter-graph "
            "channels (a reshape mixed channels and positions before this layer), so its "
            "weights cannot be collapsed onto channel edges"
        )
    return channels[:, 0] if flat.shape[1] else torch.empty(ids.shape[0], dtype=_LONG)


@dataclass
class DenseEdges:
    """A dense layer applied at every leading position: ``src[t, i] -> dst[t, o]`` with ``weight[o, i]``."""

    src: torch.Tensor  # [T, in]
    dst: torch.Tensor  # [T, out]
    weight: torch.Tensor  # [out, in] flat parameter indices
    layer: int
    source: str
    edge_type: EdgeType = EdgeType.LINEAR
    attrs: BlockAttrs = field(default_factory=BlockAttrs)

    def computation_edges(self, ctx: CollapseContext) -> EdgeColumns:
        t, n_in = self.src.shape
        n_out = self.dst.shape[1]
        src = self.src[:, None, :].expand(t, n_out, n_in).reshape(-1)
        dst = self.dst[:, :, None].expand(t, n_out, n_in).reshape(-1)
        param = self.weight[None].expand(t, n_out, n_in).reshape(-1)
        return EdgeColumns(src, dst, param, torch.zeros(src.numel()), ctx.pos[src].float())

    def parameter_edges(self, ctx: CollapseContext) -> EdgeColumns:
        src_ch = _uniform_channels(self.src.T, ctx, "input", self.source)
        dst_ch = _uniform_channels(self.dst.T, ctx, "output", self.source)
        pos = ctx.pos[self.src[0]].float()  # [in, 3], broadcast over outputs
        return EdgeColumns(src_ch[None, :], dst_ch[:, None], self.weight, torch.zeros(()), pos[None])


@dataclass
class ConvEdges:
    """An N-d convolution from ``src`` [C_in, *S_in] to ``dst`` [C_out, *S_out]."""

    src: torch.Tensor
    dst: torch.Tensor
    weight: torch.Tensor  # [C_out, C_in / groups, *K] flat parameter indices
    stride: tuple[int, ...]
    padding: tuple[int, ...]  # left padding per spatial dim
    dilation: tuple[int, ...]
    groups: int
    padding_mode: str
    layer: int
    source: str
    edge_type: EdgeType = EdgeType.CONV

    @property
    def attrs(self) -> BlockAttrs:
        return BlockAttrs(
            kernel=_pad3(self.weight.shape[2:]), stride=_pad3(self.stride),
            dilation=_pad3(self.dilation), padding=_pad3(self.padding), groups=self.groups,
            padding_mode=PADDING_MODES.index(self.padding_mode),
        )

    def _kernel_offsets(self) -> torch.Tensor:
        """Centered kernel offset of every tap, [K_total, 3]."""
        kernel = self.weight.shape[2:]
        grids = torch.meshgrid(*[torch.arange(k, dtype=torch.float32) - (k - 1) / 2 for k in kernel], indexing="ij")
        offsets = torch.zeros(math.prod(kernel), 3)
        for column, grid in zip(range(3 - len(kernel), 3), grids):
            offsets[:, column] = grid.reshape(-1)
        return offsets

    def computation_edges(self, ctx: CollapseContext) -> EdgeColumns:
        c_out, c_in_g = self.weight.shape[:2]
        taps = window_taps(self.src.shape[1:], self.dst.shape[1:], self.weight.shape[2:], self.stride,
                           self.padding, self.dilation, self.padding_mode)  # [K, Q]
        src_flat = self.src.reshape(self.src.shape[0], -1)
        dst_flat = self.dst.reshape(c_out, -1)
        w = self.weight.reshape(c_out, c_in_g, -1)  # [O, I, K]
        in_channel = (torch.arange(c_out)[:, None] // (c_out // self.groups)) * c_in_g + torch.arange(c_in_g)[None, :]
        k_idx, q_idx = torch.nonzero(taps >= 0, as_tuple=True)
        src = src_flat[in_channel[:, :, None], taps[k_idx, q_idx][None, None, :]]  # [O, I, V]
        dst = dst_flat[:, q_idx][:, None, :].expand_as(src)
        param = w[:, :, k_idx]
        pos = self._kernel_offsets()[k_idx][None, None].expand(*src.shape, 3)
        return EdgeColumns(src.reshape(-1), dst.reshape(-1), param.reshape(-1),
                           torch.zeros(src.numel()), pos.reshape(-1, 3))

    def parameter_edges(self, ctx: CollapseContext) -> EdgeColumns:
        c_out, c_in_g = self.weight.shape[:2]
        k_total = self.weight[0, 0].numel()
        src_ch = _uniform_channels(self.src, ctx, "input", self.source)
        dst_ch = _uniform_channels(self.dst, ctx, "output", self.source)
        in_channel = (torch.arange(c_out)[:, None] // (c_out // self.groups)) * c_in_g + torch.arange(c_in_g)[None, :]
        return EdgeColumns(src_ch[in_channel][:, :, None], dst_ch[:, None, None],
                           self.weight.reshape(c_out, c_in_g, k_total), torch.zeros(()), self._kernel_offsets()[None, None])


def window_taps(in_size, out_size, kernel, stride, padding, dilation, padding_mode: str = "zeros") -> torch.Tensor:
    """Flat input position read by window tap k at output position q: ``[prod(kernel), prod(out_size)]``.

    Position ``q * stride - padding + k * dilation`` per dim; -1 where it falls
    outside the input (``padding_mode="zeros"``), wrapped/clamped/reflected otherwise.
    """
    flat = torch.zeros(1, 1, dtype=_LONG)
    valid = torch.ones(1, 1, dtype=torch.bool)
    for d, (n_in, n_out, k) in enumerate(zip(in_size, out_size, kernel)):
        pos = torch.arange(n_out)[None, :] * stride[d] - padding[d] + torch.arange(k)[:, None] * dilation[d]
        pos, ok = _apply_padding_mode(pos, n_in, padding_mode)
        flat = (flat[:, None, :, None] * n_in + pos[None, :, None, :]).reshape(flat.shape[0] * k, -1)
        valid = (valid[:, None, :, None] & ok[None, :, None, :]).reshape(valid.shape[0] * k, -1)
    return torch.where(valid, flat, torch.full_like(flat, -1))


def _apply_padding_mode(pos: torch.Tensor, size: int, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Map padded input coordinates into the input for the given padding mode."""
    if mode == "zeros":
        ok = (pos >= 0) & (pos < size)
        return pos.clamp(0, max(size - 1, 0)), ok
    if mode == "circular":
        return pos % size, torch.ones_like(pos, dtype=torch.bool)
    if mode == "replicate":
        return pos.clamp(0, size - 1), torch.ones_like(pos, dtype=torch.bool)
    if mode == "reflect":
        period = max(2 * (size - 1), 1)
        folded = pos.abs() % period
        return torch.where(folded >= size, period - folded, folded), torch.ones_like(pos, dtype=torch.bool)
    raise ValueError(f"unknown padding_mode {mode!r}")

"""Lowering rule: spatial parameter grids read by ``F.grid_sample`` (2-d and 3-d).

A learned grid ``[1, C, *S]`` (``S`` = ``(H, W)`` or ``(D, H, W)``; expanded to
the batch or not) is sampled at points ``[*S_out, n]`` computed from the
network input. The graph:

* one constant-one node per grid cell (a "spatial node", a BIAS-type CONST
  node like a layer's bias node), its cell position in ``pos_0..2``
  (right-aligned, in both graphs): the grid's spatial structure is visible
  to a metanetwork, as conv kernel offsets are;
* one GRID_SAMPLE neuron per (channel, sample point); in the parameter graph
  the sample points of a channel collapse into one node per channel;
* GRID edges from every cell to the sampling neurons of every channel,
  carrying ``grid[c, cell]``: in the parameter graph exactly one edge per grid
  value. Their block records the grid size (``kernel_*``) and the padding
  mode (``zeros``, or ``border`` as ``replicate``);
* COORD edges from each coordinate to the sampling neurons of its point, one
  per axis, the axis one-hot in ``pos_*`` (x -> ``pos_2``, y -> ``pos_1``,
  z -> ``pos_0``, as the grid's dims are right-aligned); in the parameter graph,
  where a channel's points share one node, a coordinate channel that gives its
  axis at only some points has the one-hot scaled by the point's row-major index
  plus two, so each coordinate stays paired with its point. Their weight is the
  number of cells per unit of normalized coordinate (``size / 2``, or
  ``(size - 1) / 2`` with ``align_corners=True``), so a sampling node reads the
  point ``u = (size - 1) / 2 + weight * coordinate`` in cell units. Their
  block's ``kernel_*`` is the interpolation window: 2 per axis for bilinear,
  1 for nearest.

Which cells a point reads depends on the input, so the computation graph has
an edge from every cell to every sampling neuron: ``C * points * cells`` GRID
edges (the parameter graph has ``C * cells``). ``gmnfx.simulate`` evaluates a
GRID_SAMPLE node as ``sum over cells of grid value * kernel(u - cell)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from gmnfx.context import LoweringContext
from gmnfx.edge_blocks import PADDING_MODES, BlockAttrs, CollapseContext, EdgeColumns, combine_index_keys
from gmnfx.ir import Neurons
from gmnfx.registry import register_lowering
from gmnfx.schema import EdgeType, NodeOp, NodeType

__all__ = ["lower_grid_sample", "GridEdges", "CoordEdges", "INTERPOLATION_WINDOW"]

aten = torch.ops.aten

INTERPOLATION_WINDOW = {"bilinear": 2, "nearest": 1}  # cells read per axis; the COORD block's kernel_*
_PADDING = {"zeros": "zeros", "border": "replicate"}  # grid_sample padding mode -> PADDING_MODES name
_ATEN_MODES = ("bilinear", "nearest", "bicubic")  # aten.grid_sampler's interpolation_mode codes
_ATEN_PADDING = ("zeros", "border", "reflection")  # aten.grid_sampler's padding_mode codes


def _pad3(values) -> tuple[int, int, int]:
    values = [int(v) for v in values][-3:]
    return tuple([0] * (3 - len(values)) + values)


def _one_hot_axes(num_axes: int) -> torch.Tensor:
    """``[num_axes, 3]``: coordinate ``a`` (x, y, z) indexes grid dim ``-1 - a``, i.e. pos column ``2 - a``."""
    pos = torch.zeros(num_axes, 3)
    pos[torch.arange(num_axes), 2 - torch.arange(num_axes)] = 1.0
    return pos


@dataclass
class GridEdges:
    """Every grid cell -> every sampling neuron of channel ``c``, carrying ``grid[c, cell]``."""

    cells: torch.Tensor  # [K] cell neurons (one channel each)
    dst: torch.Tensor  # [C, P] sampling neurons: channel, sample point
    param: torch.Tensor  # [C, K] flat parameter indices of the grid values
    layer: int
    source: str
    attrs: BlockAttrs = field(default_factory=BlockAttrs)
    edge_type: EdgeType = EdgeType.GRID

    def computation_edges(self, ctx: CollapseContext) -> EdgeColumns:
        shape = (*self.dst.shape, self.cells.numel())  # [C, P, K]
        src = self.cells[None, None, :].expand(shape).reshape(-1)
        param = self.param[:, None, :].expand(shape).reshape(-1)
        return EdgeColumns(src, self.dst[:, :, None].expand(shape).reshape(-1), param, torch.zeros(src.numel()),
                           ctx.pos[src].float())

    def parameter_edges(self, ctx: CollapseContext) -> EdgeColumns:
        cell_channels = ctx.channel[self.cells]
        sampler_channels = ctx.channel[self.dst[:, 0]]  # the sample points of a channel share its node
        return EdgeColumns(cell_channels[None, :], sampler_channels[:, None], self.param, torch.zeros(()),
                           ctx.pos[self.cells].float()[None])


@dataclass
class CoordEdges:
    """Coordinate ``a`` of point ``p`` -> the sampling neuron of every channel at ``p``, weight ``scale[a]``."""

    coords: torch.Tensor  # [P, A] coordinate neurons (x first)
    dst: torch.Tensor  # [C, P] sampling neurons
    scale: torch.Tensor  # [A] cells per unit of normalized coordinate
    layer: int
    source: str
    attrs: BlockAttrs = field(default_factory=BlockAttrs)
    edge_type: EdgeType = EdgeType.COORD

    def _flat(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Source, destination and axis of every edge, flat in (channel, point, axis) order."""
        shape = (self.dst.shape[0], *self.coords.shape)  # [C, P, A]
        src = self.coords[None].expand(shape).reshape(-1)
        dst = self.dst[:, :, None].expand(shape).reshape(-1)
        return src, dst, torch.arange(self.coords.shape[1]).expand(shape).reshape(-1)

    def computation_edges(self, ctx: CollapseContext) -> EdgeColumns:
        src, dst, axis = self._flat()
        return EdgeColumns(src, dst, torch.full_like(src, -1), self.scale.float()[axis],
                           _one_hot_axes(self.coords.shape[1])[axis])

    def parameter_edges(self, ctx: CollapseContext) -> EdgeColumns:
        """One edge per (coordinate channel, sampling channel, axis, and point where needed).

        A channel's sampling points share one node here. When one coordinate channel
        gives an axis at every point (an input of points, a position-wise layer), it is
        that axis's only source. Otherwise (coordinates computed as features,
        ``Linear(..., points * 2)``) ``pos`` is the axis one-hot times ``point + 2``
        (points in row-major order), or the x of one point and the x of another would
        look interchangeable: a symmetry the function does not have.
        """
        src, dst, axis = self._flat()
        num_points, num_axes = self.coords.shape
        point = torch.arange(num_points)[None, :, None].expand(self.dst.shape[0], num_points, num_axes).reshape(-1)
        src_ch, dst_ch = ctx.channel[src], ctx.channel[dst]
        pairs = combine_index_keys([src_ch, dst_ch, axis])  # a channel giving this axis at every point is its only source
        pair_point = combine_index_keys([pairs, point])
        pair_of = torch.empty(int(pair_point.max()) + 1 if pair_point.numel() else 0, dtype=torch.long)
        pair_of[pair_point] = pairs
        points_per_pair = torch.bincount(pair_of, minlength=int(pairs.max()) + 1 if pairs.numel() else 0)
        scale = torch.where(points_per_pair[pairs] == num_points, torch.ones_like(point), point + 2)
        group = combine_index_keys([src_ch, dst_ch, scale, axis])
        first = torch.full((int(group.max()) + 1 if group.numel() else 0,), group.numel(), dtype=torch.long)
        first = first.scatter_reduce_(0, group, torch.arange(group.numel()), reduce="amin").sort().values
        pos = _one_hot_axes(num_axes)[axis[first]] * scale[first, None].float()
        return EdgeColumns(src_ch[first], dst_ch[first], torch.full((first.numel(),), -1, dtype=torch.long),
                           self.scale.float()[axis[first]], pos)


def _grid_values(ctx: LoweringContext, values: Any) -> torch.Tensor:
    """Flat parameter indices ``[C, *S]`` of the sampled grid, given as ``[1 or batch, C, *S]``."""
    grid = ctx.params_or_none(values, "tensor sampled by grid_sample (its input)")
    if grid is None or grid.index.dim() not in (4, 5):
        raise ctx.fail("expected grid_sample's input to be a parameter grid [1, C, H, W] or [1, C, D, H, W] "
                       f"(got {None if grid is None else grid.shape})")
    index = grid.index
    if not bool((index == index[:1]).all()):
        raise ctx.fail(f"expected one parameter grid shared by every sample (got '{grid.name}' with different "
                       f"values along the batch dim, shape {grid.shape}); sample a [1, C, ...] grid, "
                       "expanded to the batch")
    return index[0]


def _new_cells(ctx: LoweringContext, size: tuple[int, ...]) -> torch.Tensor:
    """One constant-one node per grid cell, flat in row-major order, each its own channel at the cell's position."""
    cells = ctx.graph.new_neurons(size, layer=ctx.layer, op=NodeOp.CONST, node_type=NodeType.BIAS,
                                  channel_key=torch.arange(math.prod(size)).view(size)).reshape(-1)
    channels, pos = ctx.graph.channel_of(cells), ctx.graph.positions(cells)
    for d in range(3):
        ctx.graph.set_channel_attr(channels, f"pos_{d}", pos[:, d])
    return cells


def lower_grid_sample(ctx: LoweringContext, values: Any, points: Any, mode: str, padding_mode: str,
                      align_corners: bool) -> Neurons:
    """``F.grid_sample(grid, points, mode, padding_mode, align_corners)`` for a parameter ``grid``."""
    grid = _grid_values(ctx, values)
    if mode not in INTERPOLATION_WINDOW:
        raise ctx.fail(f"grid_sample mode {mode!r} is not supported (expected 'bilinear' or 'nearest')")
    if padding_mode not in _PADDING:
        raise ctx.fail(f"grid_sample padding_mode {padding_mode!r} is not supported (expected 'zeros' or 'border')")
    points = ctx.neurons(points, "sample points (grid_sample's grid)")
    size, n = tuple(grid.shape[1:]), grid.dim() - 1
    if points.ids.dim() != n + 1 or points.shape[-1] != n:
        raise ctx.fail(f"expected {n}-d sample points [{', '.join(['...'] * n)}, {n}] per sample "
                       f"(got {points.shape})")
    channels, out_points = grid.shape[0], points.shape[:-1]
    if 0 in (channels, *out_points):
        raise ctx.fail(f"expected a non-empty grid and sample points (got {grid.shape} and {points.shape})")
    cells = _new_cells(ctx, size)  # before the sampling neurons they feed
    out = ctx.graph.new_neurons((channels, *out_points), layer=ctx.layer, op=NodeOp.GRID_SAMPLE, channel_dim=0)
    padding = PADDING_MODES.index(_PADDING[padding_mode])
    dst = out.reshape(channels, -1)
    ctx.graph.add_block(GridEdges(cells, dst, grid.reshape(channels, -1), ctx.layer, ctx.source(),
                                  BlockAttrs(kernel=_pad3(size), padding_mode=padding)))
    extent = torch.tensor(size[::-1], dtype=torch.float64)  # per axis x, y(, z): W, H(, D)
    scale = (extent - 1) / 2 if align_corners else extent / 2
    window = (INTERPOLATION_WINDOW[mode],) * n
    ctx.graph.add_block(CoordEdges(points.ids.reshape(-1, n), dst, scale, ctx.layer, ctx.source(),
                                   BlockAttrs(kernel=_pad3(window), padding_mode=padding)))
    return Neurons(out)


@register_lowering(F.grid_sample)
def lower_grid_sample_function(ctx: LoweringContext, node) -> Neurons:
    values, points, mode, padding_mode, align_corners = ctx.bind(
        node, "input", "grid", mode="bilinear", padding_mode="zeros", align_corners=None)
    return lower_grid_sample(ctx, values, points, mode, padding_mode, bool(align_corners))


@register_lowering(aten.grid_sampler.default, aten.grid_sampler_2d.default, aten.grid_sampler_3d.default)
def lower_grid_sample_aten(ctx: LoweringContext, node) -> Neurons:
    values, points, mode, padding_mode, align_corners = ctx.bind(
        node, "input", "grid", "interpolation_mode", "padding_mode", "align_corners")
    return lower_grid_sample(ctx, values, points, _ATEN_MODES[int(mode)], _ATEN_PADDING[int(padding_mode)],
                             bool(align_corners))

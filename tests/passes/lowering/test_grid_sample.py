"""Spatial parameter grids read by ``F.grid_sample`` (2-d and 3-d; a triplanar INR).

Every option (bilinear / nearest, zeros / border padding, align_corners) is checked with ``check_compiles``,
and ``simulate`` must reproduce ``F.grid_sample`` exactly in float64 (also at nearest-rounding ties and
out-of-grid points). The parameter graph: one constant-one node per grid cell with its position, one
GRID_SAMPLE node per channel, one GRID edge per grid value from its cell to its channel, COORD edges per
axis weighted by the cells per unit of normalized coordinate; the blocks record grid size, padding and
interpolation window.
"""
from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import gmnfx
from gmnfx.edge_blocks import PADDING_MODES
from gmnfx.schema import EdgeCol, EdgeType, NodeCol, NodeOp, NodeType
from gmnfx.testing import check_compiles, simulation_error

OPTIONS = list(itertools.product(["bilinear", "nearest"], ["zeros", "border"], [False, True]))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


class GridLookup(nn.Module):
    """A learned grid [1, C, *S] sampled at the input points [batch, *S_out, n]."""

    def __init__(self, size=(4, 5), channels: int = 3, mode="bilinear", padding_mode="zeros", align_corners=False):
        super().__init__()
        self.grid = nn.Parameter(torch.randn(1, channels, *size))
        self.options = dict(mode=mode, padding_mode=padding_mode, align_corners=align_corners)
        self.keep = [-1] * (1 + len(size))  # expand's "keep this size", one per non-batch dim

    def forward(self, points):
        return F.grid_sample(self.grid.expand(points.shape[0], *self.keep), points, **self.options)


class GridMLP(nn.Module):
    """Sample points computed from the input by a Linear; the grid features go through a head."""

    def __init__(self, nd: int = 2, **options):
        super().__init__()
        self.nd = nd
        self.to_points = nn.Linear(4, 6 * nd)
        self.lookup = GridLookup((4, 5) if nd == 2 else (3, 4, 5), 3, **options)
        self.head = nn.Linear(3, 2)

    def forward(self, x):  # x [batch, 4]
        points = 1.25 * torch.tanh(self.to_points(x))
        points = points.view(x.shape[0], 6, *([1] * (self.nd - 1)), self.nd)
        features = self.lookup(points).flatten(2).transpose(1, 2)  # [batch, 6, C]
        return self.head(torch.relu(features))


class Triplane(nn.Module):
    """Triplanar INR: three planes sampled at the projections of a 3-d point, summed, then an MLP."""

    def __init__(self, channels: int = 4, resolution: int = 5, hidden: int = 8, **options):
        super().__init__()
        self.planes = nn.ParameterList([nn.Parameter(torch.randn(1, channels, resolution, resolution))
                                        for _ in range(3)])
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.options = options

    def forward(self, p):  # p [batch, N, 3] in [-1, 1]^3
        b, n = p.shape[0], p.shape[1]
        features = []
        for plane, axes in zip(self.planes, ([0, 1], [0, 2], [1, 2])):
            points = p[..., axes].reshape(b, n, 1, 2)
            features.append(F.grid_sample(plane.expand(b, -1, -1, -1), points, **self.options))  # [b, C, N, 1]
        summed = features[0] + features[1] + features[2]
        return self.mlp(summed.squeeze(-1).transpose(1, 2))


def _points(batch: int, *shape: int, dtype=torch.float32) -> torch.Tensor:
    """Sample points in [-1.3, 1.3]: inside the grid and beyond its border."""
    return torch.rand(batch, *shape, dtype=dtype) * 2.6 - 1.3


def _float64_error(model: nn.Module, cg, *inputs) -> float:
    return simulation_error(copy.deepcopy(model).double(), cg, *(x.double() for x in inputs))


# ---------------------------------------------------------------------- compile exactly, simulate exactly


@pytest.mark.parametrize("mode,padding_mode,align_corners", OPTIONS)
def test_2d_grid_sample_compiles_and_simulates_exactly(mode, padding_mode, align_corners):
    model = GridLookup(mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    _, cg = check_compiles(model, _points(2, 3, 4, 2), _points(3, 3, 4, 2))
    assert _float64_error(model, cg, _points(5, 3, 4, 2)) <= 1e-12


@pytest.mark.parametrize("mode,padding_mode,align_corners", OPTIONS)
def test_3d_grid_sample_compiles_and_simulates_exactly(mode, padding_mode, align_corners):
    model = GridLookup((3, 4, 5), 2, mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    _, cg = check_compiles(model, _points(2, 7, 1, 1, 3), _points(3, 7, 1, 1, 3))
    assert _float64_error(model, cg, _points(5, 7, 1, 1, 3)) <= 1e-12


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("mode,padding_mode,align_corners", OPTIONS[::3])
def test_points_computed_from_the_input_compile_exactly(nd, mode, padding_mode, align_corners):
    model = GridMLP(nd, mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    _, cg = check_compiles(model, torch.randn(2, 4), torch.randn(3, 4))
    assert _float64_error(model, cg, torch.randn(6, 4)) <= 1e-12


@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
@pytest.mark.parametrize("align_corners", [False, True])
def test_nearest_matches_at_rounding_ties_cell_centres_and_the_border(padding_mode, align_corners):
    model = GridLookup((4, 5), 2, mode="nearest", padding_mode=padding_mode, align_corners=align_corners)
    steps = torch.arange(-12, 13, dtype=torch.float64) / 8  # multiples of 1/8 in [-1.5, 1.5]: ties included
    points = torch.stack(torch.meshgrid(steps, steps, indexing="ij"), -1)[None]  # [1, 25, 25, 2]
    cg = gmnfx.compile(model, points.float(), graph="computation")
    model = copy.deepcopy(model).double()
    assert torch.equal(gmnfx.simulate(cg, points), model(points))


def test_grids_with_different_options_in_one_level_keep_their_own_options():
    class TwoGrids(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = GridLookup((4, 5), 2, mode="nearest", padding_mode="border", align_corners=True)
            self.b = GridLookup((3, 6), 2, mode="bilinear", padding_mode="zeros", align_corners=False)

        def forward(self, points):
            return self.a(points) + self.b(points)

    model = TwoGrids()
    _, cg = check_compiles(model, _points(2, 5, 1, 2))
    assert _float64_error(model, cg, _points(4, 5, 1, 2)) <= 1e-12


@pytest.mark.parametrize("align_corners", [False, True])
def test_triplanar_inr_compiles_and_simulates_exactly(align_corners):
    model = Triplane(align_corners=align_corners)
    pg, cg = check_compiles(model, _points(2, 7, 3), _points(3, 7, 3))
    assert _float64_error(model, cg, _points(4, 7, 3)) <= 1e-12
    assert int((pg.node_type == NodeType.INPUT).sum()) == 3  # x, y, z: the points collapse
    assert int((pg.edge_type == EdgeType.COORD).sum()) == 3 * 2 * 4  # planes x axes x channels
    assert int((pg.edge_type == EdgeType.GRID).sum()) == 3 * 4 * 5 * 5


@pytest.mark.parametrize("model,example", [(GridLookup(padding_mode="border"), _points(2, 3, 4, 2)),
                                           (Triplane(), _points(2, 6, 3))])
def test_grid_sample_compiles_exactly_through_torch_export(model, example):
    check_compiles(model, example, frontend="export")
    by_fx = gmnfx.compile(model, example, frontend="fx")
    by_export = gmnfx.compile(model, example, frontend="export")
    assert torch.equal(by_fx.edge_index, by_export.edge_index)
    assert torch.equal(by_fx.edge_weight, by_export.edge_weight)
    assert torch.equal(by_fx.node_feat, by_export.node_feat)


# ---------------------------------------------------------------------- parameter-graph structure


def _grid_graph(**options):
    model = GridLookup((4, 5), 3, **options)
    return model, gmnfx.compile(model, _points(2, 6, 1, 2))


def test_one_constant_node_per_grid_cell_carries_the_cell_position():
    _, g = _grid_graph()
    cells = torch.nonzero(g.node_type == NodeType.BIAS).squeeze(1)
    assert cells.numel() == 4 * 5
    assert bool((g.node_feat[cells, NodeCol.OP] == NodeOp.CONST).all())
    pos = g.node_feat[cells][:, [NodeCol.POS_0, NodeCol.POS_1, NodeCol.POS_2]].long()
    expected = torch.stack(torch.meshgrid(torch.arange(4), torch.arange(5), indexing="ij"), -1).reshape(-1, 2)
    assert torch.equal(pos[:, 0], torch.zeros(20, dtype=torch.long))
    assert sorted(map(tuple, pos[:, 1:].tolist())) == sorted(map(tuple, expected.tolist()))


def test_every_grid_value_sits_on_the_edge_from_its_cell_to_its_channel():
    model, g = _grid_graph()
    samplers = torch.nonzero(g.node_feat[:, NodeCol.OP] == NodeOp.GRID_SAMPLE).squeeze(1)
    assert samplers.numel() == 3  # one node per channel: the sample points collapse
    grid = g.edge_type == EdgeType.GRID
    assert int(grid.sum()) == model.grid.numel() and bool((g.edge_param[grid] >= 0).all())
    src, dst = g.edge_index[:, grid]
    channel = g.edge_param[grid] // 20  # grid[0, c, h, w] is flat parameter c * 20 + h * 5 + w
    h, w = (g.edge_param[grid] % 20) // 5, g.edge_param[grid] % 5
    assert torch.equal(g.node_feat[src, NodeCol.POS_1].long(), h)
    assert torch.equal(g.node_feat[src, NodeCol.POS_2].long(), w)
    assert torch.equal(g.edge_feat[grid][:, EdgeCol.POS_1].long(), h)  # the cell position on the edge too
    channel_node = {int(c): int(d) for c, d in zip(channel, dst)}
    assert sorted(channel_node.values()) == samplers.tolist()
    assert torch.equal(dst, torch.tensor([channel_node[int(c)] for c in channel]))
    assert torch.equal(g.edge_weight[grid], model.grid.detach().reshape(-1)[g.edge_param[grid]])


@pytest.mark.parametrize("align_corners", [False, True])
def test_coord_edges_mark_their_axis_and_scale_to_cell_units(align_corners):
    _, g = _grid_graph(align_corners=align_corners)
    coord = g.edge_type == EdgeType.COORD
    assert int(coord.sum()) == 2 * 3  # (x, y) to each channel's node
    assert bool((g.edge_param[coord] == -1).all())
    feat = g.edge_feat[coord]
    axis_pos = feat[:, [EdgeCol.POS_0, EdgeCol.POS_1, EdgeCol.POS_2]]
    is_x = axis_pos[:, 2] == 1  # x indexes the last grid dim (W = 5), y the one before (H = 4)
    assert torch.equal(axis_pos[is_x], torch.tensor([[0.0, 0.0, 1.0]]).expand(3, 3))
    assert torch.equal(axis_pos[~is_x], torch.tensor([[0.0, 1.0, 0.0]]).expand(3, 3))
    shrink = 1.0 if align_corners else 0.0
    assert bool((g.edge_weight[coord][is_x] == (5 - shrink) / 2).all())
    assert bool((g.edge_weight[coord][~is_x] == (4 - shrink) / 2).all())
    inputs = torch.nonzero(g.node_type == NodeType.INPUT).squeeze(1)
    assert set(g.edge_index[0, coord].tolist()) == set(inputs.tolist())  # one input node per axis


@pytest.mark.parametrize("mode,window", [("bilinear", 2), ("nearest", 1)])
@pytest.mark.parametrize("padding_mode,code", [("zeros", "zeros"), ("border", "replicate")])
def test_blocks_record_grid_size_padding_and_interpolation_window(mode, window, padding_mode, code):
    _, g = _grid_graph(mode=mode, padding_mode=padding_mode)
    kernel = [EdgeCol.KERNEL_0, EdgeCol.KERNEL_1, EdgeCol.KERNEL_2]
    grid_feat = g.edge_feat[g.edge_type == EdgeType.GRID]
    coord_feat = g.edge_feat[g.edge_type == EdgeType.COORD]
    assert bool((grid_feat[:, kernel] == torch.tensor([0.0, 4.0, 5.0])).all())
    assert bool((coord_feat[:, kernel] == torch.tensor([0.0, window, window])).all())
    for feat in (grid_feat, coord_feat):
        assert bool((feat[:, EdgeCol.PADDING_MODE] == PADDING_MODES.index(code)).all())


def test_computation_graph_links_every_cell_to_every_sampling_neuron():
    model = GridLookup((4, 5), 3)
    cg = gmnfx.compile(model, _points(2, 6, 1, 2), graph="computation")
    grid = cg.edge_type == EdgeType.GRID
    assert int(grid.sum()) == 3 * 6 * 20  # channels x points x cells: the cost of input-dependent reads
    samplers = torch.nonzero(cg.node_feat[:, NodeCol.OP] == NodeOp.GRID_SAMPLE).squeeze(1)
    assert samplers.numel() == 3 * 6
    assert torch.equal(torch.bincount(cg.edge_index[1, grid], minlength=cg.num_nodes)[samplers],
                       torch.full((18,), 20))
    coord = cg.edge_type == EdgeType.COORD
    assert torch.equal(torch.bincount(cg.edge_index[1, coord], minlength=cg.num_nodes)[samplers],
                       torch.full((18,), 2))


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize("option,message", [
    (dict(mode="bicubic"), r"grid_sample mode 'bicubic' is not supported \(expected 'bilinear' or 'nearest'\)"),
    (dict(padding_mode="reflection"),
     r"grid_sample padding_mode 'reflection' is not supported \(expected 'zeros' or 'border'\)"),
])
@pytest.mark.parametrize("frontend", ["fx", "export"])
def test_unsupported_options_are_refused_by_name(option, message, frontend):
    with pytest.raises(gmnfx.GmnfxError, match=message):
        gmnfx.compile(GridLookup(**option), _points(2, 3, 1, 2), frontend=frontend)


class SampleFeatureMap(nn.Module):
    """A spatial transformer: the sampled tensor is an activation, not a parameter grid."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, image, points):
        return F.grid_sample(self.conv(image), points, align_corners=False)


def test_sampling_an_activation_is_refused():
    with pytest.raises(gmnfx.GmnfxError, match=r"expected the tensor sampled by grid_sample \(its input\) to be "
                                               r"a parameter of the model \(got an activation\)"):
        gmnfx.compile(SampleFeatureMap(), (torch.randn(2, 1, 4, 4), _points(2, 3, 1, 2)))


class PerSampleGrids(nn.Module):
    def __init__(self):
        super().__init__()
        self.grids = nn.Parameter(torch.randn(2, 3, 4, 4))

    def forward(self, points):
        return F.grid_sample(self.grids, points, align_corners=False)


def test_a_different_grid_per_sample_is_refused():
    with pytest.raises(gmnfx.GmnfxError, match=r"expected one parameter grid shared by every sample"):
        gmnfx.compile(PerSampleGrids(), _points(2, 3, 1, 2))


class ConstantPoints(nn.Module):
    def __init__(self):
        super().__init__()
        self.lookup = GridLookup()
        self.fc = nn.Linear(2, 9)
        self.register_buffer("points", torch.zeros(1, 3, 1, 2))

    def forward(self, x):
        return self.fc(x) + self.lookup(self.points.expand(x.shape[0], -1, -1, -1)).flatten(1)


def test_points_that_do_not_depend_on_the_input_are_refused():
    with pytest.raises(gmnfx.GmnfxError, match=r"expected the sample points \(grid_sample's grid\) to be an "
                                               r"activation of the network"):
        gmnfx.compile(ConstantPoints(), torch.randn(2, 2))


class PointsFromFeatures(nn.Module):
    """Two sample points whose coordinates are features of one Linear: x of point 0 is not x of point 1."""

    def __init__(self):
        super().__init__()
        self.to_points = nn.Linear(3, 4)
        self.grid = nn.Parameter(torch.randn(1, 1, 2, 2))
        self.head = nn.Linear(2, 2)

    def forward(self, x):
        p = torch.tanh(self.to_points(x)).view(x.shape[0], 2, 1, 2)
        return self.head(F.grid_sample(self.grid.expand(x.shape[0], -1, -1, -1), p, align_corners=False).flatten(1))


def test_coordinates_computed_as_features_stay_paired_with_their_point():
    from gmnfx.symmetry import group_order
    from gmnfx.testing import assert_symmetries_preserve_function, brute_force_group_order

    model = PointsFromFeatures().eval()
    graph = gmnfx.compile(model, torch.randn(1, 3))
    coord = graph.edge_pos[graph.edge_type == EdgeType.COORD]
    assert sorted(coord.max(1).values.tolist()) == [2.0, 2.0, 3.0, 3.0]  # point index + 2, per axis
    assert group_order(graph) == brute_force_group_order(graph) == 1
    assert_symmetries_preserve_function(model, torch.randn(2, 3))

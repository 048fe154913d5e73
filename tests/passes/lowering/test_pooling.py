"""Lowering of pooling and reductions over positions.

Every pool sits between two parameterized layers (a conv before it, a Linear
after a flatten), and is checked with ``check_compiles`` (coverage, DAG,
round trip, ``simulate == forward`` on another batch size) plus:

* parameter graph: the pool collapses to exactly one POOL edge per channel,
  joining conv channel c to pool channel c (identified through the conv's
  bias edges), the pool channels have the right node op (MAX / SUM), the
  Linear's weight columns of channel c leave pool channel c, and the POOL
  edges carry the pool's kernel/stride/dilation/padding;
* computation graph: the number of POOL edges is the number of (output
  position, in-bounds window member) pairs, computed independently.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import gmnfx
from gmnfx.schema import EdgeCol, EdgeType, NodeCol, NodeOp, NodeType
from gmnfx.testing import check_compiles

C = 3  # channels of the conv in front of every pool
CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


class PoolNet(nn.Module):
    """conv -> relu -> pool -> flatten -> linear."""

    def __init__(self, pool: nn.Module, spatial: tuple, c_in: int = 2, n_out: int = 4):
        super().__init__()
        n = len(spatial)
        self.conv = CONV[n](c_in, C, 3, padding=1)
        self.pool = pool
        with torch.no_grad():
            features = self.pool(torch.relu(self.conv(torch.zeros(1, c_in, *spatial))))
        self.pooled_shape = tuple(features.shape[1:])
        self.fc = nn.Linear(features[0].numel(), n_out)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


class Fn(nn.Module):
    """A parameter-free op given by name, so fx traces the functional/method call itself."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def forward(self, x):
        k = self.kind
        if k == "F.max_pool2d(x,3,2,1)":
            return F.max_pool2d(x, 3, 2, 1)
        if k == "F.max_pool2d(x,2)":
            return F.max_pool2d(x, 2)
        if k == "F.max_pool2d(x,(2,3),stride=(1,2),dilation=(2,1),ceil_mode=True)":
            return F.max_pool2d(x, (2, 3), stride=(1, 2), dilation=(2, 1), ceil_mode=True)
        if k == "F.avg_pool2d(x,3,stride=2,padding=1,count_include_pad=False)":
            return F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
        if k == "F.avg_pool2d(x,2,ceil_mode=True)":
            return F.avg_pool2d(x, 2, ceil_mode=True)
        if k == "F.avg_pool2d(x,3,padding=1,divisor_override=4)":
            return F.avg_pool2d(x, 3, padding=1, divisor_override=4)
        if k == "F.adaptive_avg_pool2d(x,1)":
            return F.adaptive_avg_pool2d(x, 1)
        if k == "F.adaptive_avg_pool2d(x,(3,2))":
            return F.adaptive_avg_pool2d(x, (3, 2))
        if k == "F.adaptive_max_pool2d(x,(3,3))":
            return F.adaptive_max_pool2d(x, (3, 3))
        if k == "F.max_pool1d(x,3,stride=2,padding=1)":
            return F.max_pool1d(x, 3, stride=2, padding=1)
        if k == "F.avg_pool3d(x,2,ceil_mode=True)":
            return F.avg_pool3d(x, 2, ceil_mode=True)
        if k == "x.mean(dim=(2,3))":
            return x.mean(dim=(2, 3))
        if k == "x.mean((-1,-2),keepdim=True)":
            return x.mean((-1, -2), keepdim=True)
        if k == "x.sum(dim=2)":
            return x.sum(dim=2)
        if k == "x.amax(dim=(2,3))":
            return x.amax(dim=(2, 3))
        if k == "torch.mean(x,-1)":
            return torch.mean(x, -1)
        if k == "x.sum(-1,keepdim=True)":
            return x.sum(-1, keepdim=True)
        if k == "torch.amax(x,dim=(2,3,4),keepdim=True)":
            return torch.amax(x, dim=(2, 3, 4), keepdim=True)
        if k == "x.mean(dim=3)":
            return x.mean(dim=3)
        raise AssertionError(k)


# ---------------------------------------------------------------------- independent expectations
def _tuple(v, n):
    if v is None:
        return None
    return (v,) * n if isinstance(v, int) else tuple(v)


def window_members(in_size, out_size, kernel, stride, padding, dilation) -> int:
    """Number of (output position, window member inside the input) pairs of a (max/avg) pool."""
    total = 1
    for n_in, n_out, k, s, p, d in zip(in_size, out_size, kernel, stride, padding, dilation):
        count = sum(1 for q in range(n_out) for j in range(k) if 0 <= q * s - p + j * d < n_in)
        total *= count
    return total


def adaptive_members(in_size, out_size) -> int:
    total = 1
    for n_in, n_out in zip(in_size, out_size):
        total *= sum(math.ceil((q + 1) * n_in / n_out) - (q * n_in) // n_out for q in range(n_out))
    return total


def pool_expectation(pool: nn.Module, in_size: tuple, out_size: tuple):
    """(node op, per-channel computation-graph POOL edges, (kernel, stride, dilation, padding) or None)."""
    n = len(in_size)
    if isinstance(pool, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
        k = _tuple(pool.kernel_size, n)
        s = _tuple(pool.stride, n) or k
        p, d = _tuple(pool.padding, n), _tuple(pool.dilation, n)
        return NodeOp.MAX, window_members(in_size, out_size, k, s, p, d), (k, s, d, p)
    if isinstance(pool, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
        k = _tuple(pool.kernel_size, n)
        s = _tuple(pool.stride, n) or k
        p = _tuple(pool.padding, n)
        return NodeOp.SUM, window_members(in_size, out_size, k, s, p, (1,) * n), (k, s, (1,) * n, p)
    if isinstance(pool, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)):
        return NodeOp.MAX, adaptive_members(in_size, out_size), None
    if isinstance(pool, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)):
        return NodeOp.SUM, adaptive_members(in_size, out_size), None
    raise AssertionError(type(pool))


def pad3(values) -> list[float]:
    values = [float(v) for v in values]
    return [0.0] * (3 - len(values)) + values


# ---------------------------------------------------------------------- structural checks
def conv_channel_nodes(pg, model: PoolNet) -> torch.Tensor:
    """Node of each conv output channel, found through the conv's bias edges."""
    off = model.conv.weight.numel()  # parameters: conv.weight, conv.bias, fc.weight, fc.bias
    mask = (pg.edge_param >= off) & (pg.edge_param < off + C)
    assert bool((pg.edge_type[mask] == EdgeType.BIAS).all())
    nodes = torch.empty(C, dtype=torch.long)
    nodes[pg.edge_param[mask] - off] = pg.edge_index[1, mask]
    return nodes


def check_pool_graphs(model: PoolNet, spatial: tuple, op: NodeOp, cg_pool_edges: int, attrs=None,
                      pg_pool_weight: float | None = None):
    x = torch.randn(2, model.conv.in_channels, *spatial)
    pg, cg = check_compiles(model, x, torch.randn(3, *x.shape[1:]))

    # parameter graph: one POOL edge per channel, conv channel c -> pool channel c
    pool = pg.edge_type == EdgeType.POOL
    assert int(pool.sum()) == C
    assert bool((pg.edge_param[pool] == -1).all())
    src, dst = pg.edge_index[:, pool]
    conv_nodes = conv_channel_nodes(pg, model)
    order = torch.argsort(torch.tensor([conv_nodes.tolist().index(s) for s in src.tolist()]))
    assert torch.equal(src[order], conv_nodes)
    pool_nodes = dst[order]
    assert pool_nodes.unique().numel() == C
    assert bool((pg.node_type[pool_nodes] == NodeType.HIDDEN).all())
    assert bool((pg.node_feat[pool_nodes, NodeCol.OP] == op).all())
    assert bool((pg.node_feat[pool_nodes, NodeCol.LAYER] > pg.node_feat[conv_nodes, NodeCol.LAYER]).all())
    if pg_pool_weight is not None:
        assert torch.allclose(pg.edge_weight[pool], torch.full((C,), pg_pool_weight))
    # nodes: inputs, conv channels, pool channels, outputs, bias nodes of conv and fc
    assert pg.num_nodes == model.conv.in_channels + C + C + model.fc.out_features + 2
    assert int((pg.node_type == NodeType.HIDDEN).sum()) == 2 * C

    # the Linear reads pool channel c through the weight columns of channel c's features
    fc_off = model.conv.weight.numel() + C
    fc_mask = (pg.edge_param >= fc_off) & (pg.edge_param < fc_off + model.fc.weight.numel())
    assert int(fc_mask.sum()) == model.fc.weight.numel()
    assert bool((pg.edge_type[fc_mask] == EdgeType.LINEAR).all())
    column = (pg.edge_param[fc_mask] - fc_off) % model.fc.in_features
    per_channel = model.fc.in_features // C
    assert torch.equal(pg.edge_index[0, fc_mask], pool_nodes[column // per_channel])

    # pooling attributes on the POOL edges
    feat = pg.edge_feat[pool]
    assert bool((feat[:, EdgeCol.EDGE_TYPE] == float(EdgeType.POOL)).all())
    if attrs is not None:
        kernel, stride, dilation, padding = attrs
        expected = torch.tensor(pad3(kernel) + pad3(stride) + pad3(dilation) + pad3(padding))
        got = feat[:, EdgeCol.KERNEL_0:EdgeCol.PADDING_2 + 1]
        assert torch.equal(got, expected.expand_as(got)), f"{got[0].tolist()} != {expected.tolist()}"
    assert bool((feat[:, EdgeCol.POS_0:EdgeCol.POS_2 + 1] == 0).all())

    # computation graph: one node per pooled neuron, one POOL edge per in-bounds window member
    c_pool = cg.edge_type == EdgeType.POOL
    assert int(c_pool.sum()) == C * cg_pool_edges
    pooled = torch.unique(cg.edge_index[1, c_pool])
    assert pooled.numel() == math.prod(model.pooled_shape)
    assert bool((cg.node_feat[pooled, NodeCol.OP] == op).all())
    assert bool((cg.edge_param[c_pool] == -1).all())
    if op == NodeOp.MAX:
        assert bool((cg.edge_weight[c_pool] == 1).all())
    return pg, cg


# ---------------------------------------------------------------------- window pooling modules
POOL_CASES = [
    (nn.MaxPool1d(2), (7,)),
    (nn.MaxPool1d(3, stride=2, padding=1, dilation=2, ceil_mode=True), (9,)),
    (nn.MaxPool1d(4, stride=3, padding=2), (10,)),
    (nn.MaxPool2d(2), (6, 6)),
    (nn.MaxPool2d(2, ceil_mode=True), (5, 7)),
    (nn.MaxPool2d(3, stride=2, padding=1), (7, 7)),
    (nn.MaxPool2d((3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), ceil_mode=True), (7, 6)),
    (nn.MaxPool2d(2, stride=1, dilation=2), (5, 6)),
    (nn.MaxPool3d(2), (4, 4, 4)),
    (nn.MaxPool3d(3, stride=2, padding=1, ceil_mode=True), (5, 4, 5)),
    (nn.MaxPool3d((1, 2, 2), stride=(1, 2, 1), dilation=(1, 1, 2)), (3, 5, 6)),
    (nn.AvgPool1d(2), (7,)),
    (nn.AvgPool1d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), (8,)),
    (nn.AvgPool1d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=True), (8,)),
    (nn.AvgPool1d(4, stride=3, padding=2, ceil_mode=False, count_include_pad=False), (9,)),
    (nn.AvgPool2d(2), (6, 7)),
    (nn.AvgPool2d(3, stride=2, padding=1), (7, 7)),
    (nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), (7, 7)),
    (nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True), (6, 8)),
    (nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), (6, 8)),
    (nn.AvgPool2d(2, ceil_mode=True), (5, 5)),
    (nn.AvgPool2d(3, padding=1, divisor_override=3), (5, 5)),
    (nn.AvgPool2d((3, 2), stride=(2, 1), padding=(1, 1), ceil_mode=True, count_include_pad=False,
                  divisor_override=5), (7, 5)),
    (nn.AvgPool3d(2), (4, 4, 5)),
    (nn.AvgPool3d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), (5, 4, 5)),
    (nn.AvgPool3d(3, stride=2, padding=1, count_include_pad=True), (5, 4, 5)),
    (nn.AvgPool3d(2, divisor_override=5), (3, 4, 4)),
    (nn.AdaptiveAvgPool1d(3), (7,)),
    (nn.AdaptiveAvgPool1d(5), (7,)),
    (nn.AdaptiveAvgPool2d(3), (7, 7)),
    (nn.AdaptiveAvgPool2d((3, 2)), (7, 5)),
    (nn.AdaptiveAvgPool2d(1), (5, 6)),
    (nn.AdaptiveAvgPool2d((None, 3)), (4, 7)),
    (nn.AdaptiveAvgPool3d((2, 3, 1)), (3, 7, 5)),
    (nn.AdaptiveAvgPool3d(2), (5, 3, 4)),
    (nn.AdaptiveAvgPool1d(5), (3,)),  # more outputs than inputs: overlapping windows
    (nn.AdaptiveAvgPool2d((4, 5)), (3, 3)),
    (nn.AdaptiveMaxPool1d(3), (7,)),
    (nn.AdaptiveMaxPool1d(5), (3,)),
    (nn.AdaptiveMaxPool2d((5, 2)), (3, 4)),
    (nn.AdaptiveMaxPool1d(4), (10,)),
    (nn.AdaptiveMaxPool2d(3), (7, 7)),
    (nn.AdaptiveMaxPool2d((3, 4)), (7, 5)),
    (nn.AdaptiveMaxPool2d(1), (5, 3)),
    (nn.AdaptiveMaxPool3d((2, 2, 3)), (3, 5, 7)),
]


@pytest.mark.parametrize("case", POOL_CASES, ids=[f"{c[0]!r}-in{'x'.join(map(str, c[1]))}".replace(" ", "")
                                                  for c in POOL_CASES])
def test_pool_module(case):
    pool, spatial = case
    model = PoolNet(pool, spatial)
    op, members, attrs = pool_expectation(pool, spatial, model.pooled_shape[1:])
    check_pool_graphs(model, spatial, op, members, attrs)


@pytest.mark.parametrize("kind,spatial,op,pg_weight", [
    ("x.mean(dim=(2,3))", (5, 6), NodeOp.SUM, 1 / 30),
    ("x.mean((-1,-2),keepdim=True)", (5, 6), NodeOp.SUM, 1 / 30),
    ("x.sum(dim=2)", (4, 5), NodeOp.SUM, 1.0),
    ("x.amax(dim=(2,3))", (5, 4), NodeOp.MAX, 1.0),
    ("torch.mean(x,-1)", (7,), NodeOp.SUM, 1 / 7),
    ("x.sum(-1,keepdim=True)", (7,), NodeOp.SUM, 1.0),
    ("x.mean(dim=3)", (3, 5), NodeOp.SUM, 1 / 5),
    ("torch.amax(x,dim=(2,3,4),keepdim=True)", (3, 4, 2), NodeOp.MAX, 1.0),
])
def test_reduction_over_positions(kind, spatial, op, pg_weight):
    model = PoolNet(Fn(kind), spatial)
    # every input neuron is read exactly once
    pg, cg = check_pool_graphs(model, spatial, op, math.prod(spatial), pg_pool_weight=pg_weight)
    pool = cg.edge_type == EdgeType.POOL
    assert torch.allclose(cg.edge_weight[pool], torch.full((int(pool.sum()),), pg_weight))
    assert torch.unique(cg.edge_index[0, pool]).numel() == int(pool.sum())


FUNCTIONAL_CASES = [
    # (kind, spatial, op, expected per-channel POOL edges in the computation graph, attrs)
    ("F.max_pool2d(x,3,2,1)", (7, 6), NodeOp.MAX,
     window_members((7, 6), (4, 3), (3, 3), (2, 2), (1, 1), (1, 1)), ((3, 3), (2, 2), (1, 1), (1, 1))),
    ("F.max_pool2d(x,2)", (6, 5), NodeOp.MAX,
     window_members((6, 5), (3, 2), (2, 2), (2, 2), (0, 0), (1, 1)), ((2, 2), (2, 2), (1, 1), (0, 0))),
    ("F.max_pool2d(x,(2,3),stride=(1,2),dilation=(2,1),ceil_mode=True)", (6, 8), NodeOp.MAX,
     window_members((6, 8), (4, 4), (2, 3), (1, 2), (0, 0), (2, 1)), ((2, 3), (1, 2), (2, 1), (0, 0))),
    ("F.avg_pool2d(x,3,stride=2,padding=1,count_include_pad=False)", (7, 7), NodeOp.SUM,
     window_members((7, 7), (4, 4), (3, 3), (2, 2), (1, 1), (1, 1)), ((3, 3), (2, 2), (1, 1), (1, 1))),
    ("F.avg_pool2d(x,2,ceil_mode=True)", (5, 7), NodeOp.SUM,
     window_members((5, 7), (3, 4), (2, 2), (2, 2), (0, 0), (1, 1)), ((2, 2), (2, 2), (1, 1), (0, 0))),
    ("F.avg_pool2d(x,3,padding=1,divisor_override=4)", (5, 5), NodeOp.SUM,
     window_members((5, 5), (2, 2), (3, 3), (3, 3), (1, 1), (1, 1)), ((3, 3), (3, 3), (1, 1), (1, 1))),
    ("F.adaptive_avg_pool2d(x,1)", (5, 6), NodeOp.SUM, 30, None),
    ("F.adaptive_avg_pool2d(x,(3,2))", (7, 5), NodeOp.SUM, adaptive_members((7, 5), (3, 2)), None),
    ("F.adaptive_max_pool2d(x,(3,3))", (7, 7), NodeOp.MAX, adaptive_members((7, 7), (3, 3)), None),
    ("F.max_pool1d(x,3,stride=2,padding=1)", (9,), NodeOp.MAX,
     window_members((9,), (5,), (3,), (2,), (1,), (1,)), ((3,), (2,), (1,), (1,))),
    ("F.avg_pool3d(x,2,ceil_mode=True)", (3, 5, 4), NodeOp.SUM,
     window_members((3, 5, 4), (2, 3, 2), (2,) * 3, (2,) * 3, (0,) * 3, (1,) * 3), ((2,) * 3, (2,) * 3, (1,) * 3, (0,) * 3)),
]


@pytest.mark.parametrize("case", FUNCTIONAL_CASES, ids=[c[0] for c in FUNCTIONAL_CASES])
def test_functional_pool(case):
    kind, spatial, op, members, attrs = case
    model = PoolNet(Fn(kind), spatial)
    check_pool_graphs(model, spatial, op, members, attrs)


# ---------------------------------------------------------------------- exact weights
@pytest.mark.parametrize("pool,spatial", [
    (nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), (6, 8)),
    (nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=True), (6, 8)),
    (nn.AvgPool2d((3, 2), padding=1, divisor_override=5), (5, 4)),
    (nn.AdaptiveAvgPool2d((3, 2)), (7, 5)),
    (nn.AvgPool1d(4, stride=3, padding=2, ceil_mode=True, count_include_pad=False), (9,)),
    (nn.AdaptiveAvgPool3d((2, 3, 1)), (3, 7, 5)),
])
def test_average_pool_edge_weights_are_pytorchs_jacobian(pool, spatial):
    """The computation graph's POOL edges, as a matrix, equal d pool(x) / d x (one channel)."""
    model = PoolNet(pool, spatial)
    cg = gmnfx.compile(model, torch.randn(1, 2, *spatial), graph="computation")
    pool_edges = cg.edge_type == EdgeType.POOL
    src, dst = cg.edge_index[:, pool_edges]
    n = len(spatial)
    pos = cg.node_feat[:, NodeCol.POS_2 - n + 1:NodeCol.POS_2 + 1].long()
    # channel of a conv neuron: the conv bias it receives
    bias_edges = (cg.edge_type == EdgeType.BIAS) & (cg.edge_param >= model.conv.weight.numel()) & (
        cg.edge_param < model.conv.weight.numel() + C)
    channel = torch.full((cg.num_nodes,), -1, dtype=torch.long)
    channel[cg.edge_index[1, bias_edges]] = cg.edge_param[bias_edges] - model.conv.weight.numel()
    assert bool((channel[src] >= 0).all())
    out_size = model.pooled_shape[1:]
    first = channel[src] == 0
    jac = torch.zeros(math.prod(out_size), math.prod(spatial), dtype=torch.float64)
    flat_in = torch.zeros(int(first.sum()), dtype=torch.long)
    flat_out = torch.zeros(int(first.sum()), dtype=torch.long)
    for d in range(n):
        flat_in = flat_in * spatial[d] + pos[src[first], d]
        flat_out = flat_out * out_size[d] + pos[dst[first], d]
    jac.index_put_((flat_out, flat_in), cg.edge_weight[pool_edges][first].double(), accumulate=True)
    expected = torch.autograd.functional.jacobian(
        lambda t: pool(t.reshape(1, 1, *spatial)).reshape(-1), torch.zeros(math.prod(spatial), dtype=torch.float64))
    assert torch.allclose(jac, expected, atol=1e-7)


def test_pool_between_two_convs_then_global_mean():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
            self.pool = nn.MaxPool2d(2, ceil_mode=True)
            self.conv2 = nn.Conv2d(4, 6, 3, groups=2, padding=1)
            self.fc = nn.Linear(6, 3)

        def forward(self, x):
            x = self.pool(F.relu(self.conv1(x)))
            x = F.relu(self.conv2(x))
            return self.fc(x.mean(dim=(-2, -1)))

    model = Net()
    pg, cg = check_compiles(model, torch.randn(2, 2, 7, 5), torch.randn(3, 2, 7, 5))
    pool = pg.edge_type == EdgeType.POOL
    assert int(pool.sum()) == 4 + 6
    assert int((pg.node_type == NodeType.HIDDEN).sum()) == 4 + 4 + 6 + 6
    max_nodes = pg.node_feat[:, NodeCol.OP] == NodeOp.MAX
    assert int(max_nodes.sum()) == 4
    # conv2's CONV edges leave the max-pool channels
    conv2 = pg.edge_type == EdgeType.CONV
    conv2 &= pg.edge_param >= model.conv1.weight.numel() + 4
    assert bool(max_nodes[pg.edge_index[0, conv2]].all())
    assert int(conv2.sum()) == model.conv2.weight.numel()


# ---------------------------------------------------------------------- errors
def test_max_pool_return_indices_is_an_error():
    class WithIndices(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3, padding=1)
            self.pool = nn.MaxPool2d(2, return_indices=True)
            self.fc = nn.Linear(3 * 2 * 2, 2)

        def forward(self, x):
            out = self.pool(self.conv(x))[0]
            return self.fc(out.flatten(1))

    with pytest.raises(gmnfx.GmnfxError, match="return_indices"):
        gmnfx.compile(WithIndices(), torch.randn(1, 2, 4, 4))


def test_functional_max_pool_return_indices_is_an_error():
    class WithIndices(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3, padding=1)

        def forward(self, x):
            out, _ = F.max_pool2d(self.conv(x), 2, return_indices=True)
            return out

    with pytest.raises(gmnfx.GmnfxError, match="return_indices"):
        gmnfx.compile(WithIndices(), torch.randn(1, 2, 4, 4))


def test_adaptive_max_pool_return_indices_is_an_error():
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.AdaptiveMaxPool2d(2, return_indices=True))
    with pytest.raises(gmnfx.GmnfxError, match="return_indices"):
        gmnfx.compile(model, torch.randn(1, 2, 5, 5))


def test_reduction_over_the_batch_dim_is_an_error():
    class BatchMean(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3)

        def forward(self, x):
            return self.conv(x).mean(dim=(0, 2))

    with pytest.raises(gmnfx.GmnfxError, match="batch dim"):
        gmnfx.compile(BatchMean(), torch.randn(2, 2, 5, 5))


@pytest.mark.parametrize("pool", [nn.AdaptiveMaxPool1d(2), nn.AdaptiveMaxPool2d((2, 1)), nn.AdaptiveMaxPool3d(1)])
def test_adaptive_max_pool_via_the_export_frontend(pool):
    dims = {nn.AdaptiveMaxPool1d: 1, nn.AdaptiveMaxPool2d: 2, nn.AdaptiveMaxPool3d: 3}[type(pool)]
    conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[dims - 1](2, 3, 1)
    model = nn.Sequential(conv, pool, nn.Flatten(), nn.LazyLinear(2))
    x = torch.randn(2, 2, *([5] * dims))
    model(x)
    pg, _ = check_compiles(model.eval(), x, frontend="export")
    assert pg.frontend == "export"

"""Lowering of convolutions: nn.Conv1d/2d/3d, F.conv*, and the ATen convs of the export frontend.

Every case is checked three ways:

* ``check_compiles``: exact parameter coverage, DAG, write-back round trip and
  ``simulate == forward`` on another batch size;
* the parameter graph: one node per channel, one CONV edge per weight element
  from the right input channel (same group) to the right output channel, with
  the centered kernel offset as ``edge_pos`` and the module's kernel, stride,
  dilation, padding and groups in the edge features;
* the computation graph: exactly one CONV edge per (output channel, input
  channel of its group, kernel tap, output position) whose tap reads inside the
  (padded) input, each reading the input position PyTorch reads, with padding
  modes resolved by an independent reference (``numpy.pad``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import gmnfx
from gmnfx.schema import EdgeCol, EdgeType, NodeCol, NodeOp, NodeType
from gmnfx.testing import check_compiles

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
FCONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
NUMPY_PAD_MODE = {"zeros": "constant", "circular": "wrap", "reflect": "reflect", "replicate": "edge"}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


# ---------------------------------------------------------------------- helpers
@dataclass
class ConvSpec:
    """What a convolution in a model computes, independently of how it was written."""

    weight: torch.Tensor  # the nn.Parameter
    bias: Optional[torch.Tensor]
    stride: tuple
    padding: tuple  # left padding per spatial dim
    dilation: tuple
    groups: int
    padding_mode: str = "zeros"

    @property
    def n(self) -> int:
        return self.weight.dim() - 2

    @property
    def kernel(self) -> tuple:
        return tuple(self.weight.shape[2:])


def _per_dim(value, n):
    return (value,) * n if isinstance(value, int) else tuple(value)


def spec_of(conv: nn.modules.conv._ConvNd) -> ConvSpec:
    n = conv.weight.dim() - 2
    kernel, dilation = tuple(conv.kernel_size), tuple(conv.dilation)
    if conv.padding == "valid":
        padding = (0,) * n
    elif conv.padding == "same":  # PyTorch pads total // 2 on the left, the rest on the right
        padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    else:
        padding = _per_dim(conv.padding, n)
    return ConvSpec(conv.weight, conv.bias, tuple(conv.stride), padding, dilation, conv.groups, conv.padding_mode)


def param_offset(model: nn.Module, tensor: torch.Tensor) -> int:
    offset = 0
    for p in model.parameters():
        if p is tensor:
            return offset
        offset += p.numel()
    raise AssertionError("not a parameter of the model")


def pad3(values) -> list[float]:
    values = [float(v) for v in values]
    return [0.0] * (3 - len(values)) + values


def kernel_offsets(kernel_index: torch.Tensor, kernel: tuple) -> torch.Tensor:
    """Expected edge_pos [E, 3]: tap k at offset k - (K - 1) / 2, right-aligned into the 3 columns."""
    n = len(kernel)
    out = torch.zeros(kernel_index.shape[0], 3)
    for d, k in enumerate(kernel):
        out[:, 3 - n + d] = kernel_index[:, d].float() - (k - 1) / 2
    return out


def decode_weight(local: torch.Tensor, shape) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat index into a [C_out, C_in/g, *K] weight -> (o, i, k [E, n])."""
    coords = torch.unravel_index(local, tuple(shape))
    return coords[0], coords[1], torch.stack(coords[2:], dim=1)


def io_nodes(graph, node_type: NodeType, io_tensor: int = 0) -> torch.Tensor:
    """Node id of each input/output element (parameter graphs: of each channel), ordered by io_index."""
    nf = graph.node_feat
    mask = (graph.node_type == node_type) & (nf[:, NodeCol.IO_TENSOR].long() == io_tensor)
    nodes = torch.nonzero(mask).squeeze(1)
    io = nf[nodes, NodeCol.IO_INDEX].long()
    assert sorted(io.tolist()) == list(range(nodes.numel())), "io_index is not a permutation"
    out = torch.empty_like(nodes)
    out[io] = nodes
    return out


def group_input_channel(o: torch.Tensor, i: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    c_out, c_in_g = spec.weight.shape[:2]
    return (o // (c_out // spec.groups)) * c_in_g + i


def assert_conv_parameter_edges(pg, model, spec: ConvSpec, in_nodes: torch.Tensor, out_nodes: torch.Tensor):
    """The parameter-graph edges of one conv: one per weight element, placed and described exactly."""
    c_out, c_in_g = spec.weight.shape[:2]
    offset = param_offset(model, spec.weight)
    mask = (pg.edge_param >= offset) & (pg.edge_param < offset + spec.weight.numel())
    assert int(mask.sum()) == spec.weight.numel()
    assert bool((pg.edge_type[mask] == EdgeType.CONV).all())
    local = pg.edge_param[mask] - offset
    assert torch.equal(local.sort().values, torch.arange(spec.weight.numel()))
    o, i, k = decode_weight(local, spec.weight.shape)

    # kernel offsets (centered, right-aligned)
    assert torch.equal(pg.edge_pos[mask].float(), kernel_offsets(k, spec.kernel))

    # source = input channel (of the output channel's group), destination = output channel
    src, dst = pg.edge_index[:, mask]
    in_channel = group_input_channel(o, i, spec)
    assert torch.equal(src, in_nodes[in_channel])
    assert torch.equal(dst, out_nodes[o])
    # grouped: edges only join channels of the same group
    in_of = {int(node): c for c, node in enumerate(in_nodes.tolist())}
    out_of = {int(node): c for c, node in enumerate(out_nodes.tolist())}
    src_group = torch.tensor([in_of[s] // c_in_g for s in src.tolist()])
    dst_group = torch.tensor([out_of[d] // (c_out // spec.groups) for d in dst.tolist()])
    assert torch.equal(src_group, dst_group)
    pairs = {(s, d) for s, d in zip(src.tolist(), dst.tolist())}
    assert len(pairs) == c_out * c_in_g  # every same-group pair is joined, by K_total parallel edges

    # edge features: value, layer, kernel/stride/dilation/padding/groups
    feat = pg.edge_feat[mask]
    assert torch.equal(feat[:, EdgeCol.EDGE_TYPE], torch.full((feat.shape[0],), float(EdgeType.CONV)))
    assert torch.equal(feat[:, EdgeCol.VALUE], spec.weight.detach().reshape(-1)[local])
    assert torch.equal(pg.edge_weight[mask], spec.weight.detach().reshape(-1)[local])
    assert torch.equal(feat[:, EdgeCol.LAYER], pg.node_feat[dst, NodeCol.LAYER])
    expected = torch.tensor(pad3(spec.kernel) + pad3(spec.stride) + pad3(spec.dilation) + pad3(spec.padding)
                            + [float(spec.groups)])
    got = feat[:, EdgeCol.KERNEL_0:EdgeCol.GROUPS + 1]
    assert torch.equal(got, expected.expand_as(got)), f"block attrs {got[0].tolist()} != {expected.tolist()}"

    # bias: one BIAS edge per output channel, from one bias node
    if spec.bias is not None:
        b_off = param_offset(model, spec.bias)
        bmask = (pg.edge_param >= b_off) & (pg.edge_param < b_off + c_out)
        assert int(bmask.sum()) == c_out
        assert bool((pg.edge_type[bmask] == EdgeType.BIAS).all())
        bsrc, bdst = pg.edge_index[:, bmask]
        assert bsrc.unique().numel() == 1
        assert int(pg.node_type[bsrc[0]]) == NodeType.BIAS
        assert int(pg.node_feat[bsrc[0], NodeCol.OP]) == NodeOp.CONST
        assert torch.equal(bdst, out_nodes[pg.edge_param[bmask] - b_off])
        assert torch.equal(pg.edge_weight[bmask], spec.bias.detach()[pg.edge_param[bmask] - b_off])


def reference_index(n_in: int, left: int, length: int, mode: str) -> np.ndarray:
    """Input position read at each padded coordinate 0..length-1 (-1: a zero pad), via numpy.pad."""
    right = max(length - left - n_in, 0)
    idx = np.arange(n_in)
    if mode == "zeros":
        return np.pad(idx, (left, right), mode="constant", constant_values=-1)
    return np.pad(idx, (left, right), mode=NUMPY_PAD_MODE[mode])


def assert_conv_computation_edges(cg, model, spec: ConvSpec, in_size: tuple, out_size: tuple):
    """The neuron-level edges of a conv applied directly to the network input, producing the output."""
    c_out, c_in_g = spec.weight.shape[:2]
    n = spec.n
    offset = param_offset(model, spec.weight)
    mask = (cg.edge_param >= offset) & (cg.edge_param < offset + spec.weight.numel())
    assert bool((cg.edge_type[mask] == EdgeType.CONV).all())

    # reference tables: for each dim, input index read by tap k at output q (-1: padding)
    tables = []
    for d in range(n):
        length = (out_size[d] - 1) * spec.stride[d] + (spec.kernel[d] - 1) * spec.dilation[d] + 1
        ref = reference_index(in_size[d], spec.padding[d], length, spec.padding_mode)
        q = np.arange(out_size[d])[None, :]
        k = np.arange(spec.kernel[d])[:, None]
        tables.append(torch.from_numpy(ref[q * spec.stride[d] + k * spec.dilation[d]]))  # [K_d, Q_d]
    valid_pairs = math.prod(int((t >= 0).sum()) for t in tables)
    assert int(mask.sum()) == c_out * c_in_g * valid_pairs

    src, dst = cg.edge_index[:, mask]
    local = cg.edge_param[mask] - offset
    o, i, k = decode_weight(local, spec.weight.shape)
    assert torch.equal(cg.edge_pos[mask].float(), kernel_offsets(k, spec.kernel))
    assert int(torch.unique(torch.stack([src, dst, local]), dim=1).shape[1]) == src.numel(), "duplicate edges"

    in_nodes = io_nodes(cg, NodeType.INPUT)
    out_nodes = io_nodes(cg, NodeType.OUTPUT)
    assert in_nodes.numel() == spec.weight.shape[1] * spec.groups * math.prod(in_size)
    assert out_nodes.numel() == c_out * math.prod(out_size)
    in_io = torch.full((cg.num_nodes,), -1, dtype=torch.long)
    in_io[in_nodes] = torch.arange(in_nodes.numel())
    out_io = torch.full((cg.num_nodes,), -1, dtype=torch.long)
    out_io[out_nodes] = torch.arange(out_nodes.numel())
    assert bool((in_io[src] >= 0).all()) and bool((out_io[dst] >= 0).all())
    src_c, src_p = in_io[src] // math.prod(in_size), in_io[src] % math.prod(in_size)
    dst_c, dst_p = out_io[dst] // math.prod(out_size), out_io[dst] % math.prod(out_size)
    assert torch.equal(dst_c, o)
    assert torch.equal(src_c, group_input_channel(o, i, spec))
    src_pos = torch.stack(torch.unravel_index(src_p, in_size), dim=1)
    dst_pos = torch.stack(torch.unravel_index(dst_p, out_size), dim=1)
    # the neurons' own position features agree with their io_index
    assert torch.equal(cg.node_feat[src][:, NodeCol.POS_2 - n + 1:NodeCol.POS_2 + 1].long(), src_pos)
    assert torch.equal(cg.node_feat[dst][:, NodeCol.POS_2 - n + 1:NodeCol.POS_2 + 1].long(), dst_pos)
    for d in range(n):
        expected = tables[d][k[:, d], dst_pos[:, d]]
        assert bool((expected >= 0).all()), "an edge reads from zero padding"
        assert torch.equal(src_pos[:, d], expected), f"dim {d}: edges read the wrong input positions"


def check_conv(model: nn.Module, spec: ConvSpec, in_shape: tuple, batch: int = 2):
    """check_compiles plus the structural checks, for a model that is a single convolution."""
    x = torch.randn(batch, *in_shape)
    x2 = torch.randn(batch + 1, *in_shape)
    pg, cg = check_compiles(model, x, x2)
    c_out = spec.weight.shape[0]
    c_in = spec.weight.shape[1] * spec.groups
    with torch.no_grad():
        out_size = tuple(model(x).shape[2:])

    # parameter graph: one node per channel (+ one bias node), one edge per parameter
    types = pg.node_type
    assert int((types == NodeType.INPUT).sum()) == c_in
    assert int((types == NodeType.OUTPUT).sum()) == c_out
    assert int((types == NodeType.BIAS).sum()) == (1 if spec.bias is not None else 0)
    assert int((types == NodeType.HIDDEN).sum()) == 0
    assert pg.num_nodes == c_in + c_out + (spec.bias is not None)
    assert int((pg.edge_type == EdgeType.CONV).sum()) == spec.weight.numel()
    assert int((pg.edge_type == EdgeType.BIAS).sum()) == (c_out if spec.bias is not None else 0)
    assert pg.num_edges == spec.weight.numel() + (c_out if spec.bias is not None else 0)
    assert pg.input_shapes == [tuple(in_shape)]
    assert pg.output_shapes == [(c_out, *out_size)]
    assert_conv_parameter_edges(pg, model, spec, io_nodes(pg, NodeType.INPUT), io_nodes(pg, NodeType.OUTPUT))

    # computation graph
    n_out = c_out * math.prod(out_size)
    assert int((cg.node_type == NodeType.OUTPUT).sum()) == n_out
    assert int((cg.edge_type == EdgeType.BIAS).sum()) == (n_out if spec.bias is not None else 0)
    assert_conv_computation_edges(cg, model, spec, tuple(in_shape[1:]), out_size)
    return pg, cg


# ---------------------------------------------------------------------- modules
MODULE_CASES = [
    # (dims, constructor kwargs, per-sample input shape)
    (1, dict(in_channels=3, out_channels=4, kernel_size=3), (3, 8)),
    (1, dict(in_channels=3, out_channels=4, kernel_size=3, bias=False), (3, 7)),
    (1, dict(in_channels=2, out_channels=4, kernel_size=5, stride=2, padding=2), (2, 11)),
    (1, dict(in_channels=2, out_channels=3, kernel_size=3, stride=3, padding=(1,), dilation=2), (2, 10)),
    (1, dict(in_channels=4, out_channels=6, kernel_size=3, groups=2, padding="same", dilation=2), (4, 9)),
    (1, dict(in_channels=2, out_channels=3, kernel_size=4, padding="same"), (2, 7)),
    (1, dict(in_channels=2, out_channels=3, kernel_size=3, padding="valid", stride=2), (2, 9)),
    (1, dict(in_channels=3, out_channels=6, kernel_size=3, groups=3, padding=1, padding_mode="circular"), (3, 7)),
    (1, dict(in_channels=2, out_channels=3, kernel_size=3, padding=2, padding_mode="reflect"), (2, 7)),
    (1, dict(in_channels=2, out_channels=3, kernel_size=3, padding=3, stride=2, padding_mode="replicate"), (2, 5)),
    (1, dict(in_channels=2, out_channels=3, kernel_size=7, padding=3, padding_mode="circular"), (2, 3)),
    (1, dict(in_channels=2, out_channels=3, kernel_size=3, padding=4, padding_mode="replicate"), (2, 2)),
    (1, dict(in_channels=2, out_channels=2, kernel_size=5, padding=2, padding_mode="reflect", dilation=1), (2, 3)),
    (2, dict(in_channels=3, out_channels=4, kernel_size=3), (3, 5, 5)),
    (2, dict(in_channels=3, out_channels=4, kernel_size=3, bias=False), (3, 5, 6)),
    (2, dict(in_channels=3, out_channels=4, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0)), (3, 7, 5)),
    (2, dict(in_channels=2, out_channels=4, kernel_size=3, stride=2, padding=1), (2, 7, 9)),
    (2, dict(in_channels=2, out_channels=4, kernel_size=3, padding="same", dilation=(2, 1)), (2, 7, 6)),
    (2, dict(in_channels=2, out_channels=3, kernel_size=(2, 4), padding="same"), (2, 5, 7)),
    (2, dict(in_channels=2, out_channels=3, kernel_size=3, padding="valid", stride=2), (2, 9, 7)),
    (2, dict(in_channels=2, out_channels=3, kernel_size=2, stride=(1, 3), dilation=(3, 1), padding=(2, 1)), (2, 7, 8)),
    (2, dict(in_channels=6, out_channels=4, kernel_size=1, groups=2), (6, 3, 5)),
    (2, dict(in_channels=6, out_channels=9, kernel_size=3, groups=3, padding=1, stride=2), (6, 5, 5)),
    (2, dict(in_channels=4, out_channels=8, kernel_size=3, groups=4, padding=1), (4, 5, 5)),  # depthwise x2
    (2, dict(in_channels=4, out_channels=4, kernel_size=3, groups=4, bias=False), (4, 5, 7)),  # depthwise
    (2, dict(in_channels=3, out_channels=6, kernel_size=(1, 3), groups=3, padding=(0, 1), bias=False), (3, 3, 5)),
    (2, dict(in_channels=2, out_channels=3, kernel_size=5, padding=2), (2, 3, 3)),  # kernel larger than input
    (2, dict(in_channels=2, out_channels=3, kernel_size=3, padding=1, padding_mode="circular"), (2, 5, 6)),
    (2, dict(in_channels=2, out_channels=3, kernel_size=3, padding=1, padding_mode="reflect"), (2, 5, 6)),
    (2, dict(in_channels=2, out_channels=3, kernel_size=3, padding=1, padding_mode="replicate"), (2, 5, 6)),
    (2, dict(in_channels=2, out_channels=3, kernel_size=3, padding=(2, 1), dilation=2, stride=(1, 2),
             padding_mode="circular"), (2, 5, 7)),
    (2, dict(in_channels=2, out_channels=3, kernel_size=(3, 5), padding=(2, 3), stride=2,
             padding_mode="reflect"), (2, 5, 7)),
    (2, dict(in_channels=4, out_channels=4, kernel_size=3, padding=2, groups=2, dilation=(1, 2),
             padding_mode="replicate"), (4, 4, 5)),
    (2, dict(in_channels=4, out_channels=8, kernel_size=3, padding="same", groups=4,
             padding_mode="reflect"), (4, 5, 5)),
    (2, dict(in_channels=2, out_channels=3, kernel_size=(2, 3), padding="same",
             padding_mode="circular"), (2, 5, 4)),
    (3, dict(in_channels=2, out_channels=3, kernel_size=3, padding=1), (2, 3, 4, 5)),
    (3, dict(in_channels=2, out_channels=3, kernel_size=2, bias=False), (2, 3, 3, 4)),
    (3, dict(in_channels=2, out_channels=4, kernel_size=(1, 3, 2), stride=(1, 2, 1), padding=(0, 1, 1),
             groups=2, bias=False), (2, 3, 5, 4)),
    (3, dict(in_channels=2, out_channels=3, kernel_size=3, padding="same", dilation=(1, 2, 1)), (2, 3, 5, 4)),
    (3, dict(in_channels=3, out_channels=6, kernel_size=3, groups=3, stride=2, padding=1), (3, 3, 5, 5)),
    (3, dict(in_channels=2, out_channels=2, kernel_size=3, padding=1, padding_mode="replicate"), (2, 3, 3, 4)),
    (3, dict(in_channels=2, out_channels=2, kernel_size=3, padding=1, padding_mode="reflect"), (2, 3, 4, 3)),
    (3, dict(in_channels=2, out_channels=2, kernel_size=(3, 1, 3), padding=(1, 0, 2), stride=(2, 1, 1),
             padding_mode="circular"), (2, 3, 2, 4)),
]


def _case_id(case):
    n, kwargs, shape = case
    parts = [f"{n}d"] + [f"{k}={v}" for k, v in kwargs.items() if k not in ("in_channels", "out_channels")]
    return "-".join(parts).replace(" ", "") + f"-in{'x'.join(map(str, shape))}"


@pytest.mark.parametrize("case", MODULE_CASES, ids=[_case_id(c) for c in MODULE_CASES])
def test_conv_module(case):
    n, kwargs, in_shape = case
    conv = CONV[n](**kwargs)
    model = nn.Sequential(conv)
    check_conv(model, spec_of(conv), in_shape)


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_conv_with_and_without_bias_every_dim(n, bias):
    conv = CONV[n](3, 5, 3, padding=1, bias=bias)
    pg, _ = check_conv(nn.Sequential(conv), spec_of(conv), (3,) + (4,) * n)
    assert pg.num_parameters == 5 * 3 * 3 ** n + (5 if bias else 0)


@pytest.mark.parametrize("mode", ["zeros", "circular", "reflect", "replicate"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_padding_modes_every_dim(mode, n):
    conv = CONV[n](2, 3, 3, padding=1, stride=1 if n == 3 else 2, padding_mode=mode)
    in_shape = (2,) + (3, 4, 5)[:n]
    check_conv(nn.Sequential(conv), spec_of(conv), in_shape)


def test_one_by_one_input_with_three_by_three_kernel():
    """Only the center tap ever reads the input; the other taps still own their parameter-graph edges."""
    conv = nn.Conv2d(3, 4, 3, padding=1)
    pg, cg = check_conv(nn.Sequential(conv), spec_of(conv), (3, 1, 1))
    assert int((pg.edge_type == EdgeType.CONV).sum()) == 4 * 3 * 9
    assert int((cg.edge_type == EdgeType.CONV).sum()) == 4 * 3  # center taps only
    conv_edges = cg.edge_type == EdgeType.CONV
    assert bool((cg.edge_pos[conv_edges] == 0).all())
    # every parameter (also the never-used taps) round-trips through the parameter graph
    flat = gmnfx.flat_parameters(nn.Sequential(conv))
    assert torch.equal(pg.edge_weight[pg.edge_param.argsort()], flat)


@pytest.mark.parametrize("n", [1, 3])
def test_single_position_input_other_dims(n):
    conv = CONV[n](2, 3, 3, padding=1)
    pg, cg = check_conv(nn.Sequential(conv), spec_of(conv), (2,) + (1,) * n)
    assert int((pg.edge_type == EdgeType.CONV).sum()) == conv.weight.numel()
    assert int((cg.edge_type == EdgeType.CONV).sum()) == 3 * 2


# ---------------------------------------------------------------------- functional
class FunctionalConv(nn.Module):
    """Holds its own nn.Parameter weight and calls F.conv*d in forward."""

    def __init__(self, n, c_in, c_out, kernel, bias=True, **conv_kwargs):
        super().__init__()
        kernel = _per_dim(kernel, n)
        groups = conv_kwargs.get("groups", 1)
        self.n = n
        self.weight = nn.Parameter(torch.randn(c_out, c_in // groups, *kernel) * 0.3)
        self.bias = nn.Parameter(torch.randn(c_out)) if bias else None
        self.conv_kwargs = conv_kwargs

    def forward(self, x):
        return FCONV[self.n](x, self.weight, self.bias, **self.conv_kwargs)


FUNCTIONAL_CASES = [
    (2, 4, 6, 3, True, dict(stride=2, padding=1, groups=2)),
    (2, 3, 4, 3, False, dict(padding="same", dilation=2)),
    (2, 3, 4, (2, 3), True, dict(padding="valid")),
    (2, 2, 3, 3, True, dict()),
    (2, 4, 8, 3, True, dict(padding=(1, 0), groups=4)),
    (1, 2, 3, 3, True, dict(stride=2, padding=1)),
    (1, 4, 4, 5, False, dict(padding="same", groups=4)),
    (3, 2, 3, 3, True, dict(padding=1, stride=(1, 2, 2))),
    (3, 2, 2, 2, False, dict(padding="same", groups=2)),
]


@pytest.mark.parametrize("case", FUNCTIONAL_CASES,
                         ids=[f"{c[0]}d-{'bias' if c[4] else 'nobias'}-{c[5]}".replace(" ", "") for c in FUNCTIONAL_CASES])
def test_functional_conv_with_parameter_weight(case):
    n, c_in, c_out, kernel, bias, kwargs = case
    model = FunctionalConv(n, c_in, c_out, kernel, bias, **kwargs)
    kernel = tuple(model.weight.shape[2:])
    dilation = _per_dim(kwargs.get("dilation", 1), n)
    padding = kwargs.get("padding", 0)
    if padding == "same":
        padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    elif padding == "valid":
        padding = (0,) * n
    else:
        padding = _per_dim(padding, n)
    spec = ConvSpec(model.weight, model.bias, _per_dim(kwargs.get("stride", 1), n), padding, dilation,
                    kwargs.get("groups", 1))
    in_shape = (c_in,) + (5, 7, 6)[:n]
    check_conv(model, spec, in_shape)


def test_conv_via_export_frontend():
    """Shape-dependent control flow defeats fx; torch.export gives ATen convs, lowered by the same rule."""

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)

        def forward(self, x):
            if x.shape[-1] % 2 == 1:  # fx cannot branch on a traced shape
                return self.conv(x)
            return self.conv(-x)

    model = Branchy()
    with pytest.raises(Exception):  # so gmnfx has to fall back to torch.export (ATen convs)
        torch.fx.symbolic_trace(model)
    check_conv(model, spec_of(model.conv), (4, 7, 5))


def test_functional_conv_same_padding_via_export_frontend():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(3, 2, 2, 3))

        def forward(self, x):
            if x.shape[1] == 2:
                return F.conv2d(x, self.weight, padding="same", dilation=(2, 1))
            return x

    model = Branchy()
    spec = ConvSpec(model.weight, None, (1, 1), (1, 1), (2, 1), 1)
    with pytest.raises(Exception):  # so gmnfx has to fall back to torch.export (aten.conv2d.padding)
        torch.fx.symbolic_trace(model)
    check_conv(model, spec, (2, 5, 6))


# ---------------------------------------------------------------------- stacks
class ConvStack(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 4, 3, stride=2, groups=2, padding=1, padding_mode="reflect")
        self.conv3 = nn.Conv2d(4, 8, 1, groups=4, bias=False)  # depthwise, multiplier 2
        self.fc = nn.Linear(8 * 3 * 3, 5)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.tanh(self.conv2(x))
        x = self.conv3(x)
        return self.fc(x.flatten(1))


def _hidden_channel_nodes(pg, model, bias: torch.Tensor) -> torch.Tensor:
    """The hidden channel node fed by each element of a layer's bias."""
    off = param_offset(model, bias)
    mask = (pg.edge_param >= off) & (pg.edge_param < off + bias.numel())
    nodes = torch.empty(bias.numel(), dtype=torch.long)
    nodes[pg.edge_param[mask] - off] = pg.edge_index[1, mask]
    return nodes


def test_stacked_convs_hidden_channels_and_groups():
    model = ConvStack()
    pg, cg = check_compiles(model, torch.randn(2, 3, 5, 5), torch.randn(3, 3, 5, 5))
    assert int((pg.node_type == NodeType.INPUT).sum()) == 3
    assert int((pg.node_type == NodeType.HIDDEN).sum()) == 6 + 4 + 8
    assert int((pg.node_type == NodeType.OUTPUT).sum()) == 5
    assert int((pg.node_type == NodeType.BIAS).sum()) == 3  # conv1, conv2, fc
    assert int((pg.edge_type == EdgeType.CONV).sum()) == sum(
        c.weight.numel() for c in (model.conv1, model.conv2, model.conv3))
    h1 = _hidden_channel_nodes(pg, model, model.conv1.bias)
    h2 = _hidden_channel_nodes(pg, model, model.conv2.bias)
    assert_conv_parameter_edges(pg, model, spec_of(model.conv1), io_nodes(pg, NodeType.INPUT), h1)
    # conv3 has no bias: find its output channel nodes from its own edges (o -> dst) and check the rest
    off = param_offset(model, model.conv3.weight)
    mask = (pg.edge_param >= off) & (pg.edge_param < off + model.conv3.weight.numel())
    h3 = torch.empty(8, dtype=torch.long)
    h3[(pg.edge_param[mask] - off) // model.conv3.weight[0].numel()] = pg.edge_index[1, mask]
    assert h3.unique().numel() == 8
    assert_conv_parameter_edges(pg, model, spec_of(model.conv2), h1, h2)
    assert_conv_parameter_edges(pg, model, spec_of(model.conv3), h2, h3)
    # hidden nodes: layers in order, ReLU/Tanh fused into conv1/conv2 channels
    layers = [int(pg.node_feat[h[0], NodeCol.LAYER]) for h in (h1, h2, h3)]
    assert layers == sorted(layers) and len(set(layers)) == 3
    assert bool((pg.node_feat[h1, NodeCol.ACTIVATION] == 1).all())  # Activation.RELU
    assert bool((pg.node_feat[h2, NodeCol.ACTIVATION] == 6).all())  # Activation.TANH
    # computation graph: one neuron per channel and position
    assert int((cg.node_type == NodeType.HIDDEN).sum()) == 6 * 25 + 4 * 9 + 8 * 9


def test_same_parameter_used_by_two_convs_is_placed_once():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            return self.conv(torch.relu(self.conv(x)))

    model = Shared()
    pg, _ = check_compiles(model, torch.randn(2, 3, 4, 4))
    assert int((pg.edge_param >= 0).sum()) == model.conv.weight.numel() + 3
    assert int((pg.edge_type == EdgeType.TIED).sum()) == model.conv.weight.numel() + 3


# ---------------------------------------------------------------------- errors
def test_conv_transpose_is_unsupported_with_a_fix():
    """No rule for transposed convs: fx traces into ConvTranspose2d and stops at its op, saying how to fix it.

    The message names the op (``torch.conv_transpose2d``), the module it runs in with its type,
    and the decorator to write.
    """
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ConvTranspose2d(3, 2, 3))
    with pytest.raises(gmnfx.UnsupportedOpError) as info:
        gmnfx.compile(model, torch.randn(1, 2, 6, 6))
    message = str(info.value)
    assert "conv_transpose2d" in message
    assert "module: '1' (ConvTranspose2d)" in message  # the ConvTranspose2d's path in the Sequential
    assert "register_lowering" in message


@pytest.mark.parametrize("mode,code", [("zeros", 0), ("reflect", 1), ("replicate", 2), ("circular", 3)])
def test_padding_mode_is_an_edge_feature(mode, code):
    from gmnfx.schema import EdgeCol

    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, padding_mode=mode))
    pg = gmnfx.compile(model, torch.randn(1, 2, 5, 5))
    conv = pg.edge_type == EdgeType.CONV
    assert bool((pg.edge_feat[conv, EdgeCol.PADDING_MODE] == code).all())

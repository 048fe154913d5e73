"""``gmnfx.simulate``: run a network's forward pass on its computation graph.

Neuron-level message passing, one topological level at a time: every node
combines the messages ``weight * x_src`` of its incoming edges with its node
op (weighted sum + activation, max, product, group statistics,
normalization, softmax). It uses nothing but the graph's tensors, so a graph that
simulates to the model's output is an exact, executable description of the
network (Proposition 4 of the GMN paper) and the oracle every lowering rule
is tested against.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils import _pytree as pytree

from gmnfx.edge_blocks import PADDING_MODES
from gmnfx.errors import InputShapeError
from gmnfx.graphs import ComputationGraph
from gmnfx.output_structure import rebuild_output
from gmnfx.schema import EDGE_FEATURES, Activation, EdgeType, NodeCol, NodeOp

__all__ = ["simulate", "topological_levels"]

_ACTIVATIONS = {
    Activation.IDENTITY: lambda x, a: x,
    Activation.RELU: lambda x, a: torch.relu(x),
    Activation.LEAKY_RELU: lambda x, a: torch.where(x >= 0, x, x * a),
    Activation.GELU: lambda x, a: F.gelu(x),
    Activation.GELU_TANH: lambda x, a: F.gelu(x, approximate="tanh"),
    Activation.SILU: lambda x, a: F.silu(x),
    Activation.TANH: lambda x, a: torch.tanh(x),
    Activation.SIGMOID: lambda x, a: torch.sigmoid(x),
    Activation.RELU6: lambda x, a: x.clamp(0.0, 6.0),
    Activation.SIN: lambda x, a: torch.sin(x),
}


def topological_levels(num_nodes: int, edge_index: torch.Tensor) -> torch.Tensor:
    """Longest-path depth of every node (sources are level 0)."""
    src, dst = edge_index
    level = torch.zeros(num_nodes, dtype=torch.long)
    for _ in range(num_nodes + 1):
        new = level.scatter_reduce(0, dst, level[src] + 1, reduce="amax")  # sources stay at level 0
        if torch.equal(new, level):
            return level
        level = new
    raise ValueError("the graph has a cycle")


def simulate(graph: ComputationGraph, *inputs: torch.Tensor, dtype: torch.dtype = torch.float64):
    """Run the network encoded by ``graph`` on ``inputs`` (batch first); returns its output(s).

    Args:
        graph: a ComputationGraph from ``gmnfx.compile(model, ..., graph="computation")``.
        *inputs: one tensor per network input, ``[batch, *input_shape]``; any batch size.
            Token inputs (``graph.input_encodings[k] == {"one_hot": V}``) take integer
            ids in ``[0, V)``, one-hot encoded here.
        dtype: precision of the simulation (default float64); outputs are cast
            back to the first floating-point input's dtype (the default dtype if none).

    Returns:
        The output in the model's structure (a tensor, or a tuple/list/dict of them); a
        dataclass, NamedTuple or dict subclass comes back as that class when its module
        is imported and it can be built from its fields, else as a dict.
    """
    if not isinstance(graph, ComputationGraph):
        raise TypeError(f"simulate needs a ComputationGraph (got {type(graph).__name__}); "
                        "compile with gmnfx.compile(model, inputs, graph='computation')")
    if len(inputs) != len(graph.input_shapes):
        raise InputShapeError(f"simulate: expected {len(graph.input_shapes)} input tensor(s) (got {len(inputs)})")
    for k, (x, shape) in enumerate(zip(inputs, graph.input_shapes)):
        if tuple(x.shape[1:]) != tuple(shape):
            raise InputShapeError(f"simulate: expected input {k} of shape [batch, {', '.join(map(str, shape))}] "
                                  f"(got {list(x.shape)})")
    batch = inputs[0].shape[0] if inputs else 1
    x = torch.zeros(graph.num_nodes, batch, dtype=dtype)
    offset = 0
    for k, (tensor, encoding) in enumerate(zip(inputs, graph.input_encodings)):
        values = _input_values(tensor, encoding, k)
        x[graph.input_nodes[offset : offset + values.shape[1]]] = values.T.to(dtype)
        offset += values.shape[1]
    _propagate(graph, x)
    outputs, offset = [], 0
    floating = [t.dtype for t in inputs if t.is_floating_point()]
    out_dtype = floating[0] if floating else torch.get_default_dtype()
    for shape in graph.output_shapes:
        n = math.prod(shape)
        outputs.append(x[graph.output_nodes[offset : offset + n]].T.reshape(batch, *shape).to(out_dtype))
        offset += n
    return rebuild_output(pytree.tree_unflatten(outputs, pytree.treespec_loads(graph.output_spec)), graph.output_types)


def _input_values(tensor: torch.Tensor, encoding, k: int) -> torch.Tensor:
    """Input ``k`` as ``[batch, values]``: its elements, or for token ids (``{"one_hot": V}``) their one-hot blocks."""
    batch = tensor.shape[0]
    if not encoding:
        return tensor.reshape(batch, -1)
    vocab = encoding["one_hot"]
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise InputShapeError(f"simulate: expected integer token ids for input {k} (got dtype {tensor.dtype})")
    if tensor.numel() and (int(tensor.min()) < 0 or int(tensor.max()) >= vocab):
        raise InputShapeError(f"simulate: expected the token ids of input {k} in [0, {vocab}), the embedding's "
                              f"vocabulary (got values from {int(tensor.min())} to {int(tensor.max())})")
    return F.one_hot(tensor.long(), vocab).reshape(batch, -1)


def _propagate(graph: ComputationGraph, x: torch.Tensor) -> None:
    op = graph.node_feat[:, NodeCol.OP].long()
    x[op == NodeOp.CONST] = 1.0
    level = topological_levels(graph.num_nodes, graph.edge_index)
    level[(op == NodeOp.INPUT) | (op == NodeOp.CONST)] = -1  # given, not computed
    src, dst = graph.edge_index
    etype = graph.edge_type
    weight = graph.edge_weight.to(x.dtype)
    num_levels = int(level.max()) + 1 if level.numel() else 0
    edge_order = torch.argsort(level[dst], stable=True)
    edge_bounds = torch.searchsorted(level[dst][edge_order], torch.arange(num_levels + 1))
    node_order = torch.argsort(level, stable=True)
    node_bounds = torch.searchsorted(level[node_order], torch.arange(num_levels + 1))
    stats_mean = torch.zeros_like(x)
    stats_var = torch.zeros_like(x)
    local = torch.full((graph.num_nodes,), -1, dtype=torch.long)
    for lvl in range(num_levels):
        nodes = node_order[node_bounds[lvl] : node_bounds[lvl + 1]]
        if nodes.numel() == 0:
            continue
        e = edge_order[edge_bounds[lvl] : edge_bounds[lvl + 1]]
        local[nodes] = torch.arange(nodes.numel())
        _compute_level(graph, x, nodes, local, src[e], dst[e], weight[e], etype[e], op, stats_mean, stats_var)


def _compute_level(graph, x, nodes, local, s, d, w, t, op, stats_mean, stats_var) -> None:
    batch = x.shape[1]
    node_op = op[nodes]
    ld = local[d]
    feat = graph.node_feat[nodes]
    out = torch.zeros(nodes.numel(), batch, dtype=x.dtype)
    msg = w[:, None] * x[s]
    # weighted sums: SUM nodes, and the input term of NORMALIZE / BATCHNORM nodes
    summed = (t != EdgeType.NORM_STATS_OUT) & (t != EdgeType.NORM_STATS_IN)
    acc = torch.zeros_like(out).index_add_(0, ld[summed], msg[summed])
    is_sum = node_op == NodeOp.SUM
    if bool(is_sum.any()):
        acts = feat[:, NodeCol.ACTIVATION].long()
        param = feat[:, NodeCol.ACTIVATION_PARAM].to(x.dtype)[:, None]
        for code in torch.unique(acts[is_sum]).tolist():
            m = is_sum & (acts == code)
            out[m] = _ACTIVATIONS[Activation(code)](acc[m], param[m])
    is_max = node_op == NodeOp.MAX
    if bool(is_max.any()):
        mx = torch.full_like(out, -math.inf).scatter_reduce_(0, ld[:, None].expand_as(msg), x[s], reduce="amax")
        out[is_max] = mx[is_max]
    is_prod = node_op == NodeOp.PROD
    if bool(is_prod.any()):
        pr = torch.ones_like(out).scatter_reduce_(0, ld[:, None].expand_as(msg), msg, reduce="prod")
        out[is_prod] = pr[is_prod]
    is_stats = node_op == NodeOp.STATS
    if bool(is_stats.any()):
        member = t == EdgeType.NORM_STATS_IN
        count = torch.zeros(nodes.numel(), dtype=x.dtype).index_add_(0, ld[member], torch.ones_like(w[member]))
        count = count.clamp(min=1)[:, None]
        mean = torch.zeros_like(out).index_add_(0, ld[member], x[s[member]]) / count
        var = torch.zeros_like(out).index_add_(0, ld[member], (x[s[member]] - mean[ld[member]]) ** 2) / count
        stats_mean[nodes[is_stats]] = mean[is_stats]
        stats_var[nodes[is_stats]] = var[is_stats]
    is_lse = node_op == NodeOp.LOGSUMEXP
    if bool(is_lse.any()):
        member = t == EdgeType.NORM_STATS_IN
        values, at = x[s[member]], ld[member][:, None].expand(-1, batch)
        peak = torch.full_like(out, -math.inf).scatter_reduce_(0, at, values, reduce="amax")
        peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
        total = torch.zeros_like(out).index_add_(0, ld[member], torch.exp(values - peak[ld[member]]))
        lse = peak + torch.log(total)
        stats_mean[nodes[is_lse]] = lse[is_lse]
        out[is_lse] = lse[is_lse]  # also the node's value, read by log_softmax's SKIP edges
    link = t == EdgeType.NORM_STATS_OUT
    stat_of = torch.zeros(nodes.numel(), dtype=torch.long)
    stat_of[ld[link]] = s[link]
    is_softmax = node_op == NodeOp.SOFTMAX
    if bool(is_softmax.any()):
        out[is_softmax] = torch.exp(acc - stats_mean[stat_of])[is_softmax]
    eps = feat[:, NodeCol.NORM_EPS].to(x.dtype)[:, None]
    is_norm = node_op == NodeOp.NORMALIZE
    if bool(is_norm.any()):
        normalized = (acc - stats_mean[stat_of]) / torch.sqrt(stats_var[stat_of] + eps)
        out[is_norm] = normalized[is_norm]
    is_bn = node_op == NodeOp.BATCHNORM
    if bool(is_bn.any()):
        mean = feat[:, NodeCol.NORM_MEAN].to(x.dtype)[:, None]
        var = feat[:, NodeCol.NORM_VAR].to(x.dtype)[:, None]
        out[is_bn] = ((acc - mean) / torch.sqrt(var + eps))[is_bn]
    _sample_grids(graph, x, nodes, out)
    x[nodes] = out


_KERNEL_COLUMNS = [EDGE_FEATURES.index(f"kernel_{d}") - EDGE_FEATURES.index("kernel_0") + 1 for d in range(3)]
_PADDING_MODE_COLUMN = EDGE_FEATURES.index("padding_mode") - EDGE_FEATURES.index("kernel_0") + 1  # in block_attrs
_POS_COLUMNS = [NodeCol.POS_0, NodeCol.POS_1, NodeCol.POS_2]
_BORDER = PADDING_MODES.index("replicate")  # grid_sample's padding_mode="border"


def _sample_grids(graph, x, nodes, out) -> None:
    """Set ``out`` of the GRID_SAMPLE nodes among ``nodes``: ``F.grid_sample`` at the point their COORD edges give.

    Per axis, the point in cell units is ``u = (size - 1) / 2 + sum of COORD messages`` on that axis (the edge's
    one-hot ``edge_pos``; size from the GRID block's ``kernel_*``), clamped to ``[0, size - 1]`` for border
    padding. The value is ``sum over GRID edges of weight * x_cell * prod_axes K(u - cell position)`` with
    ``K(d) = max(0, 1 - |d|)`` for a 2-cell window (bilinear) and ``[round(u) == cell]`` (ties to even) for
    a 1-cell window (nearest); cells outside the grid do not exist, which is zeros padding.
    """
    sampler = graph.node_feat[nodes, NodeCol.OP] == NodeOp.GRID_SAMPLE
    if not bool(sampler.any()):
        return
    n, batch = int(sampler.sum()), x.shape[1]
    row = torch.full((graph.num_nodes,), -1, dtype=torch.long)
    row[nodes[sampler]] = torch.arange(n)
    src, dst = graph.edge_index
    into = row[dst] >= 0
    grid_e = torch.nonzero(into & (graph.edge_type == EdgeType.GRID)).squeeze(1)
    coord_e = torch.nonzero(into & (graph.edge_type == EdgeType.COORD)).squeeze(1)
    size = torch.zeros(n, 3, dtype=x.dtype)
    size[row[dst[grid_e]]] = graph.block_attrs[graph.edge_block[grid_e]][:, _KERNEL_COLUMNS].to(x.dtype)
    coord_block = graph.block_attrs[graph.edge_block[coord_e]]
    bilinear = torch.zeros(n, dtype=torch.bool)
    bilinear[row[dst[coord_e]]] = coord_block[:, _KERNEL_COLUMNS].amax(1) > 1
    border = torch.zeros(n, dtype=torch.bool)
    border[row[dst[coord_e]]] = coord_block[:, _PADDING_MODE_COLUMN] == _BORDER
    last = (size - 1).clamp(min=0)[:, :, None]  # [n, 3, 1]; 0 along the axes a 2-d grid lacks
    u = (last / 2).expand(n, 3, batch).clone()
    axis = graph.edge_pos[coord_e].argmax(1)
    coord_msg = graph.edge_weight[coord_e].to(x.dtype)[:, None] * x[src[coord_e]]
    u.index_put_((row[dst[coord_e]], axis), coord_msg, accumulate=True)
    u = torch.where(border[:, None, None], torch.minimum(u.clamp(min=0), last), u)
    r = row[dst[grid_e]]
    cell = graph.node_feat[src[grid_e]][:, _POS_COLUMNS].to(x.dtype)[:, :, None]  # [E, 3, 1]
    tent = (1 - (u[r] - cell).abs()).clamp(min=0).prod(1)
    nearest = (torch.round(u[r]) == cell).all(1).to(x.dtype)
    kernel = torch.where(bilinear[r][:, None], tent, nearest)
    msg = graph.edge_weight[grid_e].to(x.dtype)[:, None] * x[src[grid_e]] * kernel
    out[sampler] = torch.zeros(n, batch, dtype=x.dtype).index_add_(0, r, msg)

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

from gmnfx.errors import InputShapeError
from gmnfx.graphs import ComputationGraph
from gmnfx.schema import Activation, EdgeType, NodeCol, NodeOp

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
        dtype: precision of the simulation (default float64); outputs are cast
            back to the first input's dtype.

    Returns:
        The output in the model's structure (a tensor, or a tuple/list/dict of them).
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
    for tensor in inputs:
        n = tensor[0].numel()
        x[graph.input_nodes[offset : offset + n]] = tensor.reshape(batch, n).T.to(dtype)
        offset += n
    _propagate(graph, x)
    outputs, offset = [], 0
    out_dtype = inputs[0].dtype if inputs and inputs[0].is_floating_point() else torch.get_default_dtype()
    for shape in graph.output_shapes:
        n = math.prod(shape)
        outputs.append(x[graph.output_nodes[offset : offset + n]].T.reshape(batch, *shape).to(out_dtype))
        offset += n
    return pytree.tree_unflatten(outputs, pytree.treespec_loads(graph.output_spec))


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
        stats_mean[nodes[is_lse]] = (peak + torch.log(total))[is_lse]
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
    x[nodes] = out

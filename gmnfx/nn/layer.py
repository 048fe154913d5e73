"""The GMN layer: the paper's edge-and-node update, written so its first linear maps run per node.

.. math::
    e_{ij} &\\leftarrow \\mathrm{MLP}_e([x_i, x_j, e_{ij}]) \\\\
    x_i &\\leftarrow \\mathrm{MLP}_2\\big([x_i,\\ \\mathrm{AGG}_{j \\to i}\\, \\sigma(W_{in}[x_j, e_{ji}]),\\
          \\mathrm{AGG}_{i \\to j}\\, \\sigma(W_{out}[x_j, e_{ij}])]\\big)

Messages flow both ways along every edge (into a neuron from the layer before it, and back from the layer
after it), with separate weights per direction. The first linear map of an MLP on ``[x_i, x_j, e]`` splits into
``A x_i + B x_j + C e``: ``A x`` and ``B x`` are computed once per node and gathered per edge by the fused
``gather_add_act`` kernel. A message MLP's second linear map commutes with sum and mean, so it is folded into
``MLP_2``'s first layer and the messages are reduced straight out of ``gather_act_reduce`` without an
[E, hidden] message tensor.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from gmnfx.kernels import gather_act_reduce, gather_add_act, segment_reduce
from gmnfx.kernels.segments import Segments, segments_of
from gmnfx.nn.chunks import EdgeChunk, EdgeReducer, run_edge_chunks
from gmnfx.nn.plan import MessagePlan, message_plan

__all__ = ["GMNLayer", "AGGREGATIONS", "ACTIVATIONS"]

AGGREGATIONS = ("mean", "sum", "max", "pna")
ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU}


def _mlp(in_dim: int, hidden_dim: int, out_dim: int, activation: str) -> nn.Sequential:
    mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), ACTIVATIONS[activation](), nn.Linear(hidden_dim, out_dim))
    init_mlp(mlp)
    return mlp


def init_linear(linear: nn.Linear, fan_in: int, relu: bool) -> None:
    """Uniform weights with variance ``gain^2 / fan_in`` (gain sqrt(2) before a ReLU, else 1), zero bias."""
    bound = (6.0 if relu else 3.0) ** 0.5 / fan_in ** 0.5
    nn.init.uniform_(linear.weight, -bound, bound)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)


def init_mlp(mlp: nn.Sequential) -> None:
    init_linear(mlp[0], mlp[0].in_features, relu=True)
    init_linear(mlp[2], mlp[2].in_features, relu=False)


class GMNLayer(nn.Module):
    """One message-passing layer with edge updates (see the module docstring for the math).

    Args:
        hidden_dim: width of node, edge (and global) features.
        aggregation: "mean" (default), "sum", "max", or "pna" (mean and max, each also scaled by
            log(1 + degree) and its inverse, as in PNA).
        activation: "relu" (default) or "silu".
        global_feature: keep a per-graph feature ``u`` that enters every node update and is updated from the
            means of the new node and edge features: ``u <- MLP_u([u, mean x, mean e])``.
        residual: pre-norm residual updates, ``x <- x + f(LayerNorm(x))`` (likewise for edges and ``u``).

    Shapes:
        x [N, hidden], edge_index [2, E], edge_attr [E, hidden], u [G, hidden] -> (x, edge_attr[, u]).

    Example (plain PyG-style tensors)::

        layer = GMNLayer(32)
        x, e = layer(torch.randn(5, 32), torch.tensor([[0, 1, 2], [3, 3, 4]]), torch.randn(3, 32))
    """

    def __init__(self, hidden_dim: int, aggregation: str = "mean", activation: str = "relu", *,
                 global_feature: bool = False, residual: bool = False) -> None:
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS} (got {aggregation!r})")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)} (got {activation!r})")
        h = hidden_dim
        self.hidden_dim, self.aggregation, self.activation = h, aggregation, activation
        self.global_feature, self.residual = global_feature, residual
        self.edge_src, self.edge_dst = nn.Linear(h, h, bias=False), nn.Linear(h, h, bias=False)
        self.edge_self, self.edge_out = nn.Linear(h, h), nn.Linear(h, h)
        self.in_node, self.in_edge = nn.Linear(h, h, bias=False), nn.Linear(h, h)
        self.out_node, self.out_edge = nn.Linear(h, h, bias=False), nn.Linear(h, h)
        width = 6 if aggregation == "pna" else 1
        self.node_mlp = _mlp((1 + 2 * width) * h, h, h, activation)
        self.global_in = nn.Linear(h, h, bias=False) if global_feature else None
        self.global_mlp = _mlp(3 * h, h, h, activation) if global_feature else None
        self.norm_x = nn.LayerNorm(h) if residual else None
        self.norm_e = nn.LayerNorm(h) if residual else None
        self.norm_u = nn.LayerNorm(h) if residual and global_feature else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Variance-preserving initialization: the split first layers are initialized as the one linear map on
        the concatenation they stand for (fan-in ``3h`` for the edge MLP, ``2h`` for messages), with the ReLU
        gain; maps into a sum or an output get gain 1; biases start at 0. (PyTorch's default Linear init shrinks
        the signal about 3x per map, leaving a 4-layer GMN's outputs nearly constant at initialization.)"""
        h = self.hidden_dim
        for module in (self.norm_x, self.norm_e, self.norm_u):
            if module is not None:
                module.reset_parameters()
        for fan_in, relu, modules in ((3 * h, True, (self.edge_src, self.edge_dst, self.edge_self)),
                                      (2 * h, True, (self.in_node, self.in_edge, self.out_node, self.out_edge)),
                                      (h, False, (self.edge_out,))):
            for linear in modules:
                init_linear(linear, fan_in, relu)
        for mlp in (self.node_mlp, self.global_mlp):
            if mlp is not None:
                init_mlp(mlp)

    def extra_repr(self) -> str:
        return (f"hidden_dim={self.hidden_dim}, aggregation={self.aggregation!r}, activation={self.activation!r}, "
                f"global_feature={self.global_feature}, residual={self.residual}")

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor,
                u: Optional[torch.Tensor] = None, *, batch: Optional[torch.Tensor] = None,
                plan: Optional[MessagePlan] = None):
        """Update node and edge features (and ``u`` when the layer has a global feature).

        Args:
            batch: graph id per node (PyG's batch vector), for the global feature; None: one graph.
            plan: a precomputed :func:`~gmnfx.nn.plan.message_plan` (the GMN builds one per forward and
                shares it between layers); built here when None.
        """
        if plan is None:
            plan = message_plan(edge_index, x.shape[0], node_graph=batch,
                                num_graphs=None if u is None else u.shape[0])
        x_new, e_new, u_new, _ = self.propagate(x, edge_attr, u, plan)
        return (x_new, e_new, u_new) if self.global_feature else (x_new, e_new)

    def propagate(self, x: torch.Tensor, edge_attr: torch.Tensor, u: Optional[torch.Tensor], plan: MessagePlan, *,
                  keep_edges: bool = True, pool_edges: bool = False):
        """The layer on a plan: ``(x, edge_attr or None, u or None, per-graph mean of the new edges or None)``.

        ``keep_edges=False`` skips writing the new edge features (the last layer under a graph readout);
        ``pool_edges=True`` returns their per-graph mean, computed chunk by chunk with the messages.
        """
        self._check_inputs(x, edge_attr, u, plan)
        x_in = self.norm_x(x) if self.residual else x
        if self.global_feature:
            x_in = x_in + self.global_in(self.norm_u(u) if self.residual else u)[plan.node_graph]
        nodes = [self.edge_src(x_in), self.edge_dst(x_in), self.in_node(x_in), self.out_node(x_in)]
        reducers = [  # messages into destinations, messages back into sources
            EdgeReducer(plan.in_chunks, lambda c, e, n: self._reduce(n[2], c.take(plan.src), self.in_edge(e), c,
                                                                     plan.out_segments)),
            EdgeReducer(plan.out_chunks, lambda c, e, n: self._reduce(n[3], c.take(plan.dst), self.out_edge(e), c,
                                                                      plan.in_segments))]
        if self.global_feature or pool_edges:
            reducers.append(EdgeReducer(plan.in_chunks, lambda c, e, n: _graph_sums(plan, c, e)))
        params = [p for p in self.parameters() if p.requires_grad]
        e_new, (agg_in, agg_out, *sums) = run_edge_chunks(
            lambda c, e, n: self._edge_update(plan, c, e[0], n[0], n[1]), plan.in_chunks, [edge_attr], nodes,
            params, plan.num_edges, reducers=reducers, keep_edges=keep_edges)
        x_new = self.node_mlp(torch.cat([x_in, self._pna(agg_in, plan.in_degree),
                                         self._pna(agg_out, plan.out_degree)], dim=1))
        x_new = x + x_new if self.residual else x_new
        e_mean = sums[0] / plan.edge_groups.rowptr.diff().clamp_min(1)[:, None] if sums else None
        if not self.global_feature:
            return x_new, e_new, None, e_mean
        x_mean = segment_reduce(x_new, plan.node_groups.rowptr, plan.node_groups.perm, "mean")
        u_in = self.norm_u(u) if self.residual else u
        u_new = self.global_mlp(torch.cat([u_in, x_mean, e_mean], dim=1))
        return x_new, e_new, (u + u_new if self.residual else u_new), e_mean

    # ------------------------------------------------------------------ per-chunk work
    def _edge_update(self, plan: MessagePlan, chunk: EdgeChunk, e: torch.Tensor, x_src: torch.Tensor,
                     x_dst: torch.Tensor) -> torch.Tensor:
        """``MLP_e([x_src, x_dst, e])`` for the chunk's edges, its first layer split per node."""
        e_in = self.norm_e(e) if self.residual else e
        whole = chunk.edge_ids is None  # the plan's groupings of src and dst serve the kernels' backward
        hidden = gather_add_act(x_src, chunk.take(plan.src), x_dst, chunk.take(plan.dst), self.edge_self(e_in),
                                self.activation, groups_a=plan.out_segments if whole else None,
                                groups_b=plan.in_segments if whole else None)
        e_new = self.edge_out(hidden)
        return e + e_new if self.residual else e_new

    def _reduce(self, x_msg: torch.Tensor, index: torch.Tensor, c: torch.Tensor, chunk: EdgeChunk,
                index_groups: Segments) -> torch.Tensor:
        """Messages ``act(x_msg[index] + c)`` of the chunk's edges reduced into the chunk's nodes."""
        reductions = ("mean", "max") if self.aggregation == "pna" else (self.aggregation,)
        groups = index_groups if chunk.edge_ids is None else None
        out = [gather_act_reduce(x_msg, index, c, chunk.rowptr, chunk.perm, r, self.activation, groups_a=groups)
               for r in reductions]
        return out[0] if len(out) == 1 else torch.cat(out, dim=1)

    def _pna(self, aggregated: torch.Tensor, degree: torch.Tensor) -> torch.Tensor:
        """PNA degree scalers: [a, a * log(1 + d), a / log(1 + d)] (the last 0 for isolated nodes)."""
        if self.aggregation != "pna":
            return aggregated
        log_degree = torch.log1p(degree.to(aggregated.dtype))[:, None]
        inverse = torch.where(log_degree > 0, 1 / log_degree.clamp_min(1e-6), torch.zeros_like(log_degree))
        return torch.cat([aggregated, aggregated * log_degree, aggregated * inverse], dim=1)

    def _check_inputs(self, x: torch.Tensor, edge_attr: torch.Tensor, u: Optional[torch.Tensor],
                      plan: MessagePlan) -> None:
        h = self.hidden_dim
        if x.dim() != 2 or x.shape[1] != h:
            raise ValueError(f"expected node features x of shape [num_nodes, {h}] (got {tuple(x.shape)})")
        if edge_attr.shape != (plan.num_edges, h):
            raise ValueError(f"expected edge_attr of shape [{plan.num_edges}, {h}] (one row per edge of "
                             f"edge_index; got {tuple(edge_attr.shape)})")
        if self.global_feature and (u is None or u.shape != (plan.num_graphs, h)):
            got = None if u is None else tuple(u.shape)
            raise ValueError(f"this layer has a global feature: expected u of shape [{plan.num_graphs}, {h}] "
                             f"(got {got})")


def _graph_sums(plan: MessagePlan, chunk: EdgeChunk, e: torch.Tensor) -> torch.Tensor:
    """Per-graph sums [G, hidden] of the chunk's edge features."""
    if chunk.edge_ids is None:
        return segment_reduce(e, plan.edge_groups.rowptr, plan.edge_groups.perm, "sum")
    graph = plan.node_graph.index_select(0, chunk.take(plan.dst))
    return segment_reduce(e, *segments_of(graph, plan.num_graphs), "sum")

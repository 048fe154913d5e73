"""The GMN's edge-and-node update written the usual way, on PyG ``MessagePassing``: the benchmark baseline.

Same function as :class:`gmnfx.nn.GMNLayer` (mean aggregation): the edge MLP reads ``[x_src, x_dst, e]``
concatenated per edge, and each direction's messages ``act(W [x_j, e])`` are materialized per edge and
scatter-reduced by PyG. :func:`pyg_twin` copies a GMN's weights into it, so both compute the same outputs.
"""
from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter

from gmnfx.nn import GMN


class Messages(MessagePassing):
    """``AGG_j act(W [x_j, e_ij])`` along ``flow``."""

    def __init__(self, hidden_dim: int, aggr: str, flow: str, activation: nn.Module) -> None:
        super().__init__(aggr=aggr, flow=flow)
        self.lin, self.act = nn.Linear(2 * hidden_dim, hidden_dim), activation

    def forward(self, x, edge_index, edge_attr):
        return self.propagate(edge_index, x=x, edge_attr=edge_attr)

    def message(self, x_j, edge_attr):
        return self.act(self.lin(torch.cat([x_j, edge_attr], dim=-1)))


class PyGEdgeMPNNLayer(nn.Module):
    def __init__(self, hidden_dim: int, aggr: str = "mean") -> None:
        super().__init__()
        h = hidden_dim
        self.edge_mlp = nn.Sequential(nn.Linear(3 * h, h), nn.ReLU(), nn.Linear(h, h))
        self.msg_in = Messages(h, aggr, "source_to_target", nn.ReLU())
        self.msg_out = Messages(h, aggr, "target_to_source", nn.ReLU())
        self.node_mlp = nn.Sequential(nn.Linear(3 * h, h), nn.ReLU(), nn.Linear(h, h))

    def forward(self, x, edge_index, e):
        src, dst = edge_index
        e = self.edge_mlp(torch.cat([x[src], x[dst], e], dim=-1))
        m_in, m_out = self.msg_in(x, edge_index, e), self.msg_out(x, edge_index, e)
        return self.node_mlp(torch.cat([x, m_in, m_out], dim=-1)), e


class PyGGMN(nn.Module):
    """The GMN's encoders and readout around PyG layers (graph readout)."""

    def __init__(self, gmn: GMN) -> None:
        super().__init__()
        self.gmn = gmn
        self.layers = nn.ModuleList(PyGEdgeMPNNLayer(gmn.hidden_dim, layer.aggregation) for layer in gmn.layers)

    def forward(self, batch):
        g = self.gmn
        x = g.node_encoder(batch.node_feat)
        e = g.edge_encoder(batch.edge_type, batch.edge_weight, batch.edge_pos, batch.block_attrs, batch.edge_block)
        for layer in self.layers:
            x, e = layer(x, batch.edge_index, e)
        pooled = [scatter(x, batch.node_graph, 0, batch.num_graphs, reduce="mean"),
                  scatter(e, batch.edge_graph, 0, batch.num_graphs, reduce="mean")]
        return g.head(torch.cat(pooled, dim=1))


@torch.no_grad()
def pyg_twin(gmn: GMN) -> PyGGMN:
    """A :class:`PyGGMN` holding ``gmn``'s weights (``gmn`` must use the defaults: no global feature, no
    residual, ReLU, sum/mean/max aggregation, graph readout)."""
    twin = PyGGMN(gmn)
    for ours, theirs in zip(gmn.layers, twin.layers):
        theirs.edge_mlp[0].weight.copy_(torch.cat([ours.edge_src.weight, ours.edge_dst.weight,
                                                   ours.edge_self.weight], dim=1))
        theirs.edge_mlp[0].bias.copy_(ours.edge_self.bias)
        theirs.edge_mlp[2].load_state_dict(ours.edge_out.state_dict())
        for msg, node, edge in ((theirs.msg_in, ours.in_node, ours.in_edge),
                                (theirs.msg_out, ours.out_node, ours.out_edge)):
            msg.lin.weight.copy_(torch.cat([node.weight, edge.weight], dim=1))
            msg.lin.bias.copy_(edge.bias)
        theirs.node_mlp.load_state_dict(ours.node_mlp.state_dict())
    return twin

"""Render a compiled graph as a PNG (matplotlib Agg + networkx), for small models.

Nodes are placed by layer (x = ``graph.node_layer``) and spread vertically
within their layer; they are coloured by :class:`~gmnfx.schema.NodeType` and
edges, drawn lightly, by :class:`~gmnfx.schema.EdgeType`. Large graphs are
refused: a picture of thousands of nodes shows nothing.
"""
from __future__ import annotations

import os

import torch

from gmnfx.errors import GmnfxError
from gmnfx.schema import EdgeType, NodeType

__all__ = ["draw_graph", "node_positions", "DrawError", "NODE_COLORS", "EDGE_COLORS"]

NODE_COLORS = {
    NodeType.INPUT: "#2ca02c",
    NodeType.HIDDEN: "#1f77b4",
    NodeType.OUTPUT: "#d62728",
    NodeType.BIAS: "#ff7f0e",
}

EDGE_COLORS = {
    EdgeType.LINEAR: "#1f77b4",
    EdgeType.CONV: "#9467bd",
    EdgeType.BIAS: "#ff7f0e",
    EdgeType.SCALE: "#8c564b",
    EdgeType.SKIP: "#7f7f7f",
    EdgeType.POOL: "#17becf",
    EdgeType.NORM_INPUT: "#e377c2",
    EdgeType.NORM_STATS_IN: "#bcbd22",
    EdgeType.NORM_STATS_OUT: "#dbdb8d",
    EdgeType.PRODUCT: "#d62728",
    EdgeType.TIED: "#000000",
}


class DrawError(GmnfxError):
    """A graph cannot be drawn (too large, or matplotlib is missing)."""


def node_positions(graph) -> dict[int, tuple[float, float]]:
    """Layout ``{node: (x, y)}``: x is the node's layer, y spreads a layer's nodes over [-0.5, 0.5].

    Within a layer, non-bias nodes come first in index order and bias nodes last,
    so each layer's bias node sits at the bottom.
    """
    layers = graph.node_layer.tolist()
    is_bias = (graph.node_type == int(NodeType.BIAS)).tolist()
    by_layer: dict[int, list[int]] = {}
    for node in sorted(range(graph.num_nodes), key=lambda n: (is_bias[n], n)):
        by_layer.setdefault(layers[node], []).append(node)
    widest = max((len(nodes) for nodes in by_layer.values()), default=1)
    scale = 1.0 / max(widest - 1, 1)
    positions = {}
    for layer, nodes in by_layer.items():
        offset = (len(nodes) - 1) / 2
        for rank, node in enumerate(nodes):
            positions[node] = (float(layer), (offset - rank) * scale)
    return positions


def _check_size(graph, max_nodes: int) -> None:
    """Raise :class:`DrawError` if ``graph`` has more than ``max_nodes`` nodes."""
    if graph.num_nodes > max_nodes:
        raise DrawError(
            f"expected a graph with at most {max_nodes} nodes to draw (got {graph.num_nodes} nodes, "
            f"{graph.num_edges} edges); draw a smaller model, use the parameter graph, "
            f"or raise the limit (max_nodes=, or --max-nodes on the command line)"
        )


def _figure(graph):
    """A matplotlib Figure (Agg canvas, no pyplot global state) sized to the graph's layout."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise DrawError(f"drawing needs matplotlib (pip install 'gmnfx[draw]'): {exc}") from exc
    num_layers = int(graph.node_layer.max()) + 1 if graph.num_nodes else 1
    widest = int(torch.bincount(graph.node_layer).max()) if graph.num_nodes else 1
    fig = Figure(figsize=(min(4 + 1.2 * num_layers, 40), min(3 + 0.12 * widest, 30)), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _to_networkx(graph):
    """A ``networkx.DiGraph`` with a ``node_type`` on each node and an ``edge_type`` on each edge."""
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from((n, {"node_type": t}) for n, t in enumerate(graph.node_type.tolist()))
    src, dst = graph.edge_index.tolist()
    g.add_edges_from((s, d, {"edge_type": t}) for s, d, t in zip(src, dst, graph.edge_type.tolist()))
    return g


def _draw_edges(g, ax, positions) -> list:
    """Draw edges lightly, one colour per edge type; returns legend handles for the types present."""
    import networkx as nx
    from matplotlib.lines import Line2D

    handles = []
    for etype in EdgeType:
        edges = [(s, d) for s, d, t in g.edges(data="edge_type") if t == etype]
        if not edges:
            continue
        color = EDGE_COLORS.get(etype, "#7f7f7f")
        nx.draw_networkx_edges(g, positions, edgelist=edges, ax=ax, edge_color=color, alpha=0.25,
                               width=0.5, arrows=False)
        handles.append(Line2D([], [], color=color, label=f"edge: {etype.name.lower()}"))
    return handles


def _draw_nodes(g, ax, positions, node_size: float) -> list:
    """Draw nodes coloured by node type; returns legend handles for the types present."""
    import networkx as nx

    handles = []
    for ntype in NodeType:
        nodes = [n for n, t in g.nodes(data="node_type") if t == ntype]
        if not nodes:
            continue
        handles.append(nx.draw_networkx_nodes(g, positions, nodelist=nodes, ax=ax, node_size=node_size,
                                              node_color=NODE_COLORS[ntype], linewidths=0.3,
                                              edgecolors="black", label=f"{ntype.name.lower()} ({len(nodes)})"))
    return handles


def draw_graph(graph, path: str | os.PathLike, max_nodes: int = 400) -> None:
    """Render ``graph`` (a Parameter- or ComputationGraph) to a PNG at ``path``.

    Raises:
        DrawError: if the graph has more than ``max_nodes`` nodes, or matplotlib is not installed.
    """
    _check_size(graph, max_nodes)
    fig = _figure(graph)
    ax = fig.add_subplot(1, 1, 1)
    g = _to_networkx(graph)
    positions = node_positions(graph)
    edge_handles = _draw_edges(g, ax, positions)
    node_size = max(8.0, min(120.0, 6000.0 / max(graph.num_nodes, 1)))
    node_handles = _draw_nodes(g, ax, positions, node_size)
    ax.legend(handles=node_handles + edge_handles, loc="upper left", bbox_to_anchor=(1.0, 1.0),
              fontsize="small", frameon=False)
    ax.set_title(f"{type(graph).__name__}: {graph.num_nodes} nodes, {graph.num_edges} edges, "
                 f"{graph.num_parameters} parameters", fontsize="medium")
    ax.set_xlabel("layer")
    ax.set_yticks([])
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png")

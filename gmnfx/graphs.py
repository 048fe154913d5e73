"""Compiled graph containers: :class:`ParameterGraph` and :class:`ComputationGraph`.

Both hold ``edge_index`` [2, E] (in the direction of the forward pass),
``edge_weight`` [E], ``edge_param`` [E] (index into
``gmnfx.flat_parameters(model)``, -1 for parameter-free edges) and
``node_feat`` [N, len(NODE_FEATURES)], plus the metadata needed to run, write
back and explain them.

Edge features are stored as typed columns (``edge_type``, ``edge_pos``, and
``edge_block`` into the per-block table ``block_attrs``: layer, kernel size,
stride, dilation, padding, groups, padding mode, operand), which is what embedding-based encoders
want and costs a fraction of the memory on 20M-edge graphs. ``edge_feat``
assembles the float matrix [E, len(EDGE_FEATURES)] from them on access.
``edge_tied`` [E] makes weight tying explicit: for a TIED edge (a further use
of a parameter already on another edge) the flat index of that parameter,
-1 otherwise. ``input_encodings`` says, per network input, how its values
enter the graph: None (one node value per element) or ``{"one_hot": V}``
(integer token ids, one input node per element and vocabulary entry).
Saved as safetensors: tensors plus a JSON header, never pickled objects.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from gmnfx.edge_blocks import NUM_BLOCK_ATTRS
from gmnfx.errors import GraphFormatError
from gmnfx.schema import EDGE_FEATURES, NODE_FEATURES, EdgeType, NodeCol, NodeType

__all__ = ["ParameterGraph", "ComputationGraph", "load_graph", "FORMAT_VERSION"]

FORMAT_VERSION = 2
_TENSORS = ("edge_index", "edge_weight", "edge_param", "edge_type", "edge_pos", "edge_block", "block_attrs",
            "node_feat", "input_nodes", "output_nodes")
_OPTIONAL_TENSORS = ("edge_tied",)  # absent from files written before it existed: filled with -1 on load


def assemble_edge_feat(edge_type: torch.Tensor, edge_weight: torch.Tensor, edge_pos: torch.Tensor,
                       block_attrs: torch.Tensor, edge_block: torch.Tensor) -> torch.Tensor:
    """The float matrix [E, len(EDGE_FEATURES)] from the typed edge columns (graphs and batches alike)."""
    block = block_attrs[edge_block.long()]
    return torch.cat([edge_type[:, None].float(), edge_weight[:, None].float(), block[:, :1], edge_pos.float(),
                      block[:, 1:]], dim=1)


@dataclass
class _CompiledGraph:
    num_nodes: int
    edge_index: torch.Tensor
    edge_weight: torch.Tensor
    edge_param: torch.Tensor
    edge_type: torch.Tensor  # [E] EdgeType codes
    edge_pos: torch.Tensor  # [E, 3] kernel offset / position (see EDGE_FEATURES pos_*)
    edge_block: torch.Tensor  # [E] row of block_attrs describing the edge's lowering block
    block_attrs: torch.Tensor  # [num_blocks, 16]: layer, kernel x3, stride x3, dilation x3, padding x3, groups, padding mode, operand
    node_feat: torch.Tensor
    input_nodes: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))  # node of each input element
    output_nodes: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))  # node of each output element
    input_shapes: list = field(default_factory=list)  # per-sample shape of each network input
    output_shapes: list = field(default_factory=list)  # per-sample shape of each network output
    output_spec: str = ""  # torch.utils._pytree treespec (JSON) of the model's output structure
    param_signature: list = field(default_factory=list)  # [[name, shape], ...] of the source model
    num_parameters: int = 0
    layers: list = field(default_factory=list)  # [{"name", "kind", "module_path", "source"}, ...]
    frontend: str = ""  # "fx" (symbolic tracing) or "export" (torch.export fallback)
    edge_tied: Optional[torch.Tensor] = None  # [E] flat index of the parameter a TIED edge repeats, else -1
    input_encodings: list = field(default_factory=list)  # per input: None or {"one_hot": vocabulary size}
    output_types: list = field(default_factory=list)  # classes of the output's containers (gmnfx.output_structure)

    kind = "graph"

    def __post_init__(self) -> None:
        if self.edge_tied is None:
            num_edges = self.edge_index.shape[1] if self.edge_index.dim() == 2 else 0
            self.edge_tied = torch.full((num_edges,), -1, dtype=torch.long)
        missing = len(self.input_shapes) - len(self.input_encodings)
        self.input_encodings = list(self.input_encodings) + [None] * max(missing, 0)

    # ------------------------------------------------------------------ basics
    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def node_type(self) -> torch.Tensor:
        return self.node_feat[:, NodeCol.NODE_TYPE].long()

    @property
    def edge_layer(self) -> torch.Tensor:
        return self.block_attrs[:, 0].long()[self.edge_block]

    @property
    def edge_feat(self) -> torch.Tensor:
        """Float edge features [E, len(EDGE_FEATURES)], built from the typed columns on each access."""
        return assemble_edge_feat(self.edge_type, self.edge_weight, self.edge_pos, self.block_attrs, self.edge_block)

    @property
    def node_layer(self) -> torch.Tensor:
        return self.node_feat[:, NodeCol.LAYER].long()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_nodes={self.num_nodes}, num_edges={self.num_edges}, "
                f"num_parameters={self.num_parameters}, layers={len(self.layers)})")

    def summary(self) -> str:
        """Counts of nodes and edges by type, as a short multi-line string."""
        lines = [repr(self)]
        types = torch.bincount(self.node_type, minlength=len(NodeType))
        lines.append("  nodes: " + ", ".join(f"{t.name.lower()}={int(types[t])}" for t in NodeType if types[t]))
        etypes = torch.bincount(self.edge_type, minlength=len(EdgeType)) if self.num_edges else torch.zeros(len(EdgeType))
        lines.append("  edges: " + ", ".join(f"{t.name.lower()}={int(etypes[t])}" for t in EdgeType if etypes[t]))
        lines.append(f"  inputs {self.input_shapes} -> outputs {self.output_shapes}")
        return "\n".join(lines)

    def layer_table(self) -> list[dict]:
        """Per layer: its name, kind, module, and how many nodes, edges and parameters it owns."""
        n = len(self.layers)
        nodes = torch.bincount(self.node_layer, minlength=n) if self.num_nodes else torch.zeros(n, dtype=torch.long)
        edge_layer = self.edge_layer
        edges = torch.bincount(edge_layer, minlength=n) if self.num_edges else torch.zeros(n, dtype=torch.long)
        with_param = self.edge_param >= 0
        params = torch.zeros(n, dtype=torch.long)
        if bool(with_param.any()):
            unique_pairs = torch.unique(torch.stack([edge_layer[with_param], self.edge_param[with_param]]), dim=1)
            params = torch.bincount(unique_pairs[0], minlength=n)
        return [dict(layer, index=i, nodes=int(nodes[i]), edges=int(edges[i]), parameters=int(params[i]))
                for i, layer in enumerate(self.layers)]

    # ------------------------------------------------------------------ interop
    def to_pyg(self):
        """A ``torch_geometric.data.Data`` with x, edge_index, edge_attr, edge_weight and edge_param."""
        from torch_geometric.data import Data

        return Data(x=self.node_feat, edge_index=self.edge_index, edge_attr=self.edge_feat,
                    edge_weight=self.edge_weight, edge_param=self.edge_param, edge_tied=self.edge_tied,
                    num_nodes=self.num_nodes)

    def to_networkx(self):
        """A ``networkx.MultiDiGraph``; node/edge attributes are the named feature columns."""
        import networkx as nx

        g = nx.MultiDiGraph()
        node_rows = self.node_feat.tolist()
        g.add_nodes_from((i, dict(zip(NODE_FEATURES, row))) for i, row in enumerate(node_rows))
        src, dst = self.edge_index.tolist()
        rows, params, weights = self.edge_feat.tolist(), self.edge_param.tolist(), self.edge_weight.tolist()
        g.add_edges_from(
            (s, d, dict(zip(EDGE_FEATURES, row), param=p, weight=w, tied=t))
            for s, d, row, p, w, t in zip(src, dst, rows, params, weights, self.edge_tied.tolist())
        )
        return g

    # ------------------------------------------------------------------ storage
    def _metadata(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "kind": self.kind, "num_nodes": self.num_nodes,
                "input_shapes": self.input_shapes, "output_shapes": self.output_shapes,
                "output_spec": self.output_spec, "param_signature": self.param_signature,
                "num_parameters": self.num_parameters, "layers": self.layers, "frontend": self.frontend,
                "input_encodings": self.input_encodings, "output_types": self.output_types,
                "node_features": list(NODE_FEATURES), "edge_features": list(EDGE_FEATURES)}

    def save(self, path: str | os.PathLike) -> None:
        """Write the graph to ``path`` in safetensors format (atomically: a temp file, then rename)."""
        from safetensors.torch import save_file

        path = os.fspath(path)
        tensors = {name: getattr(self, name).contiguous() for name in _TENSORS + _OPTIONAL_TENSORS}
        tmp = f"{path}.tmp-{os.getpid()}"
        try:
            save_file(tensors, tmp, metadata={"gmnfx": json.dumps(self._metadata())})
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # a normal file's permissions, not the temp file's
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


class ParameterGraph(_CompiledGraph):
    """Every scalar parameter on exactly one edge; conv positions collapsed into channel nodes."""

    kind = "parameter"


class ComputationGraph(_CompiledGraph):
    """One node per neuron (per position for convolutions), one edge per use of a weight."""

    kind = "computation"


def load_graph(path: str | os.PathLike) -> ParameterGraph | ComputationGraph:
    """Read a graph written by ``graph.save(path)``."""
    from safetensors import SafetensorError, safe_open

    path = os.fspath(path)
    if not os.path.exists(path):
        raise GraphFormatError(f"no graph file at '{path}'")
    try:
        with safe_open(path, framework="pt") as f:
            header = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise GraphFormatError(f"'{path}' is not a readable safetensors file: {exc}") from exc
    if "gmnfx" not in header:
        raise GraphFormatError(f"'{path}' is a safetensors file but not a gmnfx graph (no 'gmnfx' metadata)")
    meta = json.loads(header["gmnfx"])
    if meta.get("format_version") != FORMAT_VERSION:
        raise GraphFormatError(f"'{path}' has graph format version {meta.get('format_version')}; "
                               f"this gmnfx reads version {FORMAT_VERSION}")
    missing = [name for name in _TENSORS if name not in tensors]
    if missing:
        raise GraphFormatError(f"'{path}' lacks tensors {missing}")
    if list(meta["node_features"]) != list(NODE_FEATURES) or list(meta["edge_features"]) != list(EDGE_FEATURES):
        raise GraphFormatError(f"'{path}' was written with different feature columns than this gmnfx uses")
    cls = {"parameter": ParameterGraph, "computation": ComputationGraph}.get(meta["kind"])
    if cls is None:
        raise GraphFormatError(f"'{path}' holds an unknown graph kind {meta['kind']!r}")
    graph = cls(num_nodes=meta["num_nodes"], **{name: tensors[name] for name in _TENSORS},
                input_shapes=[tuple(s) for s in meta["input_shapes"]],
                output_shapes=[tuple(s) for s in meta["output_shapes"]], output_spec=meta["output_spec"],
                param_signature=meta["param_signature"], num_parameters=meta["num_parameters"],
                layers=meta["layers"], frontend=meta.get("frontend", ""), edge_tied=tensors.get("edge_tied"),
                input_encodings=meta.get("input_encodings", []), output_types=meta.get("output_types", []))
    E = graph.edge_index.shape[1] if graph.edge_index.dim() == 2 else -1
    if (graph.edge_index.shape[0] != 2 or graph.edge_weight.shape != (E,) or graph.edge_param.shape != (E,)
            or graph.edge_type.shape != (E,) or graph.edge_pos.shape != (E, 3) or graph.edge_block.shape != (E,)
            or graph.edge_tied.shape != (E,)
            or graph.block_attrs.dim() != 2 or graph.block_attrs.shape[1] != 1 + NUM_BLOCK_ATTRS
            or (E and int(graph.edge_block.max()) >= graph.block_attrs.shape[0])
            or graph.node_feat.shape != (graph.num_nodes, len(NODE_FEATURES))):
        raise GraphFormatError(f"'{path}' has inconsistent tensor shapes (truncated or edited file?)")
    return graph

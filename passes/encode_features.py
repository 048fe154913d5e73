"""Pass 5: encode node and edge features and build the graph object.

Columns follow :data:`gmnfx.schema.NODE_FEATURES` and
:data:`gmnfx.schema.EDGE_FEATURES`; the README documents each one.
"""
from __future__ import annotations

import torch
from torch.utils import _pytree as pytree

from gmnfx.graphs import ComputationGraph, ParameterGraph
from gmnfx.schema import NODE_FEATURES

__all__ = ["encode_features"]


def encode_features(state):
    """Build ``state.result`` (a ParameterGraph or ComputationGraph) from nodes, edges and blocks.

    Edge features stay typed columns (see :mod:`gmnfx.graphs`); node features
    are one float matrix in NODE_FEATURES order.
    """
    edges = state.edges
    node_feat = torch.stack([state.nodes[name].float() for name in NODE_FEATURES], dim=1)
    if state.target == "computation":
        cls, input_nodes, output_nodes = ComputationGraph, state.input_neurons, state.output_neurons
    else:
        channel_of = state.neuron_graph.channel_of
        cls, input_nodes, output_nodes = ParameterGraph, channel_of(state.input_neurons), channel_of(state.output_neurons)
    state.result = cls(
        num_nodes=int(node_feat.shape[0]),
        edge_index=edges.edge_index,
        edge_weight=edges.weight,
        edge_param=edges.param,
        node_feat=node_feat,
        edge_type=state.edge_type,
        edge_pos=edges.pos,
        edge_block=state.edge_block.int(),
        block_attrs=state.block_table()[:, 1:].contiguous(),
        input_nodes=input_nodes,
        output_nodes=output_nodes,
        input_shapes=[tuple(s) for s in state.input_shapes],
        output_shapes=[tuple(s) for s in state.output_shapes],
        output_spec=pytree.treespec_dumps(state.output_spec),
        param_signature=state.param_table.signature(),
        num_parameters=state.param_table.num_parameters,
        layers=[dict(name=l.name, kind=l.kind, module_path=l.module_path, source=l.source)
                for l in state.neuron_graph.layers],
        frontend=state.frontend,
        edge_tied=state.edge_tied,
        input_encodings=list(state.input_encodings),
        output_types=list(state.output_types),
    )
    return state

"""The structured weight-sharing collapse agrees with the generic one, and both frontends agree."""
from __future__ import annotations

import torch
from hypothesis import given, note

import gmnfx
from gmnfx.edge_blocks import ConvEdges, collapse_edges
from gmnfx.params import ParamTable, flat_parameters
from gmnfx.passes.lower_neurons import lower_to_neurons
from gmnfx.passes.materialize import collapse_context
from gmnfx.passes.shape_prop import propagate_shapes
from gmnfx.passes.trace import trace
from gmnfx.pipeline import CompileState

from strategies import any_architecture

# the structured collapse works on whatever the default frontend traces; the frontend comparison draws only
# what torch.export lowers too (no module-level MHA/transformer rules, no non-zeros conv padding modes)
ARCHITECTURES = any_architecture()
EXPORTABLE_ARCHITECTURES = any_architecture(frontend="export")


def _edge_set(edges) -> set:
    return set(zip(edges.src.tolist(), edges.dst.tolist(), edges.param.tolist()))


def _flat(edges):
    """Flat columns of a block's (possibly broadcast) edges."""
    out = type(edges).empty(len(edges))
    edges.write_into(out, 0, torch.zeros(max(1, int(edges.param.max()) + 1 if len(edges) else 1)))
    return out


@given(arch=ARCHITECTURES)
def test_structured_collapse_matches_collapsing_the_computation_graph(arch):
    note(arch.description)
    model = arch.model
    state = CompileState(model, (arch.example,), "parameter", param_table=ParamTable(model),
                         flat_params=flat_parameters(model))
    state = lower_to_neurons(propagate_shapes(trace(state)))
    ctx = collapse_context(state)
    for block in state.neuron_graph.blocks:
        structured = _edge_set(_flat(block.parameter_edges(ctx)))
        generic = _edge_set(collapse_edges(block.computation_edges(ctx), ctx))
        if isinstance(block, ConvEdges):
            # taps that only ever read padding have no computation edge but keep their parameter edge
            assert generic <= structured and len(structured) == block.weight.numel(), type(block).__name__
        else:
            assert generic == structured, type(block).__name__


@given(arch=EXPORTABLE_ARCHITECTURES)
def test_fx_and_export_frontends_give_the_same_parameter_graph(arch):
    note(arch.description)
    by_fx = gmnfx.compile(arch.model, arch.example, frontend="fx")
    by_export = gmnfx.compile(arch.model, arch.example, frontend="export")
    assert by_fx.num_nodes == by_export.num_nodes
    key = lambda g: sorted(zip(g.edge_param.tolist(), g.edge_type.tolist(), g.edge_weight.tolist()))  # noqa: E731
    assert key(by_fx) == key(by_export)

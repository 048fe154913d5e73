"""The compiler pipeline: an explicit list of passes over one :class:`CompileState`.

Each pass is a plain function ``state -> state``; per-node results live in
``node.meta["gmnfx.*"]``. With ``debug=True`` (or ``GMNFX_DEBUG=1``) the IR's
invariants are checked after every pass.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

import torch
import torch.fx as fx
import torch.nn as nn

from gmnfx.edge_blocks import NUM_BLOCK_ATTRS
from gmnfx.errors import GmnfxError, LoweringError
from gmnfx.invariants import check_invariants
from gmnfx.params import ParamTable
from gmnfx.passes.collapse_sharing import collapse_weight_sharing
from gmnfx.passes.encode_features import encode_features
from gmnfx.passes.lower_neurons import lower_to_neurons
from gmnfx.passes.materialize import build_computation_graph
from gmnfx.passes.shape_prop import propagate_shapes
from gmnfx.passes.trace import trace
from gmnfx.passes.validate import validate

__all__ = ["CompileState", "passes_for", "run_pipeline"]


@dataclass
class CompileState:
    """Everything the passes share for one compilation."""

    model: nn.Module
    example_inputs: Optional[tuple]
    target: str  # "parameter" or "computation"
    debug: bool = False
    progress: bool = False
    param_table: Optional[ParamTable] = None
    flat_params: Optional[torch.Tensor] = None
    graph_module: Optional[fx.GraphModule] = None
    frontend: str = "auto"  # requested: "auto", "fx" or "export"; after tracing: the one used
    batch_size: int = 0
    neuron_graph: Any = None
    lowering: Any = None
    input_shapes: list = field(default_factory=list)
    output_shapes: list = field(default_factory=list)
    output_spec: Any = None
    input_neurons: Optional[torch.Tensor] = None
    output_neurons: Optional[torch.Tensor] = None
    nodes: Optional[dict] = None
    edges: Any = None
    edge_block: Optional[torch.Tensor] = None
    edge_type: Optional[torch.Tensor] = None
    edge_tied: Optional[torch.Tensor] = None  # parameter graph: flat index repeated by each TIED edge, else -1
    input_encodings: list = field(default_factory=list)  # per input: None or {"one_hot": vocabulary size}
    output_types: list = field(default_factory=list)  # classes of the output's containers (gmnfx.output_structure)
    result: Any = None
    timings: dict = field(default_factory=dict)
    _block_table: Optional[torch.Tensor] = None

    def progress_iter(self, items: Iterable, desc: str) -> Iterable:
        if not self.progress:
            return items
        from tqdm.auto import tqdm

        return tqdm(items, desc=f"gmnfx {desc}", leave=False, file=sys.stderr)

    def block_table(self) -> torch.Tensor:
        """Per edge block: [edge_type, layer, *BlockAttrs.as_row()] as float32, [num_blocks, 2 + NUM_BLOCK_ATTRS]."""
        if self._block_table is None:
            rows = [[float(b.edge_type), float(b.layer), *b.attrs.as_row()] for b in self.neuron_graph.blocks]
            self._block_table = torch.tensor(rows, dtype=torch.float32).reshape(len(rows), 2 + NUM_BLOCK_ATTRS)
        return self._block_table


def passes_for(target: str) -> list[Callable]:
    """The passes that compile a model into a graph of kind ``target``."""
    return [
        trace,  # torch.fx symbolic trace (torch.export fallback) -> fx.GraphModule
        propagate_shapes,  # run example inputs: shapes and constants into node.meta
        lower_to_neurons,  # registry lowering rules -> neurons, channels, edge blocks
        build_computation_graph if target == "computation" else collapse_weight_sharing,
        encode_features,  # node_feat / edge_feat columns and the graph object
        validate,  # DAG, index ranges, parameter coverage and values
    ]


def run_pipeline(state: CompileState) -> CompileState:
    ran: list[str] = []
    for compiler_pass in passes_for(state.target):
        name = compiler_pass.__name__
        start = time.perf_counter()
        try:
            state = compiler_pass(state)
        except GmnfxError as exc:
            exc.add_note(f"gmnfx: raised in pass '{name}' (passes run before: {', '.join(ran) or 'none'})")
            raise
        except Exception as exc:  # noqa: BLE001 - internal failure: wrap with where it happened
            raise LoweringError(
                f"compiler pass '{name}' failed (passes run before: {', '.join(ran) or 'none'}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        state.timings[name] = time.perf_counter() - start
        if state.progress:
            print(f"gmnfx: {name} done in {state.timings[name]:.2f}s", file=sys.stderr)
        ran.append(name)
        if state.debug:
            check_invariants(state, name)
    return state

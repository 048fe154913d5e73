"""Edge-chunked recomputation: run per-edge work in chunks and keep none of its intermediates.

A GMN layer on a 25M-edge graph at hidden width 32 makes several [E, hidden]
tensors (3 GB each in fp32); autograd would keep most of them for backward.
:func:`run_edge_chunks` maps edges chunk by chunk under ``no_grad``
(``edge_fn``: the edge update), writes the new edge features into one
preallocated tensor, and reduces them into nodes or graphs (``reducers``:
messages into destinations, messages back into sources, per-graph sums).
Backward recomputes one chunk at a time and writes the edge-input gradients
into one preallocated tensor. A layer thus keeps only its edge input: its
output is kept by the next layer, and not even made when nothing reads it
(``keep_edges=False``, e.g. the last layer under a graph readout).

Chunks are ranges of nodes of a :class:`~gmnfx.kernels.Segments` grouping
(edges grouped by destination, or by source): every node's edges lie in one
chunk, so a chunk's reduction is exact for its nodes and zero elsewhere, and
summing chunks is exact for sum, mean and max aggregation alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional, Sequence

import torch

from gmnfx.kernels.segments import Segments

__all__ = ["EdgeChunk", "EdgeReducer", "plan_edge_chunks", "run_edge_chunks"]


@dataclass
class EdgeChunk:
    """The edges of the nodes ``[node_start, node_stop)`` of a grouping.

    A whole-graph chunk has ``edge_ids`` None: the edges in their own order, grouped through ``perm`` and
    ``rowptr`` (the :class:`Segments`). A partial chunk lists its edges in grouped order (``edge_ids`` [k]),
    so ``perm`` is None and ``rowptr`` [N + 1] is the chunk's own CSR over all N nodes (empty outside the range).
    """

    edge_ids: Optional[torch.Tensor]
    rowptr: torch.Tensor
    perm: Optional[torch.Tensor]
    node_start: int
    node_stop: int

    def take(self, values: torch.Tensor) -> torch.Tensor:
        return values if self.edge_ids is None else values.index_select(0, self.edge_ids)


def plan_edge_chunks(segments: Segments, chunk_size: Optional[int]) -> list[EdgeChunk]:
    """Split a grouping into chunks of about ``chunk_size`` edges at node boundaries (one chunk: None)."""
    rowptr, perm = segments
    num_nodes = rowptr.numel() - 1
    num_edges = int(rowptr[-1])
    if chunk_size is None or num_edges <= chunk_size:
        return [EdgeChunk(None, rowptr, perm, 0, num_nodes)]
    if chunk_size < 1:
        raise ValueError(f"edge_chunk_size must be a positive number of edges (got {chunk_size})")
    targets = torch.arange(chunk_size, num_edges, chunk_size, device=rowptr.device)
    cuts = torch.searchsorted(rowptr, targets, right=False).tolist()
    bounds = sorted({0, num_nodes, *cuts})
    order = perm if perm is not None else torch.arange(num_edges, device=rowptr.device)
    chunks = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        lo, hi = int(rowptr[start]), int(rowptr[stop])
        if hi == lo:
            continue
        local = (rowptr.clamp(lo, hi) - lo)
        chunks.append(EdgeChunk(order[lo:hi], local, None, start, stop))
    return chunks


EdgeFn = Callable[[EdgeChunk, list[torch.Tensor], list[torch.Tensor]], torch.Tensor]
ReduceFn = Callable[[EdgeChunk, torch.Tensor, list[torch.Tensor]], torch.Tensor]


class EdgeReducer(NamedTuple):
    """``fn(chunk, edge_out_chunk, node_inputs) -> [rows, k]``, summed over ``chunks``."""

    chunks: list[EdgeChunk]
    fn: ReduceFn


def _whole(chunks: list[EdgeChunk]) -> bool:
    return len(chunks) == 1 and chunks[0].edge_ids is None


def run_edge_chunks(edge_fn: EdgeFn, chunks: list[EdgeChunk], edge_inputs: Sequence[torch.Tensor],
                    node_inputs: Sequence[torch.Tensor], params: Sequence[torch.Tensor], num_edges: int, *,
                    reducers: Sequence[EdgeReducer] = (), keep_edges: bool = True):
    """Map edges with ``edge_fn(chunk, edge_input_chunks, node_inputs)`` and reduce the result with ``reducers``.

    Returns ``(edge_out, reduced)``: ``edge_out`` [E, ...] in edge order (None when ``keep_edges`` is False) and
    the list of each reducer's sum over its chunks. ``params`` are the parameters the functions read (they
    receive gradients). Without chunking (every chunk list is one whole-graph chunk) this runs directly under
    autograd, with nothing recomputed.
    """
    if _whole(chunks) and all(_whole(r.chunks) for r in reducers):
        edge_out = edge_fn(chunks[0], list(edge_inputs), list(node_inputs))
        reduced = [r.fn(r.chunks[0], edge_out, list(node_inputs)) for r in reducers]
        return (edge_out if keep_edges else None), reduced
    spec = _ChunkSpec(edge_fn, chunks, list(reducers), keep_edges, len(edge_inputs), len(node_inputs), num_edges)
    outputs = _EdgeChunksFunction.apply(spec, *edge_inputs, *node_inputs, *params)
    return (outputs[0] if keep_edges else None), list(outputs[1:])


class _ChunkSpec(NamedTuple):
    edge_fn: EdgeFn
    chunks: list[EdgeChunk]
    reducers: list[EdgeReducer]
    keep_edges: bool
    num_edge_inputs: int
    num_node_inputs: int
    num_edges: int


class _EdgeChunksFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spec: _ChunkSpec, *tensors):
        edge_inputs = tensors[:spec.num_edge_inputs]
        nodes = list(tensors[spec.num_edge_inputs:spec.num_edge_inputs + spec.num_node_inputs])
        main = [r.chunks is spec.chunks for r in spec.reducers]
        edge_out = None
        reduced: list[Optional[torch.Tensor]] = [None] * len(spec.reducers)

        def add(i, value):
            reduced[i] = value if reduced[i] is None else reduced[i].add_(value)

        with torch.no_grad():
            for chunk in spec.chunks:
                out = spec.edge_fn(chunk, [chunk.take(t) for t in edge_inputs], nodes)
                if spec.keep_edges:
                    if edge_out is None:
                        edge_out = out.new_zeros((spec.num_edges, *out.shape[1:]))
                    edge_out.index_copy_(0, chunk.edge_ids, out)
                for i, reducer in enumerate(spec.reducers):
                    if main[i]:
                        add(i, reducer.fn(chunk, out, nodes))
            for i, reducer in enumerate(spec.reducers):
                for chunk in ([] if main[i] else reducer.chunks):
                    out = (chunk.take(edge_out) if spec.keep_edges else
                           spec.edge_fn(chunk, [chunk.take(t) for t in edge_inputs], nodes))
                    add(i, reducer.fn(chunk, out, nodes))
        ctx.spec = spec
        ctx.save_for_backward(*tensors)
        ctx.set_materialize_grads(False)
        placeholder = tensors[0].new_empty(0) if edge_out is None else edge_out
        return (placeholder, *reduced)

    @staticmethod
    def backward(ctx, grad_edge_out, *grad_reduced):
        spec: _ChunkSpec = ctx.spec
        tensors = ctx.saved_tensors
        needs = ctx.needs_input_grad[1:]
        n_edge = spec.num_edge_inputs
        n_fixed = n_edge + spec.num_node_inputs
        grads: list[Optional[torch.Tensor]] = [None] * len(tensors)
        nodes = [t.detach().requires_grad_(n) for t, n in zip(tensors[n_edge:n_fixed], needs[n_edge:n_fixed])]
        params = list(tensors[n_fixed:])
        if not spec.keep_edges:
            grad_edge_out = None

        def backprop(chunk: EdgeChunk, with_edge_out: bool, reducers: list[int]) -> None:
            with torch.enable_grad():
                edges = [chunk.take(t).detach().requires_grad_(n) for t, n in zip(tensors[:n_edge], needs[:n_edge])]
                out = spec.edge_fn(chunk, edges, nodes)
                outs, grad_outs = [], []
                if with_edge_out and grad_edge_out is not None:
                    outs.append(out)
                    grad_outs.append(grad_edge_out.index_select(0, chunk.edge_ids))
                for i in reducers:
                    if grad_reduced[i] is not None:
                        outs.append(spec.reducers[i].fn(chunk, out, nodes))
                        grad_outs.append(grad_reduced[i])
            wrt = [t for t, n in zip([*edges, *nodes, *params], needs) if n]
            if not outs or not wrt:
                return
            chunk_grads = iter(torch.autograd.grad(outs, wrt, grad_outs, allow_unused=True))
            for i, needed in enumerate(needs):
                g = next(chunk_grads) if needed else None
                if g is None:
                    continue
                if i < n_edge:
                    if grads[i] is None:
                        grads[i] = torch.zeros_like(tensors[i])
                    grads[i].index_add_(0, chunk.edge_ids, g)
                else:
                    grads[i] = g if grads[i] is None else grads[i].add_(g)

        main = [i for i, r in enumerate(spec.reducers) if r.chunks is spec.chunks]
        for chunk in spec.chunks:
            backprop(chunk, True, main)
        for i, reducer in enumerate(spec.reducers):
            for chunk in ([] if i in main else reducer.chunks):
                backprop(chunk, False, [i])
        return (None, *grads)

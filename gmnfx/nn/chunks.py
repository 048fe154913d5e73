"""Edge-chunked recomputation: run per-edge work in chunks and keep none of its intermediates.

A GMN layer on a 25M-edge graph at hidden width 32 makes several [E, hidden]
tensors (3 GB each in fp32); autograd would keep most of them for backward.
:func:`run_edge_chunks` runs a function over chunks of edges under
``no_grad``, writes each chunk's edge output into one preallocated tensor and
sums the chunks' node outputs. Backward recomputes one chunk at a time and
writes the edge-input gradients into one preallocated tensor, so a layer
costs its input, its output and their gradients, whatever the chunk's
intermediates are.

Chunks are ranges of nodes of a :class:`~gmnfx.kernels.Segments` grouping
(edges grouped by destination, or by source): every node's edges lie in one
chunk, so a chunk's node output is exact for its nodes and zero elsewhere,
and summing chunks is exact for sum, mean and max aggregation alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from gmnfx.kernels.segments import Segments

__all__ = ["EdgeChunk", "plan_edge_chunks", "run_edge_chunks"]


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


ChunkFn = Callable[[EdgeChunk, Sequence[torch.Tensor], Sequence[torch.Tensor]],
                   tuple[Optional[torch.Tensor], Optional[torch.Tensor]]]


def run_edge_chunks(fn: ChunkFn, chunks: list[EdgeChunk], edge_inputs: Sequence[torch.Tensor],
                    node_inputs: Sequence[torch.Tensor], params: Sequence[torch.Tensor],
                    num_edges: int) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Apply ``fn(chunk, edge_input_chunks, node_inputs) -> (edge_out_chunk | None, node_out | None)`` per chunk.

    Returns the edge outputs scattered back to edge order ([E, ...]) and the sum of the node outputs.
    ``params`` are the parameters ``fn`` reads (they receive gradients); a single chunk runs ``fn`` directly
    under autograd, with nothing recomputed.
    """
    if len(chunks) == 1 and chunks[0].edge_ids is None:
        return fn(chunks[0], list(edge_inputs), list(node_inputs))
    tensors = (*edge_inputs, *node_inputs, *params)
    outputs = _EdgeChunksFunction.apply(fn, chunks, len(edge_inputs), len(node_inputs), num_edges, *tensors)
    edge_out, node_out = outputs
    return (edge_out if edge_out.numel() or num_edges == 0 else None,
            node_out if node_out.numel() else None)


class _EdgeChunksFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fn, chunks, num_edge_inputs, num_node_inputs, num_edges, *tensors):
        edge_inputs = tensors[:num_edge_inputs]
        node_inputs = tensors[num_edge_inputs:num_edge_inputs + num_node_inputs]
        edge_out = node_out = None
        with torch.no_grad():
            for chunk in chunks:
                e_out, n_out = fn(chunk, [chunk.take(t) for t in edge_inputs], list(node_inputs))
                if e_out is not None:
                    if edge_out is None:
                        edge_out = e_out.new_zeros((num_edges, *e_out.shape[1:]))
                    edge_out.index_copy_(0, chunk.edge_ids, e_out)
                if n_out is not None:
                    node_out = n_out if node_out is None else node_out.add_(n_out)
        ctx.fn, ctx.chunks = fn, chunks
        ctx.counts = (num_edge_inputs, num_node_inputs)
        ctx.save_for_backward(*tensors)
        empty = tensors[0].new_empty(0)
        return (edge_out if edge_out is not None else empty, node_out if node_out is not None else empty)

    @staticmethod
    def backward(ctx, grad_edge_out, grad_node_out):
        tensors = ctx.saved_tensors
        num_edge_inputs, num_node_inputs = ctx.counts
        needs = ctx.needs_input_grad[5:]
        grads: list[Optional[torch.Tensor]] = [None] * len(tensors)
        node_inputs = [t.detach().requires_grad_(n) for t, n in
                       zip(tensors[num_edge_inputs:num_edge_inputs + num_node_inputs],
                           needs[num_edge_inputs:num_edge_inputs + num_node_inputs])]
        params = tensors[num_edge_inputs + num_node_inputs:]
        for chunk in ctx.chunks:
            with torch.enable_grad():
                edge_chunks = [chunk.take(t).detach().requires_grad_(n)
                               for t, n in zip(tensors[:num_edge_inputs], needs[:num_edge_inputs])]
                e_out, n_out = ctx.fn(chunk, edge_chunks, node_inputs)
            outs, grad_outs = [], []
            if e_out is not None and grad_edge_out.numel():
                outs.append(e_out)
                grad_outs.append(grad_edge_out.index_select(0, chunk.edge_ids))
            if n_out is not None and grad_node_out.numel():
                outs.append(n_out)
                grad_outs.append(grad_node_out)
            wrt = [t for t, n in zip([*edge_chunks, *node_inputs, *params], needs) if n]
            if not outs or not wrt:
                continue
            chunk_grads = iter(torch.autograd.grad(outs, wrt, grad_outs, allow_unused=True))
            for i, needed in enumerate(needs):
                if not needed:
                    continue
                g = next(chunk_grads)
                if g is None:
                    continue
                if i < num_edge_inputs:
                    if grads[i] is None:
                        grads[i] = torch.zeros_like(tensors[i])
                    grads[i].index_copy_(0, chunk.edge_ids, g)
                else:
                    grads[i] = g if grads[i] is None else grads[i].add_(g)
        return (None, None, None, None, None, *grads)

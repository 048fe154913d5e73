"""Colour refinement (1-dimensional Weisfeiler-Leman) on a directed, edge-coloured graph.

Each round a node's new colour is its old colour together with the multiset of
(edge colour, direction, neighbour colour) around it; rounds stop when no
colour class splits. Multisets are summarized by sums of 64-bit mixed hashes, so
a collision can only leave the partition coarser, never make it depend on node
numbering: the result is invariant under every automorphism, which is all the
symmetry analysis relies on (its isomorphisms are checked exactly).
"""
from __future__ import annotations

import torch

from gmnfx.symmetry.colours import combine, ranks

__all__ = ["refine", "mix"]


def _signed(c: int) -> int:
    return c - (1 << 64) if c >= 1 << 63 else c


_C1, _C2 = _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB)
_IN, _OUT = _signed(0x9E3779B97F4A7C15), _signed(0xD6E8FEB86659FD93)


def mix(x: torch.Tensor) -> torch.Tensor:
    """A 64-bit mixing function on int64 tensors (wrapping arithmetic)."""
    x = x ^ (x >> 31)
    x = x * _C1
    x = x ^ (x >> 29)
    x = x * _C2
    return x ^ (x >> 32)


def refine(num_nodes: int, src: torch.Tensor, dst: torch.Tensor, ecol: torch.Tensor,
           colour: torch.Tensor) -> torch.Tensor:
    """The coarsest stable refinement of ``colour`` (dense ranks, ordered by the input colour first)."""
    colour = ranks(colour)
    if src.numel() == 0:
        return colour
    edge_in = mix(ecol + _IN)
    edge_out = mix(ecol + _OUT)
    count = int(colour.max()) + 1
    while True:
        h = mix(colour + 1)
        into = torch.zeros(num_nodes, dtype=torch.long).index_add_(0, dst, mix(h[src] ^ edge_in))
        out_of = torch.zeros(num_nodes, dtype=torch.long).index_add_(0, src, mix(h[dst] ^ edge_out))
        new = combine(colour, mix(into) ^ (out_of * _C1))
        new_count = int(new.max()) + 1
        if new_count == count:
            return colour
        colour, count = new, new_count

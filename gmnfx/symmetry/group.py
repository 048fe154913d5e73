"""Public entry points: the order of a graph's symmetry group, uniform samples, orbits."""
from __future__ import annotations

import math
import os
from typing import Optional

import torch

from gmnfx.symmetry.colours import ColouredGraph, coloured_graph
from gmnfx.symmetry.decompose import Decomposer, Part, _check_automorphism
from gmnfx.symmetry.refine import refine

__all__ = ["SymmetryStructure", "symmetry_structure", "group_order", "sample", "orbits"]


class SymmetryStructure:
    """The decomposed symmetry group of one parameter graph; reuse it to draw many samples.

    Attributes:
        order: exact order of the group (a Python int).
        num_nodes: number of graph nodes a sample permutes.
    """

    def __init__(self, coloured: ColouredGraph, part: Part, colour: torch.Tensor):
        self._coloured, self._part, self._colour = coloured, part, colour
        self.order: int = part.order
        self.num_nodes: int = coloured.num_real

    def sample(self, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """A uniformly random group element: LongTensor ``perm``, old node ``i`` becomes ``perm[i]``."""
        canon = self._part.canon
        full = torch.empty(self._coloured.num_nodes, dtype=torch.long)
        full[canon] = canon[self._part.sample_positions(generator)]
        if os.environ.get("GMNFX_DEBUG", "0") not in ("", "0"):  # the decomposition checked its isomorphisms
            g = self._coloured
            _check_automorphism(full, self._colour, g.src, g.dst, g.ecol)
        return full[: self.num_nodes].clone()

    def orbits(self) -> torch.Tensor:
        """Orbit id of every node (dense ids): nodes a symmetry can exchange share an id."""
        ids = torch.empty(self._coloured.num_nodes, dtype=torch.long)
        ids[self._part.canon] = self._part.orbit_ids()
        _, dense = torch.unique(ids[: self.num_nodes], return_inverse=True)
        return dense

    def __repr__(self) -> str:
        return f"SymmetryStructure(num_nodes={self.num_nodes}, order={_short(self.order)})"


def _short(n: int) -> str:
    """``n`` in full up to 12 digits, else as ``m.mmme+XX`` (str() of huge ints is refused by Python)."""
    if n < 10**12:
        return str(n)
    exponent = int(math.log10(n)) if n.bit_length() < 1000 else int((n.bit_length() - 1) * math.log10(2))
    while 10 ** (exponent + 1) <= n:
        exponent += 1
    while 10 ** exponent > n:
        exponent -= 1
    return f"{n // 10 ** (exponent - 3) / 1000:.3f}e+{exponent}"


def symmetry_structure(graph) -> SymmetryStructure:
    """Decompose the symmetry group of a ``ParameterGraph`` (see :mod:`gmnfx.symmetry`)."""
    _require_parameter_graph(graph, "symmetry_structure")
    coloured = coloured_graph(graph)
    colour = refine(coloured.num_nodes, coloured.src, coloured.dst, coloured.ecol, coloured.colour)
    part = Decomposer().analyze(colour, coloured.src, coloured.dst, coloured.ecol)
    return SymmetryStructure(coloured, part, colour)


def group_order(graph) -> int:
    """Exact order of the graph's symmetry group (a Python int; h1!...hk! for an MLP).

    Example:
        >>> import gmnfx, torch, torch.nn as nn
        >>> g = gmnfx.compile(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), torch.randn(1, 3))
        >>> group_order(g)
        24
    """
    return symmetry_structure(graph).order


def sample(graph, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A uniformly random symmetry: LongTensor ``perm`` with old node ``i`` becoming node ``perm[i]``."""
    return symmetry_structure(graph).sample(generator)


def orbits(graph) -> torch.Tensor:
    """Orbit id of every node: nodes that some symmetry exchanges share an id."""
    return symmetry_structure(graph).orbits()


def _require_parameter_graph(graph, what: str) -> None:
    kind = getattr(graph, "kind", None)
    if kind != "parameter":
        raise TypeError(f"{what}: expected a ParameterGraph (got {type(graph).__name__}); symmetries are "
                        f"defined on parameter graphs: compile with gmnfx.compile(model, x) (graph='parameter')")

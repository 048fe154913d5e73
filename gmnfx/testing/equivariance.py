"""Equivariance checks for functions of compiled graphs: compute the error, then assert."""
from __future__ import annotations

import torch

from gmnfx.symmetry.relabel import check_permutation, permute_graph

__all__ = ["equivariance_error", "assert_equivariant", "EQUIVARIANCE_TOLERANCE", "READOUTS"]

READOUTS = ("graph", "node", "edge")
EQUIVARIANCE_TOLERANCE = {torch.float16: 1e-2, torch.bfloat16: 5e-2, torch.float32: 1e-5, torch.float64: 1e-10}


def equivariance_error(fn, graph, perm, *, readout: str = "graph") -> float:
    """Max relative change of ``fn``'s output when the graph's nodes are relabelled by ``perm``.

    With ``g' = permute_graph(graph, perm)`` (node ``i`` becomes node ``perm[i]``),
    an invariant/equivariant ``fn`` satisfies, per readout:

    - ``"graph"``: ``fn(g') == fn(g)`` (invariance);
    - ``"node"``: ``fn(g')[perm] == fn(g)`` (row ``i`` moves to row ``perm[i]``);
    - ``"edge"``: ``fn(g') == fn(g)`` row by row (``permute_graph`` keeps the edge order).

    The difference is taken in float64 and divided by ``max(1, max|fn(g)|)``.

    Args:
        fn: callable taking a compiled graph and returning a tensor.
        graph: a ``ParameterGraph`` or ``ComputationGraph``.
        perm: LongTensor [num_nodes], a permutation of ``range(num_nodes)``.
        readout: ``"graph"``, ``"node"`` or ``"edge"`` (default ``"graph"``).

    Example:
        >>> equivariance_error(lambda g: g.node_feat.sum(0), g, torch.randperm(g.num_nodes))
        0.0
    """
    _check_readout(readout)
    perm = check_permutation(perm, graph.num_nodes)
    errors = _equivariance_errors(fn(graph), fn(permute_graph(graph, perm)), graph, perm, readout)
    return float(errors.max()) if errors.numel() else 0.0


def assert_equivariant(fn, graph, perms=None, *, readout: str = "graph", trials: int = 3, generator=None,
                       atol: float | None = None) -> None:
    """Assert ``equivariance_error(fn, graph, perm, readout=readout) <= atol`` for every permutation.

    Args:
        fn, graph, readout: as in :func:`equivariance_error`.
        perms: a permutation tensor [num_nodes], a list of them (or a [k, num_nodes] tensor);
            default None: ``trials`` uniformly random relabellings of all nodes.
        trials: number of random permutations when ``perms`` is None (default 3).
        generator: ``torch.Generator`` for the random permutations (default: the global RNG).
        atol: tolerance on the relative error; default from the dtype of ``fn(graph)``
            (``EQUIVARIANCE_TOLERANCE``: 1e-2 float16, 5e-2 bfloat16, 1e-5 float32, 1e-10 float64).

    Raises:
        AssertionError: naming the readout, the error, where it is largest and which permutation.
    """
    _check_readout(readout)
    perms = _permutation_list(perms, graph.num_nodes, trials, generator)
    out = fn(graph)
    tolerance = _default_tolerance(out) if atol is None else float(atol)
    for k, perm in enumerate(perms):
        perm = check_permutation(perm, graph.num_nodes, what=f"permutation #{k + 1}")
        errors = _equivariance_errors(out, fn(permute_graph(graph, perm)), graph, perm, readout)
        if errors.numel() and float(errors.max()) > tolerance:
            where = _error_location(errors, readout)
            raise AssertionError(
                f"fn is not equivariant ({readout} readout): max error {float(errors.max()):.1e} {where} "
                f"(tolerance {tolerance:.0e} for {out.dtype}) under permutation #{k + 1} of {len(perms)}")


def _check_readout(readout: str) -> None:
    if readout not in READOUTS:
        raise ValueError(f"readout: expected one of {', '.join(map(repr, READOUTS))} (got {readout!r})")


def _permutation_list(perms, num_nodes: int, trials: int, generator) -> list:
    """The permutations to test: the given one(s), or ``trials`` random ones."""
    if perms is None:
        if trials < 1:
            raise ValueError(f"trials: expected at least 1 random permutation (got {trials})")
        return [torch.randperm(num_nodes, generator=generator) for _ in range(trials)]
    if isinstance(perms, torch.Tensor) and perms.dim() == 1:
        return [perms]
    perms = list(perms)
    if not perms:
        raise ValueError("perms: expected at least one permutation (got an empty list); pass perms=None for random ones")
    return perms


def _default_tolerance(out: torch.Tensor) -> float:
    if out.dtype not in EQUIVARIANCE_TOLERANCE:
        raise ValueError(f"no default tolerance for outputs of dtype {out.dtype} (expected one of "
                         f"{', '.join(map(str, EQUIVARIANCE_TOLERANCE))}); pass atol=")
    return EQUIVARIANCE_TOLERANCE[out.dtype]


def _equivariance_errors(out, out_perm, graph, perm, readout: str) -> torch.Tensor:
    """Elementwise relative error [same shape as ``out``] between ``out`` and the aligned ``out_perm``."""
    out, out_perm = _as_float64(out, "fn(graph)"), _as_float64(out_perm, "fn(permuted graph)")
    if readout != "graph":
        rows = graph.num_nodes if readout == "node" else graph.num_edges
        for name, t in (("fn(graph)", out), ("fn(permuted graph)", out_perm)):
            if t.dim() == 0 or t.shape[0] != rows:
                raise ValueError(f"{readout} readout: expected {name} to have one row per {readout}, "
                                 f"{rows} rows (got shape {tuple(t.shape)})")
        if readout == "node":
            out_perm = out_perm[perm.to(out_perm.device)]
    if out.shape != out_perm.shape:
        raise ValueError(f"expected fn to return the same shape on both graphs "
                         f"(got {tuple(out.shape)} and {tuple(out_perm.shape)})")
    scale = max(1.0, float(out.abs().max())) if out.numel() else 1.0
    return (out - out_perm).abs() / scale


def _as_float64(t, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"expected {name} to be a tensor (got {type(t).__name__})")
    return t.detach().to(torch.float64)


def _error_location(errors: torch.Tensor, readout: str) -> str:
    """Where the largest error is: 'at node 5', 'at edge 3, column (1,)', 'at output index (0, 2)'."""
    if errors.dim() == 0:
        return "in the (scalar) output"
    index = tuple(int(i) for i in torch.unravel_index(errors.argmax(), errors.shape))
    if readout == "graph":
        return f"at output index {index}"
    rest = f", column {index[1:]}" if len(index) > 1 else ""
    return f"at {readout} {index[0]}{rest}"

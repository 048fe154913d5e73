"""Flat parameter indexing: ``flat_parameters``, ``write_parameters`` and ``functional_parameters``.

Parameter-graph edges point into ``flat_parameters(model)`` through
``edge_param``. :class:`ParamTable` maps every parameter (tied ones once) to
its offset in that vector and back to a readable name.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

import torch
import torch.nn as nn

from gmnfx.errors import GmnfxError, InputShapeError

__all__ = ["flat_parameters", "write_parameters", "functional_parameters", "check_model_matches", "ParamTable",
           "ParamEntry"]


def flat_parameters(model: nn.Module) -> torch.Tensor:
    """``torch.cat`` of ``model.parameters()`` flattened, in that order (tied parameters once).

    Example:
        >>> flat_parameters(nn.Linear(3, 2)).shape
        torch.Size([8])
    """
    params = [p.detach().reshape(-1) for p in model.parameters()]
    if not params:
        return torch.empty(0)
    return torch.cat(params)


@dataclass(frozen=True)
class ParamEntry:
    name: str
    offset: int
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


class ParamTable:
    """Offsets of a model's parameters in ``flat_parameters(model)``."""

    def __init__(self, model: nn.Module):
        self.entries: list[ParamEntry] = []
        self._by_id: dict[int, ParamEntry] = {}
        self._model = model
        offset = 0
        for name, p in model.named_parameters():  # deduplicates tied parameters, same order as parameters()
            entry = ParamEntry(name, offset, tuple(p.shape))
            self.entries.append(entry)
            self._by_id[id(p)] = entry
            offset += p.numel()
        self.num_parameters = offset
        self._offsets = [e.offset for e in self.entries]

    def entry_for(self, tensor: torch.Tensor) -> ParamEntry | None:
        return self._by_id.get(id(tensor))

    def entry_for_name(self, qualified_name: str) -> ParamEntry | None:
        try:
            return self.entry_for(self._model.get_parameter(qualified_name))
        except AttributeError:
            return None

    def index_tensor(self, entry: ParamEntry) -> torch.Tensor:
        """Flat indices of the entry's elements, in the parameter's shape."""
        return torch.arange(entry.offset, entry.offset + entry.numel, dtype=torch.long).view(entry.shape)

    def describe(self, flat_index: int) -> str:
        """``"name[i, j]"`` for a flat parameter index."""
        k = bisect.bisect_right(self._offsets, flat_index) - 1
        if k < 0 or flat_index >= self.num_parameters:
            return f"<flat index {flat_index}>"
        entry = self.entries[k]
        local = flat_index - entry.offset
        coords = []
        for size in reversed(entry.shape):
            coords.append(local % size)
            local //= size
        return f"{entry.name}[{', '.join(map(str, reversed(coords)))}]"

    def signature(self) -> list[list]:
        """``[[name, shape], ...]``: what a graph stores to recognize its model later."""
        return [[e.name, list(e.shape)] for e in self.entries]


def check_model_matches(model: nn.Module, graph, what: str) -> None:
    """Raise a GmnfxError naming the first parameter whose name or shape differs from the graph's model."""
    expected = graph.param_signature
    actual = ParamTable(model).signature()
    if expected and actual != expected:
        mismatch = next((i for i, (a, b) in enumerate(zip(actual, expected)) if a != b), min(len(actual), len(expected)))
        got = actual[mismatch] if mismatch < len(actual) else "nothing"
        want = expected[mismatch] if mismatch < len(expected) else "nothing"
        raise GmnfxError(
            f"{what}: the model does not match the graph: parameter #{mismatch} is {got} "
            f"but the graph was compiled from a model with {want}"
        )


@torch.no_grad()
def write_parameters(model: nn.Module, graph, edge_values: torch.Tensor) -> nn.Module:
    """Write one value per edge of ``graph`` back into ``model``'s parameters, in place.

    Edges with ``edge_param == -1`` are ignored. In a computation graph a
    parameter sits on several edges; it receives the mean of their values.
    Parameters on no edge keep their value. Returns ``model``.

    Args:
        model: the model ``graph`` was compiled from (same parameter names and shapes).
        graph: a ``ParameterGraph`` or ``ComputationGraph``.
        edge_values: tensor ``[num_edges]`` of new values.
    """
    edge_values = torch.as_tensor(edge_values)
    if edge_values.shape != (graph.num_edges,):
        raise InputShapeError(f"write_parameters: expected edge_values of shape ({graph.num_edges},) (got {tuple(edge_values.shape)})")
    check_model_matches(model, graph, "write_parameters")
    flat = flat_parameters(model).to("cpu", torch.float64)
    mask = graph.edge_param >= 0
    index = graph.edge_param[mask]
    values = edge_values.cpu()[mask].to(torch.float64)
    summed = torch.zeros_like(flat).index_add_(0, index, values)
    count = torch.zeros_like(flat).index_add_(0, index, torch.ones_like(values))
    written = count > 0
    flat[written] = summed[written] / count[written]
    offset = 0
    for p in model.parameters():
        n = p.numel()
        p.copy_(flat[offset : offset + n].view_as(p))  # copy_ casts to p's dtype and device
        offset += n
    return model


def functional_parameters(model: nn.Module, graph, edge_values: torch.Tensor) -> dict[str, torch.Tensor]:
    """The parameters ``model`` would hold after writing ``edge_values`` into it, as a differentiable dict.

    The out-of-place, autograd- and ``vmap``-friendly counterpart of :func:`write_parameters`: every
    parameter with an owning edge (``graph.edge_param >= 0``) takes that edge's value (the mean of its edges
    in a computation graph), every other one keeps the model's value; ``model`` is not modified. Leading
    dimensions of ``edge_values`` are batch dimensions (many edits of one architecture at once) and lead
    every returned tensor. Values take ``edge_values``' dtype and device.

    Args:
        model: the model ``graph`` was compiled from (same parameter names and shapes).
        graph: a ``ParameterGraph`` or ``ComputationGraph``.
        edge_values: ``[..., num_edges]`` new edge values, e.g. ``graph.edge_weight + delta``.

    Returns:
        ``{name: tensor [..., *shape]}`` for every parameter (tied ones once), in ``model.named_parameters()``
        order: ``torch.func.functional_call(model, functional_parameters(model, graph, v), x)`` runs the edited
        model (``torch.vmap`` over the leading dimension for a batch of edits).

    Example:
        >>> import gmnfx
        >>> model = nn.Linear(3, 2)
        >>> graph = gmnfx.compile(model, torch.zeros(1, 3))
        >>> p = functional_parameters(model, graph, graph.edge_weight + 1.0)
        >>> torch.allclose(p["bias"], model.bias + 1.0)
        True
    """
    if not isinstance(edge_values, torch.Tensor):
        raise TypeError(f"functional_parameters: expected edge_values to be a tensor (got "
                        f"{type(edge_values).__name__}); pass e.g. graph.edge_weight + delta")
    if not hasattr(graph, "edge_param") or not hasattr(graph, "param_signature"):
        raise TypeError(f"functional_parameters: expected a ParameterGraph or ComputationGraph from gmnfx.compile "
                        f"(got {type(graph).__name__}); for a GraphBatch pass one graph of it")
    if edge_values.dim() < 1 or edge_values.shape[-1] != graph.num_edges:
        raise InputShapeError(
            f"functional_parameters: expected edge_values of shape (..., {graph.num_edges}), one value per edge of "
            f"the graph (got {tuple(edge_values.shape)}); edges come in the order of graph.edge_index")
    check_model_matches(model, graph, "functional_parameters")
    table = ParamTable(model)
    lead = edge_values.shape[:-1]
    mask = graph.edge_param >= 0
    index = graph.edge_param[mask].to(edge_values.device)
    flat_shape = (*lead, table.num_parameters)
    summed = edge_values.new_zeros(flat_shape).index_add(-1, index, edge_values[..., mask.to(edge_values.device)])
    count = torch.zeros(table.num_parameters, dtype=edge_values.dtype, device=edge_values.device)
    count = count.index_add(0, index, torch.ones_like(index, dtype=edge_values.dtype))
    own = [p.reshape(-1) for p in model.parameters()]
    own_flat = torch.cat(own).to(edge_values) if own else edge_values.new_zeros(0)
    flat = torch.where(count > 0, summed / count.clamp_min(1), own_flat)
    return {e.name: flat[..., e.offset:e.offset + e.numel].reshape(*lead, *e.shape) for e in table.entries}

"""Typed values the compiler passes attach to torch.fx nodes.

Every pass stores what it learns about a node in ``node.meta`` under a
``"gmnfx.<key>"`` name (see the ``META_*`` constants), never as attributes.

The central idea: a tensor that flows through the traced network is described
by an integer tensor of the same per-sample shape holding, for every element,
the id of the computation-graph neuron that produces it (:class:`Neurons`).
Parameters are described the same way by indices into
``gmnfx.flat_parameters(model)`` (:class:`Params`). Reshapes, permutes,
slicing and concatenation are then "neuron bookkeeping": the same op applied
to the id tensor.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import torch

__all__ = [
    "META_MODULE_PATH",
    "META_TENSOR",
    "META_VALUE",
    "META_LAYER",
    "META_FUSED",
    "TensorInfo",
    "Neurons",
    "Params",
    "Constant",
    "Value",
]

META_MODULE_PATH = "gmnfx.module_path"  # str: qualified name of the module the node runs in
META_TENSOR = "gmnfx.tensor"  # TensorInfo (or a tuple of them) from shape propagation
META_VALUE = "gmnfx.value"  # Value (or a tuple of them) from neuron-level lowering
META_LAYER = "gmnfx.layer"  # int: layer index assigned to a node that created neurons
META_FUSED = "gmnfx.fused"  # True on an activation node fused into the neurons that produce its input


@dataclass(frozen=True)
class TensorInfo:
    """Shape and dtype of a traced tensor, with the example run's batch dimension."""

    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape without the leading batch dimension."""
        return self.shape[1:]


@dataclass
class Neurons:
    """A batched activation: ``ids[p]`` is the neuron producing element ``p`` of every sample.

    ``fusable`` is True when ``ids`` are fresh SUM neurons with identity
    activation that no other value reads, so a following activation function
    may be fused into them instead of adding a layer of neurons.

    ``merged`` is True when the batch dim is merged with the first per-sample
    dim: the traced tensor is ``[batch * k, *ids.shape[1:]]`` (``ids`` is
    ``[k, ...]``) with sample ``b`` in rows ``b*k .. b*k + k - 1``, as
    ``x.view(-1, D)`` on ``[batch, k, D]`` gives. Only row-wise rules accept
    such values (see :func:`gmnfx.context.accept_merged_batch`).
    """

    ids: torch.Tensor
    fusable: bool = False
    merged: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.ids.shape)


@dataclass
class Params:
    """A (view of a) parameter: ``index[p]`` is the flat-parameter index of element ``p``."""

    index: torch.Tensor
    name: str

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.index.shape)


@dataclass
class Constant:
    """A value that depends on neither the network input nor its parameters."""

    value: Any


Value = Union[Neurons, Params, Constant, tuple, list]

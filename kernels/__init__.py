"""Graph Metanetwork kernels, installed as ``gmnfx.kernels``: a Triton path and a pure-torch path per op.

Ops (``N`` nodes, ``E`` edges ``src[e] -> dst[e]``, hidden width ``H``):

* ``gather_add_act(a, index_a, b, index_b, c, activation)`` -> ``[E, H]``: the edge update
  ``act(a[index_a[e]] + b[index_b[e]] + c[e])``;
* ``gather_act_reduce(a, index_a, c, rowptr, perm, reduce, activation)`` -> ``[S, H]``: messages
  ``act(a[index_a[e]] + c[e])`` reduced (sum / mean / max) over CSR segments of edges, never materialized on the
  Triton path;
* ``segment_reduce(values, rowptr, perm, reduce)`` -> ``[S, H]``: a plain CSR reduction (deterministic
  scatter-sums, graph pooling);
* ``segments_of(index, S)`` -> ``Segments(rowptr, perm)``: the CSR grouping the ops take.

``GMNFX_BACKEND`` (``torch`` / ``triton`` / unset = Triton for CUDA tensors when installed) picks the path at
call time, see ``resolve_backend``. Each op's ``*_reference`` is its specification in pure torch.

Example:
    >>> import torch
    >>> from gmnfx.kernels import gather_act_reduce, segments_of
    >>> src, dst = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 1])
    >>> h = torch.randn(3, 4)
    >>> gather_act_reduce(h, src, None, *segments_of(dst, 3), reduce="max").shape
    torch.Size([3, 4])
"""
from .backend import BACKEND_ENV, resolve_backend, triton_available
from .gather_act_reduce import gather_act_reduce, gather_act_reduce_reference
from .gather_add_act import gather_add_act, gather_add_act_reference
from .segment_reduce import segment_reduce, segment_reduce_reference
from .segments import Segments, segments_of

__all__ = [
    "BACKEND_ENV",
    "Segments",
    "gather_act_reduce",
    "gather_act_reduce_reference",
    "gather_add_act",
    "gather_add_act_reference",
    "resolve_backend",
    "segment_reduce",
    "segment_reduce_reference",
    "segments_of",
    "triton_available",
]

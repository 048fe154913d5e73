"""CSR segments: positions grouped by an index value (e.g. edges grouped by destination node).

``segments_of(index, S)`` returns ``Segments(rowptr, perm)``: segment ``s`` holds the positions
``perm[rowptr[s]:rowptr[s + 1]]`` (or ``rowptr[s]:rowptr[s + 1]`` themselves when ``perm`` is ``None``), in
increasing order, i.e. every ``m`` with ``index[m] == s``. Build it once per graph and pass it to every layer.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

__all__ = ["Segments", "segments_of"]


class Segments(NamedTuple):
    """Positions grouped by index value, in CSR form.

    Shapes:
        rowptr: ``[S + 1]`` int64, ``rowptr[0] == 0``, non-decreasing; segment ``s`` is ``rowptr[s]:rowptr[s+1]``.
        perm: ``[M]`` int64 positions in segment order, or ``None`` when the positions are already in order.
    """

    rowptr: Tensor
    perm: Optional[Tensor]

    @property
    def num_segments(self) -> int:
        return self.rowptr.numel() - 1


def check_index(index: Tensor, name: str = "index") -> None:
    """Check that ``index`` is a 1-D integer tensor (no data read, no host sync)."""
    if not isinstance(index, Tensor):
        raise TypeError(f"expected {name} to be a torch.Tensor (got {type(index).__name__})")
    if index.dim() != 1 or index.is_floating_point() or index.is_complex() or index.dtype == torch.bool:
        raise ValueError(
            f"expected {name} to be a 1-D integer tensor (got shape {tuple(index.shape)}, dtype {index.dtype})"
        )


def check_index_range(index: Tensor, size: int, name: str = "index") -> None:
    """Check ``0 <= index < size`` (reads the data: a host sync on CUDA)."""
    if index.numel() == 0:
        return
    low, high = int(index.min()), int(index.max())
    if low < 0 or high >= size:
        raise ValueError(f"expected {name} values in [0, {size}) (got values in [{low}, {high}])")


def segments_of(index: Tensor, num_segments: int) -> Segments:
    """Group the positions ``0..M-1`` by ``index[m]`` into ``num_segments`` CSR segments.

    ``perm`` is the stable argsort of ``index`` (``None`` when ``index`` is already sorted) and
    ``rowptr = [0, cumsum(bincount(index, minlength=num_segments))]``.

    Args:
        index: ``[M]`` integer tensor with values in ``[0, num_segments)``.
        num_segments: the number of segments ``S`` (segments no position falls in are empty).

    Example:
        >>> segments_of(torch.tensor([2, 0, 2]), 4)
        Segments(rowptr=tensor([0, 1, 1, 3, 3]), perm=tensor([1, 0, 2]))
    """
    check_index(index)
    if isinstance(num_segments, bool) or not isinstance(num_segments, int) or num_segments < 0:
        raise ValueError(f"expected num_segments to be an int >= 0 (got {num_segments!r})")
    check_index_range(index, num_segments)
    return _segments_of(index, num_segments)


def _segments_of(index: Tensor, num_segments: int) -> Segments:
    """``segments_of`` without the checks (for backward passes, whose indices were checked already)."""
    index = index.long()
    counts = torch.bincount(index, minlength=num_segments)
    rowptr = torch.zeros(num_segments + 1, dtype=torch.long, device=index.device)
    torch.cumsum(counts, 0, out=rowptr[1:])
    is_sorted = index.numel() < 2 or bool((index[1:] >= index[:-1]).all())
    perm = None if is_sorted else torch.sort(index, stable=True).indices
    return Segments(rowptr, perm)

"""Which implementation runs a kernel op: the pure-torch reference or the Triton kernels.

``GMNFX_BACKEND`` is read at call time:

* ``torch``: always the torch reference (any device, any float dtype, float64 gradcheck);
* ``triton``: always the Triton kernels (CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``);
* unset or empty: Triton when every tensor is on CUDA and triton is installed, else torch.

float64 inputs always take the torch path: the kernels support float32, float16 and bfloat16 and accumulate
in float32.

Triton is optional: without it this module exports ``triton = tl = None`` and a no-op ``jit`` so the kernel
modules still import (their kernels are then never launched).
"""
from __future__ import annotations

import os
from typing import Optional

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # the torch path works without triton
    triton = None
    tl = None

__all__ = ["BACKEND_ENV", "BACKENDS", "TRITON_DTYPES", "resolve_backend", "triton_available"]

BACKEND_ENV = "GMNFX_BACKEND"
BACKENDS = ("torch", "triton")
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
INTERPRET_ENV = "TRITON_INTERPRET"
DEBUG_ENV = "GMNFX_DEBUG"


def jit(fn):
    """``triton.jit`` when triton is installed; otherwise leave the (never launched) kernel a plain function."""
    return triton.jit(fn) if triton is not None else fn


def triton_available() -> bool:
    """Whether ``import triton`` succeeded."""
    return triton is not None


def triton_interpreting() -> bool:
    """Whether ``TRITON_INTERPRET`` is on (triton reads it when a kernel is defined, i.e. at import)."""
    return os.environ.get(INTERPRET_ENV, "").strip().lower() in ("1", "true", "on")


def debug_checks_enabled() -> bool:
    """Whether ``GMNFX_DEBUG`` asks for the O(E) index-range checks (a host sync) on every call."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def resolve_backend(*tensors: Optional[torch.Tensor]) -> str:
    """Return ``"torch"`` or ``"triton"`` for an op called on ``tensors`` (``None`` entries are ignored).

    Raises:
        ValueError: ``GMNFX_BACKEND`` holds something other than ``torch``, ``triton`` or nothing.
        RuntimeError: ``GMNFX_BACKEND=triton`` but triton is not installed, or the tensors are on the CPU
            without the Triton interpreter.
    """
    choice = os.environ.get(BACKEND_ENV, "").strip()
    if choice not in ("",) + BACKENDS:
        raise ValueError(
            f"expected {BACKEND_ENV} to be one of {', '.join(repr(b) for b in BACKENDS)} or unset "
            f"(got {choice!r}); set e.g. {BACKEND_ENV}=torch"
        )
    present = [t for t in tensors if t is not None]
    if choice == "torch" or any(t.dtype == torch.float64 for t in present):
        return "torch"
    if choice == "":
        on_cuda = bool(present) and all(t.is_cuda for t in present)
        return "triton" if on_cuda and triton_available() else "torch"
    if not triton_available():
        raise RuntimeError(
            f"{BACKEND_ENV}=triton but triton is not installed; `pip install triton` "
            f"(or unset {BACKEND_ENV} / set {BACKEND_ENV}=torch for the torch path)"
        )
    if not all(t.is_cuda for t in present) and not triton_interpreting():
        devices = sorted({str(t.device) for t in present})
        raise RuntimeError(
            f"{BACKEND_ENV}=triton expected CUDA tensors or the Triton interpreter (got tensors on "
            f"{', '.join(devices)} and {INTERPRET_ENV} unset); set {INTERPRET_ENV}=1 before importing triton "
            f"(before importing gmnfx.kernels), or use {BACKEND_ENV}=torch"
        )
    return "triton"


def check_features(x: Tensor, name: str, *, rows: Optional[int] = None, cols: Optional[int] = None,
                   like: Optional[Tensor] = None) -> None:
    """Check that ``x`` is a 2-D floating tensor ``[rows, cols]`` with ``like``'s dtype and device."""
    if not isinstance(x, Tensor):
        raise TypeError(f"expected {name} to be a torch.Tensor (got {type(x).__name__})")
    if x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f"expected {name} to be a 2-D floating tensor (got shape {tuple(x.shape)}, dtype {x.dtype})")
    if rows is not None and x.shape[0] != rows:
        raise ValueError(f"expected {name} to have {rows} rows (got shape {tuple(x.shape)})")
    if cols is not None and x.shape[1] != cols:
        raise ValueError(f"expected {name} to have {cols} columns (got shape {tuple(x.shape)})")
    if like is not None and x.dtype != like.dtype:
        raise ValueError(f"expected {name} to have dtype {like.dtype} (got {x.dtype}); cast the inputs to one dtype")


def check_same_device(**tensors: Optional[Tensor]) -> None:
    """Check that the given tensors (``None`` skipped) share one device."""
    present = {name: t.device for name, t in tensors.items() if t is not None}
    if len(set(present.values())) > 1:
        got = ", ".join(f"{name} on {device}" for name, device in present.items())
        raise ValueError(f"expected all tensors on one device (got {got})")


def check_choice(value: str, name: str, choices: tuple[str, ...]) -> None:
    """Check that ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"expected {name} to be one of {', '.join(repr(c) for c in choices)} (got {value!r})")

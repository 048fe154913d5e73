"""Shared helpers of the kernel tests: the dtype table, a verbose allclose and the Triton-vs-reference check."""
from __future__ import annotations

from typing import Callable, Optional

import pytest
import torch
from torch import Tensor

from gmnfx.kernels import resolve_backend, triton_available

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# (dtype, atol, rtol) of the Triton path against the float32 reference run on the same (rounded) inputs.
# The interpreter mishandles bfloat16 (numpy has none), so bfloat16 is only checked on CUDA.
DTYPES = [(torch.float32, 1e-5, 1e-5), (torch.float16, 2e-2, 1e-2)]
if DEVICE == "cuda":
    DTYPES.append((torch.bfloat16, 1e-1, 2e-2))
DTYPE_PARAMS = [pytest.param(*row, id=str(row[0]).removeprefix("torch.")) for row in DTYPES]


def triton_runnable() -> tuple[bool, str]:
    """Whether the Triton kernels can run here, and why not."""
    if not triton_available():
        return False, "triton is not installed"
    if DEVICE == "cuda":
        return True, ""
    from gmnfx.kernels.segment_reduce import _segment_reduce_fwd_kernel

    if type(_segment_reduce_fwd_kernel).__name__ != "InterpretedFunction":
        return False, "no CUDA and the kernels were not built by the interpreter (set TRITON_INTERPRET=1 first)"
    return True, ""


def assert_close(actual: Optional[Tensor], expected: Optional[Tensor], *, atol: float, rtol: float,
                 name: str = "tensor") -> None:
    """``allclose`` that says how many elements differ, and the worst one's index and values."""
    if actual is None or expected is None:  # autograd's None is a zero gradient
        actual = torch.zeros_like(expected) if actual is None else actual
        expected = torch.zeros_like(actual) if expected is None else expected
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != expected {tuple(expected.shape)}"
    got, want = actual.detach().double().cpu(), expected.detach().double().cpu()
    error = (got - want).abs()
    bad = ~(error <= atol + rtol * want.abs()) & ~(got.isnan() & want.isnan())
    if bad.any():
        flat = torch.where(bad.flatten(), error.flatten().nan_to_num(float("inf")), -1.0).argmax()
        index = tuple(int(i) for i in torch.unravel_index(flat, got.shape))
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {bad.numel()} elements differ beyond atol={atol}, rtol={rtol}; "
            f"worst at {index}: got {got[index].item():.6g}, expected {want[index].item():.6g} "
            f"(abs error {error[index].item():.3g})"
        )


def random_edges(num_nodes: int, num_edges: int, *, sort_dst: bool = False, device=DEVICE) -> tuple[Tensor, Tensor]:
    """``(src, dst)`` int64 edge lists, ``dst`` sorted when ``sort_dst``."""
    if num_nodes == 0:
        assert num_edges == 0
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty.clone()
    src = torch.randint(0, num_nodes, (num_edges,), device=device)
    dst = torch.randint(0, num_nodes, (num_edges,), device=device)
    return src, dst.sort().values if sort_dst else dst


def check_against_reference(op: Callable[..., Tensor], reference: Callable[..., Tensor], inputs: dict[str, Tensor],
                            dtype: torch.dtype, atol: float, rtol: float, *, backend: str = "triton") -> Tensor:
    """Run ``op`` on ``inputs`` cast to ``dtype`` and ``reference`` on float32 copies of the same values; compare
    the outputs and the gradient of every input for one random output gradient. Returns ``op``'s output."""
    low = {k: v.to(dtype).detach().requires_grad_() for k, v in inputs.items()}
    high = {k: v.detach().float().requires_grad_() for k, v in low.items()}
    assert resolve_backend(*low.values()) == backend
    out, expected = op(**low), reference(**high)
    assert out.dtype == dtype
    assert_close(out, expected, atol=atol, rtol=rtol, name="output")
    grad = torch.randn_like(expected).to(dtype)
    out.backward(grad)
    expected.backward(grad.float())
    for k in inputs:
        assert_close(low[k].grad, high[k].grad, atol=atol, rtol=rtol, name=f"gradient of {k}")
    return out


def triton_gradients(op: Callable[..., Tensor], inputs: dict[str, Tensor]) -> dict[str, Tensor]:
    """The gradients of ``op``'s inputs for a fixed output gradient (for determinism checks)."""
    leaves = {k: v.detach().clone().requires_grad_() for k, v in inputs.items()}
    out = op(**leaves)
    out.backward(torch.linspace(-1, 1, out.numel(), device=out.device).reshape(out.shape).to(out.dtype))
    return {k: v.grad for k, v in leaves.items()}

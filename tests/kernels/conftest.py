"""Kernel test fixtures: the backend under test and the device; puts ``kernel_checks`` on ``sys.path``."""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))

from kernel_checks import DEVICE, triton_runnable  # noqa: E402


@pytest.fixture
def device() -> torch.device:
    """CUDA when present (the compiled kernels), else the CPU (the Triton interpreter / torch path)."""
    return torch.device(DEVICE)


@pytest.fixture
def triton_backend(monkeypatch):
    """``GMNFX_BACKEND=triton``; fails when the kernels cannot run here (no triton, or CPU without interpreter):
    triton is a test dependency, and tests/conftest.py turns the interpreter on when there is no GPU."""
    runnable, why = triton_runnable()
    if not runnable:
        pytest.fail(f"the Triton kernels cannot run here: {why}; install the test extras (pip install -e '.[test]')")
    monkeypatch.setenv("GMNFX_BACKEND", "triton")


@pytest.fixture
def torch_backend(monkeypatch):
    """``GMNFX_BACKEND=torch``: the pure-torch reference path."""
    monkeypatch.setenv("GMNFX_BACKEND", "torch")

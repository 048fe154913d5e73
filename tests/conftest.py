"""Shared fixtures: seeded RNG, invariant checks on for every compile in the tests."""
from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():  # before anything imports triton: the kernel tests run Triton's CPU interpreter
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("GMNFX_DEBUG", "1")  # check IR invariants after every pass


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield

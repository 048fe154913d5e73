"""Shared fixtures: seeded RNG, invariant checks on for every compile in the tests."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("GMNFX_DEBUG", "1")  # check IR invariants after every pass


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield

"""Compiler equivalence properties on drawn architectures: compile, run both, compare."""
from __future__ import annotations

from hypothesis import given, note

from gmnfx.testing import check_compiles

from strategies import any_architecture


@given(arch=any_architecture())
def test_compile_is_exact_and_simulate_matches_forward(arch):
    note(arch.description)
    pg, cg = check_compiles(arch.model, arch.example, arch.second, rtol=arch.rtol)
    note(pg.summary())

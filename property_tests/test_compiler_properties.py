"""Compiler equivalence properties on drawn architectures: compile, run both, compare."""
from __future__ import annotations

from hypothesis import given, note
from hypothesis import strategies as st

from gmnfx.testing import check_compiles

from strategies import conv_architectures, mlp_architectures, residual_cnn_architectures, sequence_architectures
from strategies import attention_architectures, deepsets_architectures, grid_sample_architectures


@given(arch=st.one_of(mlp_architectures(), conv_architectures(), residual_cnn_architectures(), sequence_architectures(),
                      deepsets_architectures(), grid_sample_architectures(),
                      attention_architectures()))
def test_compile_is_exact_and_simulate_matches_forward(arch):
    note(arch.description)
    pg, cg = check_compiles(arch.model, arch.example, arch.second)
    note(pg.summary())

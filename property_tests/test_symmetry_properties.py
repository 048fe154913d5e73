"""Symmetry properties on drawn architectures: sampled symmetries keep the function, compile commutes with
permuting, and group_order agrees with exhaustive VF2 enumeration on graphs small enough to enumerate."""
from __future__ import annotations

from hypothesis import given, note, settings
from hypothesis import strategies as st

import gmnfx
from gmnfx.symmetry import group_order, symmetry_structure
from gmnfx.testing import assert_symmetries_preserve_function, brute_force_group_order

from strategies import any_architecture, attention_architectures, conv_architectures, deepsets_architectures
from strategies import mlp_architectures, residual_cnn_architectures, sequence_architectures, tied_architectures

# architectures whose parameter graphs stay within what VF2 enumerates in about a second
SMALL_ARCHITECTURES = st.one_of(
    mlp_architectures(max_layers=3, max_width=3),
    conv_architectures(max_blocks=2, max_channels=3, dims=(1, 2)),
    residual_cnn_architectures(max_blocks=2, max_channels=3),
    sequence_architectures(max_layers=2, max_tokens=2, max_features=3),
    deepsets_architectures(max_layers=2, max_set_size=3, max_features=3),
    attention_architectures(max_heads=2, max_head_dim=2, max_tokens=2),
    tied_architectures(max_width=3, max_vocab=4),
)
_ORACLE_EXAMPLES = max(5, settings.default.max_examples // 3)  # VF2 is the slow part: a third of the profile


@given(arch=any_architecture())
def test_sampled_symmetries_keep_the_function_and_commute_with_compile(arch):
    note(arch.description)
    graph = gmnfx.compile(arch.model, arch.example)
    note(f"{graph.summary()}\n  group order {symmetry_structure(graph).order}")
    assert_symmetries_preserve_function(arch.model, arch.example, samples=2, graph=graph, rtol=1e-4)


@settings(max_examples=_ORACLE_EXAMPLES)
@given(arch=SMALL_ARCHITECTURES)
def test_group_order_matches_vf2_enumeration(arch):
    note(arch.description)
    graph = gmnfx.compile(arch.model, arch.example)
    note(graph.summary())
    assert group_order(graph) == brute_force_group_order(graph, max_nodes=80, limit=100_000)

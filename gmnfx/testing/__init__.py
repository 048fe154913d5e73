"""Reusable checks for lowering rules: what every rule must satisfy.

``check_compiles(model, example, second_input)`` compiles both graphs and
asserts exact parameter coverage and values, DAG-ness, the write-back round
trip, and ``simulate == forward`` on a different input. Use it in the tests
of any lowering rule you add.

``equivariance_error(fn, graph, perm)`` / ``assert_equivariant(fn, graph)``
check that a function of a compiled graph (a metanetwork, a feature
extractor) does not depend on how the graph's nodes are numbered.
``brute_force_group_order(graph)`` counts a small parameter graph's
automorphisms by VF2 search: the test oracle for ``gmnfx.symmetry``.
"""
from __future__ import annotations

from gmnfx.testing.compile_checks import check_compiles, default_test_inputs, simulation_error
from gmnfx.testing.equivariance import EQUIVARIANCE_TOLERANCE, assert_equivariant, equivariance_error
from gmnfx.testing.oracle import brute_force_group_order
from gmnfx.testing.symmetry_checks import assert_graphs_equal, assert_symmetries_preserve_function, symmetry_error

__all__ = ["check_compiles", "simulation_error", "default_test_inputs", "equivariance_error",
           "assert_equivariant", "brute_force_group_order", "EQUIVARIANCE_TOLERANCE",
           "assert_graphs_equal", "symmetry_error", "assert_symmetries_preserve_function"]

"""Hypothesis settings profiles, chosen with HYPOTHESIS_PROFILE=dev|ci|nightly (default: dev).

dev: a quick look while editing; ci: deterministic (derandomize) and sized so that property_tests/ runs in
about five minutes on a 2-core machine with room for the symmetry properties; nightly: thorough and random.
A falsifying example prints the drawn Architecture as its description (``Architecture.__repr__``), the notes
add the graph summary, and print_blob gives the line that replays it.
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

os.environ.setdefault("GMNFX_DEBUG", "1")

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.register_profile("dev", max_examples=10, **_COMMON)
settings.register_profile("ci", max_examples=350, derandomize=True, **_COMMON)
settings.register_profile("nightly", max_examples=1500, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

"""Hypothesis settings profiles, chosen with HYPOTHESIS_PROFILE=dev|ci|nightly (default: dev)."""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

os.environ.setdefault("GMNFX_DEBUG", "1")

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.register_profile("dev", max_examples=10, **_COMMON)
settings.register_profile("ci", max_examples=25, derandomize=True, **_COMMON)
settings.register_profile("nightly", max_examples=500, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

"""The README's Python snippets and the public docstring examples run as written."""
from __future__ import annotations

import doctest
import importlib
import os
import re

import pytest

import gmnfx.api
import gmnfx.params
import gmnfx.kernels
import gmnfx.symmetry.group

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")


def test_readme_python_snippets_run_in_order(tmp_path, monkeypatch):
    with open(README) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)  # the API snippet saves a file
    namespace: dict = {}
    try:
        for block in blocks:
            exec(compile(block, README, "exec"), namespace)
    finally:
        from gmnfx import registry

        for target in [t for t in registry._LOWERINGS if getattr(t, "__name__", "") == "FeatureAffine"]:
            registry._LOWERINGS.pop(target)


# the kernel modules share their names with the functions gmnfx.kernels exports: import them by name
KERNEL_MODULES = [importlib.import_module(f"gmnfx.kernels.{op}")
                  for op in ("gather_act_reduce", "gather_add_act", "segment_reduce")]


@pytest.mark.parametrize("module", [gmnfx.api, gmnfx.params, gmnfx.symmetry.group, gmnfx.kernels, *KERNEL_MODULES],
                         ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, extraglobs={"nn": __import__("torch").nn}, verbose=False)
    assert result.attempted > 0 and result.failed == 0

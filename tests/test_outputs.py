"""Model outputs in the model's own structure: dataclasses, NamedTuples, dict subclasses, nesting."""
from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from typing import NamedTuple, Optional

import pytest
import torch
import torch.nn as nn

import gmnfx
from gmnfx.testing import check_compiles


@dataclasses.dataclass
class HeadOutput:
    logits: torch.Tensor
    hidden: Optional[torch.Tensor] = None


class Pair(NamedTuple):
    first: torch.Tensor
    second: torch.Tensor


class Outputs(OrderedDict):
    """An OrderedDict subclass, as model libraries return."""


@dataclasses.dataclass
class LibraryOutput(OrderedDict):
    """Like HuggingFace's ModelOutput: a dataclass that is also an OrderedDict of its non-None fields."""

    logits: Optional[torch.Tensor] = None
    hidden: Optional[torch.Tensor] = None

    def __post_init__(self):
        for field in dataclasses.fields(self):
            if getattr(self, field.name) is not None:
                self[field.name] = getattr(self, field.name)


class Net(nn.Module):
    def __init__(self, wrap):
        super().__init__()
        self.body = nn.Linear(3, 4)
        self.head = nn.Linear(4, 2)
        self.wrap = wrap

    def forward(self, x):
        h = torch.relu(self.body(x))
        return self.wrap(self.head(h), h)


def _same(a, b) -> None:
    assert type(a) is type(b), f"{type(a).__name__} != {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    elif dataclasses.is_dataclass(a):
        for field in dataclasses.fields(a):
            _same(getattr(a, field.name), getattr(b, field.name))
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            _same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    else:
        assert a == b


WRAPS = {
    "dataclass": lambda logits, h: HeadOutput(logits, h),
    "dataclass_with_none": lambda logits, h: HeadOutput(logits),
    "namedtuple": lambda logits, h: Pair(logits, second=h),
    "ordered_dict_subclass": lambda logits, h: Outputs(logits=logits, hidden=h),
    "ordered_dict": lambda logits, h: OrderedDict(hidden=h, logits=logits),
    "library_output": lambda logits, h: LibraryOutput(logits=logits),
    "nested": lambda logits, h: {"out": HeadOutput(logits, h), "pairs": (Pair(h, h), [logits])},
}


@pytest.mark.parametrize("kind", list(WRAPS))
def test_simulate_returns_the_models_output_structure(kind):
    model = Net(WRAPS[kind])
    _, cg = check_compiles(model, torch.randn(2, 3))
    x = torch.randn(5, 3)
    _same(model(x), gmnfx.simulate(cg, x))


def test_export_frontend_keeps_the_output_structure():
    model = Net(lambda logits, h: {"logits": logits, "rest": (h, Pair(h, logits))})
    _, cg = check_compiles(model, torch.randn(2, 3), frontend="export")
    x = torch.randn(4, 3)
    _same(model(x), gmnfx.simulate(cg, x))


def test_output_types_are_json_and_name_each_class():
    cg = gmnfx.compile(Net(WRAPS["nested"]), torch.randn(2, 3), graph="computation")
    assert json.loads(json.dumps(cg.output_types)) == cg.output_types
    assert cg.output_types == [
        {"path": ["out"], "kind": "dataclass", "type": f"{__name__}:HeadOutput", "fields": ["logits", "hidden"]},
        {"path": ["pairs", 0], "kind": "namedtuple", "type": f"{__name__}:Pair", "fields": ["first", "second"]},
    ]
    json.loads(cg.output_spec)


def test_classes_survive_save_and_load(tmp_path):
    model = Net(WRAPS["nested"])
    gmnfx.compile(model, torch.randn(2, 3), graph="computation").save(tmp_path / "g.safetensors")
    loaded = gmnfx.load_graph(tmp_path / "g.safetensors")
    x = torch.randn(3, 3)
    _same(model(x), gmnfx.simulate(loaded, x))


def test_class_that_cannot_be_found_comes_back_as_a_dict():
    @dataclasses.dataclass
    class Local:  # not reachable by name from its module
        logits: torch.Tensor
        hidden: Optional[torch.Tensor] = None

    model = Net(lambda logits, h: Local(logits))
    _, cg = check_compiles(model, torch.randn(2, 3))
    out = gmnfx.simulate(cg, torch.randn(4, 3))
    assert type(out) is dict and list(out) == ["logits", "hidden"] and out["hidden"] is None
    cg.output_types[0]["type"] = "a_module_nobody_imported:HeadOutput"
    assert type(gmnfx.simulate(cg, torch.randn(4, 3))) is dict


def test_output_field_that_is_not_an_activation_is_rejected():
    model = Net(lambda logits, h: HeadOutput(logits, torch.ones(2)))
    with pytest.raises(gmnfx.LoweringError, match="not an activation"):
        gmnfx.compile(model, torch.randn(2, 3))

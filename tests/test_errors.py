"""Every failure a user can cause gets a gmnfx exception that says what, where and how to fix it."""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn as nn

import gmnfx
from gmnfx.registry import register_lowering


class DataDependent(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # depends on the values: neither frontend can capture it
            return x * 2
        return x


class Wrapper(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.block = DataDependent()

    def forward(self, x):
        return self.block(self.fc(x))


def test_untraceable_model_names_module_and_both_frontends():
    with pytest.raises(gmnfx.UntraceableModuleError) as info:
        gmnfx.compile(Wrapper(), torch.randn(2, 3))
    message = str(info.value)
    assert "module 'block'" in message
    assert "torch.fx symbolic tracing failed" in message
    assert "torch.export failed" in message
    assert "Fix:" in message


def test_untraceable_model_without_inputs_asks_for_them():
    with pytest.raises(gmnfx.MissingExampleInputsError, match="example inputs"):
        gmnfx.compile(Wrapper())


class Unsupported(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        return torch.cumsum(self.fc(x), dim=1)  # the offending line


def test_unsupported_op_names_op_module_source_line_and_fix():
    with pytest.raises(gmnfx.UnsupportedOpError) as info:
        gmnfx.compile(Unsupported(), torch.randn(2, 3))
    message = str(info.value)
    assert "cumsum" in message
    assert "module: '<root>'" in message
    assert "test_errors.py" in message and "the offending line" in message
    assert "register_lowering" in message


def test_unsupported_module_is_named_with_its_path():
    model = nn.Sequential(nn.Conv2d(4, 8, 1), nn.PixelShuffle(2))
    with pytest.raises(gmnfx.UnsupportedOpError) as info:
        gmnfx.compile(model, torch.randn(1, 4, 3, 3))
    assert "pixel_shuffle" in str(info.value)
    assert "module: '1'" in str(info.value)


def test_unused_parameter_cannot_be_placed():
    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)
            self.spare = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(x)

    with pytest.raises(gmnfx.ParameterPlacementError) as info:
        gmnfx.compile(Unused())
    assert "spare.weight (6 of 6 values)" in str(info.value)
    assert "spare.bias" in str(info.value)


def test_missing_example_inputs_for_a_conv_model():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(1, 3, 8, 8))
    with pytest.raises(gmnfx.MissingExampleInputsError) as info:
        gmnfx.compile(model)
    assert "--input-shape" in str(info.value) and "example_inputs" in str(info.value)


def test_wrong_input_shape_names_the_failing_module():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    with pytest.raises(gmnfx.InputShapeError) as info:
        gmnfx.compile(model, torch.randn(1, 5, 8, 8))
    message = str(info.value)
    assert "module '0'" in message
    assert "expected input[1, 5, 8, 8] to have 3 channels" in message


def test_example_input_without_batch_dimension():
    with pytest.raises(gmnfx.InputShapeError, match="leading batch dimension"):
        gmnfx.compile(nn.Linear(3, 2), torch.tensor(1.0))


def test_simulate_checks_input_shapes():
    graph = gmnfx.compile(nn.Linear(3, 2), torch.randn(1, 3), graph="computation")
    with pytest.raises(gmnfx.InputShapeError, match=re.escape("expected input 0 of shape [batch, 3] (got [4, 5])")):
        gmnfx.simulate(graph, torch.randn(4, 5))
    with pytest.raises(TypeError, match="ComputationGraph"):
        gmnfx.simulate(gmnfx.compile(nn.Linear(3, 2)), torch.randn(4, 3))


def test_bad_compile_arguments():
    with pytest.raises(ValueError, match="graph must be one of"):
        gmnfx.compile(nn.Linear(3, 2), graph="neurons")
    with pytest.raises(TypeError, match="expected an nn.Module"):
        gmnfx.compile(lambda x: x)
    with pytest.raises(TypeError, match="example_inputs must be a tensor or a tuple"):
        gmnfx.compile(nn.Linear(3, 2), {"x": torch.randn(1, 3)})


def test_uninitialized_lazy_module():
    with pytest.raises(gmnfx.GmnfxError, match="not initialized"):
        gmnfx.compile(nn.Sequential(nn.LazyLinear(3)), torch.randn(1, 4))


class Broken(nn.Module):
    def forward(self, x):
        return x + 1


def test_failure_inside_a_lowering_rule_is_wrapped_with_rule_and_node():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(x)

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.custom = Custom()

        def forward(self, x):
            return self.custom(x)

    @register_lowering(Custom)
    def lower_custom(ctx, node):
        raise KeyError("oops")

    with pytest.raises(gmnfx.LoweringError) as info:
        gmnfx.compile(Outer(), torch.randn(1, 2))
    message = str(info.value)
    assert "lower_custom failed: KeyError" in message
    assert "module 'custom'" in message


def test_duplicate_rule_registration_is_refused():
    with pytest.raises(gmnfx.RegistryError, match="already registered"):
        @register_lowering(nn.Linear)
        def another_linear(ctx, node):  # pragma: no cover - never called
            return None

    with pytest.raises(gmnfx.RegistryError, match="method"):
        register_lowering("view")

"""The lowering-rule registry, and the README's worked example of adding a rule."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import gmnfx
from gmnfx.lowering import EdgeType, Neurons, PairEdges, lookup_lowering, method, register_lowering
from gmnfx.testing import check_compiles


class FeatureAffine(nn.Module):
    """y = shift + x * scale, written with an op gmnfx has no rule for (addcmul)."""

    def __init__(self, n: int):
        super().__init__()
        self.scale = nn.Parameter(torch.rand(n) + 0.5)
        self.shift = nn.Parameter(torch.randn(n))

    def forward(self, x):
        return torch.addcmul(self.shift, x, self.scale)


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), FeatureAffine(4), nn.ReLU(), nn.Linear(4, 2))


def test_unregistered_layer_fails_with_instructions():
    with pytest.raises(gmnfx.UnsupportedOpError, match="addcmul"):
        gmnfx.compile(_model())


def test_worked_example_rule_makes_the_layer_compile_exactly():
    @register_lowering(FeatureAffine)
    def lower_feature_affine(ctx, node):
        (x,) = ctx.bind(node, "input")
        x = ctx.neurons(x)
        m = ctx.module()
        scale, shift = ctx.module_param(m, "scale"), ctx.module_param(m, "shift")
        bias = ctx.graph.new_bias_node(ctx.layer)
        out = ctx.graph.new_neurons(x.shape, layer=ctx.layer, channel_dim=-1)
        ctx.graph.add_block(PairEdges(x.ids, out, EdgeType.SCALE, ctx.layer, ctx.source(), param=scale.index))
        ctx.graph.add_block(PairEdges(bias, out, EdgeType.BIAS, ctx.layer, ctx.source(), param=shift.index))
        return Neurons(out, fusable=True)

    try:
        pg, _ = check_compiles(_model(), torch.randn(2, 3))
        assert int((pg.edge_type == EdgeType.SCALE).sum()) == 4
        assert "feature_affine" in [layer["kind"] for layer in pg.layers]
    finally:
        from gmnfx import registry

        registry._LOWERINGS.pop(FeatureAffine)


def test_subclass_without_own_forward_inherits_the_rule():
    class MyLinear(nn.Linear):
        pass

    class MyOtherLinear(nn.Linear):
        def forward(self, x):
            return super().forward(x) * 2

    assert lookup_lowering(MyLinear) is lookup_lowering(nn.Linear)
    assert lookup_lowering(MyOtherLinear) is None
    check_compiles(nn.Sequential(MyLinear(3, 2)), torch.randn(2, 3))
    check_compiles(nn.Sequential(MyOtherLinear(3, 2)), torch.randn(2, 3))  # traced through instead


def test_method_keys_are_distinct_from_functions():
    assert lookup_lowering(method("view")) is not None
    assert method("view") == method("view") and method("view") != method("reshape")


def test_rules_survive_torch_geometric_replacing_torch_functions():
    """Importing torch_geometric swaps torch.index_select for a wrapper; its rule must still apply."""
    import torch_geometric  # noqa: F401

    from gmnfx.registry import lookup_lowering

    assert lookup_lowering(torch.index_select) is not None

    class Select(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return torch.index_select(self.fc(x), 1, torch.tensor([2, 0]))

    check_compiles(Select(), torch.randn(2, 4), frontend="fx")

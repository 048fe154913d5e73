"""The example model factories compile and satisfy everything gmnfx promises."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import gmnfx
from gmnfx import examples
from gmnfx.testing import check_compiles

# small spatial sizes keep the computation graphs (one node per position) small
CASES = [
    (examples.mlp, (2, 16), (10,)),
    (examples.small_cnn, (2, 3, 8, 8), (10,)),
    (examples.resnet_tiny, (2, 3, 8, 8), (10,)),
]


@pytest.mark.parametrize("factory, shape, out_shape", CASES, ids=lambda c: getattr(c, "__name__", None))
def test_example_compiles(factory, shape, out_shape):
    model = factory()
    assert isinstance(model, nn.Module) and not model.training
    pg, cg = check_compiles(model, torch.randn(*shape))
    assert pg.output_shapes == [out_shape] and cg.output_shapes == [out_shape]
    assert pg.num_parameters == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("factory", [examples.mlp, examples.small_cnn, examples.resnet_tiny])
def test_example_is_deterministic(factory):
    a, b = factory(), factory()
    assert torch.equal(gmnfx.flat_parameters(a), gmnfx.flat_parameters(b))
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


def test_documented_input_shape():
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert examples.small_cnn()(x).shape == (2, 10)
        assert examples.resnet_tiny()(x).shape == (2, 10)
        assert examples.mlp()(torch.randn(2, 16)).shape == (2, 10)


def test_resnet_tiny_has_projection_shortcut_and_group_norm():
    model = examples.resnet_tiny()
    kinds = {type(m) for m in model.modules()}
    assert {nn.GroupNorm, nn.BatchNorm2d, nn.AdaptiveAvgPool2d, nn.Linear} <= kinds
    blocks = [m for m in model.modules() if isinstance(m, examples.BasicBlock)]
    assert len(blocks) == 3
    projections = [b.shortcut for b in blocks if isinstance(b.shortcut, nn.Sequential)]
    assert len(projections) == 1 and projections[0][0].stride == (2, 2) and projections[0][0].kernel_size == (1, 1)


def test_mlp_compiles_without_example_inputs():
    graph = gmnfx.compile(examples.mlp())
    assert graph.input_shapes == [(16,)]

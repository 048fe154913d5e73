"""The two frontends: torch.fx symbolic tracing and the torch.export fallback lower to the same graphs."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import gmnfx
from gmnfx.examples import resnet_tiny, small_cnn
from gmnfx.schema import EdgeType
from gmnfx.testing import check_compiles


class EveryFamily(nn.Module):
    """One of everything the core lowers, in a single network."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False)
        self.gn = nn.GroupNorm(2, 4)
        self.inorm = nn.InstanceNorm2d(4, affine=True)
        self.scale = nn.Parameter(torch.rand(4, 1, 1))
        self.conv1d = nn.Conv1d(4, 4, 2, dilation=2)
        self.ln = nn.LayerNorm(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        h = F.relu(self.bn(self.conv(x)))
        h = h + self.scale * F.silu(self.gn(self.dw(h)))
        h = F.max_pool2d(self.inorm(h), 2)
        h = F.avg_pool2d(h, 2, ceil_mode=True)
        h = torch.tanh(self.conv1d(h.flatten(2)))
        h = F.leaky_relu(h.mean(dim=2), 0.1)
        return self.fc(F.gelu(self.ln(h)))


MODELS = {
    "every_family": (EveryFamily, (2, 3, 8, 8)),
    "small_cnn": (small_cnn, (2, 3, 8, 8)),
    "resnet_tiny": (resnet_tiny, (2, 3, 8, 8)),
    "mlp": (lambda: nn.Sequential(nn.Linear(5, 4), nn.ReLU6(), nn.Dropout(0.1), nn.Linear(4, 2)), (2, 5)),
}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("frontend", ["fx", "export"])
def test_each_frontend_compiles_exactly(name, frontend):
    factory, shape = MODELS[name]
    torch.manual_seed(0)
    pg, cg = check_compiles(factory().eval(), torch.randn(*shape), frontend=frontend)
    assert pg.frontend == cg.frontend == frontend


@pytest.mark.parametrize("name", MODELS)
def test_frontends_agree_on_the_parameter_graph(name):
    factory, shape = MODELS[name]
    torch.manual_seed(0)
    model = factory().eval()
    x = torch.randn(*shape)
    by_fx = gmnfx.compile(model, x, frontend="fx")
    by_export = gmnfx.compile(model, x, frontend="export")
    assert by_fx.num_nodes == by_export.num_nodes
    assert torch.equal(torch.bincount(by_fx.edge_type, minlength=len(EdgeType)),
                       torch.bincount(by_export.edge_type, minlength=len(EdgeType)))
    assert torch.equal(torch.sort(by_fx.edge_param).values, torch.sort(by_export.edge_param).values)


def test_export_is_used_only_when_fx_fails():
    class ShapeBranch(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(x) if x.dim() == 2 else self.fc(x.flatten(1))

    assert gmnfx.compile(nn.Linear(3, 2)).frontend == "fx"
    assert gmnfx.compile(ShapeBranch(), torch.randn(1, 3)).frontend == "export"
    with pytest.raises(gmnfx.UntraceableModuleError, match="frontend='fx'"):
        gmnfx.compile(ShapeBranch(), torch.randn(1, 3), frontend="fx")
    with pytest.raises(ValueError, match="frontend must be one of"):
        gmnfx.compile(nn.Linear(3, 2), frontend="jit")

"""Lowering of normalization layers: BatchNorm (eval), LayerNorm, GroupNorm, InstanceNorm."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import gmnfx
from gmnfx.schema import EdgeType, NodeCol, NodeOp
from gmnfx.testing import check_compiles


def _randomize(model: nn.Module) -> nn.Module:
    """Non-trivial affine parameters and running statistics, so mistakes show."""
    for m in model.modules():
        if getattr(m, "weight", None) is not None and m.weight.dim() == 1:
            nn.init.uniform_(m.weight, 0.5, 1.5)
        if getattr(m, "bias", None) is not None and m.bias.dim() == 1:
            nn.init.uniform_(m.bias, -0.5, 0.5)
        if getattr(m, "running_mean", None) is not None:
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _conv_then(norm: nn.Module, channels: int = 4, dims: int = 2) -> nn.Module:
    conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[dims - 1](3, channels, 3, padding=1)
    return nn.Sequential(conv, norm, nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))


def _example(dims: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, *([5] * dims))


def _materialize(model: nn.Module, x: torch.Tensor) -> nn.Module:
    model(x)  # initialize lazy layers
    return _randomize(model)


@pytest.mark.parametrize("dims,norm", [
    (1, nn.BatchNorm1d(4)), (2, nn.BatchNorm2d(4)), (3, nn.BatchNorm3d(4)),
    (2, nn.BatchNorm2d(4, affine=False)),
])
def test_batch_norm_eval_compiles_exactly(dims, norm):
    x = _example(dims)
    model = _materialize(_conv_then(norm, dims=dims), x)
    pg, _ = check_compiles(model, x)
    bn = pg.node_feat[:, NodeCol.OP] == NodeOp.BATCHNORM
    assert int(bn.sum()) == 4
    assert torch.allclose(pg.node_feat[bn, NodeCol.NORM_MEAN], norm.running_mean)
    assert torch.allclose(pg.node_feat[bn, NodeCol.NORM_VAR], norm.running_var)


def test_batch_norm1d_on_features():
    model = _randomize(nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.GELU(), nn.Linear(5, 2)))
    check_compiles(model, torch.randn(2, 3))


@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_over_features(affine):
    model = _randomize(nn.Sequential(nn.Linear(3, 6), nn.LayerNorm(6, elementwise_affine=affine), nn.Linear(6, 2)))
    pg, _ = check_compiles(model, torch.randn(2, 3))
    stats = pg.node_feat[:, NodeCol.OP] == NodeOp.STATS
    assert int(stats.sum()) == 1  # one statistics node for the layer's single group
    assert int((pg.edge_type == EdgeType.SCALE).sum()) == (6 if affine else 0)


def test_layer_norm_over_a_feature_map_keeps_per_position_gammas():
    model = _randomize(nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.LayerNorm([2, 5, 5]), nn.Flatten(), nn.Linear(50, 2)))
    pg, _ = check_compiles(model, _example(2))
    assert int((pg.edge_type == EdgeType.SCALE).sum()) == 50


def test_layer_norm_over_tokens_has_one_statistics_neuron_per_token():
    model = _randomize(nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 3)))
    pg, cg = check_compiles(model, torch.randn(2, 5, 4))
    assert int((cg.node_feat[:, NodeCol.OP] == NodeOp.STATS).sum()) == 5
    assert int((pg.node_feat[:, NodeCol.OP] == NodeOp.STATS).sum()) == 1


@pytest.mark.parametrize("groups,channels", [(1, 4), (2, 4), (4, 4), (3, 6)])
@pytest.mark.parametrize("affine", [True, False])
def test_group_norm_groups_are_visible(groups, channels, affine):
    x = _example(2)
    model = _materialize(_conv_then(nn.GroupNorm(groups, channels, affine=affine), channels), x)
    pg, _ = check_compiles(model, x)
    stats = torch.nonzero(pg.node_feat[:, NodeCol.OP] == NodeOp.STATS).squeeze(1)
    assert stats.numel() == groups
    # each statistics node is fed by exactly the channels of its group
    member = pg.edge_type == EdgeType.NORM_STATS_IN
    feeders = [set(pg.edge_index[0, member & (pg.edge_index[1] == s)].tolist()) for s in stats]
    assert all(len(f) == channels // groups for f in feeders)
    assert len(set().union(*feeders)) == channels


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("affine", [True, False])
def test_instance_norm(dims, affine):
    norm = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)[dims - 1](4, affine=affine)
    x = _example(dims)
    model = _materialize(_conv_then(norm, dims=dims), x)
    pg, _ = check_compiles(model, x)
    assert int((pg.node_feat[:, NodeCol.OP] == NodeOp.STATS).sum()) == 4


def test_instance_norm_with_running_stats_uses_them_in_eval():
    x = _example(2)
    model = _materialize(_conv_then(nn.InstanceNorm2d(4, affine=True, track_running_stats=True)), x)
    pg, _ = check_compiles(model, x)
    assert int((pg.node_feat[:, NodeCol.OP] == NodeOp.BATCHNORM).sum()) == 4


class FunctionalNorms(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.g = nn.Parameter(torch.rand(4) + 0.5)
        self.b = nn.Parameter(torch.rand(4))
        self.register_buffer("mean", torch.randn(4))
        self.register_buffer("var", torch.rand(4) + 0.5)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        h = self.conv(x)
        h = F.batch_norm(h, self.mean, self.var, self.g, self.b, training=False, eps=1e-3)
        h = F.group_norm(h, 2, eps=1e-4)
        h = F.layer_norm(h.mean(dim=(2, 3)), (4,))
        return self.fc(h)


def test_functional_norms():
    check_compiles(FunctionalNorms(), _example(2))


def test_batch_norm_in_training_semantics_is_rejected():
    class TrainStats(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 4)

        def forward(self, x):
            return F.batch_norm(self.fc(x), None, None, training=True)

    with pytest.raises(gmnfx.GmnfxError, match="running stat"):
        gmnfx.compile(TrainStats(), torch.randn(2, 3))


def test_compile_restores_training_mode():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 2)).train()
    gmnfx.compile(model)
    assert model.training and model[1].training

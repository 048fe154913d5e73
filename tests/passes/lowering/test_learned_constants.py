"""Learned constants joined to activations (class and register tokens), and buffers that stay constants."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import gmnfx
from gmnfx.neuron_graph import NeuronGraph
from gmnfx.params import ParamTable
from gmnfx.schema import Activation, EdgeType, NodeCol, NodeOp, NodeType
from gmnfx.testing import check_compiles

D, T, P = 4, 3, 6


class ClassToken(nn.Module):
    """ViT-style: patch features, a class token (and register tokens) joined to the sequence, a block, a head."""

    def __init__(self, registers: int = 0, activate_patches: bool = False, cls: bool = True):
        super().__init__()
        self.patch = nn.Linear(P, D)
        self.cls_token = nn.Parameter(torch.randn(1, 1, D)) if cls else None
        self.registers = nn.Parameter(torch.randn(1, registers, D)) if registers else None
        self.pos = nn.Parameter(torch.randn(1, int(cls) + T + registers, D))
        self.norm = nn.LayerNorm(D)
        self.mlp = nn.Linear(D, D)
        self.head = nn.Linear(D, 2)
        self.activate_patches = activate_patches

    def forward(self, x):
        h = self.patch(x)
        if self.activate_patches:
            h = torch.relu(h)
        parts = [h] if self.cls_token is None else [self.cls_token.expand(x.shape[0], -1, -1), h]
        if self.registers is not None:
            parts.append(self.registers.expand(x.shape[0], -1, -1))
        h = torch.cat(parts, dim=1) + self.pos
        h = h + self.mlp(self.norm(h))
        return self.head(h[:, 0])


def _edges_of(graph, model, tensor):
    """Parameter-graph edges carrying ``tensor`` (a parameter of ``model``), in the parameter's element order."""
    entry = ParamTable(model).entry_for(tensor)
    carried = (graph.edge_param >= entry.offset) & (graph.edge_param < entry.offset + entry.numel)
    index = torch.nonzero(carried).squeeze(1)
    return index[torch.argsort(graph.edge_param[index])]


@pytest.mark.parametrize("frontend", ["fx", "export"])
def test_class_token_joins_the_feature_channels_of_the_sequence(frontend):
    model = ClassToken()
    pg, _ = check_compiles(model, torch.randn(2, T, P), frontend=frontend)
    cls_edges = _edges_of(pg, model, model.cls_token)
    assert bool((pg.edge_type[cls_edges] == EdgeType.BIAS).all())
    src, dst = pg.edge_index[:, cls_edges]
    patch_dst = pg.edge_index[1, _edges_of(pg, model, model.patch.weight)].view(D, P)[:, 0]
    assert torch.equal(dst, patch_dst)  # class-token value d feeds the node of patch feature d
    assert src.unique().numel() == 1 and int(pg.node_type[src[0]]) == NodeType.BIAS
    assert int(src[0]) < int(dst.min())  # the constant is numbered before the channels it feeds
    without = gmnfx.compile(ClassToken(cls=False), torch.randn(2, T, P), frontend=frontend)
    assert pg.num_nodes == without.num_nodes + 1  # just the constant: no new feature nodes


def test_register_tokens_after_the_sequence_share_the_feature_channels():
    model = ClassToken(registers=2)
    pg, _ = check_compiles(model, torch.randn(2, T, P))
    patch_dst = pg.edge_index[1, _edges_of(pg, model, model.patch.weight)].view(D, P)[:, 0]
    reg_dst = pg.edge_index[1, _edges_of(pg, model, model.registers)].view(2, D)
    assert torch.equal(reg_dst, patch_dst.expand(2, D))


def test_stacked_learned_token():
    class Stacked(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(P, D)
            self.token = nn.Parameter(torch.randn(D))
            self.out = nn.Linear(D, 1)

        def forward(self, x):
            token = self.token.expand(x.shape[0], D)
            return self.out(torch.stack([self.fc(x), token], dim=1))

    for frontend in ("fx", "export"):
        check_compiles(Stacked(), torch.randn(3, P), frontend=frontend)


def test_constant_joining_activated_channels_joins_plain_copies_of_them():
    model = ClassToken(activate_patches=True)
    pg, _ = check_compiles(model, torch.randn(2, T, P))
    dst = pg.edge_index[1, _edges_of(pg, model, model.cls_token)]
    patch = pg.edge_index[1, _edges_of(pg, model, model.patch.weight)].view(D, P)[:, 0]
    assert not set(dst.tolist()) & set(patch.tolist())  # joining relu channels would apply relu to the token
    skip = {(int(s), int(d)) for s, d in pg.edge_index[:, pg.edge_type == EdgeType.SKIP].T}
    assert all((int(p), int(c)) in skip for p, c in zip(patch, dst))  # feature d's copy holds token value d
    assert bool((pg.node_feat[dst, NodeCol.OP] == NodeOp.SUM).all())
    assert bool((pg.node_feat[dst, NodeCol.ACTIVATION] == Activation.IDENTITY).all())


def test_class_token_joined_to_the_network_input():
    class InputToken(nn.Module):
        def __init__(self):
            super().__init__()
            self.cls_token = nn.Parameter(torch.randn(1, 1, P))
            self.fc = nn.Linear(P, 2)

        def forward(self, x):
            return self.fc(torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1))

    for frontend in ("fx", "export"):
        pg, _ = check_compiles(InputToken(), torch.randn(2, T, P), frontend=frontend)
        assert int((pg.node_type == NodeType.INPUT).sum()) == P


def test_constant_concatenated_along_the_feature_dim_gets_channels_of_its_own():
    class FeatureCat(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(P, D)
            self.extra = nn.Parameter(torch.randn(1, 1, 2))
            self.out = nn.Linear(D + 2, 1)

        def forward(self, x):
            extra = self.extra.expand(x.shape[0], x.shape[1], -1)
            return self.out(torch.cat([self.fc(x), extra], dim=-1))

    model = FeatureCat()
    pg, _ = check_compiles(model, torch.randn(2, T, P))
    dst = pg.edge_index[1, _edges_of(pg, model, model.extra)]
    assert dst.unique().numel() == 2  # one node per value, shared by all positions
    out_src = pg.edge_index[0, _edges_of(pg, model, model.out.weight)]
    assert set(dst.tolist()) <= set(out_src.tolist())


@pytest.mark.parametrize("batch", [1, 2])
def test_constant_buffer_joined_to_a_sequence_is_on_fixed_weight_edges(batch):
    class PadToken(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(P, D)
            self.register_buffer("pad", torch.zeros(1, 1, D))  # zeros: not mistaken for neuron ids
            self.register_buffer("flags", torch.tensor([1.0, -1.0]))
            self.out = nn.Linear(D + 2, 1)

        def forward(self, x):
            h = torch.cat([self.pad.expand(x.shape[0], -1, -1), self.fc(x)], dim=1)
            flags = self.flags.expand(x.shape[0], T + 1, 2)
            return self.out(torch.cat([h, flags], dim=-1))

    model = PadToken()
    pg, _ = check_compiles(model, torch.randn(batch, T, P))
    patch = pg.edge_index[1, _edges_of(pg, model, model.fc.weight)].view(D, P)[:, 0]
    fixed = (pg.edge_type == EdgeType.BIAS) & (pg.edge_param < 0)
    into_patch = fixed & torch.isin(pg.edge_index[1], patch)
    assert int(into_patch.sum()) == D and bool((pg.edge_weight[into_patch] == 0).all())
    flag_nodes = pg.edge_index[1, fixed & ~into_patch]
    assert flag_nodes.unique().numel() == 2  # one node per flag value, shared by the T + 1 positions


def test_parameter_that_differs_per_sample_is_rejected():
    class PerSample(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(P, D)
            self.tokens = nn.Parameter(torch.randn(2, 1, D))  # one token per example sample

        def forward(self, x):
            return torch.cat([self.tokens, self.fc(x)], dim=1)

    with pytest.raises(gmnfx.LoweringError, match="expanded over the batch"):
        gmnfx.compile(PerSample(), torch.randn(2, T, P))


def test_constant_joined_along_the_batch_dim_is_rejected():
    class BatchCat(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(P, D)
            self.row = nn.Parameter(torch.randn(1, D))

        def forward(self, x):
            return torch.cat([self.row, self.fc(x)], dim=0)

    with pytest.raises(gmnfx.LoweringError, match="batch"):
        gmnfx.compile(BatchCat(), torch.randn(1, P))


def test_new_neurons_can_join_existing_channels():
    graph = NeuronGraph()
    ids = graph.new_neurons((2, 3), layer=0, channel_dim=-1)
    more = graph.new_neurons((1, 3), layer=1, channel=graph.channel_of(ids[0]))
    assert graph.num_channels == 3 and graph.num_neurons == 9
    assert torch.equal(graph.channel_of(more[0]), graph.channel_of(ids[0]))
    assert graph.channels.column("size").tolist() == [3, 3, 3]


def test_channels_are_renumbered_by_rank():
    graph = NeuronGraph()
    first = graph.new_neurons((2,), layer=0, channel_dim=0)
    const = graph.new_bias_node(1)
    graph.set_channel_attr(graph.channel_of(const), "rank", 0.5)
    assert graph.renumber_channels_by_rank()
    assert graph.channel_of(first).tolist() == [0, 2] and int(graph.channel_of(const)) == 1
    assert graph.channels.column("op").tolist() == [NodeOp.SUM, NodeOp.CONST, NodeOp.SUM]
    assert not graph.renumber_channels_by_rank()


@pytest.mark.parametrize("frontend", ["auto", "export"])
def test_buffers_are_constants_never_parameters(frontend):
    class Buffers(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(P, D)
            self.bn = nn.BatchNorm1d(D)
            self.register_buffer("mask", (torch.arange(D) % 2).float())
            self.register_buffer("offset", torch.randn(D), persistent=False)
            self.register_buffer("order", torch.tensor([2, 0, 3, 1]))
            self.out = nn.Linear(D, 1)

        def forward(self, x):
            h = self.bn(self.fc(x)) * self.mask + self.offset
            return self.out(h[:, self.order])

    model = Buffers()
    model.bn.running_mean.uniform_(-1, 1)
    pg, _ = check_compiles(model, torch.randn(2, P), frontend=frontend)
    names = [name for name, _ in pg.param_signature]
    assert not {"mask", "offset", "order", "bn.running_mean", "bn.running_var"} & set(names)
    assert pg.num_parameters == sum(p.numel() for p in model.parameters())
    fixed_bias = (pg.edge_param < 0) & (pg.edge_type == EdgeType.BIAS)
    assert sorted(pg.edge_weight[fixed_bias].tolist()) == sorted(model.offset.tolist())
    masked = (pg.edge_param < 0) & (pg.edge_type == EdgeType.SKIP)
    expected = model.mask.tolist() + [1.0] * D  # the mask's weights, then the residual add's weight-1 edges
    assert sorted(pg.edge_weight[masked].tolist()) == sorted(expected)


class TokensOnRawInput(nn.Module):
    """A class token before, and register tokens after, the network's own input tokens (no layer in between)."""

    def __init__(self, dim: int, registers: int):
        super().__init__()
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.registers = nn.Parameter(torch.randn(1, registers, dim))
        self.fc = nn.Linear(dim, 2)

    def forward(self, x):
        b = x.shape[0]
        return self.fc(torch.cat([self.cls.expand(b, -1, -1), x, self.registers.expand(b, -1, -1)], dim=1))


@pytest.mark.parametrize("dim,registers", [(1, 1), (3, 2)])
def test_tokens_joining_the_raw_input_are_not_read_as_input_elements(dim, registers):
    from gmnfx.testing import assert_symmetries_preserve_function

    model = TokensOnRawInput(dim, registers).eval()
    with torch.no_grad():
        model.cls.fill_(1.54)  # a value that once read as "input element 2"
    pg, _ = check_compiles(model, torch.zeros(2, 2, dim))
    assert int((pg.node_type == NodeType.INPUT).sum()) == dim  # the input's features, positions collapsed
    assert_symmetries_preserve_function(model, torch.randn(2, 2, dim))

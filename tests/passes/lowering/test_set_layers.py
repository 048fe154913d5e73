"""DeepSets / permutation-equivariant set layers written with Linear layers and a pooling over the set axis.

The forms users write, on sets ``x: [batch, N, D]``:

* ``Lambda(x) + Gamma(pool(x))`` with ``pool`` a mean, sum or max over the set axis (``keepdim=True``, or a
  pooled ``[batch, D]`` unsqueezed back),
* ``Lambda(x - x.mean(1, keepdim=True))``,
* stacks of them, then an invariant pooling over the set (``x.sum(1)``, ``x.mean(1)``, ``x.max(1).values``)
  and a head.

Every form is checked with ``check_compiles`` (both frontends for some), and the parameter graph's structure:
the set elements of one feature collapse into one node (the graph does not depend on the set size), the
pooling makes one node per feature, and the elementwise (Lambda) and pooled (Gamma) linear subgraphs end in
the same output nodes: the add's SUM node of feature ``o`` reads exactly Lambda's node ``o`` and Gamma's node ``o``.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import gmnfx
from gmnfx.schema import EdgeType, NodeCol, NodeOp, NodeType
from gmnfx.testing import check_compiles

POOLS = ["mean", "sum", "max"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def set_pool(x: torch.Tensor, kind: str, keepdim: bool) -> torch.Tensor:
    """Pool ``x`` [batch, N, D] over the set axis."""
    if kind == "mean":
        return x.mean(dim=1, keepdim=keepdim)
    if kind == "sum":
        return x.sum(1, keepdim=keepdim)
    if kind == "amax":
        return x.amax(1, keepdim=keepdim)
    return x.max(dim=1, keepdim=keepdim).values


class SetLayer(nn.Module):
    """``Lambda(x) + Gamma(pool(x))`` (form "pooled"), or ``Lambda(x - mean(x))`` (form "centered")."""

    def __init__(self, d_in: int, d_out: int, pool: str = "mean", form: str = "pooled", keepdim: bool = True):
        super().__init__()
        self.pool, self.form, self.keepdim = pool, form, keepdim
        self.lam = nn.Linear(d_in, d_out)
        self.gam = nn.Linear(d_in, d_out, bias=False) if form == "pooled" else None

    def forward(self, x):
        if self.form == "centered":
            return self.lam(x - x.mean(dim=1, keepdim=True))
        pooled = self.gam(set_pool(x, self.pool, self.keepdim))
        return self.lam(x) + (pooled if self.keepdim else pooled.unsqueeze(1))


class DeepSet(nn.Module):
    """Two set layers, an invariant pooling over the set, a head."""

    def __init__(self, d: int = 3, hidden: int = 4, pool: str = "mean", form: str = "pooled",
                 readout: str = "sum", keepdim: bool = True):
        super().__init__()
        self.layer1 = SetLayer(d, hidden, pool, form, keepdim)
        self.layer2 = SetLayer(hidden, hidden, pool, form, keepdim)
        self.head = nn.Linear(hidden, 2)
        self.readout = readout

    def forward(self, x):
        h = self.layer2(torch.relu(self.layer1(x)))
        return self.head(set_pool(h, self.readout, keepdim=False))


def _param_index(model: nn.Module, name: str) -> torch.Tensor:
    """Flat-parameter indices of parameter ``name``, shaped like the parameter."""
    offset = 0
    for pname, p in model.named_parameters():
        if pname == name:
            return torch.arange(offset, offset + p.numel()).view(p.shape)
        offset += p.numel()
    raise KeyError(name)


def _dst_of_param(g, index: torch.Tensor) -> torch.Tensor:
    """Destination node of the edge carrying each parameter in ``index`` (same shape)."""
    where = torch.full((g.num_parameters,), -1, dtype=torch.long)
    carried = g.edge_param >= 0
    where[g.edge_param[carried]] = g.edge_index[1, carried]
    return where[index]


def _src_of_param(g, index: torch.Tensor) -> torch.Tensor:
    where = torch.full((g.num_parameters,), -1, dtype=torch.long)
    carried = g.edge_param >= 0
    where[g.edge_param[carried]] = g.edge_index[0, carried]
    return where[index]


# ---------------------------------------------------------------------- compile exactly


@pytest.mark.parametrize("readout", POOLS)
@pytest.mark.parametrize("pool", POOLS)
def test_pooled_set_layers_compile_exactly(pool, readout):
    check_compiles(DeepSet(pool=pool, readout=readout), torch.randn(2, 5, 3), torch.randn(3, 5, 3))


@pytest.mark.parametrize("readout", POOLS)
def test_centered_set_layers_compile_exactly(readout):
    check_compiles(DeepSet(form="centered", readout=readout), torch.randn(2, 5, 3), torch.randn(3, 5, 3))


@pytest.mark.parametrize("pool", ["mean", "amax", "max"])
def test_pooled_branch_without_keepdim_unsqueezed_back_compiles_exactly(pool):
    check_compiles(DeepSet(pool=pool, keepdim=False, readout="amax"), torch.randn(2, 4, 3))


@pytest.mark.parametrize("pool,form,readout", [("mean", "pooled", "max"), ("max", "pooled", "mean"),
                                               ("sum", "centered", "sum")])
def test_set_layers_compile_exactly_through_torch_export(pool, form, readout):
    check_compiles(DeepSet(pool=pool, form=form, readout=readout), torch.randn(2, 5, 3), frontend="export")


def test_set_layers_give_the_same_graph_with_both_frontends():
    model = DeepSet(pool="max", readout="max")
    by_fx = gmnfx.compile(model, torch.randn(2, 5, 3), frontend="fx")
    by_export = gmnfx.compile(model, torch.randn(2, 5, 3), frontend="export")
    assert torch.equal(by_fx.edge_index, by_export.edge_index)
    assert torch.equal(by_fx.edge_param, by_export.edge_param)
    assert torch.equal(by_fx.node_feat, by_export.node_feat)


def test_simulated_set_network_is_invariant_to_permuting_the_set():
    model = DeepSet(pool="max", readout="sum").eval()
    cg = gmnfx.compile(model, torch.randn(1, 6, 3), graph="computation")
    x = torch.randn(4, 6, 3)
    y = gmnfx.simulate(cg, x)
    assert torch.allclose(y, gmnfx.simulate(cg, x[:, torch.randperm(6)]), atol=1e-6)
    assert torch.allclose(y, model(x), atol=1e-5)


# ---------------------------------------------------------------------- parameter-graph structure


@pytest.mark.parametrize("pool", ["sum", "max"])
def test_set_elements_of_a_feature_collapse_so_the_graph_ignores_the_set_size(pool):
    model = DeepSet(pool=pool, readout=pool)
    small, large = (gmnfx.compile(model, torch.randn(2, n, 3)) for n in (2, 7))
    assert int((small.node_type == NodeType.INPUT).sum()) == 3  # one node per feature, not per element
    assert torch.equal(small.edge_index, large.edge_index)
    assert torch.equal(small.edge_weight, large.edge_weight)
    assert torch.equal(small.node_feat, large.node_feat)


def test_mean_pooling_graphs_differ_only_in_the_averaging_weights():
    model = DeepSet(pool="mean", readout="mean")
    small, large = (gmnfx.compile(model, torch.randn(2, n, 3)) for n in (2, 5))
    assert torch.equal(small.edge_index, large.edge_index)
    pool = small.edge_type == EdgeType.POOL
    assert torch.equal(small.edge_weight[~pool], large.edge_weight[~pool])
    assert torch.allclose(small.edge_weight[pool], torch.full((int(pool.sum()),), 1 / 2))
    assert torch.allclose(large.edge_weight[pool], torch.full((int(pool.sum()),), 1 / 5))


@pytest.mark.parametrize("pool", POOLS)
def test_pooling_over_the_set_makes_one_node_per_feature(pool):
    model = SetLayer(3, 4, pool)
    g = gmnfx.compile(model, torch.randn(2, 5, 3))
    inputs = torch.nonzero(g.node_type == NodeType.INPUT).squeeze(1)
    src, dst = g.edge_index[:, g.edge_type == EdgeType.POOL]
    assert sorted(src.tolist()) == inputs.tolist()  # each input feature pooled once ...
    assert dst.unique().numel() == 3  # ... into its own pooling node
    expected_op = NodeOp.MAX if pool == "max" else NodeOp.SUM
    assert bool((g.node_feat[dst, NodeCol.OP] == expected_op).all())
    # Gamma reads the pooling nodes: weight[o, i] leaves the pooling node of feature i
    gamma_src = _src_of_param(g, _param_index(model, "gam.weight"))
    assert torch.equal(gamma_src, dst[torch.argsort(src)][None, :].expand(4, 3))


@pytest.mark.parametrize("pool", POOLS)
def test_lambda_and_gamma_subgraphs_end_in_the_same_output_nodes(pool):
    model = SetLayer(3, 4, pool)
    g = gmnfx.compile(model, torch.randn(2, 5, 3))
    lam_out = _dst_of_param(g, _param_index(model, "lam.weight"))  # [4, 3]
    gam_out = _dst_of_param(g, _param_index(model, "gam.weight"))
    assert bool((lam_out == lam_out[:, :1]).all()) and bool((gam_out == gam_out[:, :1]).all())
    lam_out, gam_out = lam_out[:, 0], gam_out[:, 0]  # one node per output feature of each Linear
    inputs = torch.nonzero(g.node_type == NodeType.INPUT).squeeze(1)
    assert set(_src_of_param(g, _param_index(model, "lam.weight")).unique().tolist()) == set(inputs.tolist())
    skip = g.edge_type == EdgeType.SKIP
    out_of = dict(zip(*g.edge_index[:, skip].tolist()))
    outputs = torch.nonzero(g.node_type == NodeType.OUTPUT).squeeze(1)
    for o in range(4):
        shared = out_of[int(lam_out[o])]
        assert shared == out_of[int(gam_out[o])]  # feature o of both branches meets in one node
        assert int((g.edge_index[1, skip] == shared).sum()) == 2  # and nothing else is added there
    assert sorted(out_of[int(n)] for n in lam_out) == outputs.tolist()


def test_centered_form_subtracts_the_feature_mean_before_lambda():
    model = SetLayer(3, 4, form="centered")
    g = gmnfx.compile(model, torch.randn(2, 5, 3))
    inputs = torch.nonzero(g.node_type == NodeType.INPUT).squeeze(1)
    assert inputs.numel() == 3  # read through x - mean(x), the elements of a feature still collapse
    pool_src, pool_dst = g.edge_index[:, g.edge_type == EdgeType.POOL]
    skip = g.edge_type == EdgeType.SKIP
    src, dst, w = *g.edge_index[:, skip], g.edge_weight[skip]
    lam_src = _src_of_param(g, _param_index(model, "lam.weight"))[0]  # the centered node of each input feature
    for i, feature in enumerate(inputs.tolist()):
        into = dst == lam_src[i]
        pooled = int(pool_dst[pool_src == feature])
        assert sorted(zip(src[into].tolist(), w[into].tolist())) == sorted([(feature, 1.0), (pooled, -1.0)])


# ---------------------------------------------------------------------- errors


class MaxOf(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.kind = kind

    def forward(self, x):
        h = self.fc(x)
        return torch.max(h, x) if self.kind == "two tensors" else h.max()


@pytest.mark.parametrize("kind,got", [("two tensors", "a second tensor"), ("no dim", "dim=None")])
def test_max_without_a_dim_is_refused_with_the_fix(kind, got):
    expected = rf"max is supported as a reduction over one dim, x.max\(dim\) \(got {got}\)"
    with pytest.raises(gmnfx.GmnfxError, match=expected):
        gmnfx.compile(MaxOf(kind), torch.randn(2, 4, 3))


class UsesIndices(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        return self.fc(x).max(1).indices.float()


def test_argmax_indices_of_a_set_pooling_are_refused():
    with pytest.raises(gmnfx.GmnfxError, match=r"the indices of x.max\(dim\) are data-dependent"):
        gmnfx.compile(UsesIndices(), torch.randn(2, 4, 3))

"""Lowering of attention in every form users write it; heads are explicit in the parameter graph."""
from __future__ import annotations

import math

import networkx as nx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from networkx.algorithms.isomorphism import DiGraphMatcher

import gmnfx
from gmnfx.errors import LoweringError
from gmnfx.schema import EdgeCol, EdgeType, NodeCol, NodeOp
from gmnfx.testing import check_compiles


class HandWrittenAttention(nn.Module):
    """Separate q/k/v/o Linear layers, views into heads, transposes, ``@``, scaling and softmax."""

    def __init__(self, dim: int = 8, heads: int = 2, causal: bool = False):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.register_buffer("causal_mask", torch.tril(torch.ones(16, 16)).view(1, 1, 16, 16))  # nanoGPT style

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (f(x).view(b, t, self.heads, d // self.heads).transpose(1, 2) for f in (self.q, self.k, self.v))
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d // self.heads))
        if self.causal:
            scores = scores.masked_fill(self.causal_mask[:, :, :t, :t] == 0, float("-inf"))
        y = F.softmax(scores, dim=-1) @ v
        return self.o(y.transpose(1, 2).contiguous().view(b, t, d))


class SdpaAttention(nn.Module):
    """Packed qkv projection split into heads and ``F.scaled_dot_product_attention``."""

    def __init__(self, dim: int = 8, heads: int = 2, kv_heads: int | None = None, **sdpa_kwargs):
        super().__init__()
        self.heads, self.kv_heads = heads, kv_heads or heads
        self.head_dim = dim // heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * self.kv_heads * self.head_dim)
        self.o = nn.Linear(dim, dim)
        self.sdpa_kwargs = sdpa_kwargs

    def forward(self, x):
        b, t, d = x.shape
        q = self.q(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        kv = self.kv(x).view(b, t, 2, self.kv_heads, self.head_dim)
        k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, **self.sdpa_kwargs)
        return self.o(y.transpose(1, 2).reshape(b, t, d))


class MultiheadSelfAttention(nn.Module):
    def __init__(self, dim: int = 8, heads: int = 2, **kwargs):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True, **kwargs)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("frontend", ["fx", "export"])
def test_hand_written_attention_simulates_exactly(causal, frontend):
    check_compiles(HandWrittenAttention(causal=causal), torch.randn(2, 5, 8), frontend=frontend)


SDPA_OPTIONS = [
    {}, {"is_causal": True}, {"scale": 0.3},
    {"attn_mask": torch.tensor([[True, False, True, True, True]] * 5)},
    {"attn_mask": torch.randn(5, 5)},
]


@pytest.mark.parametrize("options", SDPA_OPTIONS, ids=["plain", "causal", "scale", "bool_mask", "float_mask"])
@pytest.mark.parametrize("frontend", ["fx", "export"])
def test_scaled_dot_product_attention_simulates_exactly(options, frontend):
    check_compiles(SdpaAttention(**options), torch.randn(2, 5, 8), frontend=frontend)


def test_grouped_query_attention_shares_key_value_heads():
    pg, _ = check_compiles(SdpaAttention(dim=8, heads=4, kv_heads=2, enable_gqa=True), torch.randn(2, 3, 8))
    op = pg.node_feat[:, NodeCol.OP].long()
    assert int((op == NodeOp.LOGSUMEXP).sum()) == 4  # one softmax group node per query head


@pytest.mark.parametrize("kwargs", [{}, {"bias": False}, {"kdim": 6, "vdim": 4}],
                         ids=["packed", "no_bias", "separate_kv_dims"])
def test_multihead_attention_module_simulates_exactly(kwargs):
    class CrossAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True, **kwargs)

        def forward(self, x, memory_k, memory_v):
            return self.attn(x, memory_k, memory_v, need_weights=False)[0]

        # kdim/vdim only matter for the key/value inputs

    k_dim, v_dim = kwargs.get("kdim", 8), kwargs.get("vdim", 8)
    example = (torch.randn(2, 5, 8), torch.randn(2, 4, k_dim), torch.randn(2, 4, v_dim))
    check_compiles(CrossAttention(), example, tuple(torch.randn(3, *t.shape[1:]) for t in example))


@pytest.mark.parametrize("average", [True, False])
def test_multihead_attention_returns_its_attention_weights(average):
    class WithWeights(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            out, weights = self.attn(x, x, x, average_attn_weights=average)
            return out, weights

    check_compiles(WithWeights(), torch.randn(2, 5, 8))


def test_multihead_attention_with_a_constant_causal_mask():
    class Causal(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(5))

        def forward(self, x):
            return self.attn(x, x, x, attn_mask=self.mask, need_weights=False)[0]

    check_compiles(Causal(), torch.randn(2, 5, 8))


def test_multihead_attention_needs_batch_first():
    class SeqFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2)

        def forward(self, x):
            return self.attn(x, x, x)[0]

    with pytest.raises(LoweringError, match="batch_first=True"):
        gmnfx.compile(SeqFirst(), torch.randn(2, 5, 8))


# ---------------------------------------------------------------------- the graph's structure
def _count(pg, op) -> int:
    return int((pg.node_feat[:, NodeCol.OP].long() == op).sum())


@pytest.mark.parametrize("model", [HandWrittenAttention(8, 2), SdpaAttention(8, 2), MultiheadSelfAttention(8, 2)],
                         ids=["hand_written", "sdpa", "multihead_attention"])
def test_every_form_has_one_score_and_softmax_node_per_head(model):
    pg = gmnfx.compile(model, torch.randn(1, 5, 8))
    assert _count(pg, NodeOp.LOGSUMEXP) == 2
    assert _count(pg, NodeOp.SOFTMAX) == 2
    assert _count(pg, NodeOp.PROD) == 16  # 8 query/key dims + 8 value dims
    operand = pg.edge_feat[:, EdgeCol.OPERAND]
    product = pg.edge_type == EdgeType.PRODUCT
    assert int((operand[product] == 1).sum()) == int((operand[product] == 2).sum()) == 16


def _automorphism_count(pg) -> int:
    """Automorphisms of the parameter graph that keep node features, edge types and edge features (not values)."""
    g = nx.MultiDiGraph()
    for i, row in enumerate(pg.node_feat.tolist()):
        g.add_node(i, feat=tuple(row))
    feats = torch.cat([pg.edge_type[:, None].float(), pg.edge_feat[:, EdgeCol.LAYER:]], dim=1).tolist()
    for (s, d), f in zip(pg.edge_index.T.tolist(), feats):
        g.add_edge(s, d, feat=tuple(f))
    same_node = lambda a, b: a["feat"] == b["feat"]  # noqa: E731
    same_edges = lambda a, b: sorted(e["feat"] for e in a.values()) == sorted(e["feat"] for e in b.values())  # noqa: E731
    return sum(1 for _ in DiGraphMatcher(g, g, node_match=same_node, edge_match=same_edges).isomorphisms_iter())


@pytest.mark.parametrize("dim,heads", [(4, 2), (4, 4), (2, 1)])
def test_attention_graph_symmetries_are_exactly_head_and_per_head_dim_permutations(dim, heads):
    """|Aut| = H! * (d_k!)^H * (d_v!)^H: heads permute, and within a head the q/k dims
    (shared by q and k) and the v dims (shared by v and the output projection) permute."""
    pg = gmnfx.compile(HandWrittenAttention(dim, heads), torch.randn(1, 3, dim))
    head_dim = dim // heads
    expected = math.factorial(heads) * math.factorial(head_dim) ** (2 * heads)
    assert _automorphism_count(pg) == expected


@pytest.mark.parametrize("model", [HandWrittenAttention(8, 2, causal=True), SdpaAttention(8, 4, kv_heads=2,
                                                                                         enable_gqa=True)],
                         ids=["hand_written_causal", "grouped_query"])
def test_compact_product_neurons_give_the_same_parameter_graph(model):
    """Parameter graphs build one product neuron per channel pattern; collapsing the full
    computation-graph lowering (one product neuron per term) must give the identical graph."""
    from gmnfx.params import ParamTable, flat_parameters
    from gmnfx.passes.collapse_sharing import collapse_weight_sharing
    from gmnfx.passes.lower_neurons import lower_to_neurons
    from gmnfx.passes.shape_prop import propagate_shapes
    from gmnfx.passes.trace import trace
    from gmnfx.pipeline import CompileState

    example = torch.randn(1, 5, 8)
    compact = gmnfx.compile(model, example)
    state = CompileState(model, (example,), "computation", param_table=ParamTable(model),
                         flat_params=flat_parameters(model))
    full = collapse_weight_sharing(lower_to_neurons(propagate_shapes(trace(state))))
    assert full.neuron_graph.num_neurons > compact.num_nodes
    assert len(full.nodes["op"]) == compact.num_nodes
    assert torch.equal(full.nodes["op"], compact.node_feat[:, NodeCol.OP].long())
    edges = lambda src, dst, param, kind, weight: sorted(zip(src.tolist(), dst.tolist(), param.tolist(),  # noqa: E731
                                                              kind.tolist(), weight.tolist()))
    assert edges(full.edges.src, full.edges.dst, full.edges.param, full.edge_type, full.edges.weight) == edges(
        *compact.edge_index, compact.edge_param, compact.edge_type, compact.edge_weight)


def test_multihead_attention_as_the_whole_model_returns_its_tuple():
    pg, _ = check_compiles(nn.MultiheadAttention(8, 2, batch_first=True), (torch.randn(2, 5, 8),) * 3)
    assert len(pg.output_shapes) == 2  # the output and the head-averaged attention weights



def test_overlapping_masks_keep_edge_weights_finite():
    """A float mask at finfo.min plus a padding mask sums below float32's range: still a finite edge."""
    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.register_buffer("mask", torch.triu(torch.full((5, 5), torch.finfo(torch.float32).min), 1))
            self.register_buffer("padding", torch.tensor([[False, False, False, False, True]] * 2))

        def forward(self, x):
            return self.attn(x, x, x, attn_mask=self.mask, key_padding_mask=self.padding, need_weights=False)[0]

    pg, cg = check_compiles(Masked(), torch.randn(2, 5, 8), torch.randn(2, 5, 8))
    for g in (pg, cg):
        assert bool(torch.isfinite(g.edge_weight).all())

"""The GMN on drawn architectures: its graph readout is invariant, and its node and edge readouts equivariant,
under sampled symmetries of the input network (symmetric copies of the model, compiled again) and under
arbitrary relabellings of the graph's nodes."""
from __future__ import annotations

import torch
from hypothesis import given, note, settings

import gmnfx
from gmnfx.nn import GMN
from gmnfx.symmetry import permute_model, symmetry_structure
from gmnfx.symmetry.permute import edge_images
from gmnfx.testing import assert_equivariant

from strategies import any_architecture

_EXAMPLES = max(5, settings.default.max_examples // 3)  # a GMN per readout per example: a third of the profile
_TOL = dict(rtol=1e-9, atol=1e-9)


def _gmns():
    torch.manual_seed(0)
    return {readout: GMN(out_dim=2, hidden_dim=6, num_layers=2, readout=readout, global_feature=True).double()
            for readout in ("graph", "node", "edge")}


@settings(max_examples=_EXAMPLES)
@given(arch=any_architecture())
def test_gmn_readouts_respect_the_input_networks_symmetries(arch):
    note(arch.description)
    graph = gmnfx.compile(arch.model, arch.example)
    structure = symmetry_structure(graph)
    note(f"{graph.summary()}\n  group order {structure.order}")
    gmns = _gmns()
    with torch.no_grad():
        outputs = {readout: gmn(graph) for readout, gmn in gmns.items()}
        generator = torch.Generator().manual_seed(0)
        for _ in range(2):
            perm = structure.sample(generator)
            twin = gmnfx.compile(permute_model(arch.model, graph, perm), arch.example)
            torch.testing.assert_close(gmns["graph"](twin), outputs["graph"], **_TOL)
            torch.testing.assert_close(gmns["node"](twin)[perm], outputs["node"], **_TOL)
            torch.testing.assert_close(gmns["edge"](twin)[edge_images(graph, perm)], outputs["edge"], **_TOL)
        for readout, gmn in gmns.items():
            assert_equivariant(gmn, graph, readout=readout, trials=1, generator=generator, atol=1e-9)

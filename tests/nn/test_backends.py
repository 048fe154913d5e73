"""The GMN gives the same outputs and gradients on the Triton path (the interpreter on CPU) as on the torch path."""
from __future__ import annotations

import pytest
import torch

import gmnfx
from gmnfx.kernels import resolve_backend
from gmnfx.nn import GMN
from graphs import tiny_model_and_input


def _outputs_and_grads(gmn, batch):
    gmn.zero_grad()
    out = gmn(batch)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return out.detach(), {name: p.grad.clone() for name, p in gmn.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("readout, options", [("graph", dict()), ("edge", dict(aggregation="max")),
                                              ("node", dict(aggregation="pna", global_feature=True,
                                                            edge_chunk_size=7))])
def test_triton_path_matches_torch_path(monkeypatch, readout, options):
    batch = gmnfx.batch([gmnfx.compile(*tiny_model_and_input("mlp")), gmnfx.compile(*tiny_model_and_input("cnn"))])
    torch.manual_seed(0)
    gmn = GMN(out_dim=2, hidden_dim=8, num_layers=2, readout=readout, **options)
    results = {}
    for backend in ("torch", "triton"):
        monkeypatch.setenv("GMNFX_BACKEND", backend)
        assert resolve_backend(batch.edge_weight) == backend
        results[backend] = _outputs_and_grads(gmn, batch)
    (out_torch, grads_torch), (out_triton, grads_triton) = results["torch"], results["triton"]
    torch.testing.assert_close(out_triton, out_torch, rtol=1e-5, atol=1e-5)
    assert grads_triton.keys() == grads_torch.keys()
    for name in grads_torch:
        torch.testing.assert_close(grads_triton[name], grads_torch[name], rtol=1e-4, atol=1e-5, msg=name)

"""Data-parallel training: one process is the identity; two gloo processes under torchrun train exactly
like one process on the same global minibatches."""
from __future__ import annotations

import os

import pytest
import torch

from ddp_fit_worker import fit_tiny
from torchrun_helpers import run_torchrun
from gmnfx.tasks.distributed import Distributed

WORKER = os.path.join(os.path.dirname(__file__), "ddp_fit_worker.py")


def test_single_process_context_changes_nothing(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = Distributed.from_env()
    model = torch.nn.Linear(2, 2)
    assert ctx.world_size == 1 and ctx.is_main and not ctx.is_distributed
    assert ctx.wrap(model) is model
    assert ctx.split_batch([4, 5, 6]) == [4, 5, 6]
    assert ctx.loss_scale(3, 3) == 1.0 and ctx.all_mean(2.5) == 2.5


def test_shares_of_a_minibatch_cover_it_and_rescale_to_its_mean():
    ranks = [Distributed(rank=r, world_size=3) for r in range(3)]
    batch = list(range(10))
    shares = [ctx.split_batch(batch) for ctx in ranks]
    assert sorted(sum(shares, [])) == batch
    # the mean over ranks of (local mean * scale) is the global mean
    values = torch.arange(10.0) ** 2
    scaled = [values[s].mean() * ctx.loss_scale(len(s), len(batch)) for ctx, s in zip(ranks, shares)]
    assert torch.allclose(torch.stack(scaled).mean(), values.mean())
    assert all(ctx.split_batch([1, 2]) is None for ctx in ranks)  # too small: every rank skips it


def test_minibatches_yield_each_ranks_share_and_skip_batches_smaller_than_the_world():
    order = list(range(9))  # global minibatches of 4: [0..3], [4..7], [8]
    ranks = [Distributed(rank=r, world_size=2) for r in range(2)]
    walks = [list(ctx.minibatches(order, 4)) for ctx in ranks]
    assert [local for local, _ in walks[0]] == [[0, 2], [4, 6]] and [local for local, _ in walks[1]] == [[1, 3], [5, 7]]
    assert all(scale == 1.0 for walk in walks for _, scale in walk)
    assert list(Distributed().minibatches(order, 4)) == [([0, 1, 2, 3], 1.0), ([4, 5, 6, 7], 1.0), ([8], 1.0)]


def test_missing_rendezvous_variables_are_named(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(RuntimeError, match="MASTER_ADDR, MASTER_PORT not set: launch with `torchrun"):
        Distributed.from_env()


@pytest.mark.parametrize("name", ["gmn", "statnn"])
def test_two_gloo_processes_under_torchrun_match_one_process(name, tmp_path, monkeypatch):
    done = run_torchrun(WORKER, name, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert [s["rank"] for s in saved] == [0, 1] and all(s["world_size"] == 2 for s in saved)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    alone = fit_tiny(name).state_dict()
    for key, value in alone.items():
        assert torch.equal(saved[0]["state"][key], saved[1]["state"][key]), key  # ranks stay in lockstep
        assert torch.allclose(saved[0]["state"][key], value, atol=1e-5, rtol=1e-4), key

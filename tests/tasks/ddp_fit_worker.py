"""Run by ``torchrun`` in test_distributed.py: fit one predictor on tiny graphs, save this rank's weights."""
from __future__ import annotations

import sys

import torch
from torch import nn

import gmnfx
from gmnfx.tasks.accuracy import fit
from gmnfx.tasks.distributed import Distributed
from gmnfx.tasks.predictors import PREDICTORS


def tiny_problem(num_models: int = 11):
    """Small MLPs of a few widths, compiled, with made-up accuracies."""
    torch.manual_seed(0)
    graphs = [gmnfx.compile(nn.Sequential(nn.Linear(3, 2 + i % 3), nn.ReLU(), nn.Linear(2 + i % 3, 2)))
              for i in range(num_models)]
    return graphs, torch.rand(num_models)


def fit_tiny(name: str, distributed=None) -> nn.Module:
    graphs, targets = tiny_problem()
    torch.manual_seed(1)
    options = {"num_layers": 2} if name == "gmn" else {}
    predictor = PREDICTORS[name](hidden_dim=8, **options)
    features = predictor.featurize(graphs)
    return fit(predictor, features, targets, epochs=3, batch_size=8, lr=1e-2, seed=3, distributed=distributed)


if __name__ == "__main__":
    name, out = sys.argv[1], sys.argv[2]
    ctx = Distributed.from_env()
    predictor = fit_tiny(name)
    torch.save({"rank": ctx.rank, "world_size": ctx.world_size, "state": predictor.state_dict()},
               f"{out}/rank{ctx.rank}.pt")
    ctx.close()

"""Task 1: predict a trained network's test accuracy from its weights.

Settings (the GMN paper's): ``"50%"`` and ``"5%"`` train on that fraction of the training split and test on
the zoo's fixed test split; ``"ood"`` trains on narrow networks (width <= ``ood_max_width``), as many as ``"50%"``
does, and tests on the wider ones. Scores: R^2 and Kendall's tau on the test set.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Optional

import torch

from gmnfx.tasks.distributed import Distributed
from gmnfx.tasks.metrics import kendall_tau, r2_score
from gmnfx.tasks.predictors import PREDICTORS

__all__ = ["AccuracyData", "accuracy_data", "split", "fit", "predict", "run", "SETTINGS"]

SETTINGS = ("50%", "5%", "ood")


@dataclass
class AccuracyData:
    """Graphs of a zoo's models with their test accuracies and widths."""

    graphs: list
    accuracy: torch.Tensor  # [M]
    width: torch.Tensor  # [M]
    ids: list


def accuracy_data(zoo, *, progress: bool = False) -> AccuracyData:
    """Compile (or read from the cache) every model of ``zoo`` (a ``gmnfx.zoo.Zoo``)."""
    from gmnfx.zoo.graphs import zoo_graphs

    ids = zoo.ids()
    records = [zoo.record(i) for i in ids]
    return AccuracyData(zoo_graphs(zoo, ids, progress=progress),
                        torch.tensor([r["metrics"]["test_acc"] for r in records]),
                        torch.tensor([r["config"]["arch"]["width"] for r in records]), ids)


def split(data: AccuracyData, setting: str, seed: int, *, test_fraction: float = 0.2, val_fraction: float = 0.1,
          ood_max_width: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(train, val, test)`` model indices. The in-distribution test split is the same for every seed.

    ``"ood"`` tests on every model wider than ``ood_max_width`` and trains on narrow ones, as many as the
    ``"50%"`` setting trains on (fewer if the zoo has fewer narrow models), so that the two settings differ only
    in the distribution shift.
    """
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS} (got {setting!r})")
    m = len(data.accuracy)
    num_test, num_val = max(1, round(m * test_fraction)), max(1, round(m * val_fraction))
    half = max(2, round((m - num_test - num_val) * 0.5))
    if setting == "ood":
        narrow = (data.width <= ood_max_width).nonzero().flatten()
        test = (data.width > ood_max_width).nonzero().flatten()
        if len(test) == 0 or len(narrow) < 3:
            widths = sorted(set(data.width.tolist()))
            raise ValueError(f"the ood setting needs models of width <= {ood_max_width} to train on and wider ones "
                             f"to test on (widths in this zoo: {widths})")
        pool = narrow[torch.randperm(len(narrow), generator=torch.Generator().manual_seed(seed))]
        num_val = max(1, round(len(pool) * val_fraction))
        return pool[num_val:num_val + half], pool[:num_val], test
    order = torch.randperm(m, generator=torch.Generator().manual_seed(0))
    test, val, pool = order[:num_test], order[num_test:num_test + num_val], order[num_test + num_val:]
    keep = half if setting == "50%" else max(2, round(len(pool) * 0.05))
    train = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:keep]]
    return train, val, test


def predict(predictor, features: list, *, batch_size: int = 32) -> torch.Tensor:
    """Predicted accuracies (in the targets' units) for ``features``, on CPU."""
    predictor.eval()
    device = next(predictor.parameters()).device
    with torch.no_grad():
        out = [predictor(_to(predictor.collate(features[i:i + batch_size]), device)).cpu()
               for i in range(0, len(features), batch_size)]
    return predictor.unscale(torch.cat(out))


def fit(predictor, features: list, targets: torch.Tensor, *, val_features: Optional[list] = None,
        val_targets: Optional[torch.Tensor] = None, epochs: int = 50, batch_size: int = 32, lr: float = 1e-3,
        min_steps: int = 0, schedule: str = "constant", max_validations: int = 100, seed: int = 0,
        progress: bool = False, distributed: Optional[Distributed] = None):
    """Train with MSE on standardized targets (Adam); keeps the weights with the best validation loss.

    Trains ``epochs`` epochs, or more when that is fewer than ``min_steps`` optimizer steps (small training
    sets get as many updates as large ones). ``schedule="cosine"`` decays the learning rate from ``lr`` to 0
    over the run. The validation loss is measured after every epoch, or every few epochs so that at most about
    ``max_validations`` are measured, and after the last. Under ``torchrun`` (or with ``distributed`` given)
    every rank takes its share of each minibatch of ``batch_size`` and DDP averages the gradients, so K
    processes follow the one-process trajectory.
    """
    from tqdm import tqdm

    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule must be 'constant' or 'cosine' (got {schedule!r})")
    ctx = distributed or Distributed.from_env()
    torch.manual_seed(seed)
    scaled = predictor.fit_scales(features, targets)
    predictor.to(ctx.device)
    model = ctx.wrap(predictor)
    steps_per_epoch = math.ceil(len(features) / batch_size)
    epochs = max(epochs, math.ceil(min_steps / steps_per_epoch))
    total_steps = epochs * sum(1 for _ in ctx.minibatches(range(len(features)), batch_size))
    optimizer = torch.optim.Adam(predictor.parameters(), lr=lr)
    decay = (lambda step: 0.5 * (1 + math.cos(math.pi * step / total_steps))) if schedule == "cosine" \
        else (lambda step: 1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, decay)
    generator = torch.Generator().manual_seed(seed)
    best, best_loss = copy.deepcopy(predictor.state_dict()), float("inf")
    val_every = max(1, epochs // max_validations)
    for epoch in tqdm(range(1, epochs + 1), disable=not (progress and ctx.is_main), desc="fitting", unit="epoch"):
        model.train()
        order = torch.randperm(len(features), generator=generator).tolist()
        for local, scale in ctx.minibatches(order, batch_size):
            inputs = _to(predictor.collate([features[j] for j in local]), ctx.device)
            loss = torch.nn.functional.mse_loss(model(inputs), scaled[local].to(ctx.device))
            optimizer.zero_grad()
            (loss * scale).backward()
            optimizer.step()
            scheduler.step()
        if val_features is not None and (epoch % val_every == 0 or epoch == epochs):
            val_loss = float(((predict(predictor, val_features) - val_targets) ** 2).mean())
            if val_loss < best_loss:
                best, best_loss = copy.deepcopy(predictor.state_dict()), val_loss
    if val_features is not None:
        predictor.load_state_dict(best)
    return predictor


def _to(inputs, device: torch.device):
    return inputs if device.type == "cpu" else inputs.to(device)


def run(data: AccuracyData, predictor_name: str, setting: str, seed: int, *, epochs: int = 50,
        hidden_dim: int = 32, progress: bool = False, predictor_options: Optional[dict] = None,
        **fit_options) -> dict:
    """Split, train predictor ``predictor_name`` ("gmn", "deepsets", "statnn"), score it on the test set.

    ``predictor_options`` go to the predictor (e.g. ``{"num_layers": 2, "residual": True}`` for the GMN), the
    other keywords to :func:`fit`. Returns ``{"r2", "tau", "train", "test", "predicted", "target"}`` (the last
    two: test-set tensors).
    """
    if predictor_name not in PREDICTORS:
        raise ValueError(f"predictor must be one of {sorted(PREDICTORS)} (got {predictor_name!r})")
    train, val, test = split(data, setting, seed)
    torch.manual_seed(seed)
    predictor = PREDICTORS[predictor_name](hidden_dim=hidden_dim, **(predictor_options or {}))
    features = predictor.featurize(data.graphs)

    def pick(index):
        return [features[i] for i in index.tolist()]

    fit(predictor, pick(train), data.accuracy[train], val_features=pick(val), val_targets=data.accuracy[val],
        epochs=epochs, seed=seed, progress=progress, **fit_options)
    predicted = predict(predictor, pick(test))
    target = data.accuracy[test]
    return {"r2": r2_score(predicted, target), "tau": kendall_tau(predicted, target), "train": len(train),
            "test": len(test), "predicted": predicted, "target": target}

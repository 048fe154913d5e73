"""Accuracy predictors over compiled graphs: the GMN and two baselines, behind one small interface.

* :class:`GMNPredictor`: ``gmnfx.nn.GMN`` with a graph readout.
* :class:`DeepSetsPredictor`: DeepSets over the set of edges (parameter value and layer features, encoded as the
  GMN encodes them), ``rho(mean_e phi(e))``; no message passing.
* :class:`StatNNPredictor`: per-layer weight statistics (mean, std, quantiles) into an MLP (the StatNN / DMC
  family of baselines).

A predictor turns graphs into its inputs once (``featurize``), batches them (``collate``) and maps a batch to
one number per graph (``forward``). ``fit_scales`` fits what it standardizes (targets, and StatNN's statistics)
to the training set; those scales are buffers, so they are saved with the ``state_dict``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

import gmnfx
from gmnfx.graphs import ParameterGraph
from gmnfx.kernels import segment_reduce
from gmnfx.nn import GMN, EdgeEncoder
from gmnfx.nn.layer import _mlp

__all__ = ["GMNPredictor", "DeepSetsPredictor", "StatNNPredictor", "weight_statistics", "PREDICTORS"]


class _Predictor(nn.Module):
    """Holds the training targets' mean and std as buffers, so a saved ``state_dict`` predicts in real units."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))

    def fit_scales(self, features: list, targets: torch.Tensor) -> torch.Tensor:
        """Fit what the predictor standardizes to its training set: here ``targets``' mean and std (std 1 for
        fewer than two or constant targets). Returns the standardized targets."""
        std = float(targets.std()) if len(targets) > 1 else 0.0
        self.target_mean.fill_(float(targets.mean()))
        self.target_std.fill_(std if std > 0 else 1.0)
        return (targets - float(self.target_mean)) / float(self.target_std)

    def unscale(self, outputs: torch.Tensor) -> torch.Tensor:
        """Outputs in standardized units -> target units."""
        return outputs * self.target_std.to(outputs.device) + self.target_mean.to(outputs.device)


class _GraphPredictor(_Predictor):
    def featurize(self, graphs: Sequence[ParameterGraph]) -> list:
        return list(graphs)

    def collate(self, items: list):
        return gmnfx.batch(items)


class GMNPredictor(_GraphPredictor):
    """``GMN(out_dim=1, readout="graph")`` over the batch of parameter graphs."""

    def __init__(self, hidden_dim: int = 32, num_layers: int = 4, **gmn_options) -> None:
        super().__init__()
        self.gmn = GMN(1, hidden_dim, num_layers, readout="graph", **gmn_options)

    def forward(self, batch) -> torch.Tensor:
        return self.gmn(batch)[:, 0]


class DeepSetsPredictor(_GraphPredictor):
    """``rho(mean over edges of phi(edge features)))``, the edge features encoded like the GMN's."""

    def __init__(self, hidden_dim: int = 32) -> None:
        super().__init__()
        self.encoder = EdgeEncoder(hidden_dim)
        self.phi = _mlp(hidden_dim, hidden_dim, hidden_dim, "relu")
        self.rho = _mlp(hidden_dim, hidden_dim, 1, "relu")

    def forward(self, batch) -> torch.Tensor:
        e = self.encoder(batch.edge_type, batch.edge_weight, batch.edge_pos, batch.block_attrs, batch.edge_block)
        pooled = segment_reduce(self.phi(e), batch.edge_ptr, None, "mean")
        return self.rho(pooled)[:, 0]


_QUANTILES = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
STATS_PER_LAYER = 2 + len(_QUANTILES)


def weight_statistics(graph: ParameterGraph, max_layers: int = 16) -> torch.Tensor:
    """Statistics of a network's parameters: per parameterized layer (mean, std, 5 quantiles) for its first
    and last ``max_layers // 2`` layers (zeros where a network has fewer), then the same over all parameters.

    Shapes: -> ``[(max_layers + 1) * 7]``.
    """
    owned = graph.edge_param >= 0
    values = graph.edge_weight[owned].double()
    layers = graph.edge_layer[owned]
    kept = layers.unique()
    half = max_layers // 2
    chosen = torch.cat([kept[:half], kept[max(half, len(kept) - half):]]) if len(kept) > max_layers else kept
    rows = [_stats(values[layers == layer]) for layer in chosen.tolist()]
    rows += [torch.zeros(STATS_PER_LAYER, dtype=torch.float64)] * (max_layers - len(rows))
    return torch.cat(rows + [_stats(values)]).float()


def _stats(values: torch.Tensor) -> torch.Tensor:
    if values.numel() == 0:
        return torch.zeros(STATS_PER_LAYER, dtype=torch.float64)
    std = values.std() if values.numel() > 1 else values.new_zeros(())
    return torch.cat([values.mean()[None], std[None], torch.quantile(values, _QUANTILES)])


class StatNNPredictor(_Predictor):
    """An MLP on :func:`weight_statistics` (standardized with the training set's mean and std)."""

    def __init__(self, hidden_dim: int = 64, max_layers: int = 16) -> None:
        super().__init__()
        self.max_layers = max_layers
        width = (max_layers + 1) * STATS_PER_LAYER
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))
        self.mlp = nn.Sequential(nn.Linear(width, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim),
                                 nn.ReLU(), nn.Linear(hidden_dim, 1))

    def featurize(self, graphs: Sequence[ParameterGraph]) -> list:
        return [weight_statistics(g, self.max_layers) for g in graphs]

    def fit_scales(self, features: list, targets: torch.Tensor) -> torch.Tensor:
        """Also standardize every statistic with the training set's mean and std."""
        stacked = torch.stack(features)
        self.mean.copy_(stacked.mean(0))
        self.std.copy_(stacked.std(0).clamp_min(1e-6) if len(features) > 1 else torch.ones_like(self.std))
        return super().fit_scales(features, targets)

    def collate(self, items: list) -> torch.Tensor:
        return torch.stack(items)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp((features - self.mean) / self.std)[:, 0]


PREDICTORS = {"gmn": GMNPredictor, "deepsets": DeepSetsPredictor, "statnn": StatNNPredictor}

"""Metrics of accuracy prediction: coefficient of determination (R^2) and Kendall's tau."""
from __future__ import annotations

import math

import torch

__all__ = ["r2_score", "kendall_tau", "summarize"]


def _pair(predicted, target) -> tuple[torch.Tensor, torch.Tensor]:
    p = torch.as_tensor(predicted, dtype=torch.float64).flatten()
    t = torch.as_tensor(target, dtype=torch.float64).flatten()
    if p.shape != t.shape:
        raise ValueError(f"expected as many predictions as targets (got {p.numel()} and {t.numel()})")
    if p.numel() < 2:
        raise ValueError(f"expected at least 2 predictions to score (got {p.numel()})")
    if not bool(torch.isfinite(p).all()):
        raise ValueError(f"predictions contain {int((~torch.isfinite(p)).sum())} non-finite values")
    return p, t


def r2_score(predicted, target) -> float:
    """``1 - sum (y - f)^2 / sum (y - mean y)^2``: 1 is perfect, 0 is predicting the mean, below 0 is worse.

    NaN when the targets are all equal (R^2 is undefined then).
    """
    p, t = _pair(predicted, target)
    total = float(((t - t.mean()) ** 2).sum())
    if total == 0.0:
        return math.nan
    return 1.0 - float(((t - p) ** 2).sum()) / total


def kendall_tau(predicted, target) -> float:
    """Kendall's tau-b rank correlation (ties in either input handled as in scipy.stats.kendalltau)."""
    from scipy.stats import kendalltau

    p, t = _pair(predicted, target)
    return float(kendalltau(p.numpy(), t.numpy()).statistic)


def summarize(values: list[float]) -> str:
    """``mean +/- std`` over seeds (sample standard deviation), as in the README's tables."""
    x = torch.tensor(values, dtype=torch.float64)
    std = float(x.std()) if len(values) > 1 else 0.0
    return f"{float(x.mean()):.3f} +/- {std:.3f}"

"""R^2 and Kendall's tau agree with scikit-learn and scipy, and refuse what cannot be scored."""
from __future__ import annotations

import math

import pytest
import torch

from gmnfx.tasks.metrics import kendall_tau, r2_score, summarize


def test_r2_matches_scikit_learn():
    from sklearn.metrics import r2_score as sklearn_r2

    g = torch.Generator().manual_seed(0)
    target = torch.rand(40, generator=g)
    predicted = target + 0.2 * torch.randn(40, generator=g)
    expected = sklearn_r2(target.double().numpy(), predicted.double().numpy())
    assert r2_score(predicted, target) == pytest.approx(expected, abs=1e-12)
    assert r2_score(target, target) == 1.0
    assert r2_score(torch.full((40,), float(target.mean())), target) == pytest.approx(0.0, abs=1e-12)


def test_kendall_tau_of_orders():
    x = torch.arange(10.0)
    assert kendall_tau(x, x) == pytest.approx(1.0)
    assert kendall_tau(-x, x) == pytest.approx(-1.0)
    assert kendall_tau(torch.tensor([1.0, 3.0, 2.0]), torch.tensor([1.0, 2.0, 3.0])) == pytest.approx(1 / 3)


def test_r2_of_constant_targets_is_nan():
    assert math.isnan(r2_score(torch.rand(5), torch.ones(5)))


@pytest.mark.parametrize("predicted, target, match", [
    (torch.rand(3), torch.rand(4), "as many predictions as targets"),
    (torch.rand(1), torch.rand(1), "at least 2"),
    (torch.tensor([0.0, float("nan")]), torch.rand(2), "non-finite"),
])
def test_bad_inputs_are_refused(predicted, target, match):
    with pytest.raises(ValueError, match=match):
        r2_score(predicted, target)


def test_summarize_is_mean_plus_minus_sample_std():
    assert summarize([0.5, 0.7]) == "0.600 +/- 0.141"

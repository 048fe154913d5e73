"""Accuracy prediction: splits, weight statistics, and every predictor trained end to end on a tiny zoo."""
from __future__ import annotations

import pytest
import torch

from gmnfx.tasks.accuracy import AccuracyData, accuracy_data, fit, predict, run, split
from gmnfx.tasks.predictors import STATS_PER_LAYER, StatNNPredictor, weight_statistics
from gmnfx.zoo import Zoo, build_zoo
from gmnfx.zoo.families import ARCH_BLOCK


def _data(m=40, wide_every=4):
    width = torch.tensor([24 if i % wide_every == 0 else 8 for i in range(m)])
    return AccuracyData(graphs=[None] * m, accuracy=torch.rand(m), width=width, ids=list(range(m)))


@pytest.mark.parametrize("setting", ["50%", "5%"])
def test_in_distribution_splits_are_disjoint_and_share_one_test_set(setting):
    data = _data()
    train, val, test = split(data, setting, seed=1)
    assert not set(train.tolist()) & set(test.tolist()) and not set(val.tolist()) & set(test.tolist())
    assert not set(train.tolist()) & set(val.tolist())
    assert torch.equal(split(data, setting, seed=2)[2], test)  # the same test set for every seed
    assert len(train) == (2 if setting == "5%" else 14)  # 5% of 28 rounds to 1: at least 2 are kept


def test_ood_split_trains_narrow_and_tests_wide():
    data = _data()
    train, val, test = split(data, "ood", seed=0)
    assert bool((data.width[train] <= 16).all()) and bool((data.width[val] <= 16).all())
    assert bool((data.width[test] > 16).all()) and len(test) == 10
    assert not set(train.tolist()) & set(val.tolist())
    assert len(train) == len(split(data, "50%", seed=0)[0]) == 14  # as many as 50%: only the distribution shifts
    few_narrow = _data(wide_every=2)  # 20 narrow models: 2 for validation, the other 18 (> 14) capped at 14
    assert len(split(few_narrow, "ood", seed=0)[0]) == 14
    fewer = _data(m=40, wide_every=1)
    fewer.width[:8] = 8  # 8 narrow: 1 validates, 7 train
    assert len(split(fewer, "ood", seed=0)[0]) == 7


def test_ood_split_without_wide_models_names_the_widths():
    data = _data(wide_every=10 ** 6)
    data.width[0] = 8
    with pytest.raises(ValueError, match=r"widths in this zoo: \[8\]"):
        split(data, "ood", seed=0)


def test_unknown_setting_is_refused():
    with pytest.raises(ValueError, match="setting must be one of"):
        split(_data(), "10%", seed=0)


@pytest.fixture(scope="module")
def tiny_zoo_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    ids = list(range(6)) + list(range(ARCH_BLOCK, ARCH_BLOCK + 6))
    build_zoo(root, "varying-cnn", ARCH_BLOCK + 6, progress=False, log=None, ids=ids)
    return accuracy_data(Zoo.open(root))


def test_weight_statistics_summarize_each_parameterized_layer(tiny_zoo_data):
    graph = tiny_zoo_data.graphs[0]
    stats = weight_statistics(graph, max_layers=4)
    assert stats.shape == (5 * STATS_PER_LAYER,)
    owned = graph.edge_weight[graph.edge_param >= 0]
    overall = stats[-STATS_PER_LAYER:]
    torch.testing.assert_close(overall[0], owned.mean())
    torch.testing.assert_close(overall[2], owned.min())
    torch.testing.assert_close(overall[-1], owned.max())


@pytest.mark.parametrize("predictor", ["gmn", "deepsets", "statnn"])
def test_every_predictor_trains_and_scores_end_to_end(tiny_zoo_data, predictor):
    result = run(tiny_zoo_data, predictor, "50%", seed=0, epochs=2, hidden_dim=8)
    assert result["train"] == 4 and result["test"] == 2
    assert -100 < result["r2"] <= 1 and -1 <= result["tau"] <= 1


class _CountingStatNN(StatNNPredictor):
    def __init__(self):
        super().__init__(hidden_dim=4, max_layers=1)
        self.train_calls = 0

    def forward(self, features):
        self.train_calls += int(self.training)
        return super().forward(features)


@pytest.mark.parametrize("epochs, min_steps, expected", [(1, 10, 10), (3, 0, 6), (6, 5, 12)])
def test_fit_trains_epochs_or_at_least_min_steps(epochs, min_steps, expected):
    features = [torch.randn((1 + 1) * STATS_PER_LAYER) for _ in range(8)]
    predictor = _CountingStatNN()
    fit(predictor, features, torch.rand(8), epochs=epochs, min_steps=min_steps, batch_size=4, schedule="cosine")
    assert predictor.train_calls == expected  # 2 steps per epoch


def test_fit_refuses_an_unknown_schedule():
    with pytest.raises(ValueError, match="schedule must be 'constant' or 'cosine'"):
        fit(_CountingStatNN(), [torch.zeros(14)] * 2, torch.rand(2), schedule="linear")


def test_a_saved_predictor_predicts_in_target_units_after_loading():
    features = [torch.randn(2 * STATS_PER_LAYER) for _ in range(8)]
    targets = 50 + 10 * torch.rand(8)  # far from standardized units
    trained = fit(StatNNPredictor(hidden_dim=4, max_layers=1), features, targets, epochs=3, batch_size=4)
    loaded = StatNNPredictor(hidden_dim=4, max_layers=1)
    loaded.load_state_dict(trained.state_dict())
    torch.testing.assert_close(predict(loaded, features), predict(trained, features))
    assert float(loaded.target_mean) == pytest.approx(float(targets.mean()))

"""Zoo families: deterministic configurations, and every architecture compiles exactly and trains vectorized."""
from __future__ import annotations

import dataclasses

import pytest
import torch

import gmnfx
from gmnfx.zoo.data import split_dataset
from gmnfx.zoo.families import ARCH_BLOCK, arch_key, build_model, sample_config
from gmnfx.zoo.train import init_model, train_group


def _tiny_data(n=48):
    g = torch.Generator().manual_seed(0)
    return split_dataset("tiny", torch.rand(n, 1, 8, 8, generator=g), torch.arange(n) % 10, test_fraction=0.25)


def _assert_same_weights(a: dict, b: dict, tol: float = 1e-3) -> None:
    """Equal up to float noise: batched convolutions sum in another order, and Adam amplifies the difference
    where gradients are near zero; a real difference (another lr, order or label) is of order 1."""
    assert a.keys() == b.keys()
    for name in a:
        if a[name].is_floating_point():
            scale = float(b[name].abs().max()) or 1.0
            assert float((a[name] - b[name]).abs().max()) <= tol * scale, name
        else:
            assert torch.equal(a[name], b[name]), name


def _short(config, **hyper):
    return dataclasses.replace(config, hyper={**config.hyper, "epochs": 1, **hyper})


def test_a_models_configuration_depends_only_on_seed_family_and_id():
    assert sample_config("diverse", 77, seed=3) == sample_config("diverse", 77, seed=3)
    assert sample_config("diverse", 77, seed=3) != sample_config("diverse", 77, seed=4)
    block = [sample_config("varying-cnn", i, 0) for i in range(ARCH_BLOCK)]
    assert len({arch_key(c.arch) for c in block}) == 1  # one architecture per block: they train together
    assert len({c.hyper["lr"] for c in block}) == ARCH_BLOCK


def test_unknown_family_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="known: \\['diverse', 'varying-cnn'\\]"):
        sample_config("resnets", 0)


def _one_config_per_kind():
    found = {}
    for block in range(200):
        c = sample_config("diverse", block * ARCH_BLOCK, 0)
        found.setdefault(c.arch["kind"], c)
    return found


@pytest.mark.parametrize("kind", ["cnn2d", "cnn1d", "deepsets", "resnet", "vit"])
def test_every_diverse_kind_compiles_exactly_and_trains_in_a_group(kind):
    config = _one_config_per_kind()[kind]
    model = build_model(config.arch).eval()
    x = torch.rand(3, 1, 8, 8)
    graph = gmnfx.compile(model, x[:1], graph="computation")
    torch.testing.assert_close(gmnfx.simulate(graph, x), model(x), rtol=1e-4, atol=1e-5)
    configs = [_short(dataclasses.replace(config, model_id=i), seed=i) for i in range(3)]
    trained = train_group(configs, _tiny_data())
    assert [t.config.model_id for t in trained] == [0, 1, 2]
    for t in trained:
        assert set(t.metrics) == {"test_acc", "test_loss", "train_acc", "train_loss"}
        assert 0.0 <= t.metrics["test_acc"] <= 1.0
        rebuilt = build_model(config.arch)
        rebuilt.load_state_dict(t.tensors)  # the stored tensors are exactly a state_dict of the architecture


def test_a_model_trained_in_a_group_equals_the_same_model_trained_alone():
    base = sample_config("varying-cnn", 0, 0)
    # dropout masks are the only randomness a group shares; a conv bias before BatchNorm has a zero gradient up
    # to float noise, which Adam turns into lr-sized steps, so the comparison uses no norm
    arch = {**base.arch, "dropout": 0.0, "norm": "none"}
    configs = [dataclasses.replace(base, model_id=i, arch=arch,
                                   hyper={**base.hyper, "epochs": 2, "seed": 10 + i, "lr": 1e-3 * (i + 1)})
               for i in range(3)]
    data = _tiny_data()
    together = train_group(configs, data)
    alone = train_group(configs[1:2], data)[0]
    _assert_same_weights(together[1].tensors, alone.tensors)
    assert abs(together[1].metrics["test_loss"] - alone.metrics["test_loss"]) < 1e-3


def test_models_whose_epochs_are_over_stop_changing():
    base = sample_config("varying-cnn", 0, 0)
    arch = {**base.arch, "dropout": 0.0, "norm": "none"}
    short, long = (dataclasses.replace(base, arch=arch, hyper={**base.hyper, "epochs": e, "seed": 5})
                   for e in (1, 3))
    data = _tiny_data()
    mixed = train_group([short, dataclasses.replace(long, model_id=1)], data)[0]
    single = train_group([short], data)[0]
    _assert_same_weights(mixed.tensors, single.tensors)


def test_init_scale_multiplies_the_weight_matrices():
    config = sample_config("varying-cnn", 0, 0)
    one, three = (init_model(_short(config, init_scale=s), 10) for s in (1.0, 3.0))
    w1, w3 = one.state_dict(), three.state_dict()
    conv = next(k for k, v in w1.items() if v.dim() == 4)
    torch.testing.assert_close(w3[conv], 3 * w1[conv])


def test_a_group_of_two_architectures_is_refused():
    a, b = sample_config("varying-cnn", 0, 0), sample_config("varying-cnn", ARCH_BLOCK * 5, 0)
    assert arch_key(a.arch) != arch_key(b.arch)
    with pytest.raises(ValueError, match="one architecture"):
        train_group([a, b], _tiny_data())

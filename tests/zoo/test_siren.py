"""SIREN INRs: exact compilation, initialization, images and edit targets, fitting, the resumable zoo."""
from __future__ import annotations

import math

import pytest
import torch

import gmnfx
from gmnfx.testing import check_compiles, simulation_error
from gmnfx.zoo import Zoo, ZooError
from gmnfx.zoo import siren
from gmnfx.zoo.siren import (Siren, build_siren_zoo, contrast, digit_images, dilate, edit_target, fit_sirens,
                             load_siren, pixel_grid, siren_from_manifest, siren_init_)

TINY = dict(hidden=8, image_size=8, steps=20, group_size=4, log=None)


def _siren(hidden=8, depth=2, seed=0):
    return siren_init_(Siren(hidden=hidden, depth=depth), 30.0, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_siren_compiles_exactly_and_simulates_to_its_forward(depth):
    model = _siren(depth=depth)
    pg, cg = check_compiles(model, torch.zeros(1, 2), pixel_grid(8))
    assert simulation_error(model, cg, pixel_grid(8)) < 1e-5
    # the plain MLP graph: 2 inputs, depth hidden layers of 8, 1 output, one bias node per linear layer
    assert pg.num_nodes == 2 + 8 * depth + 1 + (depth + 1)
    assert pg.num_edges == pg.num_parameters == gmnfx.flat_parameters(model).numel()


def test_init_folds_omega_into_the_sine_layers():
    model = _siren(hidden=64)
    first, hidden, last = model[0], model[2], model[4]
    assert 0.9 * 30 / 2 < float(first.weight.detach().abs().max()) <= 30 / 2  # omega_0 * U(-1/in, 1/in)
    assert 0.9 * math.sqrt(6 / 64) < float(hidden.weight.detach().abs().max()) <= math.sqrt(6 / 64)
    assert float(last.weight.detach().abs().max()) <= math.sqrt(6 / 64) / 30
    assert float(hidden.bias.detach().abs().max()) > 1.0  # the bias is scaled by omega_0 too
    assert torch.equal(_siren(seed=3)[0].weight, _siren(seed=3)[0].weight)
    assert not torch.equal(_siren(seed=3)[0].weight, _siren(seed=4)[0].weight)


def test_siren_refuses_empty_sizes():
    with pytest.raises(ValueError, match="expected positive sizes"):
        Siren(hidden=0)


def test_digit_images_are_upsampled_digits_in_the_unit_interval():
    images, labels = digit_images(16)
    assert images.shape == (1797, 1, 16, 16) and labels.shape == (1797,)
    assert float(images.min()) >= 0 and float(images.max()) <= 1 and float(images.max()) > 0.9
    assert set(labels.tolist()) == set(range(10))
    small, _ = digit_images(8)
    pooled = torch.nn.functional.avg_pool2d(images, 2)  # back at 8x8: the same digits, slightly blurred
    assert float(torch.corrcoef(torch.stack([pooled.flatten(), small.flatten()]))[0, 1]) > 0.95
    assert torch.allclose(images.mean(dim=(1, 2, 3)), small.mean(dim=(1, 2, 3)), atol=0.02)
    with pytest.raises(ValueError, match="image size >= 8"):
        digit_images(4)


def test_pixel_grid_is_row_major_pixel_centres():
    grid = pixel_grid(4)
    assert grid.shape == (16, 2)
    assert torch.allclose(grid[0], torch.tensor([-0.75, -0.75])) and torch.allclose(grid[1], torch.tensor([-0.75, -0.25]))
    assert torch.allclose(grid[-1], torch.tensor([0.75, 0.75]))


def test_dilation_is_a_3x3_maximum_and_never_darkens():
    images, _ = digit_images(16)
    out = dilate(images[:20])
    assert bool((out >= images[:20]).all()) and bool((out > images[:20]).any())
    dot = torch.zeros(1, 1, 7, 7)
    dot[0, 0, 3, 3] = 0.8
    expected = torch.zeros(1, 1, 7, 7)
    expected[0, 0, 2:5, 2:5] = 0.8
    assert torch.equal(dilate(dot), expected)


def test_contrast_stretches_around_the_image_mean_and_clips():
    images, _ = digit_images(16)
    x = images[:20]
    out = contrast(x)
    mean = x.mean(dim=(-2, -1), keepdim=True)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert bool((out[x > mean] >= x[x > mean]).all()) and bool((out[x < mean] <= x[x < mean]).all())
    assert torch.allclose(out, (mean + 2 * (x - mean)).clamp(0, 1))
    assert torch.equal(edit_target("contrast", x), out) and torch.equal(edit_target("dilate", x), dilate(x))
    with pytest.raises(ValueError, match="unknown edit target 'blur'"):
        edit_target("blur", x)


def test_fit_sirens_fits_each_image_and_a_group_fit_equals_fitting_alone():
    images, _ = digit_images(8)
    arch = dict(hidden=32)
    states, mse = fit_sirens(images[:3], [0, 1, 2], arch, steps=150)
    assert mse.shape == (3,) and bool((mse < 0.1 * images[:3].var()).all())
    alone, mse_alone = fit_sirens(images[1:2], [1], arch, steps=150)
    torch.testing.assert_close(alone[0], states[1], rtol=1e-4, atol=1e-4)
    model = Siren(**arch)
    model.load_state_dict(states[2])
    with torch.no_grad():
        rendered = model(pixel_grid(8))[:, 0]
    torch.testing.assert_close(((rendered - images[2].flatten()) ** 2).mean(), mse[2], rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="one seed per image"):
        fit_sirens(images[:2], [0], arch, steps=1)


def test_zoo_stores_records_and_a_second_build_fits_nothing(tmp_path):
    first = build_siren_zoo(tmp_path, 6, seed=1, **TINY)
    assert first["trained"] == 6
    assert build_siren_zoo(tmp_path, 6, seed=1, **TINY)["trained"] == 0
    zoo = Zoo.open(tmp_path)
    assert zoo.ids() == list(range(6)) and zoo.manifest["family"] == "siren"
    images, labels = digit_images(8)
    for record in zoo.records:
        assert labels[record["image"]] == record["label"]
        model = load_siren(zoo, record["id"])
        with torch.no_grad():
            mse = ((model(pixel_grid(8))[:, 0] - images[record["image"]].flatten()) ** 2).mean()
        assert math.isclose(float(mse), record["fit"]["mse"], rel_tol=1e-4, abs_tol=1e-8)
        assert math.isclose(record["fit"]["psnr"], 10 * math.log10(1 / record["fit"]["mse"]))
    assert len({r["image"] for r in zoo.records}) == 6  # distinct digits
    assert torch.equal(siren.siren_images(zoo)[2], images[zoo.record(2)["image"]])


def test_a_killed_build_continues_with_the_missing_inrs(tmp_path, monkeypatch):
    real = siren.fit_sirens
    calls = []

    def dies_on_the_second_group(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(siren, "fit_sirens", dies_on_the_second_group)
    with pytest.raises(KeyboardInterrupt):
        build_siren_zoo(tmp_path, 6, **TINY)
    assert Zoo.open(tmp_path).ids() == [0, 1, 2, 3]  # the first group was flushed
    monkeypatch.setattr(siren, "fit_sirens", real)
    assert build_siren_zoo(tmp_path, 6, **TINY)["trained"] == 2
    whole = tmp_path / "whole"
    build_siren_zoo(whole, 6, **TINY)
    resumed, fresh = Zoo.open(tmp_path), Zoo.open(whole)
    for i in range(6):  # what an INR is does not depend on the build being interrupted
        torch.testing.assert_close(resumed.tensors(i), fresh.tensors(i))


def test_continuing_a_zoo_with_other_settings_is_refused(tmp_path):
    build_siren_zoo(tmp_path, 2, **TINY)
    with pytest.raises(ZooError):
        build_siren_zoo(tmp_path, 2, **{**TINY, "hidden": 16})


def test_siren_from_manifest_refuses_other_zoos():
    with pytest.raises(ValueError, match="expected a zoo of family 'siren'"):
        siren_from_manifest({"family": "varying-cnn"})

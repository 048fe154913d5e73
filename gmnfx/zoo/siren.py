"""A zoo of 2D SIREN implicit neural representations of digit images, fitted many at once.

Each INR maps a pixel coordinate ``(row, col)`` in ``[-1, 1]^2`` to a grey value in ``[0, 1]``:
``Siren(2 -> hidden -> ... -> 1)`` is ``nn.Linear`` layers with ``sin`` between them (Sitzmann et al. 2020).
SIREN computes ``sin(omega_0 * (W x + b))``; here ``omega_0`` is folded into ``W`` and ``b`` (the layer stores
``omega_0 W``, ``omega_0 b`` and computes ``sin(W' x + b')``), which is the same function. ``omega_0 * x``
compiles too, but as an extra layer of scaling nodes; folded, the parameter graph is the plain MLP graph.
Fitting uses the learning rate SIREN's own parametrization would see (``omega_0`` times larger on the
folded sine layers), so the folding changes nothing but the stored numbers.

Images: scikit-learn's 8x8 digits scaled to ``[0, 1]`` and upsampled bilinearly (:func:`digit_images`).
Edit targets (:data:`TARGETS`): ``"dilate"`` (grey-scale morphological dilation, a 3x3 max filter) and
``"contrast"`` (``clip(mean + gain * (image - mean), 0, 1)`` around each image's mean, gain 2).

Storage is a :class:`gmnfx.zoo.Zoo` (resumable, shardable): manifest family ``"siren"`` with the architecture
(``"siren"``), image size and fitting settings; per INR the record ``{"image", "label", "seed", "fit":
{"mse", "psnr"}}`` and the ``state_dict`` of :func:`siren_from_manifest`.

Example::

    build_siren_zoo("/work/zoos/siren", 1000, seed=0)
    zoo = gmnfx.zoo.Zoo.open("/work/zoos/siren")
    inr = load_siren(zoo, 0)                            # nn.Module, coordinates [K, 2] -> values [K, 1]
    graph = gmnfx.compile(inr, torch.zeros(1, 2))       # exact: gmnfx.simulate reproduces inr
"""
from __future__ import annotations

import copy
import math
import time
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from gmnfx.zoo.data import digit_arrays

__all__ = ["Sine", "Siren", "siren_init_", "digit_images", "pixel_grid", "dilate", "contrast", "TARGETS",
           "edit_target", "fit_sirens", "build_siren_zoo", "siren_from_manifest", "load_siren", "siren_images"]

FAMILY = "siren"
CONTRAST_GAIN = 2.0


class Sine(nn.Module):
    """``sin(x)``, elementwise (SIREN's activation; its ``omega_0`` lives in the layer before)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x)


class Siren(nn.Sequential):
    """``Linear(in, hidden), Sine, [Linear(hidden, hidden), Sine] * (depth - 1), Linear(hidden, out)``.

    Args:
        in_features: coordinate dimension (default 2).
        hidden: width of the hidden layers (default 32).
        depth: number of sine layers (default 2).
        out_features: values per coordinate (default 1).

    Shapes:
        input [K, in_features] -> output [K, out_features]
    """

    def __init__(self, in_features: int = 2, hidden: int = 32, depth: int = 2, out_features: int = 1) -> None:
        if min(in_features, hidden, depth, out_features) < 1:
            raise ValueError(f"expected positive sizes (got in_features={in_features}, hidden={hidden}, "
                             f"depth={depth}, out_features={out_features})")
        widths = [in_features] + [hidden] * depth
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), Sine()]
        super().__init__(*layers, nn.Linear(hidden, out_features))


def _sine_linears(model: Siren) -> list[nn.Linear]:
    """The linear layers followed by a sine (all but the last)."""
    return [m for m in model if isinstance(m, nn.Linear)][:-1]


@torch.no_grad()
def siren_init_(model: Siren, omega_0: float = 30.0, generator: Optional[torch.Generator] = None) -> Siren:
    """SIREN's initialization with ``omega_0`` folded into the sine layers; in place, returns ``model``.

    First layer ``W ~ U(-1/in, 1/in)``, later layers ``W ~ U(-sqrt(6/in)/omega_0, sqrt(6/in)/omega_0)``, biases
    ``U(-1/sqrt(in), 1/sqrt(in))`` (PyTorch's default); then the sine layers' ``W`` and ``b`` are multiplied by
    ``omega_0``.
    """
    linears = [m for m in model if isinstance(m, nn.Linear)]
    for k, layer in enumerate(linears):
        fan_in = layer.in_features
        bound = 1 / fan_in if k == 0 else math.sqrt(6 / fan_in) / omega_0
        layer.weight.copy_(_uniform(layer.weight.shape, bound, generator))
        layer.bias.copy_(_uniform(layer.bias.shape, 1 / math.sqrt(fan_in), generator))
    for layer in _sine_linears(model):
        layer.weight.mul_(omega_0)
        layer.bias.mul_(omega_0)
    return model


def _uniform(shape: torch.Size, bound: float, generator: Optional[torch.Generator]) -> torch.Tensor:
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


# ------------------------------------------------------------------------------------ images and targets

def digit_images(size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 scikit-learn digits as ``[N, 1, size, size]`` in ``[0, 1]`` (bilinear upsampling), and labels."""
    if size < 8:
        raise ValueError(f"expected an image size >= 8, the digits' own resolution (got {size})")
    images, labels = digit_arrays()
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return images, labels


def pixel_grid(size: int) -> torch.Tensor:
    """Pixel-centre coordinates ``[size * size, 2]`` in ``(-1, 1)``, row-major: ``(row, col)`` per pixel."""
    axis = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    rows, cols = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([rows.flatten(), cols.flatten()], dim=1)


def dilate(images: torch.Tensor) -> torch.Tensor:
    """Grey-scale morphological dilation with a 3x3 square: each pixel becomes its neighbourhood's maximum.

    Shapes: ``[N, 1, H, W]`` -> ``[N, 1, H, W]`` (>= the input everywhere).
    """
    return F.max_pool2d(images, kernel_size=3, stride=1, padding=1)


def contrast(images: torch.Tensor, gain: float = CONTRAST_GAIN) -> torch.Tensor:
    """Contrast enhancement: ``clip(m + gain * (x - m), 0, 1)`` with ``m`` each image's mean.

    Shapes: ``[N, 1, H, W]`` -> ``[N, 1, H, W]``.
    """
    mean = images.mean(dim=(-2, -1), keepdim=True)
    return (mean + gain * (images - mean)).clamp(0, 1)


TARGETS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"dilate": dilate, "contrast": contrast}


def edit_target(name: str, images: torch.Tensor) -> torch.Tensor:
    """The edited images the INR editor must render: ``TARGETS[name](images)``."""
    if name not in TARGETS:
        raise ValueError(f"unknown edit target {name!r}; known: {sorted(TARGETS)}")
    return TARGETS[name](images)


# ------------------------------------------------------------------------------------------- fitting

def fit_sirens(images: torch.Tensor, seeds: list[int], arch: dict, *, steps: int = 300, lr: float = 3e-4,
               omega_0: float = 30.0) -> tuple[list[dict], torch.Tensor]:
    """Fit one SIREN per image, all at once (stacked parameters, one ``vmap``-ed forward, Adam).

    Adam's step size is ``lr * omega_0`` on the (folded) sine layers and ``lr`` on the last layer, i.e. ``lr``
    in SIREN's own parametrization. Each model's loss is its own mean squared error, so a model's fit does not
    depend on the others in the group.

    Args:
        images: ``[M, 1, S, S]`` in ``[0, 1]``.
        seeds: one initialization seed per image.
        arch: keyword arguments of :class:`Siren`.

    Returns:
        ``(state_dicts, mse)``: one state_dict per image and the final per-image MSE ``[M]``.
    """
    if len(seeds) != images.shape[0]:
        raise ValueError(f"expected one seed per image (got {len(seeds)} seeds, {images.shape[0]} images)")
    models = [siren_init_(Siren(**arch), omega_0, torch.Generator().manual_seed(s)) for s in seeds]
    params, _ = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    coords = pixel_grid(images.shape[-1])
    target = images.flatten(1)  # [M, S*S]

    def per_model_mse(p: dict) -> torch.Tensor:
        out = vmap(lambda q: functional_call(base, q, (coords,)))(p)[..., 0]
        return ((out - target) ** 2).mean(1)

    last = f"{len(base) - 1}."
    groups = [{"params": [v for k, v in params.items() if not k.startswith(last)], "lr": lr * omega_0},
              {"params": [v for k, v in params.items() if k.startswith(last)], "lr": lr}]
    optimizer = torch.optim.Adam(groups)
    for _ in range(steps):
        loss = per_model_mse(params)
        optimizer.zero_grad()
        loss.sum().backward()
        optimizer.step()
    with torch.no_grad():
        mse = per_model_mse(params)
    return [{k: v[i].detach().clone() for k, v in params.items()} for i in range(len(seeds))], mse


def _psnr(mse: float) -> float:
    """Peak signal-to-noise ratio of images in [0, 1]."""
    return 10 * math.log10(1 / mse) if mse > 0 else float("inf")


def siren_from_manifest(manifest: dict) -> Siren:
    """An (uninitialized) SIREN with the zoo's architecture."""
    if manifest.get("family") != FAMILY:
        raise ValueError(f"expected a zoo of family {FAMILY!r} (got {manifest.get('family')!r}); build one with "
                         "gmnfx.zoo.siren.build_siren_zoo or `gmnfx inr build`")
    return Siren(**manifest["arch"])


def load_siren(zoo, model_id: int) -> Siren:
    """INR ``model_id`` of a SIREN zoo (a :class:`gmnfx.zoo.Zoo`) with its fitted weights, in eval mode."""
    model = siren_from_manifest(zoo.manifest)
    model.load_state_dict(zoo.tensors(model_id))
    return model.eval()


def siren_images(zoo) -> torch.Tensor:
    """The images of ``zoo`` (a SIREN zoo), one per stored INR in ``zoo.ids()`` order: ``[M, 1, S, S]``."""
    images, _ = digit_images(zoo.manifest["image_size"])
    return images[[zoo.record(i)["image"] for i in zoo.ids()]]


def _assignment(n: int, seed: int, num_images: int) -> list[int]:
    """Image index of every INR id: a seeded permutation of the images, repeated if ``n`` exceeds them."""
    order = torch.randperm(num_images, generator=torch.Generator().manual_seed(seed)).tolist()
    return [order[i % num_images] for i in range(n)]


def build_siren_zoo(root, n: int, *, seed: int = 0, hidden: int = 32, depth: int = 2, image_size: int = 16,
                    omega_0: float = 30.0, steps: int = 300, lr: float = 3e-4, group_size: int = 250,
                    shard: tuple[int, int] = (0, 1), log: Optional[Callable[[str], None]] = print) -> dict:
    """Fit the INRs of ``shard`` that the zoo at ``root`` does not hold yet and store them; returns a summary.

    INR ``i`` fits image ``_assignment(n, seed)[i]`` from the initialization seed ``seed * 1_000_003 + i``, so
    what an INR is depends only on ``(seed, i)`` and the settings, never on grouping, sharding or resuming.
    Re-running with the same settings continues a killed build; other settings are refused (the manifest).

    Returns:
        ``{"trained", "seconds", "mean_psnr"}`` (``mean_psnr`` over the INRs fitted by this call, NaN if none).
    """
    from gmnfx.zoo.storage import ZooWriter, shard_model_ids

    if n < 1 or group_size < 1:
        raise ValueError(f"expected n >= 1 and group_size >= 1 (got n={n}, group_size={group_size})")
    arch = {"in_features": 2, "hidden": hidden, "depth": depth, "out_features": 1}
    images, labels = digit_images(image_size)
    manifest = {"family": FAMILY, "n": n, "seed": seed, "arch": arch, "image_size": image_size,
                "images": "sklearn-digits, /16, bilinear upsampling", "omega_0": omega_0,
                "fit": {"steps": steps, "lr": lr, "optimizer": "adam", "loss": "mse"}}
    which = _assignment(n, seed, len(images))
    start, psnrs = time.perf_counter(), []
    with ZooWriter(root, manifest, shard=shard, flush_every=group_size) as writer:
        todo = [i for i in shard_model_ids(n, *shard) if i not in writer.done]
        if log:
            log(f"siren zoo {root}: {len(writer.done)} INRs stored, {len(todo)} to fit")
        for g in range(0, len(todo), group_size):
            ids = todo[g:g + group_size]
            seeds = [seed * 1_000_003 + i for i in ids]
            states, mse = fit_sirens(images[[which[i] for i in ids]], seeds, arch, steps=steps, lr=lr,
                                     omega_0=omega_0)
            for i, s, state, err in zip(ids, seeds, states, mse.tolist()):
                writer.add(i, state, {"image": which[i], "label": int(labels[which[i]]), "seed": s,
                                      "fit": {"mse": err, "psnr": _psnr(err)}})
                psnrs.append(_psnr(err))
            writer.flush()  # a kill loses at most the group being fitted
            if log:
                log(f"  fitted {g + len(ids)}/{len(todo)} INRs, mean PSNR of the group "
                    f"{sum(psnrs[-len(ids):]) / len(ids):.1f} dB")
    seconds = time.perf_counter() - start
    return {"trained": len(psnrs), "seconds": seconds,
            "mean_psnr": sum(psnrs) / len(psnrs) if psnrs else float("nan")}

"""Architecture families of a zoo and the configurations sampled for each model.

A model's configuration depends only on ``(seed, family, model_id)``, never on how the zoo is sharded or
resumed. Architectures are drawn per block of ``ARCH_BLOCK`` consecutive ids, so models sharing an architecture
come in groups that train together (vectorized); hyperparameters are drawn per model so that test accuracies
spread widely: learning rate, weight decay, epochs, label noise, initialization scale (and the architecture's
dropout).

Families (every model reads ``[B, 1, 8, 8]`` images and returns ``[B, classes]`` logits):

* ``varying-cnn``: 2D CNNs of depth 1-3, width 4-32, kernel 3 or 5, no norm / BatchNorm / GroupNorm,
  ReLU / tanh / GELU, dropout.
* ``diverse``: 2D CNNs as above, 1D CNNs over the image rows, DeepSets over the rows, small ResNets and small ViTs.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FAMILIES", "ARCH_BLOCK", "ModelConfig", "sample_config", "build_model", "arch_key"]

ARCH_BLOCK = 32
WIDTHS = (4, 6, 8, 12, 16, 24, 32)
_WIDTH_WEIGHTS = (3, 3, 3, 3, 2, 1, 1)  # mostly narrow: the wide ones are the out-of-distribution test
_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
_KINDS = ("cnn2d", "cnn1d", "deepsets", "resnet", "vit")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild and retrain one model of a zoo."""

    model_id: int
    family: str
    arch: dict
    hyper: dict

    def to_record(self) -> dict:
        return asdict(self)


def arch_key(arch: dict) -> str:
    """Models with equal keys have identical architectures (and train together)."""
    return json.dumps(arch, sort_keys=True)


def sample_config(family: str, model_id: int, seed: int = 0) -> ModelConfig:
    """The configuration of model ``model_id`` of a ``family`` zoo built with ``seed``."""
    if family not in FAMILIES:
        raise ValueError(f"unknown zoo family {family!r}; known: {sorted(FAMILIES)}")
    arch_rng = random.Random(f"{seed}:{family}:arch:{model_id // ARCH_BLOCK}")
    hyper_rng = random.Random(f"{seed}:{family}:hyper:{model_id}")
    arch = FAMILIES[family](arch_rng)
    hyper = {
        "lr": _log_uniform(hyper_rng, 3e-4, 3e-2),
        "weight_decay": 0.0 if hyper_rng.random() < 0.3 else _log_uniform(hyper_rng, 1e-5, 1e-2),
        "epochs": hyper_rng.randint(2, 20),
        "label_noise": 0.0 if hyper_rng.random() < 0.4 else hyper_rng.uniform(0.0, 0.6),
        "init_scale": _log_uniform(hyper_rng, 0.3, 3.0),
        "seed": hyper_rng.randrange(2 ** 31),
    }
    return ModelConfig(model_id, family, arch, hyper)


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def _cnn2d_arch(rng: random.Random) -> dict:
    return {"kind": "cnn2d", "depth": rng.randint(1, 3), "width": rng.choices(WIDTHS, _WIDTH_WEIGHTS)[0],
            "kernel": rng.choice((3, 5)), "norm": rng.choice(("none", "bn", "gn")),
            "activation": rng.choice(tuple(_ACTIVATIONS)), "dropout": rng.choice((0.0, 0.1, 0.25))}


def _diverse_arch(rng: random.Random) -> dict:
    kind = rng.choice(_KINDS)
    arch = _cnn2d_arch(rng)
    arch["kind"] = kind
    # fields a kind does not use are fixed, so equal architectures get equal keys and train together
    if kind == "vit":
        arch.update(width=rng.choice((8, 12, 16)), depth=rng.randint(1, 2), kernel=0, norm="ln", activation="gelu")
    if kind == "resnet":
        arch.update(depth=rng.randint(1, 2), kernel=3)
    if kind == "deepsets":
        arch.update(kernel=0, norm="none")
    return arch


FAMILIES = {"varying-cnn": _cnn2d_arch, "diverse": _diverse_arch}


# ---------------------------------------------------------------------------------------------- models
def _norm(kind: str, width: int, dims: int = 2) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm2d(width) if dims == 2 else nn.BatchNorm1d(width)
    if kind == "gn":
        return nn.GroupNorm(2, width)
    return nn.Identity()


class _Rows(nn.Module):
    """[B, 1, 8, 8] images -> [B, 8, 8]: rows as channels (1D CNN) or as set elements (DeepSets)."""

    def forward(self, x):
        return x.flatten(1, 2)


class _Mean(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return x.mean(self.dim)


class _ResidualBlock(nn.Module):
    def __init__(self, width: int, norm: str, activation: str):
        super().__init__()
        self.conv1, self.norm1 = nn.Conv2d(width, width, 3, padding=1), _norm(norm, width)
        self.conv2, self.norm2 = nn.Conv2d(width, width, 3, padding=1), _norm(norm, width)
        self.act = _ACTIVATIONS[activation]()

    def forward(self, x):
        return self.act(x + self.norm2(self.conv2(self.act(self.norm1(self.conv1(x))))))


class _TinyViT(nn.Module):
    """2x2 patches of 4x4 pixels, learned positions, pre-norm blocks, mean over tokens."""

    def __init__(self, width: int, depth: int, dropout: float, classes: int):
        super().__init__()
        self.patches = nn.Conv2d(1, width, 4, 4)
        self.pos = nn.Parameter(torch.zeros(1, 4, width))
        self.blocks = nn.ModuleList(_Block(width) for _ in range(depth))
        self.norm, self.drop, self.head = nn.LayerNorm(width), nn.Dropout(dropout), nn.Linear(width, classes)

    def forward(self, x):
        x = self.patches(x).flatten(2).transpose(1, 2) + self.pos
        for block in self.blocks:
            x = block(x)
        return self.head(self.drop(self.norm(x).mean(1)))


class _Block(nn.Module):
    def __init__(self, width: int, heads: int = 2):
        super().__init__()
        self.heads = heads
        self.norm1, self.qkv, self.proj = nn.LayerNorm(width), nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.norm2, self.fc1, self.fc2 = nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.Linear(2 * width, width)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(d, dim=2)
        q, k, v = (y.view(b, t, self.heads, d // self.heads).transpose(1, 2) for y in (q, k, v))
        scores = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // self.heads), dim=-1)
        x = x + self.proj((scores @ v).transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


def build_model(arch: dict, classes: int = 10) -> nn.Module:
    """A freshly initialized model of architecture ``arch`` (from :func:`sample_config`)."""
    kind, width, act = arch["kind"], arch["width"], _ACTIVATIONS[arch["activation"]]
    drop = nn.Dropout(arch["dropout"])
    if kind == "cnn2d":
        layers, cin = [], 1
        for i in range(arch["depth"]):
            layers += [nn.Conv2d(cin, width, arch["kernel"], padding=arch["kernel"] // 2), _norm(arch["norm"], width),
                       act()]
            if i < arch["depth"] - 1:
                layers.append(nn.MaxPool2d(2))
            cin = width
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), drop, nn.Linear(width, classes))
    if kind == "cnn1d":
        layers, cin = [_Rows()], 8
        for _ in range(arch["depth"]):
            layers += [nn.Conv1d(cin, width, arch["kernel"], padding=arch["kernel"] // 2),
                       _norm(arch["norm"], width, dims=1), act()]
            cin = width
        return nn.Sequential(*layers, _Mean(2), drop, nn.Linear(width, classes))
    if kind == "deepsets":
        phi = [nn.Linear(8, width), act()]
        for _ in range(arch["depth"] - 1):
            phi += [nn.Linear(width, width), act()]
        return nn.Sequential(_Rows(), *phi, _Mean(1), nn.Linear(width, width), act(), drop, nn.Linear(width, classes))
    if kind == "resnet":
        blocks = [_ResidualBlock(width, arch["norm"], arch["activation"]) for _ in range(arch["depth"])]
        return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), _norm(arch["norm"], width), act(), *blocks,
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), drop, nn.Linear(width, classes))
    if kind == "vit":
        return _TinyViT(width, arch["depth"], arch["dropout"], classes)
    raise ValueError(f"unknown architecture kind {kind!r} (known: {_KINDS})")

"""Train many same-architecture models at once: parameters stacked, one vectorized forward (``torch.func.vmap``).

Each model keeps its own initialization (seed and scale), learning rate, weight decay, number of epochs, label
noise, data order and dropout masks; only the architecture is shared. The optimizer is AdamW written over the
stacked parameters, with per-model learning rates and weight decays; a model whose epochs are over stops being
updated (its BatchNorm running statistics keep following its final weights).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from gmnfx.zoo.data import Dataset
from gmnfx.zoo.families import ModelConfig, arch_key, build_model

__all__ = ["TrainedModel", "init_model", "train_group", "train_one"]

_BETAS, _EPS = (0.9, 0.999), 1e-8


@dataclass
class TrainedModel:
    config: ModelConfig
    tensors: dict  # state_dict: parameters and buffers
    metrics: dict  # test_acc, test_loss, train_acc (clean labels, eval mode), train_loss (last epoch, as trained)


def init_model(config: ModelConfig, classes: int) -> nn.Module:
    """The model of ``config`` at initialization: seeded, weight matrices and kernels scaled by ``init_scale``."""
    torch.manual_seed(config.hyper["seed"])
    model = build_model(config.arch, classes)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(config.hyper["init_scale"])
    return model


def _noisy_labels(configs: list[ModelConfig], y: torch.Tensor, classes: int) -> torch.Tensor:
    rows = []
    for c in configs:
        g = torch.Generator().manual_seed(c.hyper["seed"] + 1)
        flip = torch.rand(len(y), generator=g) < c.hyper["label_noise"]
        rows.append(torch.where(flip, torch.randint(0, classes, (len(y),), generator=g), y))
    return torch.stack(rows)


def train_group(configs: list[ModelConfig], data: Dataset, *, batch_size: int = 64) -> list[TrainedModel]:
    """Train ``configs`` (all of one architecture) together; returns one :class:`TrainedModel` per config."""
    if not configs:
        return []
    keys = {arch_key(c.arch) for c in configs}
    if len(keys) > 1:
        raise ValueError(f"train_group expects one architecture (got {len(keys)}): group configs by arch_key")
    classes, m = data.num_classes, len(configs)
    models = [init_model(c, classes) for c in configs]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")

    def forward(p, b, x):
        return functional_call(base, (p, b), (x,))

    batched = vmap(forward, randomness="different")
    labels = _noisy_labels(configs, data.y_train, classes)
    n = len(data.y_train)
    steps_per_epoch = math.ceil(n / batch_size)
    epochs = torch.tensor([c.hyper["epochs"] for c in configs])
    lr = torch.tensor([c.hyper["lr"] for c in configs])
    wd = torch.tensor([c.hyper["weight_decay"] for c in configs])
    moments = {k: (torch.zeros_like(v), torch.zeros_like(v)) for k, v in params.items()}
    order_gens = [torch.Generator().manual_seed(c.hyper["seed"] + 2) for c in configs]  # each model's data order
    last_epoch_loss = torch.zeros(m)
    base.train()
    step = 0
    for epoch in range(int(epochs.max())):
        order = torch.stack([torch.randperm(n, generator=g) for g in order_gens])
        active = (epoch < epochs).float()
        epoch_loss = torch.zeros(m)
        for s in range(steps_per_epoch):
            idx = order[:, s * batch_size:(s + 1) * batch_size]
            logits = batched(params, buffers, data.x_train[idx])
            loss = F.cross_entropy(logits.flatten(0, 1), labels.gather(1, idx).flatten(), reduction="none")
            loss = loss.view(m, -1).mean(1)
            grads = torch.autograd.grad(loss.sum(), list(params.values()))
            step += 1
            _adamw_step(params, grads, moments, step, lr * active, wd)
            epoch_loss += loss.detach() * idx.shape[1]
        last_epoch_loss = torch.where(active > 0, epoch_loss / n, last_epoch_loss)
    base.eval()
    metrics = _evaluate(batched, params, buffers, data, last_epoch_loss)
    return [TrainedModel(c, {k: v[i].detach().clone() for k, v in {**params, **buffers}.items()},
                         {name: float(values[i]) for name, values in metrics.items()})
            for i, c in enumerate(configs)]


def _adamw_step(params: dict, grads, moments: dict, step: int, lr: torch.Tensor, wd: torch.Tensor) -> None:
    b1, b2 = _BETAS
    with torch.no_grad():
        for (name, p), g in zip(params.items(), grads):
            m1, m2 = moments[name]
            m1.mul_(b1).add_(g, alpha=1 - b1)
            m2.mul_(b2).addcmul_(g, g, value=1 - b2)
            shape = (-1,) + (1,) * (p.dim() - 1)
            update = (m1 / (1 - b1 ** step)) / ((m2 / (1 - b2 ** step)).sqrt() + _EPS) + wd.view(shape) * p
            p.sub_(lr.view(shape) * update)


def _evaluate(batched, params: dict, buffers: dict, data: Dataset, train_loss: torch.Tensor) -> dict:
    """Test accuracy and loss, clean-label train accuracy (eval mode), and the last epoch's training loss."""
    m = train_loss.shape[0]
    out = {}
    with torch.no_grad():
        for split, x, y in (("test", data.x_test, data.y_test), ("train", data.x_train, data.y_train)):
            logits = batched(params, buffers, x.expand(m, *x.shape))
            out[f"{split}_acc"] = (logits.argmax(-1) == y).float().mean(1)
            if split == "test":
                losses = F.cross_entropy(logits.flatten(0, 1), y.repeat(m), reduction="none")
                out["test_loss"] = losses.view(m, -1).mean(1)
    out["train_loss"] = train_loss
    return out


def train_one(config: ModelConfig, data: Dataset, *, batch_size: int = 64) -> TrainedModel:
    """One model on its own (the reference :func:`train_group` is benchmarked against)."""
    return train_group([config], data, batch_size=batch_size)[0]

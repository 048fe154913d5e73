"""Datasets the zoo's networks are trained on: tensors in memory, split once, shared by every model.

The default is scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes, installed with
scikit-learn: no download at run time). Any ``(inputs, labels)`` tensors work: build a :class:`Dataset` from your
own with :func:`split_dataset`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Dataset", "split_dataset", "load_digits", "DATASETS", "load_dataset"]


@dataclass
class Dataset:
    """A classification dataset split into train and test tensors (inputs ``[N, *shape]`` float, labels ``[N]``)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def describe(self) -> dict:
        return {"name": self.name, "train": len(self.y_train), "test": len(self.y_test),
                "input_shape": list(self.input_shape), "num_classes": self.num_classes}


def split_dataset(name: str, inputs: torch.Tensor, labels: torch.Tensor, *, test_fraction: float = 0.3,
                  seed: int = 0) -> Dataset:
    """Shuffle with ``seed`` and split into train/test. ``labels`` are integers in ``[0, num_classes)``."""
    if inputs.shape[0] != labels.shape[0]:
        raise ValueError(f"expected one label per input (got {inputs.shape[0]} inputs, {labels.shape[0]} labels)")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1) (got {test_fraction})")
    labels = labels.long()
    if labels.numel() == 0 or int(labels.min()) < 0:
        raise ValueError("expected a non-empty dataset with labels >= 0")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    num_test = max(1, round(len(labels) * test_fraction))
    test, train = order[:num_test], order[num_test:]
    inputs = inputs.float()
    return Dataset(name, inputs[train], labels[train], inputs[test], labels[test], int(labels.max()) + 1)


def digit_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 of scikit-learn's 8x8 digits: images ``[N, 1, 8, 8]`` scaled to [0, 1], and labels ``[N]``."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as e:  # pragma: no cover - scikit-learn is a dependency
        raise ImportError("the digits dataset comes with scikit-learn: pip install scikit-learn") from e
    digits = sklearn_digits()
    return torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0, torch.tensor(digits.target)


def load_digits(seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits as ``[N, 1, 8, 8]`` images scaled to [0, 1]; 30% held out for testing."""
    images, labels = digit_arrays()
    return split_dataset("digits", images, labels, seed=seed)


DATASETS = {"digits": load_digits}


def load_dataset(name: str, seed: int = 0) -> Dataset:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)} (or build a Dataset with "
                         "gmnfx.zoo.data.split_dataset from your own tensors)")
    return DATASETS[name](seed)

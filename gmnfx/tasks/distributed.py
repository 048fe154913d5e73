"""Data-parallel training of metanetworks under ``torchrun``, with no code changes for single-process runs.

:meth:`Distributed.from_env` reads the variables ``torchrun`` sets (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR``...). Without them (plain ``python``) it is a single process and every method is the identity.
Under ``torchrun --nproc_per_node K`` it joins the process group (NCCL when CUDA is available, gloo on CPUs),
wraps the model in ``DistributedDataParallel``, and gives each rank an equal share of every global minibatch,
with the loss scaled so that the averaged gradient equals the single-process gradient of the whole minibatch.
All ranks see the same data order (same seed), so training with K processes follows the same trajectory as
one process, up to float summation order.

Training loop::

    ctx = Distributed.from_env()
    model = ctx.wrap(predictor)
    order = torch.randperm(n, generator=generator)  # the same order on every rank (same seed)
    for local, scale in ctx.minibatches(order, batch_size):
        loss = loss_fn(model(inputs[local]), targets[local])
        optimizer.zero_grad(); (loss * scale).backward(); optimizer.step()
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["Distributed"]

T = TypeVar("T")


@dataclass(frozen=True)
class Distributed:
    """Where this process stands in a data-parallel run: ``rank`` of ``world_size``, on ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @classmethod
    def from_env(cls, backend: Optional[str] = None) -> "Distributed":
        """Join the process group that ``torchrun`` describes in the environment, or run as one process.

        ``backend`` defaults to ``"nccl"`` when CUDA is available, else ``"gloo"``. Calling it again in the
        same process reuses the group.
        """
        world_size = _env_int("WORLD_SIZE", 1)
        if world_size <= 1:
            return cls()
        rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
        missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
        if missing:
            raise RuntimeError(f"WORLD_SIZE={world_size} but {', '.join(missing)} not set: launch with "
                               f"`torchrun --nproc_per_node {world_size} ...`, which sets them")
        cuda = torch.cuda.is_available()
        device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group(backend or ("nccl" if cuda else "gloo"), rank=rank, world_size=world_size)
        return cls(rank, world_size, local_rank, device)

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that prints, plots and saves."""
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` itself in one process; ``DistributedDataParallel(model)`` (on this rank's device) otherwise."""
        if not self.is_distributed:
            return model
        model.to(self.device)
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)

    def split_batch(self, batch: Sequence[T]) -> Optional[Sequence[T]]:
        """This rank's share of the global minibatch ``batch`` (items ``rank, rank + world_size, ...``), or
        ``None`` on every rank when ``batch`` has fewer items than there are ranks (the step is skipped)."""
        if not self.is_distributed:
            return batch
        if len(batch) < self.world_size:
            return None
        return batch[self.rank::self.world_size]

    def minibatches(self, order: Sequence[T], batch_size: int) -> Iterator[tuple[Sequence[T], float]]:
        """Walk ``order`` in global minibatches of ``batch_size``; yield this rank's share of each with its
        :meth:`loss_scale`. Minibatches with fewer items than ranks are skipped on every rank."""
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            local = self.split_batch(batch)
            if local is not None:
                yield local, self.loss_scale(len(local), len(batch))

    def loss_scale(self, local_size: int, global_size: int) -> float:
        """Factor for a rank's mean loss over ``local_size`` items so that DDP's gradient average equals the
        gradient of the mean loss over all ``global_size`` items of the minibatch (1.0 in one process)."""
        return local_size * self.world_size / global_size

    def all_mean(self, value: float) -> float:
        """The mean of ``value`` over ranks."""
        if not self.is_distributed:
            return float(value)
        tensor = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor) / self.world_size

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group (a no-op in one process)."""
        if self.is_distributed and dist.is_initialized():
            dist.destroy_process_group()


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise RuntimeError(f"environment variable {name} must be an integer (got {text!r})") from None

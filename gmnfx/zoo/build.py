"""``build_zoo``: sample, train and store a zoo, resumably and in shards (``gmnfx zoo build``)."""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Callable, Optional, Sequence

from gmnfx.zoo.data import load_dataset
from gmnfx.zoo.families import ModelConfig, arch_key, sample_config
from gmnfx.zoo.storage import ZooWriter, shard_model_ids
from gmnfx.zoo.train import train_group

__all__ = ["build_zoo", "plan_groups"]


def plan_groups(configs: list[ModelConfig], group_size: int) -> list[list[ModelConfig]]:
    """Configs grouped by architecture, in chunks of at most ``group_size``, ordered by their first id."""
    by_arch: dict[str, list[ModelConfig]] = defaultdict(list)
    for c in configs:
        by_arch[arch_key(c.arch)].append(c)
    groups = [members[i:i + group_size] for members in by_arch.values() for i in range(0, len(members), group_size)]
    return sorted(groups, key=lambda g: g[0].model_id)


def build_zoo(root, family: str, num_models: int, *, seed: int = 0, dataset: str = "digits",
              shard: tuple[int, int] = (0, 1), group_size: int = 32, progress: bool = True,
              log: Optional[Callable[[str], None]] = print, ids: Optional[Sequence[int]] = None) -> dict:
    """Train the models of ``shard`` that ``root`` does not hold yet and store them; returns a summary.

    Re-running with the same arguments continues where a killed run stopped; another ``shard=(i, n)`` builds
    a disjoint part of the same zoo (possibly at the same time, from another process or machine).
    ``ids`` restricts the build to those models of the shard (e.g. a quick subset; the rest stay missing).
    """
    if num_models < 1:
        raise ValueError(f"expected a positive number of models (got {num_models})")
    data = load_dataset(dataset, seed=seed)
    # what the zoo is (resuming with other settings is refused); not which gmnfx wrote it
    manifest = {"family": family, "n": num_models, "seed": seed, "dataset": data.describe()}
    start = time.perf_counter()
    trained = 0
    with ZooWriter(root, manifest, shard=shard, flush_every=group_size) as writer:
        owned = shard_model_ids(num_models, *shard)
        if ids is not None:
            outside = sorted(set(ids) - set(owned))
            if outside:
                raise ValueError(f"ids {outside[:5]} are not models of shard {shard[0]}/{shard[1]} of a "
                                 f"{num_models}-model zoo")
            owned = sorted(set(ids))
        todo = [i for i in owned if i not in writer.done]
        groups = plan_groups([sample_config(family, i, seed) for i in todo], group_size)
        if log:
            log(f"zoo {root}: shard {shard[0]}/{shard[1]}: {len(writer.done)} models stored, {len(todo)} to train "
                f"in {len(groups)} groups")
        bar = _progress(len(todo), progress)
        for group in groups:
            for model in train_group(group, data):
                writer.add(model.config.model_id, model.tensors,
                           {"config": model.config.to_record(), "metrics": model.metrics})
            writer.flush()  # a kill loses at most the group being trained
            trained += len(group)
            bar.update(len(group))
        bar.close()
    seconds = time.perf_counter() - start
    summary = {"trained": trained, "seconds": seconds,
               "models_per_minute": 60 * trained / seconds if trained and seconds > 0 else 0.0}
    if log and trained:
        log(f"trained {trained} models in {seconds:.0f} s ({summary['models_per_minute']:.0f} models/min)")
    return summary


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="model", disable=not enabled, desc="training")

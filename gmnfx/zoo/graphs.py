"""A zoo as GMN-ready graphs: every model compiled with ``gmnfx.compile`` once, cached next to the zoo."""
from __future__ import annotations

import os
from typing import Optional, Sequence

import torch

import gmnfx
from gmnfx.graphs import FORMAT_VERSION, ParameterGraph, load_graph
from gmnfx.zoo.families import build_model
from gmnfx.zoo.storage import Zoo

__all__ = ["load_model", "zoo_graphs", "cache_dir"]


def load_model(zoo: Zoo, model_id: int) -> torch.nn.Module:
    """Model ``model_id`` of ``zoo`` rebuilt from its configuration, with its trained weights, in eval mode."""
    record = zoo.record(model_id)
    classes = zoo.manifest.get("dataset", {}).get("num_classes", 10)
    model = build_model(record["config"]["arch"], classes)
    model.load_state_dict(zoo.tensors(model_id))
    return model.eval()


def cache_dir(zoo: Zoo) -> str:
    """Where compiled graphs are cached: ``ROOT/graphs-v{graph format version}``."""
    return os.path.join(zoo.root, f"graphs-v{FORMAT_VERSION}")


def zoo_graphs(zoo: Zoo, ids: Optional[Sequence[int]] = None, *, cache: bool = True,
               progress: bool = False) -> list[ParameterGraph]:
    """The parameter graphs of the models ``ids`` (default: all), compiled once and then read from the cache.

    A cached graph is used only when it was written for the same model file (its record's ``file``), so a
    rebuilt zoo never serves stale graphs.
    """
    from tqdm import tqdm

    ids = zoo.ids() if ids is None else list(ids)
    shape = zoo.manifest.get("dataset", {}).get("input_shape", [1, 8, 8])
    example = torch.zeros(1, *shape)
    directory = cache_dir(zoo)
    if cache:
        os.makedirs(directory, exist_ok=True)
    graphs = []
    for model_id in tqdm(ids, disable=not progress, desc="compiling", unit="model"):
        tag = os.path.basename(zoo.record(model_id)["file"]).replace(".safetensors", "")
        path = os.path.join(directory, f"{model_id}-{tag}.safetensors")
        if cache and os.path.exists(path):
            graphs.append(load_graph(path))
            continue
        graph = gmnfx.compile(load_model(zoo, model_id), example)
        if cache:
            graph.save(path)
        graphs.append(graph)
    return graphs

"""Model zoos (``gmnfx.zoo``): many trained networks, stored resumably and in shards, for metanetworks to learn on.

    gmnfx zoo build --family varying-cnn --n 2000 --out zoo/        # or build_zoo(...) from Python
    zoo = gmnfx.zoo.Zoo.open("zoo/"); zoo.records[0]["metrics"]["test_acc"]; zoo.tensors(0)  # a state_dict
    graphs = gmnfx.zoo.zoo_graphs(zoo)                             # compiled once, cached in zoo/graphs-v2/
"""
from gmnfx.zoo.build import build_zoo
from gmnfx.zoo.data import Dataset, load_dataset, load_digits, split_dataset
from gmnfx.zoo.families import FAMILIES, ModelConfig, build_model, sample_config
from gmnfx.zoo.graphs import load_model, zoo_graphs
from gmnfx.zoo.storage import Zoo, ZooError, ZooWriter, parse_shard, shard_model_ids
from gmnfx.zoo.train import TrainedModel, train_group

__all__ = ["Zoo", "ZooWriter", "ZooError", "parse_shard", "shard_model_ids", "build_zoo", "Dataset", "load_dataset",
           "load_digits", "split_dataset", "FAMILIES", "ModelConfig", "build_model", "sample_config", "TrainedModel",
           "train_group", "load_model", "zoo_graphs"]

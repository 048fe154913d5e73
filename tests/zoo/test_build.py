"""build_zoo and `gmnfx zoo build`: a small zoo end to end, resumed, sharded, and loadable as a state_dict."""
from __future__ import annotations

import pytest

from gmnfx.cli import main
from gmnfx.zoo.build import build_zoo, plan_groups
from gmnfx.zoo.families import ARCH_BLOCK, build_model, sample_config
from gmnfx.zoo.storage import Zoo


def test_plan_groups_keeps_architectures_apart_and_caps_group_size():
    configs = [sample_config("varying-cnn", i, 0) for i in list(range(5)) + list(range(ARCH_BLOCK, ARCH_BLOCK + 3))]
    groups = plan_groups(configs, group_size=2)
    assert [[c.model_id for c in g] for g in groups] == [[0, 1], [2, 3], [4], [32, 33], [34]]


def test_build_then_rerun_trains_nothing_twice(tmp_path):
    root = tmp_path / "zoo"
    first = build_zoo(root, "varying-cnn", 3, progress=False, log=None)
    again = build_zoo(root, "varying-cnn", 3, progress=False, log=None)
    assert first["trained"] == 3 and again["trained"] == 0
    zoo = Zoo.open(root)
    assert zoo.ids() == [0, 1, 2] and zoo.missing() == []
    record = zoo.records[1]
    assert record["config"] == sample_config("varying-cnn", 1, 0).to_record()
    assert 0.0 <= record["metrics"]["test_acc"] <= 1.0
    model = build_model(record["config"]["arch"])
    model.load_state_dict(zoo.tensors(1))  # what the zoo stores is the model's state_dict


def test_two_shards_build_one_zoo(tmp_path):
    root = tmp_path / "zoo"
    build_zoo(root, "varying-cnn", 4, shard=(1, 2), progress=False, log=None)
    assert Zoo.open(root).ids() == [1, 3]
    build_zoo(root, "varying-cnn", 4, shard=(0, 2), progress=False, log=None)
    assert Zoo.open(root).ids() == [0, 1, 2, 3]


def test_cli_build_and_info(tmp_path, capsys):
    root = tmp_path / "zoo"
    assert main(["zoo", "build", "--family", "varying-cnn", "--n", "2", "--out", str(root), "-q"]) == 0
    assert main(["zoo", "info", str(root)]) == 0
    out = capsys.readouterr().out
    assert "2 of 2 models" in out and "test accuracy" in out


def test_cli_refuses_continuing_a_zoo_with_other_settings(tmp_path, capsys):
    root = tmp_path / "zoo"
    assert main(["zoo", "build", "--family", "varying-cnn", "--n", "1", "--out", str(root), "-q"]) == 0
    assert main(["zoo", "build", "--family", "varying-cnn", "--n", "1", "--seed", "7", "--out", str(root),
                 "-q"]) == 2
    assert "seed" in capsys.readouterr().err


@pytest.mark.parametrize("shard", ["2/2", "x", "1/0"])
def test_cli_refuses_a_bad_shard(tmp_path, capsys, shard):
    assert main(["zoo", "build", "--family", "diverse", "--n", "1", "--out", str(tmp_path / "z"), "--shard", shard,
                 "-q"]) == 2
    assert "i/n" in capsys.readouterr().err.lower()


def test_build_of_chosen_ids_refuses_ids_of_another_shard(tmp_path):
    with pytest.raises(ValueError, match=r"ids \[1\] are not models of shard 0/2"):
        build_zoo(tmp_path / "zoo", "varying-cnn", 4, shard=(0, 2), ids=[0, 1], progress=False, log=None)

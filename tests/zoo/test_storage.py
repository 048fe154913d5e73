"""Zoo storage: round trips, resuming after SIGKILL at chosen and random moments, shards, bad files, refusals."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from gmnfx.zoo import storage
from gmnfx.zoo.storage import Zoo, ZooError, ZooWriter, parse_shard, shard_model_ids

N = 12
MANIFEST = {"family": "test-mlp", "n": N, "seed": 0, "dataset": {"name": "digits", "split": [0.8, 0.2]}}
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def model_tensors(model_id: int) -> dict[str, torch.Tensor]:
    """Deterministic parameters of model ``model_id``, in a non-alphabetical order; model 5 diverged."""
    g = torch.Generator().manual_seed(model_id)
    return {"layer.weight": torch.randn(3, 2, generator=g), "layer.bias": torch.randn(3, generator=g),
            "bn.num_batches_tracked": torch.tensor(model_id), "a.half": torch.randn(2, generator=g).half(),
            "a.loss_curve": torch.full((2,), float("nan") if model_id == 5 else 1.0, dtype=torch.float64)}


def model_record(model_id: int) -> dict:
    return {"config": {"width": 2 + model_id % 3, "act": "relu", "layers": [2, 3]},
            "metrics": {"test_acc": model_id / 100, "train_loss": float("nan") if model_id == 5 else 0.5}}


def fill(writer: ZooWriter, ids) -> None:
    for model_id in ids:
        if model_id not in writer.done:
            writer.add(model_id, model_tensors(model_id), model_record(model_id))


def make_zoo(root, ids=range(6), flush_every=3, shard=(0, 1)) -> str:
    with ZooWriter(root, MANIFEST, shard=shard, flush_every=flush_every) as writer:
        fill(writer, ids)
    return str(root)


def assert_zoo_holds(root, ids) -> Zoo:
    """The zoo at ``root`` holds exactly ``ids``, each with its own tensors (same order) and record."""
    zoo = Zoo.open(root)
    assert zoo.ids() == sorted(ids)
    for record in zoo.records:
        expected = model_tensors(record["id"])
        got = zoo.tensors(record["id"])
        assert list(got) == list(expected)
        for name, tensor in expected.items():
            assert got[name].dtype == tensor.dtype and torch.equal(got[name].nan_to_num(7.0), tensor.nan_to_num(7.0))
        rest = {k: v for k, v in record.items() if k not in ("id", "file")}
        assert json.dumps(rest) == json.dumps(model_record(record["id"]))
    zoo.verify()
    return zoo


def snapshot(root) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes."""
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            files[os.path.relpath(path, root)] = Path(path).read_bytes()
    return files


def model_file(root, k: int, shard=(0, 1)) -> str:
    return os.path.join(root, "models", f"shard-{shard[0]}-of-{shard[1]}-{k:06d}.safetensors")


def tmp_files(root) -> list[str]:
    return sorted(name for name in snapshot(root) if ".tmp-" in name)


# ------------------------------------------------------------------------------------------- shards

def test_parse_shard_reads_i_of_n():
    assert parse_shard("2/4") == (2, 4)
    assert parse_shard(" 0 / 1 ") == (0, 1)


@pytest.mark.parametrize("text", ["4/4", "5/4", "-1/4", "1/0", "2", "a/b", "", "1/2/3"])
def test_parse_shard_rejects_other_forms_with_the_expected_one(text):
    with pytest.raises(ValueError, match=r"'i/n' with 0 <= i < n"):
        parse_shard(text)


def test_shard_model_ids_partition_the_ids():
    shards = [shard_model_ids(10, i, 3) for i in range(3)]
    assert shards[1] == [1, 4, 7]
    assert sorted(sum(shards, [])) == list(range(10))


# -------------------------------------------------------------------------------------- round trip

def test_round_trip_keeps_tensors_records_and_parameter_order(tmp_path):
    assert_zoo_holds(make_zoo(tmp_path / "zoo", ids=range(N), flush_every=5), range(N))


def test_records_are_sorted_by_id_and_name_their_file(tmp_path):
    ids = [7, 3, 11, 0, 5, 9]
    zoo = Zoo.open(make_zoo(tmp_path, ids=ids, flush_every=4))
    assert [r["id"] for r in zoo.records] == sorted(ids)
    assert {r["file"] for r in zoo.records} == {"models/shard-0-of-1-000000.safetensors",
                                                "models/shard-0-of-1-000001.safetensors"}
    assert list(zoo.records[0])[:2] == ["id", "file"]


def test_missing_lists_the_ids_not_stored_yet(tmp_path):
    assert Zoo.open(make_zoo(tmp_path, ids=[0, 2, 3, 10])).missing() == [1, 4, 5, 6, 7, 8, 9, 11]


def test_missing_without_n_in_the_manifest_says_why(tmp_path):
    with ZooWriter(tmp_path, {"family": "x"}) as writer:
        writer.add(0, model_tensors(0), {})
    with pytest.raises(ValueError, match="no 'n'"):
        Zoo.open(tmp_path).missing()


def test_unknown_model_id_is_a_key_error_naming_it(tmp_path):
    with pytest.raises(KeyError, match="model 4 is not in the zoo"):
        Zoo.open(make_zoo(tmp_path, ids=[0, 1])).tensors(4)


def test_each_flush_writes_one_self_describing_file_and_the_table(tmp_path):
    make_zoo(tmp_path, ids=range(5), flush_every=2)
    assert sorted(os.listdir(tmp_path / "models")) == [f"shard-0-of-1-{k:06d}.safetensors" for k in range(3)] + [
        "shard-0-of-1.lock"]
    with safe_open(model_file(tmp_path, 1), framework="pt") as f:
        payload = json.loads(f.metadata()["gmnfx-zoo"])
        assert sorted(f.keys()) == sorted(f"{i}/{name}" for i in (2, 3) for name in model_tensors(i))
    assert [r["id"] for r in payload["records"]] == [2, 3]
    lines = (tmp_path / "models-0-of-1.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [0, 1, 2, 3, 4]
    assert json.loads((tmp_path / "manifest.json").read_text()) == {"format": "gmnfx-zoo", "format_version": 1,
                                                                     **MANIFEST}


def test_with_block_flushes_buffered_models_when_an_exception_leaves_it(tmp_path):
    with pytest.raises(RuntimeError, match="training failed"):
        with ZooWriter(tmp_path, MANIFEST, flush_every=64) as writer:
            fill(writer, range(3))
            raise RuntimeError("training failed")
    assert Zoo.open(tmp_path).ids() == [0, 1, 2]


def test_add_copies_tensors_so_later_training_does_not_change_them(tmp_path):
    tensors = model_tensors(0)
    with ZooWriter(tmp_path, MANIFEST) as writer:
        writer.add(0, tensors, model_record(0))
        tensors["layer.weight"].add_(100.0)
    assert torch.equal(Zoo.open(tmp_path).tensors(0)["layer.weight"], model_tensors(0)["layer.weight"])


def test_zoo_open_reads_only_the_tables_while_they_match_the_files(tmp_path, monkeypatch):
    make_zoo(tmp_path)

    def no_file_reads(*args):
        raise AssertionError("Zoo.open read a model file although the table is consistent")

    monkeypatch.setattr(storage, "_read_model_file", no_file_reads)
    assert Zoo.open(tmp_path).ids() == list(range(6))


# ---------------------------------------------------------------------------- resuming after a kill

CHILD = r"""
import os, random, signal, sys, time
sys.path.insert(0, sys.argv[1])
from test_storage import MANIFEST, N, fill
from gmnfx.zoo.storage import ZooWriter

here, root, scenario, go = sys.argv[1:5]


def kill_self_on(func, when):
    calls = []
    def wrapper(*args, **kwargs):
        calls.append(args[1])
        if when(calls):
            os.kill(os.getpid(), signal.SIGKILL)
        return func(*args, **kwargs)
    return wrapper


def wait_for_go():
    open(go + "." + scenario + ".ready", "w").close()
    deadline = time.time() + 60
    while not os.path.exists(go):
        if time.time() > deadline:
            sys.exit("no go file")
        time.sleep(0.005)


manifest, shard, flush_every, ids = MANIFEST, (0, 1), 3, range(N)
if scenario == "mid-buffer":        # flushes 0-2 and 3-5; 6 and 7 are still buffered when killed
    ids = range(8)
    fill = lambda writer, ids, fill=fill: (fill(writer, ids), os.kill(os.getpid(), signal.SIGKILL))
elif scenario == "after-rename":    # the second file has its name, the table is not yet rewritten
    os.replace = kill_self_on(os.replace, lambda dsts: dsts[-1].endswith(".jsonl") and len(dsts) == 2)
elif scenario == "before-rename":   # the second file is complete under its temp name only
    os.link = kill_self_on(os.link, lambda dsts: dsts[-1].endswith("000001.safetensors"))
elif scenario == "random":          # killed from outside at a random moment
    manifest, flush_every, ids = {**MANIFEST, "n": 100_000}, 2, range(100_000)
    wait_for_go()
elif scenario.startswith("shard"):  # two shards at once, racing to create the zoo
    shard, flush_every, ids = (int(scenario[-1]), 2), 1, range(int(scenario[-1]), N, 2)
    wait_for_go()
with ZooWriter(root, manifest, shard=shard, flush_every=flush_every) as writer:
    fill(writer, ids)
"""

KILLED = {"mid-buffer": range(6), "after-rename": range(6), "before-rename": range(3)}


@pytest.fixture(scope="module")
def children(tmp_path_factory):
    """Every writer subprocess of this file, started at once (each pays torch's import time)."""
    base = tmp_path_factory.mktemp("children")
    procs = {}
    for scenario in [*KILLED, "random", "shard0", "shard1"]:
        root = base / ("sharded" if scenario.startswith("shard") else scenario)
        go, log = base / f"go-{scenario[:5]}", base / f"{scenario}.log"
        with open(log, "wb") as out:
            procs[scenario] = subprocess.Popen([sys.executable, "-c", CHILD, HERE, str(root), scenario, str(go)],
                                               cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        procs[scenario].root, procs[scenario].log, procs[scenario].go = root, log, go
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def finished(proc, returncode: int):
    assert proc.wait(timeout=120) == returncode, proc.log.read_text()
    return proc.root


def wait_ready(procs):
    deadline = time.time() + 120
    while not all(os.path.exists(f"{p.go}.{name}.ready") for name, p in procs.items()):
        assert time.time() < deadline and all(p.poll() is None for p in procs.values()), [
            p.log.read_text() for p in procs.values()]
        time.sleep(0.01)
    next(iter(procs.values())).go.touch()


@pytest.mark.parametrize("scenario", KILLED)
def test_kill_keeps_exactly_the_flushed_models(children, scenario):
    root = finished(children[scenario], -signal.SIGKILL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_zoo_holds(root, KILLED[scenario])


def test_kill_between_file_and_table_leaves_a_stale_table_that_readers_rebuild(children):
    root = finished(children["after-rename"], -signal.SIGKILL)
    rows = [json.loads(line) for line in (root / "models-0-of-1.jsonl").read_text().splitlines()]
    assert [row["id"] for row in rows] == [0, 1, 2]
    assert Zoo.open(root).ids() == list(range(6))


def test_kill_before_the_rename_leaves_only_an_ignored_temp_file(children):
    root = finished(children["before-rename"], -signal.SIGKILL)
    assert len(tmp_files(root)) == 1 and tmp_files(root)[0].startswith("models/shard-0-of-1-000001.safetensors.tmp-")
    assert Zoo.open(root).ids() == [0, 1, 2]


@pytest.mark.parametrize("scenario", KILLED)
def test_resume_after_a_kill_removes_leftovers_and_completes_the_zoo(children, scenario, tmp_path):
    root = shutil.copytree(finished(children[scenario], -signal.SIGKILL), tmp_path / "zoo")
    with ZooWriter(root, MANIFEST, flush_every=3) as writer:
        assert writer.done == set(KILLED[scenario])
        assert tmp_files(root) == []
        fill(writer, range(N))
    assert_zoo_holds(root, range(N))
    assert len((root / "models-0-of-1.jsonl").read_text().splitlines()) == N


def test_kill_at_a_random_moment_loses_no_flushed_model_and_resumes(children, tmp_path):
    proc = children["random"]
    wait_ready({"random": proc})
    models = os.path.join(proc.root, "models")
    while not os.path.isdir(models) or len([n for n in os.listdir(models) if n.endswith(".safetensors")]) < 4:
        assert proc.poll() is None, proc.log.read_text()
        time.sleep(0.002)
    time.sleep(random.Random().uniform(0, 0.02))
    proc.send_signal(signal.SIGKILL)
    root = shutil.copytree(finished(proc, -signal.SIGKILL), tmp_path / "zoo")
    stored = Zoo.open(root).ids()
    assert stored == list(range(len(stored))) and len(stored) >= 8  # files hold a prefix of the ids added
    with ZooWriter(root, {**MANIFEST, "n": 100_000}, flush_every=2) as writer:
        assert writer.done == set(stored)
        fill(writer, range(len(stored) + 3))
    assert_zoo_holds(root, range(len(stored) + 3))


def test_half_written_temp_files_are_ignored_then_removed_by_the_writer(tmp_path):
    root = make_zoo(tmp_path, ids=range(3))
    data = Path(model_file(root, 0)).read_bytes()
    Path(model_file(root, 1) + ".tmp-424242").write_bytes(data[: len(data) // 2])
    Path(root, "models-0-of-1.jsonl.tmp-424242").write_bytes(b'{"id": 3, "fi')
    before = snapshot(root)
    assert Zoo.open(root).ids() == [0, 1, 2]
    assert snapshot(root) == before
    with ZooWriter(root, MANIFEST, flush_every=3) as writer:
        assert tmp_files(root) == []
        fill(writer, range(N))
    assert_zoo_holds(root, range(N))


# ------------------------------------------------------------------------------------------- shards

def test_shards_written_one_after_another_merge(tmp_path):
    make_zoo(tmp_path, ids=shard_model_ids(N, 1, 2), shard=(1, 2), flush_every=2)
    make_zoo(tmp_path, ids=shard_model_ids(N, 0, 2), shard=(0, 2), flush_every=4)
    zoo = assert_zoo_holds(tmp_path, range(N))
    assert all(r["file"].startswith(f"models/shard-{r['id'] % 2}-of-2-") for r in zoo.records)
    assert zoo.missing() == []


def test_two_shard_processes_writing_at_once_merge(children):
    shards = {name: children[name] for name in ("shard0", "shard1")}
    wait_ready(shards)
    root = [finished(proc, 0) for proc in shards.values()][0]
    assert_zoo_holds(root, range(N))
    assert sorted(os.listdir(root)) == ["manifest.json", "models", "models-0-of-2.jsonl", "models-1-of-2.jsonl"]


def test_a_second_writer_of_the_same_shard_is_refused_while_the_first_is_open(tmp_path):
    with ZooWriter(tmp_path, MANIFEST, shard="1/3") as writer:
        fill(writer, [1])
        with pytest.raises(ZooError, match=r"another process is writing shard 1/3"):
            ZooWriter(tmp_path, MANIFEST, shard=(1, 3))
        ZooWriter(tmp_path, MANIFEST, shard=(2, 3)).close()
    ZooWriter(tmp_path, MANIFEST, shard=(1, 3)).close()


def test_a_build_with_more_shards_skips_the_models_already_stored(tmp_path):
    make_zoo(tmp_path, ids=range(6))
    with ZooWriter(tmp_path, MANIFEST, shard=(0, 2)) as writer:
        assert writer.done == {0, 2, 4}
        fill(writer, shard_model_ids(N, 0, 2))
    with ZooWriter(tmp_path, MANIFEST, shard=(1, 2)) as writer:
        assert writer.done == {1, 3, 5}
        fill(writer, shard_model_ids(N, 1, 2))
    assert_zoo_holds(tmp_path, range(N))


# ---------------------------------------------------------------------------------------- bad files

def truncate(path):
    Path(path).write_bytes(Path(path).read_bytes()[:-10])


def garble(path):
    Path(path).write_bytes(b"\x13\x37" * 4 + Path(path).read_bytes()[8:])


def cut_header(path):
    Path(path).write_bytes(Path(path).read_bytes()[:20])


DAMAGES = [truncate, garble, cut_header]


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_model_file_stops_the_writer_and_is_kept(tmp_path, damage):
    root = make_zoo(tmp_path)
    damage(model_file(root, 1))
    before = snapshot(root)
    with pytest.raises(ZooError, match=r"000001\.safetensors. is not a readable safetensors file.*move it"):
        ZooWriter(root, MANIFEST)
    assert snapshot(root) == before


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_model_file_stops_zoo_open_when_the_table_must_be_rebuilt(tmp_path, damage):
    root = make_zoo(tmp_path)
    damage(model_file(root, 1))
    os.remove(os.path.join(root, "models-0-of-1.jsonl"))
    before = snapshot(root)
    with pytest.raises(ZooError, match=r"000001\.safetensors' is not a readable safetensors file"):
        Zoo.open(root)
    assert snapshot(root) == before


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_model_file_behind_a_consistent_table_fails_when_read(tmp_path, damage):
    root = make_zoo(tmp_path)
    damage(model_file(root, 1))
    before = snapshot(root)
    zoo = Zoo.open(root)
    assert torch.equal(zoo.tensors(0)["layer.bias"], model_tensors(0)["layer.bias"])
    with pytest.raises(ZooError, match=r"cannot read model 4 from '.*000001\.safetensors'.*move it"):
        zoo.tensors(4)
    with pytest.raises(ZooError, match=r"000001\.safetensors"):
        zoo.verify()
    assert snapshot(root) == before


def test_safetensors_file_without_zoo_metadata_is_reported(tmp_path):
    root = make_zoo(tmp_path)
    save_file({"3/w": torch.ones(2)}, model_file(root, 1), metadata={"other": "tool"})
    before = snapshot(root)
    with pytest.raises(ZooError, match=r"000001\.safetensors' has no 'gmnfx-zoo' metadata"):
        ZooWriter(root, MANIFEST)
    assert snapshot(root) == before


def test_torn_last_table_line_is_rebuilt_silently_without_touching_files(tmp_path, capsys):
    root = make_zoo(tmp_path)
    table = Path(root, "models-0-of-1.jsonl")
    data = table.read_bytes()
    table.write_bytes(data[:-15])
    before = snapshot(root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_zoo_holds(root, range(6))
    assert capsys.readouterr() == ("", "")
    assert snapshot(root) == before


def test_writer_mends_a_torn_table(tmp_path):
    root = make_zoo(tmp_path)
    table = Path(root, "models-0-of-1.jsonl")
    data = table.read_bytes()
    table.write_bytes(data[:-15])
    ZooWriter(root, MANIFEST).close()
    assert table.read_bytes() == data


@pytest.mark.parametrize("change,message", [
    ({"seed": 1}, r"seed: the zoo has 0, this build asks for 1"),
    ({"extra": "x"}, r"extra: the zoo has \(absent\), this build asks for \"x\""),
    ({"dataset": "mnist"}, r"dataset: the zoo has \{.*\}, this build asks for \"mnist\""),
])
def test_manifest_mismatch_names_the_key_both_values_and_the_fix(tmp_path, change, message):
    root = make_zoo(tmp_path)
    before = snapshot(root)
    with pytest.raises(ZooError, match=message + r".*another output directory"):
        ZooWriter(root, {**MANIFEST, **change})
    assert snapshot(root) == before


def test_manifest_missing_a_key_is_a_mismatch(tmp_path):
    root = make_zoo(tmp_path)
    with pytest.raises(ZooError, match=r"seed: the zoo has 0, this build asks for \(absent\)"):
        ZooWriter(root, {k: v for k, v in MANIFEST.items() if k != "seed"})


@pytest.mark.parametrize("setup", ["empty", "missing", "foreign-json"])
def test_zoo_open_of_a_directory_that_is_not_a_zoo_says_so(tmp_path, setup):
    root = tmp_path / "zoo"
    if setup != "missing":
        root.mkdir()
    if setup == "foreign-json":
        (root / "manifest.json").write_text('{"name": "something else"}')
    with pytest.raises(ZooError, match="not a gmnfx zoo"):
        Zoo.open(root)


def test_unreadable_manifest_is_reported_and_kept(tmp_path):
    root = make_zoo(tmp_path)
    Path(root, "manifest.json").write_text('{"format": "gmnfx-zoo", ')
    before = snapshot(root)
    with pytest.raises(ZooError, match=r"manifest\.json' is not readable JSON"):
        Zoo.open(root)
    assert snapshot(root) == before


def test_writer_refuses_a_non_empty_directory_that_is_not_a_zoo(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(ZooError, match=r"not empty but has no manifest\.json.*thesis\.tex"):
        ZooWriter(tmp_path, MANIFEST)
    assert sorted(os.listdir(tmp_path)) == ["thesis.tex"]


def test_duplicate_id_across_files_names_the_id_and_both_files(tmp_path):
    root = make_zoo(tmp_path)
    shutil.copyfile(model_file(root, 0), model_file(root, 7))
    before = snapshot(root)
    for open_zoo in (Zoo.open, lambda root: ZooWriter(root, MANIFEST)):
        with pytest.raises(ZooError, match=r"model 0 is stored twice .*000000\.safetensors' and in '.*000007"):
            open_zoo(root)
    assert snapshot(root) == before


def test_unexpected_file_among_the_models_is_reported(tmp_path):
    root = make_zoo(tmp_path)
    shutil.copyfile(model_file(root, 0), os.path.join(root, "models", "backup.safetensors"))
    with pytest.raises(ZooError, match=r"backup\.safetensors' is not named like a zoo file"):
        Zoo.open(root)


# ------------------------------------------------------------------------------------- add refusals

def test_add_refuses_an_id_already_stored(tmp_path):
    with ZooWriter(make_zoo(tmp_path, ids=[0]), MANIFEST) as writer:
        with pytest.raises(ValueError, match="model 0 is already stored"):
            writer.add(0, model_tensors(0), model_record(0))


def test_add_refuses_an_id_already_buffered(tmp_path):
    with ZooWriter(tmp_path, MANIFEST) as writer:
        fill(writer, [0])
        with pytest.raises(ValueError, match="model 0 was already added"):
            writer.add(0, model_tensors(0), model_record(0))


def test_add_refuses_an_id_of_another_shard(tmp_path):
    with ZooWriter(tmp_path, MANIFEST, shard=(1, 4)) as writer:
        with pytest.raises(ValueError, match=r"model 6 belongs to shard 2/4, not to this writer's shard 1/4"):
            writer.add(6, model_tensors(6), model_record(6))


@pytest.mark.parametrize("model_id", [-1, N])
def test_add_refuses_an_id_outside_the_manifest_range(tmp_path, model_id):
    with ZooWriter(tmp_path, MANIFEST) as writer:
        with pytest.raises(ValueError, match=r"outside 0\.\.11 \(the manifest says n=12\)"):
            writer.add(model_id, model_tensors(0), {})


@pytest.mark.parametrize("record,where", [
    ({"acc": torch.tensor(0.5)}, r"record\['acc'\]"),
    ({"cfg": {"layers": [2, object()]}}, r"record\['cfg'\]\['layers'\]\[1\]"),
    ({"cfg": {1: "a"}}, r"record\['cfg'\]"),
    ({"tags": {"a", "b"}}, r"record\['tags'\]"),
])
def test_add_refuses_records_json_cannot_store_naming_the_key(tmp_path, record, where):
    with ZooWriter(tmp_path, MANIFEST) as writer:
        with pytest.raises(TypeError, match=where + r" of model 0 is a .*JSON cannot store"):
            writer.add(0, model_tensors(0), record)


@pytest.mark.parametrize("key", ["id", "file"])
def test_add_refuses_reserved_record_keys(tmp_path, key):
    with ZooWriter(tmp_path, MANIFEST) as writer:
        with pytest.raises(ValueError, match=f"record key '{key}' of model 0 is reserved"):
            writer.add(0, model_tensors(0), {key: 1})


@pytest.mark.parametrize("value", [torch.ones(2, dtype=torch.complex64), [1.0, 2.0], torch.empty(2, device="meta")])
def test_add_refuses_tensors_that_are_not_dense_real_tensors(tmp_path, value):
    with ZooWriter(tmp_path, MANIFEST) as writer:
        with pytest.raises(TypeError, match="parameter 'w' of model 0"):
            writer.add(0, {"w": value}, {})


def test_refused_add_buffers_nothing(tmp_path):
    with ZooWriter(tmp_path, MANIFEST) as writer:
        with pytest.raises(TypeError):
            writer.add(0, model_tensors(0), {"bad": object()})
        fill(writer, [0])
    assert_zoo_holds(tmp_path, [0])


def test_add_after_close_is_refused(tmp_path):
    writer = ZooWriter(tmp_path, MANIFEST)
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.add(0, model_tensors(0), {})

"""Model-zoo storage: thousands of small trained networks, resumable and buildable in shards.

A zoo is a directory written by one or more :class:`ZooWriter` processes (``--shard i/n`` each, at
the same time or one after another) and read by :class:`Zoo`. Killing a writer at any moment and
re-running it keeps every flushed model, stores none twice and never leaves a torn file that a reader
would take for data. Bad files give errors that name them; nothing is deleted except a writer's own
temp files.

Format (version 1, a public contract)::

    ROOT/manifest.json
        {"format": "gmnfx-zoo", "format_version": 1, **manifest}: what the zoo is (family, seed, n,
        dataset, ...). Created by the first writer (atomically, never overwritten); every later writer
        must pass the same manifest.
    ROOT/models/shard-{i}-of-{n}-{k:06d}.safetensors
        One file per flush of the writer of shard i of n (k = 0, 1, 2, ...), the source of truth.
        Tensors are named "{model_id}/{param_name}"; the safetensors metadata key "gmnfx-zoo" holds
        json.dumps({"format_version": 1, "records": [{"id": model_id, **record}, ...],
                    "order": {"<model_id>": [param_name, ...]}})   # order: as given to add()
        so every file describes itself.
    ROOT/models-{i}-of-{n}.jsonl
        The table of shard i: one line {"id", "file", **record} per model, sorted by id, "file"
        relative to ROOT. Derived from the shard's files and rewritten after every flush; readers
        use it only while it names exactly the shard's files, and re-read the files otherwise.
    ROOT/models/shard-{i}-of-{n}.lock
        flock-ed by the running writer of shard i of n: a second writer of that shard is refused.

Model ids are the integers ``0..n-1``; shard ``i`` of ``n`` owns the ids with ``id % n == i``
(:func:`shard_model_ids`). Every file is written as ``NAME.tmp-{pid}``, flushed and fsynced, then
renamed to NAME (model files and the manifest with ``os.link``, which never overwrites; tables with
``os.replace``). A leftover ``*.tmp-*`` file was never committed (its writer was killed): readers
ignore it, and a writer deletes its own shard's leftovers when it opens. NaN and infinities in records are written
the way Python's ``json`` writes them (``NaN``, ``Infinity``).

Example::

    shard = parse_shard("0/4")
    with ZooWriter("zoo", {"family": "mlp", "n": 1000, "seed": 0}, shard=shard) as writer:
        for model_id in shard_model_ids(1000, *shard):
            if model_id not in writer.done:       # resume: skip what an earlier run stored
                model, acc = train(model_id)
                writer.add(model_id, model.state_dict(), {"test_acc": acc})
    zoo = Zoo.open("zoo")
    zoo.records[0], zoo.tensors(zoo.ids()[0]), zoo.missing()
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import torch

from gmnfx.zoo.files import (  # ZooError, FORMAT_VERSION and parse_shard are re-exported
    FORMAT_VERSION, ZooError, _METADATA_KEY, _MODEL_FILE, _MOVE_AWAY, _as_int, _atomic_write, _check_manifest,
    _check_record, _check_shard, _check_unique, _claim_manifest, _copy_tensors, _encode, _lock_shard,
    _model_files, _read_manifest, _read_model_file, _remove_own_leftovers, _shard_rows, _table_bytes,
    _table_path, parse_shard,
)

__all__ = ["ZooWriter", "Zoo", "ZooError", "parse_shard", "shard_model_ids", "FORMAT_VERSION"]

# ---------------------------------------------------------------------------------------------- shards



def shard_model_ids(num_models: int, index: int, count: int) -> list[int]:
    """The model ids that shard ``index`` of ``count`` builds: ``id % count == index``."""
    index, count = _check_shard((index, count))
    if _as_int(num_models, "num_models") < 0:
        raise ValueError(f"expected num_models >= 0 (got {num_models})")
    return list(range(index, num_models, count))





class ZooWriter:
    """Adds trained models to the zoo at ``root`` as shard ``shard`` of a (possibly parallel) build.

    Opening creates ``root`` and its manifest, or checks the manifest there; takes the shard's lock;
    reads and checks the shard's files. ``done`` then holds every id of this shard already stored
    (by this shard or by an earlier build with another shard count), so a re-run skips them.
    Models are buffered and written ``flush_every`` at a time as one new file; ``close()`` (or leaving
    a ``with`` block, also by an exception) writes the rest. Models still buffered when the process
    is killed are lost, and only they. Not thread-safe: one writer per process and shard.

    Args:
        root: the zoo directory.
        manifest: what the zoo is (JSON values; ``"n"``, if given, is the number of models).
        shard: ``(i, n)`` or ``"i/n"``: this process stores the ids with ``id % n == i``. Default (0, 1).
        flush_every: models per file (default 64).
    """

    def __init__(self, root: str | os.PathLike, manifest: Mapping, *, shard: tuple[int, int] | str = (0, 1),
                 flush_every: int = 64) -> None:
        self.root = os.fspath(root)
        self.shard = _check_shard(shard)
        if _as_int(flush_every, "flush_every") < 1:
            raise ValueError(f"expected flush_every >= 1 (got {flush_every})")
        self.flush_every = int(flush_every)
        self.manifest = _claim_manifest(self.root, _check_manifest(manifest))
        self._buffer: list[tuple[int, dict, dict]] = []
        self._lock = _lock_shard(self.root, self.shard)
        self._closed = False
        try:
            _remove_own_leftovers(self.root, self.shard)
            self._scan()
        except BaseException:
            self._lock.close()
            raise

    def _scan(self) -> None:
        """Read this shard's files (each checked) and the other shards' tables; mend a stale own table."""
        groups = _model_files(self.root)
        names = groups.get(self.shard, [])
        self._rows = [row for name in names for row in _read_model_file(self.root, name, self.shard)]
        rows = self._rows + [row for other, other_names in groups.items() if other != self.shard
                             for row in _shard_rows(self.root, other, other_names)]
        _check_unique(self.root, rows)
        i, n = self.shard
        self._done = {row["id"] for row in rows if row["id"] % n == i}
        self._done_view = frozenset(self._done)
        self._next_file = int(_MODEL_FILE.fullmatch(names[-1])[3]) + 1 if names else 0
        try:
            with open(_table_path(self.root, self.shard), "rb") as f:
                table = f.read()
        except FileNotFoundError:
            table = None
        if table != _table_bytes(self._rows) and (table is not None or self._rows):
            _atomic_write(_table_path(self.root, self.shard), _table_bytes(self._rows), replace=True)

    @property
    def done(self) -> frozenset[int]:
        """The ids of this shard stored in the zoo (in files; buffered models are not done yet)."""
        return self._done_view

    def add(self, model_id: int, tensors: Mapping[str, torch.Tensor], record: Mapping[str, Any]) -> None:
        """Buffer one trained model (its tensors are copied now); flushes every ``flush_every`` models.

        Non-finite values are stored as they are (a diverged model is data).
        """
        if self._closed:
            raise ValueError(f"this ZooWriter of '{self.root}' is closed; open a new one to add models")
        model_id = self._check_id(model_id)
        params = _copy_tensors(model_id, tensors)
        record = _check_record(model_id, record)
        self._buffer.append((model_id, params, record))
        if len(self._buffer) >= self.flush_every:
            self.flush()

    def _check_id(self, model_id: Any) -> int:
        model_id = _as_int(model_id, "the model id")
        i, n = self.shard
        num_models = self.manifest.get("n")
        if model_id < 0 or (num_models is not None and model_id >= num_models):
            raise ValueError(f"model id {model_id} is outside 0..{'n-1' if num_models is None else num_models - 1}"
                             + ("" if num_models is None else f" (the manifest says n={num_models})"))
        if model_id % n != i:
            raise ValueError(f"model {model_id} belongs to shard {model_id % n}/{n}, not to this writer's shard "
                             f"{i}/{n}; add only the ids of shard_model_ids(num_models, {i}, {n})")
        if model_id in self._done:
            raise ValueError(f"model {model_id} is already stored in '{self.root}'; skip the ids in writer.done")
        if any(model_id == buffered for buffered, _, _ in self._buffer):
            raise ValueError(f"model {model_id} was already added to this writer (it is waiting to be flushed)")
        return model_id

    def flush(self) -> None:
        """Write the buffered models as one new file, then rewrite this shard's table."""
        if not self._buffer:
            return
        i, n = self.shard
        name = f"shard-{i}-of-{n}-{self._next_file:06d}.safetensors"
        path = os.path.join(self.root, "models", name)
        if not _atomic_write(path, _encode(self._buffer), replace=False):
            raise ZooError(f"'{path}' appeared while this writer ran: another process writes shard {i}/{n} "
                           f"(without a lock?); give each process its own --shard. The buffered models are kept")
        self._next_file += 1
        self._rows.extend({"id": model_id, "file": f"models/{name}", **record} for model_id, _, record in self._buffer)
        self._done.update(model_id for model_id, _, _ in self._buffer)
        self._done_view = frozenset(self._done)
        self._buffer.clear()
        _atomic_write(_table_path(self.root, self.shard), _table_bytes(self._rows), replace=True)

    def close(self) -> None:
        """Flush, then release the shard. If the flush fails, the writer stays open (nothing is lost)."""
        if self._closed:
            return
        self.flush()
        self._closed = True
        self._lock.close()

    def __enter__(self) -> ZooWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()  # also on exceptions: every buffered model is a complete model

    def __repr__(self) -> str:
        return (f"ZooWriter('{self.root}', shard={self.shard[0]}/{self.shard[1]}, done={len(self._done)}, "
                f"buffered={len(self._buffer)}{', closed' if self._closed else ''})")


# ------------------------------------------------------------------------------------------- reading

class Zoo:
    """A zoo on disk, every shard of it: the manifest, one record per model, tensors on demand.

    ``records`` is sorted by id; each record is ``{"id", "file", **record}`` with ``file`` relative
    to ``root``. Opening reads only the shard tables (when they name exactly the files present) or,
    to recover from a kill, the files' headers; tensors are read lazily by :meth:`tensors`.
    """

    def __init__(self, root: str, manifest: dict, records: list[dict]) -> None:
        self.root, self.manifest, self.records = root, manifest, records
        self._by_id = {record["id"]: record for record in records}
        self._orders: dict[str, dict] = {}

    @classmethod
    def open(cls, root: str | os.PathLike) -> Zoo:
        """Index the zoo at ``root``; ZooError (a ValueError) if it is not one or is inconsistent."""
        root = os.fspath(root)
        manifest = _read_manifest(root)
        rows = [row for shard, names in sorted(_model_files(root).items()) for row in _shard_rows(root, shard, names)]
        _check_unique(root, rows)
        return cls(root, manifest, sorted(rows, key=lambda row: row["id"]))

    def __len__(self) -> int:
        return len(self.records)

    def ids(self) -> list[int]:
        """The stored model ids, ascending."""
        return [record["id"] for record in self.records]

    def record(self, model_id: int) -> dict:
        """The record of model ``model_id`` (its ``config``, ``metrics``, ``file``); KeyError naming it if absent."""
        if model_id not in self._by_id:
            raise KeyError(f"model {model_id} is not in the zoo at '{self.root}' ({len(self.records)} models stored)")
        return self._by_id[model_id]

    def missing(self) -> list[int]:
        """The ids in ``range(manifest["n"])`` that are not stored yet."""
        if "n" not in self.manifest:
            raise ValueError(f"the manifest of '{self.root}' has no 'n', so which models are missing is unknown")
        return [i for i in range(self.manifest["n"]) if i not in self._by_id]

    def tensors(self, model_id: int) -> dict[str, torch.Tensor]:
        """The tensors of model ``model_id``, read from its file, in the order they were added."""
        from safetensors import SafetensorError, safe_open

        record = self._by_id.get(model_id)
        if record is None:
            raise KeyError(f"model {model_id!r} is not in the zoo at '{self.root}' ({len(self)} models stored; "
                           f"see Zoo.ids() and Zoo.missing())")
        path = os.path.join(self.root, record["file"])
        prefix = f"{model_id}/"
        try:
            with safe_open(path, framework="pt") as f:
                names = self._order(record["file"], f.metadata()).get(str(model_id))
                if names is None:  # a file without "order": the names sorted
                    names = sorted(key[len(prefix):] for key in f.keys() if key.startswith(prefix))
                return {name: f.get_tensor(prefix + name) for name in names}
        except (SafetensorError, OSError, ValueError, TypeError, AttributeError) as exc:
            raise ZooError(f"cannot read model {model_id} from '{path}': {exc}; {_MOVE_AWAY}") from exc

    def _order(self, file: str, metadata: dict | None) -> dict:
        if file not in self._orders:
            self._orders[file] = json.loads((metadata or {}).get(_METADATA_KEY, "{}")).get("order", {})
        return self._orders[file]

    def verify(self) -> None:
        """Re-read every model file's header (is it whole? does it hold what the records say?).

        The slow path :meth:`open` skips while the tables are consistent; raises ZooError.
        """
        files = _model_files(self.root)
        rows = [row for shard, names in sorted(files.items()) for name in names
                for row in _read_model_file(self.root, name, shard)]
        if _table_bytes(rows) != _table_bytes(self.records):
            raise ZooError(f"the model files of '{self.root}' do not hold what its tables say (changed since "
                           f"opened, or a table edited by hand?); open the zoo again")

    def __repr__(self) -> str:
        return f"Zoo('{self.root}', {len(self)} models)"

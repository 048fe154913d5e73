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

import errno
import json
import numbers
import os
import re
from collections.abc import Mapping
from typing import Any

import torch

from gmnfx.errors import GmnfxError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: one process per shard is then the user's duty
    fcntl = None

__all__ = ["ZooWriter", "Zoo", "ZooError", "parse_shard", "shard_model_ids", "FORMAT_VERSION"]

FORMAT = "gmnfx-zoo"
FORMAT_VERSION = 1
_METADATA_KEY = "gmnfx-zoo"
_MODEL_FILE = re.compile(r"shard-(\d+)-of-(\d+)-(\d{6,})\.safetensors")
_TABLE_FILE = re.compile(r"models-(\d+)-of-(\d+)\.jsonl")
_TMP = ".tmp-"
_MAX_HEADER = 100_000_000  # bytes; the safetensors library's own limit
_RESERVED = ("id", "file")
_MOVE_AWAY = "move it out of the zoo (nothing was deleted); a re-run of the build redoes the models it held"


class ZooError(GmnfxError, ValueError):
    """A directory is not a zoo, holds a damaged or foreign file, or was built with other settings."""


# ---------------------------------------------------------------------------------------------- shards

def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` -> ``(2, 4)``: shard 2 of 4, as given to ``--shard``."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text) if isinstance(text, str) else None
    if match is None or not int(match[1]) < int(match[2]):
        raise ValueError(f"expected a shard as 'i/n' with 0 <= i < n, e.g. '0/4' (got {text!r})")
    return int(match[1]), int(match[2])


def shard_model_ids(num_models: int, index: int, count: int) -> list[int]:
    """The model ids that shard ``index`` of ``count`` builds: ``id % count == index``."""
    index, count = _check_shard((index, count))
    if _as_int(num_models, "num_models") < 0:
        raise ValueError(f"expected num_models >= 0 (got {num_models})")
    return list(range(index, num_models, count))


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"expected {what} to be an int (got {type(value).__name__} {value!r})")
    return int(value)


def _check_shard(shard: Any) -> tuple[int, int]:
    if isinstance(shard, str):
        return parse_shard(shard)
    if not isinstance(shard, (tuple, list)) or len(shard) != 2:
        raise TypeError(f"expected a shard as (i, n) or 'i/n' (got {shard!r})")
    index, count = _as_int(shard[0], "the shard index"), _as_int(shard[1], "the shard count")
    if not 0 <= index < count:
        raise ValueError(f"expected a shard (i, n) with 0 <= i < n (got {shard!r})")
    return index, count


# ------------------------------------------------------------------------------------- atomic writes

def _atomic_write(path: str, data: bytes, *, replace: bool) -> bool:
    """Write ``data`` to ``path`` via ``path.tmp-{pid}`` (fsynced first); False if ``path`` exists
    and ``replace`` is off (then nothing is overwritten)."""
    tmp = f"{path}{_TMP}{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        elif not _link_new(tmp, path):
            return False
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)
    _fsync_dir(os.path.dirname(path) or ".")
    return True


def _link_new(tmp: str, path: str) -> bool:
    """Give ``tmp``'s content the name ``path`` unless that name exists (never overwrites)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: check, then rename (a tiny race remains)
        if os.path.lexists(path):
            return False
        os.replace(tmp, path)
    return True


def _fsync_dir(path: str) -> None:
    """Make a rename in ``path`` durable (best effort: not every platform can fsync a directory)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------- reading files

def _read_manifest(root: str) -> dict:
    path = os.path.join(root, "manifest.json")
    if not os.path.isfile(path):
        raise ZooError(f"not a gmnfx zoo: '{root}' has no manifest.json (is the path right? "
                       f"zoos are created by ZooWriter)")
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as exc:
        raise ZooError(f"'{path}' is not readable JSON ({exc}); restore it from a copy, or rewrite it "
                       f"with the settings the zoo was built with") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ZooError(f"not a gmnfx zoo: '{path}' does not say \"format\": \"{FORMAT}\"")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ZooError(f"'{path}' has zoo format version {version!r}; this gmnfx reads version "
                       f"{FORMAT_VERSION} (a newer gmnfx may read it)")
    return manifest


def _read_header(path: str) -> dict:
    """The JSON header of the safetensors file ``path``, after checking that the file is whole."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 0 < length <= min(size - 8, _MAX_HEADER):
                raise ValueError(f"a header of {length} bytes does not fit in a file of {size} bytes")
            header = json.loads(f.read(length))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        if 8 + length + end != size:
            raise ValueError(f"the header describes {8 + length + end} bytes but the file has {size} "
                             f"(truncated, or appended to)")
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise ZooError(f"'{path}' is not a readable safetensors file: {exc}; {_MOVE_AWAY}") from exc
    return header


def _read_model_file(root: str, name: str, shard: tuple[int, int]) -> list[dict]:
    """The table rows of the model file ``models/name``, checked against its tensors and its shard."""
    path = os.path.join(root, "models", name)
    header = _read_header(path)
    metadata = header.get("__metadata__") or {}
    if _METADATA_KEY not in metadata:
        raise ZooError(f"'{path}' has no '{_METADATA_KEY}' metadata, so it is not a gmnfx zoo file; {_MOVE_AWAY}")
    try:
        payload = json.loads(metadata[_METADATA_KEY])
        records = payload["records"]
        version = payload.get("format_version", FORMAT_VERSION)
        ids = [_as_int(record["id"], "a model id") for record in records]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ZooError(f"'{path}' has unreadable '{_METADATA_KEY}' metadata ({exc!r}); {_MOVE_AWAY}") from exc
    if version != FORMAT_VERSION:
        raise ZooError(f"'{path}' has zoo format version {version!r}; this gmnfx reads {FORMAT_VERSION}")
    wrong = [i for i in ids if i < 0 or i % shard[1] != shard[0]]
    if wrong or len(set(ids)) != len(ids):
        raise ZooError(f"'{path}' holds model ids {ids}, which are not distinct ids of shard "
                       f"{shard[0]}/{shard[1]} (renamed by hand?); {_MOVE_AWAY}")
    prefixes = {str(i) for i in ids}
    strays = [k for k in header if k != "__metadata__" and k.split("/", 1)[0] not in prefixes]
    if strays:
        raise ZooError(f"'{path}' holds tensors {strays[:3]} of no recorded model; {_MOVE_AWAY}")
    rel = f"models/{name}"
    return [{"id": i, "file": rel, **{k: v for k, v in r.items() if k != "id"}} for i, r in zip(ids, records)]


def _model_files(root: str) -> dict[tuple[int, int], list[str]]:
    """The finished model files under ``root/models``, by shard, in the order they were written."""
    folder = os.path.join(root, "models")
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return {}
    groups: dict[tuple[int, int], list[tuple[int, str]]] = {}
    for name in names:
        if _TMP in name or not name.endswith(".safetensors"):
            continue  # temp files are incomplete by construction; lock files are no data
        match = _MODEL_FILE.fullmatch(name)
        if match is None or not int(match[1]) < int(match[2]):
            raise ZooError(f"'{os.path.join(folder, name)}' is not named like a zoo file "
                           f"(shard-I-of-N-K.safetensors, I < N); move it out of '{folder}' (nothing was deleted)")
        groups.setdefault((int(match[1]), int(match[2])), []).append((int(match[3]), name))
    return {shard: [name for _, name in sorted(files)] for shard, files in groups.items()}


def _table_path(root: str, shard: tuple[int, int]) -> str:
    return os.path.join(root, f"models-{shard[0]}-of-{shard[1]}.jsonl")


def _table_bytes(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in sorted(rows, key=lambda r: r["id"])).encode()


def _read_table(root: str, shard: tuple[int, int], names: list[str]) -> list[dict] | None:
    """The shard's table rows if the table is whole and names exactly ``names``; else None."""
    try:
        with open(_table_path(root, shard), "rb") as f:
            rows = [json.loads(line) for line in f.read().splitlines()]
    except (OSError, ValueError):
        return None
    files = {f"models/{name}" for name in names}
    if not all(isinstance(r, dict) and type(r.get("id")) is int and r["id"] >= 0 and r["id"] % shard[1] == shard[0]
               and r.get("file") in files for r in rows):
        return None
    if {r["file"] for r in rows} != files or len({r["id"] for r in rows}) != len(rows):
        return None
    return rows


def _shard_rows(root: str, shard: tuple[int, int], names: list[str]) -> list[dict]:
    """The rows of one shard: from its table when consistent, else rebuilt from its files (recovery)."""
    rows = _read_table(root, shard, names)
    if rows is None:
        rows = [row for name in names for row in _read_model_file(root, name, shard)]
    return rows


def _check_unique(root: str, rows: list[dict]) -> None:
    seen: dict[int, str] = {}
    for row in rows:
        if row["id"] not in seen:
            seen[row["id"]] = row["file"]
        else:
            first = seen[row["id"]]
            raise ZooError(f"model {row['id']} is stored twice in '{root}': in '{first}' and in '{row['file']}' "
                           f"(two builds given the same --shard, or a file copied?); move one of the two files "
                           f"out of the zoo (nothing was deleted)")


# ------------------------------------------------------------------------------------------- writing

def _check_manifest(manifest: Any) -> dict:
    if not isinstance(manifest, Mapping):
        raise TypeError(f"expected the manifest to be a dict (got {type(manifest).__name__})")
    for key, value in manifest.items():
        if not isinstance(key, str):
            raise TypeError(f"manifest keys must be strings (got {key!r})")
        if key in ("format", "format_version"):
            raise ValueError(f"manifest key '{key}' is reserved (the zoo writes it); rename it")
        _check_json(value, f"manifest[{key!r}]")
    if "n" in manifest and (isinstance(manifest["n"], bool) or not isinstance(manifest["n"], int) or manifest["n"] < 0):
        raise ValueError(f"manifest['n'] is the number of models: expected an int >= 0 (got {manifest['n']!r})")
    return {"format": FORMAT, "format_version": FORMAT_VERSION, **json.loads(json.dumps(dict(manifest)))}


def _check_json(value: Any, where: str, owner: str = "") -> None:
    """Raise TypeError naming ``where`` unless ``value`` is plain JSON (dicts with str keys, lists, ...)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return
    if isinstance(value, (list, tuple)):
        for k, item in enumerate(value):
            _check_json(item, f"{where}[{k}]", owner)
    elif isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        for k, item in value.items():
            _check_json(item, f"{where}[{k!r}]", owner)
    else:
        raise TypeError(f"{where}{owner} is a {type(value).__name__} ({value!r:.60}), which JSON cannot store; "
                        f"convert it first (float(x), int(x), x.item(), x.tolist(), str keys for dicts)")


def _claim_manifest(root: str, full: dict) -> dict:
    """Create ``root`` and its manifest, or check that the zoo there was built with the same one."""
    path = os.path.join(root, "manifest.json")
    if os.path.isdir(root) and not os.path.exists(path):
        foreign = [e for e in os.listdir(root) if _TMP not in e and e != "models" and not _TABLE_FILE.fullmatch(e)]
        if (foreign or _model_files(root)) and not os.path.exists(path):  # check again: a twin may have made it
            held = sorted(foreign)[:3] or "model files"
            raise ZooError(f"'{root}' is not empty but has no manifest.json (it holds {held}); pass a new or "
                           f"empty directory, or restore the zoo's manifest.json")
    os.makedirs(root, exist_ok=True)
    if not os.path.exists(path):
        _atomic_write(path, (json.dumps(full, indent=2) + "\n").encode(), replace=False)
    existing = _read_manifest(root)
    diffs = [key for key in dict.fromkeys([*existing, *full]) if _json_text(existing, key) != _json_text(full, key)]
    if diffs:
        raise ZooError(f"'{path}' was built with other settings: "
                       + "; ".join(f"{key}: the zoo has {_json_text(existing, key)}, this build asks for "
                                   f"{_json_text(full, key)}" for key in diffs)
                       + ". Use another output directory (--out) for a different zoo, or the zoo's own settings "
                         "to continue it")
    if not os.path.isdir(os.path.join(root, "models")):
        os.makedirs(os.path.join(root, "models"), exist_ok=True)
        _fsync_dir(root)
    return existing


def _json_text(mapping: dict, key: str) -> str:
    """``mapping[key]`` as JSON text (so NaN equals NaN), or ``(absent)``."""
    return json.dumps(mapping[key], sort_keys=True) if key in mapping else "(absent)"


def _lock_shard(root: str, shard: tuple[int, int]):
    """Hold the shard's lock file for as long as the writer lives (released by the OS if killed)."""
    path = os.path.join(root, "models", f"shard-{shard[0]}-of-{shard[1]}.lock")
    handle = open(path, "a")
    if fcntl is not None:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                return handle  # no locks on this file system: one process per shard is the user's duty
            handle.close()
            raise ZooError(f"another process is writing shard {shard[0]}/{shard[1]} of '{root}' (it holds "
                           f"'{path}'); give each process its own --shard i/n, or wait for it to finish") from None
    return handle


def _remove_own_leftovers(root: str, shard: tuple[int, int]) -> None:
    """Delete temp files of earlier, killed writers of this shard (incomplete by construction)."""
    i, n = shard
    for folder, prefix in ((os.path.join(root, "models"), f"shard-{i}-of-{n}-"), (root, f"models-{i}-of-{n}.jsonl")):
        for name in os.listdir(folder):
            if name.startswith(prefix) and _TMP in name[len(prefix):]:
                os.remove(os.path.join(folder, name))


def _copy_tensors(model_id: int, tensors: Any) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies of a model's tensors (the caller may go on training the originals)."""
    if not isinstance(tensors, Mapping):
        raise TypeError(f"expected the tensors of model {model_id} as a dict name -> Tensor "
                        f"(got {type(tensors).__name__})")
    copies = {}
    for name, t in tensors.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"parameter names must be non-empty strings (got {name!r} in model {model_id})")
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"parameter '{name}' of model {model_id} is a {type(t).__name__}, expected a torch.Tensor")
        if t.is_complex() or t.is_quantized or t.is_meta or t.layout != torch.strided:
            raise TypeError(f"parameter '{name}' of model {model_id} is a {t.dtype} {t.layout} tensor on {t.device}; "
                            f"expected a dense float, integer or bool tensor with data")
        copies[name] = torch.empty(t.shape, dtype=t.dtype).copy_(t.detach())
    return copies


def _check_record(model_id: int, record: Any) -> dict:
    if not isinstance(record, Mapping):
        raise TypeError(f"expected the record of model {model_id} as a dict (got {type(record).__name__})")
    for key, value in record.items():
        if not isinstance(key, str):
            raise TypeError(f"record keys must be strings (got {key!r} in the record of model {model_id})")
        if key in _RESERVED:
            raise ValueError(f"record key '{key}' of model {model_id} is reserved (the zoo sets it); rename it")
        _check_json(value, f"record[{key!r}]", f" of model {model_id}")
    return json.loads(json.dumps(dict(record)))  # tuples become lists now, as any reader will see them


def _encode(buffer: list[tuple[int, dict, dict]]) -> bytes:
    from safetensors.torch import save

    tensors = {f"{model_id}/{name}": t for model_id, params, _ in buffer for name, t in params.items()}
    payload = {"format_version": FORMAT_VERSION,
               "records": [{"id": model_id, **record} for model_id, _, record in buffer],
               "order": {str(model_id): list(params) for model_id, params, _ in buffer}}
    return save(tensors, metadata={_METADATA_KEY: json.dumps(payload)})


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

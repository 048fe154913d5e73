"""The zoo's on-disk format, low level: atomic writes, model files, tables, manifest, locks and checks.

The format itself is documented in :mod:`gmnfx.zoo.storage`; this module reads and writes its pieces.
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



def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` -> ``(2, 4)``: shard 2 of 4, as given to ``--shard``."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text) if isinstance(text, str) else None
    if match is None or not int(match[1]) < int(match[2]):
        raise ValueError(f"expected a shard as 'i/n' with 0 <= i < n, e.g. '0/4' (got {text!r})")
    return int(match[1]), int(match[2])


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

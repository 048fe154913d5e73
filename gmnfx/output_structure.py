"""The structure of a model's output: plain containers for the graph, the user's classes for ``simulate``.

A model may return a tensor, tuples, lists and dicts of them, a ``@dataclass``
instance, a ``NamedTuple`` or a dict subclass (an ``OrderedDict`` subclass
like HuggingFace's ``ModelOutput``). Compiled graphs store the output
structure as a ``torch.utils._pytree`` spec of *plain* containers (so it stays
JSON and loads anywhere), plus an ``output_types`` list naming the class of
each container that was not a plain one::

    [{"path": ["aux"], "kind": "dataclass", "type": "mypkg.heads:AuxOutput",
      "fields": ["logits", "hidden"]}, ...]

``path`` is the chain of keys / indices from the root, ``kind`` is
``"dataclass"``, ``"namedtuple"`` or ``"mapping"``, ``fields`` the
container's keys in order. Fields holding None (an optional output left
out) are dropped from the plain dict and restored from ``fields``.
:func:`rebuild_output` turns the plain containers back into those classes
when they can be found (their module already imported: a graph file never
makes gmnfx import anything) and built from their fields; otherwise they stay
dicts.
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Any, Optional

import torch.fx as fx
from torch.fx.immutable_collections import immutable_dict

__all__ = ["is_container_node", "output_structure", "rebuild_output", "type_name", "resolve_type"]


def type_name(cls: type) -> str:
    """``"module:QualName"``, how ``output_types`` names a class."""
    return f"{cls.__module__}:{cls.__qualname__}"


def resolve_type(name: str) -> Optional[type]:
    """The class named ``"module:QualName"`` if its module is already imported; None otherwise."""
    module_name, _, qualname = name.partition(":")
    obj = sys.modules.get(module_name)
    if obj is None or not qualname or "<locals>" in qualname:
        return None
    for atom in qualname.split("."):
        obj = getattr(obj, atom, None)
    return obj if isinstance(obj, type) else None


def _is_namedtuple_type(cls: Any) -> bool:
    return isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_fields")


def is_container_node(node: fx.Node) -> bool:
    """Whether ``node`` only builds a dataclass / NamedTuple returned by the model (torch.fx records those
    as a call of the class)."""
    cls = node.target
    return (node.op == "call_function" and isinstance(cls, type)
            and (dataclasses.is_dataclass(cls) or _is_namedtuple_type(cls))
            and bool(node.users) and all(user.op == "output" for user in node.users))


def output_structure(output: Any, real: Any = None) -> tuple[Any, list[dict]]:
    """``output`` with every container made a plain dict / list / tuple, and the ``output_types`` entries.

    Args:
        output: the traced output (fx nodes as leaves, possibly container-building nodes).
        real: the model's actual output on the example inputs, consulted for the class
            of dicts (torch.fx turns every dict into a plain one); default None.
    """
    types: list[dict] = []
    return _normalize(output, (), real, types), types


def _normalize(obj: Any, path: tuple, real: Any, types: list) -> Any:
    if isinstance(obj, fx.Node) and is_container_node(obj):
        return _fields_of(obj.target, _node_fields(obj), path, real, types)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        values = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}
        return _fields_of(type(obj), values, path, real, types)
    if isinstance(obj, tuple) and _is_namedtuple_type(type(obj)):
        return _fields_of(type(obj), dict(zip(type(obj)._fields, obj)), path, real, types)
    if isinstance(obj, dict):
        cls = type(real) if isinstance(real, dict) and type(real) is not dict else type(obj)
        return _fields_of(cls, dict(obj), path, real, types)
    if isinstance(obj, (list, tuple)):
        items = [_normalize(v, (*path, i), _child(real, i), types) for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    return obj


def _node_fields(node: fx.Node) -> dict:
    cls = node.target
    names = cls._fields if _is_namedtuple_type(cls) else [f.name for f in dataclasses.fields(cls) if f.init]
    return {**dict(zip(names, node.args)), **node.kwargs}


def _fields_of(cls: type, values: dict, path: tuple, real: Any, types: list) -> dict:
    if dataclasses.is_dataclass(cls):
        kind = "dataclass"
    elif _is_namedtuple_type(cls):
        kind = "namedtuple"
    else:
        kind = "mapping" if issubclass(cls, dict) and cls not in (dict, immutable_dict) else None
    if kind is None:
        return {k: _normalize(v, (*path, k), _child(real, k), types) for k, v in values.items()}
    types.append({"path": list(path), "kind": kind, "type": type_name(cls), "fields": list(values)})
    return {k: _normalize(v, (*path, k), _child(real, k), types) for k, v in values.items() if v is not None}


def _child(real: Any, key: Any) -> Any:
    if real is None:
        return None
    if isinstance(real, dict):
        return real.get(key)
    if dataclasses.is_dataclass(real) and isinstance(key, str):
        return getattr(real, key, None)
    if isinstance(real, (list, tuple)) and isinstance(key, int) and 0 <= key < len(real):
        return real[key]
    return None


def rebuild_output(obj: Any, types: list[dict]) -> Any:
    """``obj`` (plain containers) with the containers listed in ``types`` rebuilt as their classes."""
    by_path = {tuple(entry["path"]): entry for entry in types or ()}
    return _rebuild(obj, (), by_path) if by_path else obj


def _rebuild(obj: Any, path: tuple, by_path: dict) -> Any:
    if isinstance(obj, dict):
        obj = {k: _rebuild(v, (*path, k), by_path) for k, v in obj.items()}
    elif isinstance(obj, (list, tuple)):
        items = [_rebuild(v, (*path, i), by_path) for i, v in enumerate(obj)]
        obj = items if isinstance(obj, list) else tuple(items)
    entry = by_path.get(path)
    return _construct(entry, obj) if entry is not None and isinstance(obj, dict) else obj


def _construct(entry: dict, values: dict) -> Any:
    """An instance of the entry's class built from ``values``, or ``values`` when that is not possible."""
    fields = entry.get("fields") or list(values)
    if set(values) <= set(fields):
        values = {k: values.get(k) for k in fields}  # the None fields back, in the class's order
    cls = resolve_type(entry.get("type", ""))
    if cls is None:
        return values
    try:
        return cls(values) if entry.get("kind") == "mapping" else cls(**values)
    except Exception:  # noqa: BLE001 - a class whose constructor does not take its fields: keep the dict
        return values

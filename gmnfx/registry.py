"""The lowering-rule registry.

A lowering rule turns one traced op into neurons and edges. Rules are keyed by
what the op *is*: an ``nn.Module`` subclass (module calls kept as leaves by the
tracer), a Python callable (``F.linear``, ``torch.relu``, ``operator.add``), an
ATen overload (``torch.ops.aten.linear.default``, what torch.export produces)
or a tensor method name wrapped in :func:`method` (``method("view")``)::

    @register_lowering(nn.Linear)
    def lower_linear_module(ctx, node):
        ...
"""
from __future__ import annotations

import sys

from dataclasses import dataclass
from typing import Callable, Hashable, Optional

import torch.nn as nn

from gmnfx.errors import RegistryError

__all__ = ["register_lowering", "lookup_lowering", "method", "Method", "LoweringRule", "monkeypatched_original"]

LoweringRule = Callable  # (ctx: LoweringContext, node: torch.fx.Node) -> Value


@dataclass(frozen=True)
class Method:
    """Registry key of a tensor method call (``x.view(...)`` is ``Method("view")``)."""

    name: str


def method(name: str) -> Method:
    """The registry key for tensor method ``name``."""
    return Method(name)


_LOWERINGS: dict[Hashable, LoweringRule] = {}


def register_lowering(*targets: Hashable, replace: bool = False) -> Callable[[LoweringRule], LoweringRule]:
    """Register the decorated function as the lowering rule of every target.

    Args:
        *targets: module classes, callables, ATen overloads or :func:`method` keys.
        replace: allow replacing an existing rule (default False: duplicates are an error).
    """
    if not targets:
        raise RegistryError("register_lowering() needs at least one target")
    for target in targets:
        if isinstance(target, str):
            raise RegistryError(
                f"register_lowering({target!r}): a bare string is ambiguous; "
                f"use gmnfx.method({target!r}) for a tensor method"
            )

    def decorate(rule: LoweringRule) -> LoweringRule:
        for target in targets:
            existing = _LOWERINGS.get(target)
            if existing is not None and existing is not rule and not replace:
                raise RegistryError(
                    f"a lowering rule for {_describe(target)} is already registered "
                    f"({existing.__module__}.{existing.__qualname__}); pass replace=True to override it"
                )
            _LOWERINGS[target] = rule
        return rule

    return decorate


def lookup_lowering(target: Hashable) -> Optional[LoweringRule]:
    """The rule for ``target``; module subclasses that keep their parent's forward inherit its rule."""
    rule = _LOWERINGS.get(target)
    if rule is None and callable(target) and not isinstance(target, type):
        original = monkeypatched_original(target)
        rule = None if original is None else _LOWERINGS.get(original)
    if rule is not None or not isinstance(target, type) or not issubclass(target, nn.Module):
        return rule
    for base in target.__mro__[1:]:
        if base.forward is not target.forward:
            return None
        if base in _LOWERINGS:
            return _LOWERINGS[base]
    return None


def monkeypatched_original(target) -> Optional[Hashable]:
    """The torch function a library replaced with ``target`` (importing torch_geometric swaps
    ``torch.index_select`` and ``torch.select`` for wrappers ``_new_<name>`` that keep ``_old_<name>``)."""
    name = getattr(target, "__name__", "")
    module = sys.modules.get(getattr(target, "__module__", "") or "")
    if not name.startswith("_new_") or module is None:
        return None
    return getattr(module, "_old_" + name.removeprefix("_new_"), None)


def _describe(target: Hashable) -> str:
    if isinstance(target, Method):
        return f"tensor method .{target.name}()"
    if isinstance(target, type):
        return f"{target.__module__}.{target.__qualname__}"
    return getattr(target, "__name__", None) or str(target)

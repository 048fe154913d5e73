"""Exceptions raised by gmnfx.

Every failure a user can cause is a :class:`GmnfxError` whose message says what
went wrong, where (module path, fx node, source line) and how to fix it.
"""
from __future__ import annotations

__all__ = [
    "GmnfxError",
    "UntraceableModuleError",
    "UnsupportedOpError",
    "LoweringError",
    "ParameterPlacementError",
    "MissingExampleInputsError",
    "InputShapeError",
    "GraphFormatError",
    "InvariantError",
    "RegistryError",
]


class GmnfxError(Exception):
    """Base class of every error gmnfx raises on purpose."""


class UntraceableModuleError(GmnfxError):
    """Neither torch.fx symbolic tracing nor torch.export could capture the model."""


class UnsupportedOpError(GmnfxError):
    """An op in the traced graph has no lowering rule."""


class LoweringError(GmnfxError):
    """A lowering rule or compiler pass failed on a node it is responsible for."""


class ParameterPlacementError(GmnfxError):
    """A parameter could not be placed on exactly one parameter-graph edge."""


class MissingExampleInputsError(GmnfxError):
    """Shapes are needed but no example inputs were given and none can be inferred."""


class InputShapeError(GmnfxError):
    """Inputs do not match what the model (or the compiled graph) expects."""


class GraphFormatError(GmnfxError):
    """A saved graph file is missing, truncated or not a gmnfx graph."""


class InvariantError(GmnfxError):
    """An internal invariant of the IR was broken between two passes."""


class RegistryError(GmnfxError):
    """A lowering rule was registered twice for the same target, or with a bad target."""

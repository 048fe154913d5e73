"""Built-in lowering rules, grouped by layer family. Importing this package registers them."""
from . import conv, elementwise, linear, norm, pooling, shape  # noqa: F401

__all__ = ["conv", "elementwise", "linear", "norm", "pooling", "shape"]

"""Built-in lowering rules, grouped by layer family. Importing this package registers them."""
from . import conv, elementwise, embedding, linear, norm, pooling, shape  # noqa: F401
from . import attention, matmul, pad, passthrough, softmax, transformer  # noqa: F401
from . import addmm, merged_batch  # noqa: F401
from . import grid_sample  # noqa: F401

__all__ = ["conv", "elementwise", "linear", "norm", "pooling", "shape", "attention", "matmul", "pad", "passthrough", "softmax", "transformer"]
__all__ += ["addmm", "merged_batch"]
__all__ += ["embedding"]
__all__ += ["grid_sample"]

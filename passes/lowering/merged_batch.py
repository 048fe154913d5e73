"""Which lowering rules accept activations whose batch dim is merged with the next one.

``x.view(-1, D)`` of ``[batch, T, D]`` (HuggingFace's ``Conv1D``, or any code that
flattens tokens into rows for a matrix product) gives ``[batch * T, D]`` with
each sample's rows contiguous: a :class:`~gmnfx.ir.Neurons` with ``merged=True``
and per-sample ids ``[T, D]``. A rule that works on each row independently is
correct on those ids unchanged, and :meth:`~gmnfx.context.LoweringContext.finish`
marks its output merged; every rule not declared here fails with a clear error
when it reads a merged value, instead of taking the merged rows for a
per-sample dim. A rule's owner may declare it next to the rule instead.
"""
from __future__ import annotations

import operator

import torch
import torch.nn as nn
import torch.nn.functional as F

from gmnfx.context import LoweringContext, accept_merged_batch
from gmnfx.ir import Neurons, Params
from gmnfx.registry import method

__all__: list[str] = []

aten = torch.ops.aten


def _activation_times_parameter(ctx: LoweringContext, node) -> bool:
    """``x @ W``: row-wise. ``W @ x`` and products of two activations mix rows."""
    left = ctx.value(node.args[0]) if node.args else None
    right = ctx.value(node.args[1]) if len(node.args) > 1 else None
    return isinstance(left, Neurons) and isinstance(right, Params)


# neuron bookkeeping moves rows like any other elements and decodes its own output's layout; casts and
# export's runtime assertions pass values through unchanged (one target per rule)
accept_merged_batch(nn.Flatten, nn.Identity, method("size"), sets_flag=True)
accept_merged_batch(aten._to_copy.default, aten._assert_tensor_metadata.default, sets_flag=True)

# dense layers and addmm: the same weights on every row
accept_merged_batch(nn.Linear, F.linear, torch.addmm)
accept_merged_batch(torch.matmul, when=_activation_times_parameter)

# activations and elementwise arithmetic (one target per rule)
accept_merged_batch(nn.ReLU, nn.LeakyReLU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.ReLU6, torch.sin, nn.GELU,
                    nn.Hardtanh, torch.clamp)
accept_merged_batch(operator.add, operator.sub, operator.neg, operator.mul, operator.truediv, operator.pow)

# LayerNorm normalizes trailing dims, never the merged leading one
accept_merged_batch(nn.LayerNorm, F.layer_norm)

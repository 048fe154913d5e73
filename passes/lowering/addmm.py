"""Lowering rules: ``addmm`` with a parameter matrix (HuggingFace's ``Conv1D``).

``torch.addmm(bias, x, weight)`` computes ``bias + x @ weight`` with ``weight``
stored ``[in, out]``, transposed relative to ``nn.Linear``. With ``x`` an
activation and ``weight`` a parameter it is a dense layer: the same complete
bipartite LINEAR edges and BIAS edges as ``nn.Linear``, ``weight[i, o]`` on the
edge from input ``i`` to output ``o``. ``x`` is usually the merged
``[batch * T, in]`` of ``x.view(-1, in)`` (see :class:`gmnfx.ir.Neurons`).

``beta`` and ``alpha`` other than 1, constant or activation ``input`` terms
add a layer of SUM neurons after the dense one. A product of two activations
is a different family (attention) and is rejected here.
"""
from __future__ import annotations

from typing import Any

import torch

from gmnfx.context import LoweringContext
from gmnfx.ir import Neurons, Params
from gmnfx.registry import method, register_lowering

from .elementwise import lower_add, lower_mul
from .linear import lower_linear

__all__ = ["lower_addmm"]

aten = torch.ops.aten


def lower_addmm(ctx: LoweringContext, base: Any, x: Any, weight: Any, beta: float = 1.0,
                alpha: float = 1.0) -> Neurons:
    """``beta * base + alpha * (x @ weight)`` for an activation ``x`` and a parameter ``weight`` ``[in, out]``."""
    if isinstance(x, Neurons) and isinstance(weight, Neurons):
        raise ctx.fail("addmm of two activations (an activation-activation matrix product) is not supported "
                       "by the addmm rule; write it as torch.matmul(x, y) + input")
    if not isinstance(x, Neurons) or not isinstance(weight, Params):
        raise ctx.fail(f"expected addmm(input, activation, parameter) (got mat1 {type(x).__name__}, mat2 "
                       f"{type(weight).__name__}); gmnfx lowers addmm as a dense layer x @ weight")
    if weight.index.dim() != 2:
        raise ctx.fail(f"expected a 2-d weight [in, out] in addmm (got shape {weight.shape})")
    transposed = Params(weight.index.T, weight.name)
    base = None if float(beta) == 0.0 else base
    if isinstance(base, Params) and float(alpha) == 1.0 and float(beta) == 1.0:
        return lower_linear(ctx, x, transposed, _bias_vector(ctx, base, weight.shape[1]))
    out = lower_linear(ctx, x, transposed, None)
    if float(alpha) != 1.0:
        out = lower_mul(ctx, out, float(alpha))
    return out if base is None else lower_add(ctx, out, base, float(beta))


def _bias_vector(ctx: LoweringContext, bias: Params, n_out: int) -> Params:
    """A bias parameter of shape ``[out]`` or ``[1, out]`` as the ``[out]`` vector of a dense layer."""
    if bias.shape not in ((n_out,), (1, n_out)):
        raise ctx.fail(f"expected an addmm bias of shape ({n_out},) (got {bias.shape}); it is added to "
                       "every row, so one value per output")
    return Params(bias.index.reshape(n_out), bias.name)


@register_lowering(torch.addmm, method("addmm"), aten.addmm.default)
def lower_addmm_op(ctx: LoweringContext, node) -> Neurons:
    base, x, weight, beta, alpha = ctx.bind(node, "input", "mat1", "mat2", beta=1.0, alpha=1.0)
    return lower_addmm(ctx, base, x, weight, beta, alpha)

"""Lowering rules: ops that leave values unchanged at the graph's level.

torch.export inserts runtime assertions (dtype, device, shape checks) and
keeps dtype/device casts as ATen ops; gmnfx graphs are built and simulated in
float64 on the CPU, so casts pass their input through and assertions, which
held for the traced example, lower to nothing.
"""
from __future__ import annotations

from typing import Any

import torch

from gmnfx.context import LoweringContext
from gmnfx.ir import Constant
from gmnfx.registry import register_lowering

__all__ = ["lower_runtime_assertion", "lower_cast"]

aten = torch.ops.aten


@register_lowering(aten._assert_tensor_metadata.default, aten._assert_async.msg, aten._assert_async.default,
                   aten._assert_scalar.default)
def lower_runtime_assertion(ctx: LoweringContext, node) -> Constant:
    """Assertions hold for the traced example (shape propagation ran it): nothing to lower."""
    return Constant(None)


@register_lowering(aten.to.dtype_layout, aten.to.dtype, aten.to.device, aten._to_copy.default, aten.type_as.default)
def lower_cast(ctx: LoweringContext, node) -> Any:
    """A dtype/device cast of an activation or parameter is the value itself."""
    return ctx.value(node.args[0])

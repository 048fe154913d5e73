"""Everything a lowering rule needs, in one import.

Example (the README's worked example)::

    from gmnfx.lowering import EdgeType, Neurons, PairEdges, register_lowering

    @register_lowering(FeatureAffine)
    def lower_feature_affine(ctx, node):
        (x,) = ctx.bind(node, "input")
        x = ctx.neurons(x)
        m = ctx.module()
        scale, shift = ctx.module_param(m, "scale"), ctx.module_param(m, "shift")
        bias = ctx.graph.new_bias_node(ctx.layer)
        out = ctx.graph.new_neurons(x.shape, layer=ctx.layer, channel_dim=-1)
        ctx.graph.add_block(PairEdges(x.ids, out, EdgeType.SCALE, ctx.layer, ctx.source(), param=scale.index))
        ctx.graph.add_block(PairEdges(bias, out, EdgeType.BIAS, ctx.layer, ctx.source(), param=shift.index))
        return Neurons(out, fusable=True)
"""
from gmnfx.context import LoweringContext
from gmnfx.edge_blocks import BlockAttrs, ConvEdges, DenseEdges, PairEdges
from gmnfx.ir import Constant, Neurons, Params
from gmnfx.passes.lowering.elementwise import apply_activation
from gmnfx.registry import lookup_lowering, method, register_lowering
from gmnfx.schema import Activation, EdgeType, NodeOp, NodeType

__all__ = [
    "LoweringContext", "register_lowering", "lookup_lowering", "method",
    "Neurons", "Params", "Constant", "PairEdges", "DenseEdges", "ConvEdges", "BlockAttrs",
    "EdgeType", "NodeOp", "NodeType", "Activation", "apply_activation",
]

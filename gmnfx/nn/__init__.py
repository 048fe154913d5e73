"""The Graph Metanetwork (``gmnfx.nn``): a GNN over compiled graphs that respects their symmetries.

    gmn = gmnfx.nn.GMN(out_dim, hidden_dim=64, num_layers=4, readout="graph")   # or "node", "edge"
    out = gmn(gmnfx.batch(graphs))

``GMNLayer`` also runs on plain PyG-style tensors ``(x, edge_index, edge_attr)``. The message-passing ops are
the fused kernels of ``gmnfx.kernels`` (Triton on CUDA, a pure-torch reference elsewhere; ``GMNFX_BACKEND``
picks one).
"""
from gmnfx.nn.encoders import EdgeEncoder, FourierFeatures, NodeEncoder
from gmnfx.nn.layer import AGGREGATIONS, GMNLayer
from gmnfx.nn.model import GMN, READOUTS
from gmnfx.nn.plan import MessagePlan, message_plan

__all__ = ["GMN", "GMNLayer", "NodeEncoder", "EdgeEncoder", "FourierFeatures", "MessagePlan", "message_plan",
           "AGGREGATIONS", "READOUTS"]

"""Triton kernels for the Graph Metanetwork (filled by the GMN issue); installed as ``gmnfx.kernels``."""

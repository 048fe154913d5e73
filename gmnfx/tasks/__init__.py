"""The metanetwork tasks on model zoos: accuracy prediction (``gmnfx.tasks.accuracy``)."""
from gmnfx.tasks.metrics import kendall_tau, r2_score

__all__ = ["r2_score", "kendall_tau"]

"""Predicted-vs-true scatter plots for the accuracy task (matplotlib, no display needed)."""
from __future__ import annotations

from typing import Mapping, Sequence

__all__ = ["scatter_panels"]

_MARKERS = ("o", "x", "^", "s", "d")


def scatter_panels(panels: Mapping[str, Mapping[str, Mapping]], path: str) -> None:
    """One panel per title in ``panels``; in each, one series per label with ``target``, ``predicted`` (sequences
    or tensors) and the ``r2`` and ``tau`` shown in the legend. Written to ``path`` (PNG, 120 dpi)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.5), squeeze=False)
    for ax, (title, series) in zip(axes[0], panels.items()):
        for (label, run), marker in zip(series.items(), _MARKERS):
            ax.scatter(_values(run["target"]), _values(run["predicted"]), marker=marker, s=14, alpha=0.7,
                       label=f"{label} (R$^2$ {run['r2']:.2f}, $\\tau$ {run['tau']:.2f})")
        ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
        ax.set_title(title)
        ax.set_xlabel("true test accuracy")
        ax.set_ylabel("predicted test accuracy")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _values(values) -> Sequence[float]:
    return values.tolist() if hasattr(values, "tolist") else list(values)

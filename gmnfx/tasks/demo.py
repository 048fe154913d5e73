"""``gmnfx demo``: a small zoo, compiled, and a GMN against a baseline at predicting accuracy from weights."""
from __future__ import annotations

import os
import time
from typing import Callable, Optional

__all__ = ["run_demo"]


def run_demo(out_dir: str = "gmnfx-demo", *, num_models: int = 192, epochs: int = 150, seed: int = 0,
             hidden_dim: int = 32, gmn_layers: int = 2, progress: bool = True,
             log: Optional[Callable[[str], None]] = print) -> dict:
    """Build (or continue) a ``varying-cnn`` zoo of ``num_models`` in ``out_dir/zoo``, compile it, train the GMN
    (``gmn_layers`` layers) and the StatNN baseline on half of its training split, print test R^2 and Kendall's
    tau, and write the predicted-vs-true scatter plot to ``out_dir/accuracy_scatter.png``. Returns the scores per
    predictor."""
    from gmnfx.tasks.accuracy import accuracy_data, run
    from gmnfx.tasks.plots import scatter_panels
    from gmnfx.zoo import Zoo, build_zoo

    log = log or (lambda message: None)
    start = time.perf_counter()
    root = os.path.join(out_dir, "zoo")
    build_zoo(root, "varying-cnn", num_models, seed=seed, progress=progress, log=log)
    data = accuracy_data(Zoo.open(root), progress=progress)
    log(f"compiled {len(data.graphs)} models: {sum(g.num_edges for g in data.graphs):,} edges; "
        f"test accuracies {float(data.accuracy.min()):.2f} to {float(data.accuracy.max()):.2f}")
    results = {}
    for name in ("statnn", "gmn"):
        options = {"num_layers": gmn_layers} if name == "gmn" else {}
        results[name] = run(data, name, "50%", seed, epochs=epochs, hidden_dim=hidden_dim, progress=progress,
                            predictor_options=options)
    log(f"\naccuracy prediction, {results['gmn']['train']} training models, {results['gmn']['test']} test models:")
    log(f"  {'predictor':10s} {'R^2':>7s} {'tau':>7s}")
    for name, label in (("gmn", "GMN"), ("statnn", "StatNN")):
        log(f"  {label:10s} {results[name]['r2']:7.3f} {results[name]['tau']:7.3f}")
    plot = os.path.join(out_dir, "accuracy_scatter.png")
    scatter_panels({"50% of the training split": {"GMN": results["gmn"], "StatNN": results["statnn"]}}, plot)
    log(f"scatter plot: {plot}; total {time.perf_counter() - start:.0f} s")
    return {name: {k: r[k] for k in ("r2", "tau", "train", "test")} for name, r in results.items()}

"""Task 1's results table: every (predictor, setting, seed) run of a zoo, stored as it finishes.

Results live in a JSON-lines file, one run per line::

    {"format": "gmnfx-accuracy-run", "zoo": ROOT, "models": 2000, "predictor": "gmn", "setting": "50%", "seed": 0,
     "options": {...}, "r2": ..., "tau": ..., "train": ..., "test": ..., "seconds": ...,
     "target": [...], "predicted": [...]}

A run is appended (and fsynced) as soon as it finishes, so killing :func:`accuracy_table` loses at most the run in
progress; re-running it skips every run already stored with the same options. A last line cut off by a kill is
ignored (and overwritten by the next append); any other unreadable line is an error naming the file and line.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from typing import Callable, Iterable, Optional, Sequence

from gmnfx.tasks.accuracy import SETTINGS, accuracy_data, run
from gmnfx.tasks.distributed import Distributed
from gmnfx.tasks.plots import scatter_panels
from gmnfx.tasks.predictors import PREDICTORS

__all__ = ["accuracy_table", "read_results", "append_result", "format_table", "plot_runs", "ResultsFileError", "LABELS"]

RUN_FORMAT = "gmnfx-accuracy-run"
LABELS = {"gmn": "GMN", "deepsets": "DeepSets", "statnn": "StatNN"}


class ResultsFileError(ValueError):
    """A results file that is not what :func:`accuracy_table` writes."""


def read_results(path: str) -> list[dict]:
    """The runs stored in ``path`` (``[]`` when it does not exist). A torn last line is dropped."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            if number == len(lines):  # no newline after it: a write cut off by a kill
                break
            raise ResultsFileError(f"{path}, line {number}: not a JSON object; this file was not written by "
                                   f"gmnfx accuracy (move it away or pass another --results)") from None
        if not isinstance(row, dict) or row.get("format") != RUN_FORMAT:
            raise ResultsFileError(f"{path}, line {number}: expected a run with \"format\": \"{RUN_FORMAT}\"; "
                                   f"this file was not written by gmnfx accuracy (move it away or pass another "
                                   f"--results)")
        rows.append(row)
    return rows


def append_result(path: str, row: dict) -> None:
    """Append one run to ``path`` durably, first cutting off a torn last line that a killed run left."""
    line = json.dumps({"format": RUN_FORMAT, **row}) + "\n"
    if os.path.exists(path):
        with open(path, "rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def accuracy_table(zoo_root: str, results_path: str, *, predictors: Sequence[str] = tuple(PREDICTORS),
                   settings: Sequence[str] = SETTINGS, seeds: Iterable[int] = range(5), epochs: int = 50,
                   hidden_dim: int = 32, gmn_layers: int = 2, lr: float = 1e-3, schedule: str = "constant",
                   min_steps: int = 0, progress: bool = False,
                   log: Optional[Callable[[str], None]] = print) -> list[dict]:
    """Train and score every predictor in every setting for every seed on the zoo at ``zoo_root``; return the
    runs for these options (stored ones included). Runs already in ``results_path`` are not repeated.

    Every predictor trains the same way (:func:`gmnfx.tasks.accuracy.fit`): ``epochs`` epochs or at least
    ``min_steps`` steps, Adam at ``lr`` with the ``schedule``; ``hidden_dim`` wide, the GMN ``gmn_layers`` deep.
    """
    from gmnfx.zoo import Zoo

    ctx = Distributed.from_env()
    log = log if (log and ctx.is_main) else (lambda message: None)
    for name in predictors:
        if name not in PREDICTORS:
            raise ValueError(f"unknown predictor {name!r}; known: {sorted(PREDICTORS)}")
    for setting in settings:
        if setting not in SETTINGS:
            raise ValueError(f"unknown setting {setting!r}; known: {list(SETTINGS)}")
    seeds = list(seeds)
    zoo = Zoo.open(zoo_root)
    num_models = len(zoo.ids())  # part of a run's key: a zoo that grew since is scored again
    if zoo.missing():
        log(f"note: {zoo_root} has {num_models} of {zoo.manifest.get('n')} models (its build is unfinished)")
    stored = read_results(results_path)
    ctx.barrier()  # every rank has read the file before rank 0 appends to it
    rows = []
    data = None
    for seed in seeds:  # seed by seed: a stopped table has complete rows for its first seeds
        for setting in settings:
            for name in predictors:
                architecture = {"num_layers": gmn_layers} if name == "gmn" else {}
                options = {"epochs": epochs, "hidden_dim": hidden_dim, "lr": lr, "schedule": schedule,
                           "min_steps": min_steps, **architecture}
                key = {"zoo": os.path.abspath(zoo_root), "models": num_models, "predictor": name,
                       "setting": setting, "seed": seed, "options": options}
                done = next((r for r in stored if all(r.get(k) == v for k, v in key.items())), None)
                if done is not None:
                    rows.append(done)
                    continue
                if data is None:
                    data = _load_once(zoo, ctx, progress)
                start = time.perf_counter()
                result = run(data, name, setting, seed, epochs=epochs, hidden_dim=hidden_dim, progress=progress,
                             predictor_options=architecture, lr=lr, schedule=schedule, min_steps=min_steps)
                row = {**key, "r2": result["r2"], "tau": result["tau"], "train": result["train"],
                       "test": result["test"], "seconds": round(time.perf_counter() - start, 1),
                       "target": result["target"].tolist(), "predicted": result["predicted"].tolist()}
                if ctx.is_main:
                    append_result(results_path, row)
                rows.append(row)
                log(f"{setting:>4s} seed {seed} {LABELS.get(name, name):8s} R^2 {row['r2']:7.3f} "
                    f"tau {row['tau']:6.3f}  ({row['train']} train, {row['test']} test, {row['seconds']:.0f} s)")
    return rows


def _load_once(zoo, ctx: Distributed, progress: bool):
    """The zoo's graphs; rank 0 compiles and caches them first so that ranks never write the same file."""
    data = accuracy_data(zoo, progress=progress) if ctx.is_main else None
    ctx.barrier()
    return data if data is not None else accuracy_data(zoo)


_SETTING_TITLES = {"50%": "50% of the training split", "5%": "5% of the training split",
                   "ood": "out of distribution (wider)"}


def plot_runs(rows: Sequence[dict], path: str, *, seed: int = 0) -> None:
    """Predicted vs true test accuracy of seed ``seed``: one panel per setting, one series per predictor."""
    panels = {}
    for setting in SETTINGS:
        series = {LABELS.get(r["predictor"], r["predictor"]): r for r in rows
                  if r["setting"] == setting and r["seed"] == seed}
        if series:
            panels[_SETTING_TITLES[setting]] = series
    if not panels:
        raise ValueError(f"no runs with seed {seed} to plot")
    scatter_panels(panels, path)


def format_table(rows: Sequence[dict], *, metric_names: Sequence[str] = ("r2", "tau")) -> str:
    """A markdown table: one row per predictor, one column per (setting, metric), cells ``mean ± std`` over the
    seeds (sample std; a single seed shows no ``±``), the best mean of each column in bold."""
    predictors = list(dict.fromkeys(r["predictor"] for r in rows))
    settings = [s for s in SETTINGS if any(r["setting"] == s for r in rows)]
    heads = {"r2": "R²", "tau": "τ"}
    columns = [(s, m) for s in settings for m in metric_names]
    stats = {}
    for name in predictors:
        for setting, metric in columns:
            values = [r[metric] for r in rows if r["predictor"] == name and r["setting"] == setting]
            stats[name, setting, metric] = values
    best = {c: max((statistics.fmean(stats[n, *c]) for n in predictors if stats[n, *c]), default=None)
            for c in columns}
    lines = ["| predictor | " + " | ".join(f"{s} {heads.get(m, m)}" for s, m in columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for name in predictors:
        cells = []
        for column in columns:
            values = stats[name, *column]
            if not values:
                cells.append("")
                continue
            mean = statistics.fmean(values)
            text = f"{mean:.3f}" + (f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else "")
            cells.append(f"**{text}**" if mean == best[column] else text)
        seeds = sorted({r["seed"] for r in rows if r["predictor"] == name})
        count = f"{len(seeds)} seed" + ("s" if len(seeds) != 1 else "")
        lines.append(f"| {LABELS.get(name, name)} ({count}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)

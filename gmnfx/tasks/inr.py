"""Task 2: edit implicit neural representations through their weights (the GMN paper's 2D INR editing).

Each INR of a SIREN zoo (:mod:`gmnfx.zoo.siren`) renders a digit. An editor maps its weights ``theta`` to an
update, ``theta' = theta + gamma * editor(theta)``, such that the edited INR renders the edited image (its digit
dilated, or contrast-enhanced). The update lives on the parameter graph's edges: ``graph.edge_weight`` holds
``theta`` (every SIREN edge owns a parameter), :func:`gmnfx.params.functional_parameters` maps edited edge values
to parameters differentiably, and :func:`render` runs the edited INRs with ``vmap`` over ``functional_call``.
The loss is the pixel MSE between the render and the target image; ``gamma`` is a learned scalar (initial value
``gamma``, default 0.01).

Editors (:data:`EDITORS`): ``"none"`` (``theta' = theta``), ``"mlp"`` (an MLP on the standardized flat weight
vector, not equivariant) and ``"gmn"`` (``gmnfx.nn.GMN(out_dim=1, readout="edge")`` on the INRs' parameter
graphs, equivariant to their hidden-neuron permutations). Training runs unchanged under ``torchrun`` (data
parallel, :class:`gmnfx.tasks.distributed.Distributed`). :func:`run_inr_table` runs editors x targets x seeds,
prints the markdown table and writes ``results.json`` and the picture ``edits.png``.

Example::

    data = inr_data(gmnfx.zoo.Zoo.open("/work/zoos/siren"))
    result = run_inr_editing(data, "gmn", "dilate", seed=0, epochs=40)
    result["test_mse"], result["no_edit_mse"]
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn
from torch.func import functional_call, vmap

import gmnfx
from gmnfx.graphs import ParameterGraph
from gmnfx.params import functional_parameters
from gmnfx.zoo.siren import edit_target, pixel_grid, siren_from_manifest, siren_images

__all__ = ["INRData", "inr_data", "inr_split", "render", "WeightEditor", "EDITORS", "train_editor",
           "evaluate_editor", "run_inr_editing", "run_inr_table", "markdown_table"]

EDITORS = ("none", "mlp", "gmn")


@dataclass
class INRData:
    """The INRs of a SIREN zoo: one shared architecture and graph structure, per-INR edge values and images.

    ``template`` is INR ``ids[0]`` (an ``nn.Module``) and ``graph`` its compiled parameter graph; INR ``k``'s graph
    is ``graph`` with ``edge_weight = edge_values[k]`` (:meth:`graphs`), exactly what ``gmnfx.compile`` gives.
    """

    template: nn.Module
    graph: ParameterGraph
    edge_values: torch.Tensor  # [M, E]
    images: torch.Tensor  # [M, 1, S, S] in [0, 1]
    ids: list

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def graphs(self, index) -> list[ParameterGraph]:
        """The parameter graphs of the INRs at positions ``index``."""
        return [dataclasses.replace(self.graph, edge_weight=self.edge_values[int(k)]) for k in index]

    def target(self, name: str) -> torch.Tensor:
        """The images every INR must render after a ``name`` edit (``"dilate"`` or ``"contrast"``)."""
        return edit_target(name, self.images)


def inr_data(zoo) -> INRData:
    """Read every INR of ``zoo`` (a SIREN :class:`gmnfx.zoo.Zoo`) and compile the architecture once."""
    ids = zoo.ids()
    if not ids:
        raise ValueError(f"the zoo at '{zoo.root}' holds no INRs yet; build it with `gmnfx inr build`")
    template = siren_from_manifest(zoo.manifest)
    template.load_state_dict(zoo.tensors(ids[0]))
    template.eval()
    graph = gmnfx.compile(template, torch.zeros(1, template[0].in_features))
    names = [name for name, _ in template.named_parameters()]
    flat = torch.stack([torch.cat([state[name].reshape(-1) for name in names])
                        for state in (zoo.tensors(i) for i in ids)])
    owned = graph.edge_param >= 0
    values = graph.edge_weight.expand(len(ids), -1).clone()
    values[:, owned] = flat[:, graph.edge_param[owned]]
    return INRData(template, graph, values, siren_images(zoo), ids)


def inr_split(num_inrs: int, *, test_fraction: float = 0.2,
              val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(train, val, test)`` positions: a fixed permutation (seed 0), the same for every run and editor."""
    if num_inrs < 3:
        raise ValueError(f"expected at least 3 INRs to split into train, val and test (got {num_inrs})")
    order = torch.randperm(num_inrs, generator=torch.Generator().manual_seed(0))
    num_test = max(1, round(num_inrs * test_fraction))
    num_val = max(1, round(num_inrs * val_fraction))
    return order[num_test + num_val:], order[num_test:num_test + num_val], order[:num_test]


def render(template: nn.Module, graph: ParameterGraph, edge_values: torch.Tensor,
           coords: torch.Tensor) -> torch.Tensor:
    """Run the INRs whose edge values are ``edge_values`` [B, E] on ``coords`` [K, 2]: returns [B, K].

    ``vmap`` over ``functional_call(template, functional_parameters(...))``: every parameter of ``template`` is
    replaced, so it only supplies the architecture (and may stay on the CPU while the values are elsewhere).
    """
    params = functional_parameters(template, graph, edge_values)
    return vmap(lambda p: functional_call(template, p, (coords,)))(params)[..., 0]


class WeightEditor(nn.Module):
    """``theta -> theta + gamma * net(theta)`` on edge values ``[B, E]``; ``gamma`` a learned scalar.

    Args:
        kind: ``"none"`` (identity, no parameters), ``"mlp"`` or ``"gmn"``.
        train_values: ``[M, E]`` training INRs' edge values: the MLP standardizes its input with their statistics.
        gamma: initial scale of the update (default 0.01).
        hidden_dim, num_layers: width and depth of the GMN (message-passing layers) or of the MLP (hidden layers).
        gmn_options: further keyword arguments of :class:`gmnfx.nn.GMN` (e.g. ``aggregation``, ``residual``).

    Shapes:
        ``forward(values [B, E], batch)`` -> ``[B, E]``; ``batch``: the B graphs as a ``GraphBatch`` (the GMN's
        input; ignored by the other editors).
    """

    def __init__(self, kind: str, train_values: torch.Tensor, *, gamma: float = 0.01, hidden_dim: int = 64,
                 num_layers: int = 3, **gmn_options) -> None:
        super().__init__()
        if kind not in EDITORS:
            raise ValueError(f"editor must be one of {EDITORS} (got {kind!r})")
        self.kind = kind
        num_edges = train_values.shape[1]
        if kind == "none":
            return
        self.gamma = nn.Parameter(torch.tensor(float(gamma)))
        if kind == "gmn":
            self.net = gmnfx.nn.GMN(1, hidden_dim, num_layers, readout="edge", **gmn_options)
            return
        self.register_buffer("mean", train_values.mean(0))
        self.register_buffer("std", train_values.std(0).clamp_min(1e-6) if len(train_values) > 1
                             else torch.ones(num_edges))
        widths = [num_edges] + [hidden_dim] * num_layers
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(widths[-1], num_edges))

    def delta(self, values: torch.Tensor, batch) -> torch.Tensor:
        """The update direction ``[B, E]`` (before ``gamma``)."""
        if self.kind == "gmn":
            return self.net(batch).view(values.shape)
        return self.net((values - self.mean) / self.std)

    def forward(self, values: torch.Tensor, batch=None) -> torch.Tensor:
        if self.kind == "none":
            return values
        return values + self.gamma * self.delta(values, batch)


def _edited(editor: nn.Module, data: INRData, index: torch.Tensor, device: torch.device) -> torch.Tensor:
    values = data.edge_values[index].to(device)
    batch = gmnfx.batch(data.graphs(index)).to(device) if _kind(editor) == "gmn" else None
    return editor(values, batch)


def _kind(editor: nn.Module) -> str:
    return getattr(editor, "module", editor).kind  # DistributedDataParallel keeps the editor in .module


@torch.no_grad()
def evaluate_editor(editor: WeightEditor, data: INRData, targets: torch.Tensor, index: torch.Tensor, *,
                    batch_size: int = 64) -> float:
    """Mean over the INRs ``index`` and their pixels of the squared error of the edited render."""
    device = next(iter(editor.state_dict().values()), data.edge_values).device
    editor.eval()
    coords = pixel_grid(data.image_size).to(device)
    total = 0.0
    for i in range(0, len(index), batch_size):
        part = index[i:i + batch_size]
        out = render(data.template, data.graph, _edited(editor, data, part, device), coords)
        total += float(((out - targets[part].flatten(1).to(device)) ** 2).sum())
    return total / (len(index) * coords.shape[0])


def train_editor(editor: WeightEditor, data: INRData, targets: torch.Tensor, train: torch.Tensor,
                 val: torch.Tensor, *, epochs: int = 40, batch_size: int = 32, lr: float = 1e-3, seed: int = 0,
                 ctx=None, progress: bool = False) -> dict:
    """Adam on the render MSE; keeps the weights of the epoch with the lowest validation MSE (in place).

    ``ctx`` (a :class:`gmnfx.tasks.distributed.Distributed`, default ``Distributed.from_env()``) makes it data
    parallel under ``torchrun``: every rank walks the same global minibatches and trains on its share.
    Returns ``{"train_loss": [per epoch], "val_mse": [per epoch], "best_epoch"}``.
    """
    from tqdm import tqdm

    from gmnfx.tasks.distributed import Distributed

    ctx = ctx or Distributed.from_env()
    model = ctx.wrap(editor)
    device = ctx.device
    coords = pixel_grid(data.image_size).to(device)
    optimizer = torch.optim.Adam(editor.parameters(), lr=lr)
    order_gen = torch.Generator().manual_seed(seed)
    best = (evaluate_editor(editor, data, targets, val), copy.deepcopy(editor.state_dict()), 0)
    history: dict = {"train_loss": [], "val_mse": [best[0]]}
    for epoch in tqdm(range(1, epochs + 1), disable=not (progress and ctx.is_main), desc="editing", unit="epoch"):
        editor.train()
        order = train[torch.randperm(len(train), generator=order_gen)]
        squared, count = 0.0, 0
        for local, scale in ctx.minibatches(order, batch_size):
            out = render(data.template, data.graph, _edited(model, data, local, device), coords)
            loss = ((out - targets[local].flatten(1).to(device)) ** 2).mean()
            optimizer.zero_grad()
            (loss * scale).backward()
            optimizer.step()
            squared, count = squared + float(loss.detach()) * len(local), count + len(local)
        history["train_loss"].append(ctx.all_mean(squared) / max(ctx.all_mean(count), 1e-12))
        history["val_mse"].append(evaluate_editor(editor, data, targets, val))
        if history["val_mse"][-1] < best[0]:
            best = (history["val_mse"][-1], copy.deepcopy(editor.state_dict()), epoch)
    editor.load_state_dict(best[1])
    history["best_epoch"] = best[2]
    return history


def run_inr_editing(data: INRData, editor: str, target: str, seed: int, *, epochs: int = 40,
                    batch_size: int = 32, lr: float = 1e-3, gamma: float = 0.01, hidden_dim: int = 64,
                    num_layers: int = 3, examples: int = 6, ctx=None, progress: bool = False,
                    log: Optional[Callable[[str], None]] = None, **gmn_options) -> dict:
    """Train ``editor`` ("none", "mlp", "gmn") to apply ``target`` ("dilate", "contrast"); score it on the test set.

    The split is :func:`inr_split` (fixed); ``seed`` sets the editor's initialization and the data order.
    ``hidden_dim`` / ``num_layers`` size the GMN (or the MLP); ``gmn_options`` go to :class:`gmnfx.nn.GMN`.

    Returns:
        ``{"editor", "target", "seed", "test_mse", "no_edit_mse", "val_mse", "train_loss", "val_history",
        "best_epoch", "gamma", "seconds", "train", "val", "test", "example_index", "examples"}``: test and
        no-edit MSE over the test INRs and pixels; ``examples`` ``[k, S, S]`` the edited renders of the first
        ``k`` test INRs (positions ``example_index`` into ``data``).
    """
    if target not in ("dilate", "contrast"):
        raise ValueError(f"target must be 'dilate' or 'contrast' (got {target!r})")
    start = time.perf_counter()
    train, val, test = inr_split(len(data.ids))
    targets = data.target(target)
    torch.manual_seed(seed)
    model = WeightEditor(editor, data.edge_values[train], gamma=gamma, hidden_dim=hidden_dim,
                         num_layers=num_layers, **gmn_options)
    history = {"train_loss": [], "val_mse": [], "best_epoch": 0}
    if editor != "none":
        history = train_editor(model, data, targets, train, val, epochs=epochs, batch_size=batch_size, lr=lr,
                               seed=seed, ctx=ctx, progress=progress)
    model = model.cpu().eval()
    identity = WeightEditor("none", data.edge_values[train])
    result = {"editor": editor, "target": target, "seed": seed,
              "test_mse": evaluate_editor(model, data, targets, test),
              "no_edit_mse": evaluate_editor(identity, data, targets, test),
              "val_mse": evaluate_editor(model, data, targets, val),
              "train_loss": history["train_loss"], "val_history": history["val_mse"],
              "best_epoch": history["best_epoch"],
              "gamma": float(model.gamma.detach()) if editor != "none" else 0.0,
              "train": len(train), "val": len(val), "test": len(test)}
    index = test[:examples]
    with torch.no_grad():
        out = render(data.template, data.graph, _edited(model, data, index, torch.device("cpu")),
                     pixel_grid(data.image_size))
    result["example_index"] = index.tolist()
    result["examples"] = out.view(len(index), data.image_size, data.image_size)
    result["seconds"] = time.perf_counter() - start
    if log:
        log(f"{editor:>4s} {target:>8s} seed {seed}: test MSE {result['test_mse']:.5f} (no edit "
            f"{result['no_edit_mse']:.5f}), best epoch {result['best_epoch']}, {result['seconds']:.0f} s")
    return result


def run_inr_table(data: INRData, editors: list, targets: list, seeds: list, out_dir: str, *, epochs: int = 40,
                  mlp_hidden: int = 256, mlp_layers: int = 2, ctx=None, progress: bool = False,
                  log: Optional[Callable[[str], None]] = print, **options) -> dict:
    """Every editor on every target for every seed; print the markdown table, write ``out_dir/results.json`` and
    ``out_dir/edits.png`` (main process only). ``options`` go to :func:`run_inr_editing` (the GMN's
    ``hidden_dim``, ``num_layers``, ``lr``, ``gamma``...); the MLP takes ``mlp_hidden`` and ``mlp_layers``.
    Returns ``{target: {editor: [result per seed]}}`` (without the example renders)."""
    import json
    import os

    from gmnfx.tasks.distributed import Distributed

    ctx = ctx or Distributed.from_env()
    say = log if (log and ctx.is_main) else (lambda message: None)
    start = time.perf_counter()
    results: dict = {t: {e: [] for e in editors} for t in targets}
    for target in targets:
        for editor in editors:
            sizes = {"hidden_dim": mlp_hidden, "num_layers": mlp_layers} if editor == "mlp" else {}
            for seed in seeds:
                results[target][editor].append(run_inr_editing(
                    data, editor, target, seed, epochs=epochs, ctx=ctx, progress=progress, log=say,
                    **{**options, **sizes}))
    seconds = time.perf_counter() - start
    table = markdown_table(results)
    say(f"\n{table}\n{len(data.ids)} INRs ({results[targets[0]][editors[0]][0]['train']} train, "
        f"{results[targets[0]][editors[0]][0]['test']} test), seeds {seeds}, {seconds:.0f} s")
    plain = {t: {e: [{k: v for k, v in r.items() if k != "examples"} for r in runs] for e, runs in by.items()}
             for t, by in results.items()}
    if ctx.is_main:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "results.json"), "w") as f:
            json.dump({"seconds": seconds, "seeds": list(seeds), "epochs": epochs, "results": plain}, f, indent=1)
        picture = os.path.join(out_dir, "edits.png")
        _picture(data, results, picture)
        say(f"results: {os.path.join(out_dir, 'results.json')}; picture: {picture}")
    return plain


def markdown_table(results: dict) -> str:
    """Test MSE, mean +/- std over seeds: one row per editor, one column per target."""
    targets = list(results)
    editors = list(results[targets[0]])
    names = {"none": "no edit", "mlp": "MLP (flat weights)", "gmn": "GMN (edge readout)"}
    lines = ["| editor | " + " | ".join(f"{t} test MSE" for t in targets) + " |",
             "|---|" + "---|" * len(targets)]
    for editor in editors:
        cells = []
        for target in targets:
            values = torch.tensor([r["test_mse"] for r in results[target][editor]], dtype=torch.float64)
            std = float(values.std()) if len(values) > 1 else 0.0
            cells.append(f"{float(values.mean()):.4f} ± {std:.4f}")
        lines.append(f"| {names.get(editor, editor)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _picture(data: INRData, results: dict, path: str) -> None:
    """Rows: test digits; per target, columns: the INR's render, the target, and every trained editor's edit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = data.image_size
    columns = []
    for target, by_editor in results.items():
        first = next(iter(by_editor.values()))[0]
        index = first["example_index"]
        with torch.no_grad():
            original = render(data.template, data.graph, data.edge_values[index], pixel_grid(size))
        columns.append(("INR", original.view(-1, size, size)))
        columns.append((f"{target} target", data.target(target)[index][:, 0]))
        columns += [(f"{editor} edit", runs[0]["examples"]) for editor, runs in by_editor.items() if editor != "none"]
    rows = len(columns[0][1])
    fig, axes = plt.subplots(rows, len(columns), figsize=(1.1 * len(columns), 1.1 * rows + 0.3), squeeze=False)
    for j, (title, images) in enumerate(columns):
        for i in range(rows):
            axes[i, j].imshow(images[i].clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
            axes[i, j].axis("off")
        axes[0, j].set_title(title, fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)

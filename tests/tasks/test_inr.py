"""INR editing: functional_parameters, the INR data, editor equivariance, training end to end, the CLI."""
from __future__ import annotations

import copy
import json
import textwrap

import pytest
import torch
from torch import nn
from torch.func import functional_call, vmap

import gmnfx
from gmnfx.errors import GmnfxError, InputShapeError
from gmnfx.params import functional_parameters
from gmnfx.symmetry import permute_model, sample
from gmnfx.symmetry.permute import edge_images
from gmnfx.tasks.inr import (WeightEditor, inr_data, inr_split, markdown_table, render, run_inr_editing,
                             run_inr_table)
from gmnfx.cli import build_parser
from gmnfx.zoo import Zoo
from gmnfx.zoo.siren import build_siren_zoo, load_siren, pixel_grid

from torchrun_helpers import run_torchrun

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("siren-zoo")
    build_siren_zoo(root, 12, seed=0, hidden=8, image_size=8, steps=60, group_size=12, log=None)
    return Zoo.open(root)


@pytest.fixture(scope="module")
def data(zoo):
    return inr_data(zoo)


# ------------------------------------------------------------------------------ functional_parameters

def test_functional_parameters_of_the_graph_values_are_the_models_own(zoo):
    model = load_siren(zoo, 3)
    graph = gmnfx.compile(model, torch.zeros(1, 2))
    params = functional_parameters(model, graph, graph.edge_weight)
    assert list(params) == [name for name, _ in model.named_parameters()]
    for name, p in model.named_parameters():
        assert torch.equal(params[name], p.detach())


def test_functional_forward_equals_write_parameters(zoo):
    model = load_siren(zoo, 0)
    graph = gmnfx.compile(model, torch.zeros(1, 2))
    values = graph.edge_weight + 0.1 * torch.randn(graph.num_edges)
    written = gmnfx.write_parameters(copy.deepcopy(model), graph, values)
    x = pixel_grid(8)
    expected = written(x)
    torch.testing.assert_close(functional_call(model, functional_parameters(model, graph, values), (x,)), expected)
    batched = functional_parameters(model, graph, torch.stack([graph.edge_weight, values]))  # [2, E] -> [2, ...]
    out = vmap(lambda p: functional_call(model, p, (x,)))(batched)
    torch.testing.assert_close(out[1], expected)
    torch.testing.assert_close(out[0], model(x))


def test_gradients_reach_every_edge_value_as_the_gradient_of_its_parameter(zoo):
    model = load_siren(zoo, 1)
    graph = gmnfx.compile(model, torch.zeros(1, 2))
    values = graph.edge_weight.clone().requires_grad_()
    x = pixel_grid(8)
    functional_call(model, functional_parameters(model, graph, values), (x,)).square().sum().backward()
    model(x).square().sum().backward()
    flat_grad = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(values.grad, flat_grad[graph.edge_param])
    assert bool((values.grad != 0).all())


def test_functional_parameters_works_under_vmap_and_keeps_unowned_parameters():
    model = nn.Linear(3, 2)
    graph = gmnfx.compile(model, torch.zeros(1, 3))
    values = torch.randn(4, graph.num_edges)
    batched = functional_parameters(model, graph, values)
    mapped = vmap(lambda v: functional_parameters(model, graph, v))(values)
    for name in batched:
        torch.testing.assert_close(mapped[name], batched[name])
    unowned = graph.edge_param.clone()
    unowned[0] = -1  # pretend edge 0 owns nothing: its parameter keeps the model's value
    graph.edge_param = unowned
    flat = torch.cat([p.reshape(-1) for p in functional_parameters(model, graph, values[0]).values()])
    original = int(gmnfx.compile(model, torch.zeros(1, 3)).edge_param[0])
    assert float(flat[original].detach()) == float(gmnfx.flat_parameters(model)[original])


def test_functional_parameters_errors_say_what_to_pass(zoo):
    model = load_siren(zoo, 0)
    graph = gmnfx.compile(model, torch.zeros(1, 2))
    with pytest.raises(InputShapeError, match=rf"expected edge_values of shape \(\.\.\., {graph.num_edges}\)"):
        functional_parameters(model, graph, torch.zeros(graph.num_edges + 1))
    with pytest.raises(InputShapeError, match=r"got \(\)"):
        functional_parameters(model, graph, torch.tensor(1.0))
    with pytest.raises(GmnfxError, match="does not match the graph"):
        functional_parameters(nn.Sequential(nn.Linear(2, 4), nn.Linear(4, 1)), graph, graph.edge_weight)
    with pytest.raises(TypeError, match="expected edge_values to be a tensor"):
        functional_parameters(model, graph, graph.edge_weight.tolist())
    with pytest.raises(TypeError, match="expected a ParameterGraph or ComputationGraph"):
        functional_parameters(model, gmnfx.batch([graph]), graph.edge_weight)


# ------------------------------------------------------------------------------------------ INR data

def test_inr_graphs_are_the_compiled_inrs_and_render_them(zoo, data):
    assert data.edge_values.shape == (12, data.graph.num_edges) and data.images.shape == (12, 1, 8, 8)
    for k in (0, 7):
        compiled = gmnfx.compile(load_siren(zoo, data.ids[k]), torch.zeros(1, 2))
        ours = data.graphs([k])[0]
        assert torch.equal(ours.edge_weight, compiled.edge_weight) and torch.equal(ours.edge_index, compiled.edge_index)
    with torch.no_grad():
        out = render(data.template, data.graph, data.edge_values[[7]], pixel_grid(8))
        torch.testing.assert_close(out[0], load_siren(zoo, data.ids[7])(pixel_grid(8))[:, 0])


def test_split_is_disjoint_and_fixed():
    train, val, test = inr_split(50)
    assert sorted(torch.cat([train, val, test]).tolist()) == list(range(50))
    assert (len(train), len(val), len(test)) == (35, 5, 10)
    assert torch.equal(inr_split(50)[2], test)
    with pytest.raises(ValueError, match="at least 3 INRs"):
        inr_split(2)


# ------------------------------------------------------------------------------------- equivariance

def _edit_of_permuted_inr(data, kind):
    """(edit of an INR, edit of a hidden-neuron-permuted copy mapped back to the INR's edges, both renders)."""
    torch.manual_seed(0)
    editor = WeightEditor(kind, data.edge_values, gamma=0.5, hidden_dim=8, num_layers=2).double().eval()
    graph = data.graphs([2])[0]
    model = gmnfx.write_parameters(copy.deepcopy(data.template), data.graph, data.edge_values[2])
    perm = sample(graph, torch.Generator().manual_seed(5))
    assert not torch.equal(perm, torch.arange(graph.num_nodes))
    twin_graph = gmnfx.compile(permute_model(model, graph, perm), torch.zeros(1, 2))
    image = edge_images(graph, perm)
    coords = pixel_grid(8).double()
    with torch.no_grad():
        outs = []
        for g in (graph, twin_graph):
            values = g.edge_weight.double()[None]
            edited = editor(values, gmnfx.batch([g]))
            outs.append((edited[0], render(model.double(), data.graph, edited, coords)[0]))
    (edit, picture), (twin_edit, twin_picture) = outs
    return edit, twin_edit[image], picture, twin_picture


def test_gmn_edit_of_a_permuted_inr_is_the_permuted_edit_and_renders_the_same(data):
    edit, twin_edit, picture, twin_picture = _edit_of_permuted_inr(data, "gmn")
    torch.testing.assert_close(twin_edit, edit, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(twin_picture, picture, rtol=1e-9, atol=1e-9)
    assert float((edit - data.edge_values[2].double()).abs().max()) > 1e-3  # the edit does change the weights


def test_mlp_edit_is_not_equivariant(data):
    edit, twin_edit, picture, twin_picture = _edit_of_permuted_inr(data, "mlp")
    assert float((twin_edit - edit).abs().max()) > 1e-3
    assert float((twin_picture - picture).abs().max()) > 1e-3


# -------------------------------------------------------------------------------------- end to end

def test_gmn_editor_trains_and_returns_every_field(data):
    result = run_inr_editing(data, "gmn", "dilate", 0, epochs=4, batch_size=4, lr=3e-3, hidden_dim=8, num_layers=1)
    assert set(result) == {"editor", "target", "seed", "test_mse", "no_edit_mse", "val_mse", "train_loss",
                           "val_history", "best_epoch", "gamma", "seconds", "train", "val", "test",
                           "example_index", "examples"}
    assert len(result["train_loss"]) == 4 and len(result["val_history"]) == 5
    assert result["train_loss"][-1] < result["train_loss"][0]
    assert result["test_mse"] > 0 and result["no_edit_mse"] > 0 and 0 <= result["best_epoch"] <= 4
    assert (result["train"], result["val"], result["test"]) == (9, 1, 2)
    assert result["examples"].shape == (2, 8, 8) and result["example_index"] == inr_split(12)[2].tolist()
    assert result["val_mse"] == pytest.approx(min(result["val_history"]), rel=1e-5)


def test_no_edit_scores_the_unedited_inrs(data):
    result = run_inr_editing(data, "none", "contrast", 0)
    assert result["test_mse"] == result["no_edit_mse"] and result["train_loss"] == []
    with pytest.raises(ValueError, match="editor must be one of"):
        run_inr_editing(data, "cnn", "contrast", 0)
    with pytest.raises(ValueError, match="target must be 'dilate' or 'contrast'"):
        run_inr_editing(data, "none", "blur", 0)


def test_table_prints_markdown_and_writes_results_and_picture(data, tmp_path, capsys):
    results = run_inr_table(data, ["none", "mlp", "gmn"], ["dilate", "contrast"], [0, 1], str(tmp_path), epochs=1,
                            hidden_dim=8, num_layers=1, mlp_hidden=16, mlp_layers=1)
    out = capsys.readouterr().out
    assert "| editor | dilate test MSE | contrast test MSE |" in out and "| GMN (edge readout) |" in out
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["seeds"] == [0, 1] and len(saved["results"]["contrast"]["gmn"]) == 2
    assert saved["results"] == json.loads(json.dumps(results))
    assert (tmp_path / "edits.png").read_bytes()[:8] == PNG_MAGIC


def test_markdown_table_shows_mean_and_std_over_seeds():
    results = {"dilate": {"gmn": [{"test_mse": 0.01}, {"test_mse": 0.03}]}}
    assert markdown_table(results).splitlines()[-1] == "| GMN (edge readout) | 0.0200 ± 0.0141 |"


DDP_WORKER = textwrap.dedent("""
    import sys, torch
    from gmnfx.tasks.distributed import Distributed
    from gmnfx.tasks.inr import inr_data, run_inr_editing
    from gmnfx.zoo import Zoo

    ctx = Distributed.from_env()
    result = run_inr_editing(inr_data(Zoo.open(sys.argv[1])), "gmn", "contrast", 0, epochs=2, batch_size=3, lr=3e-3,
                             hidden_dim=8, num_layers=2, ctx=ctx)
    torch.save({k: result[k] for k in ("test_mse", "train_loss", "val_history", "gamma")},
               f"{sys.argv[2]}/rank{ctx.rank}.pt")
    ctx.close()
""")


def test_training_under_torchrun_with_two_processes_matches_one_process(zoo, data, tmp_path, monkeypatch):
    worker = tmp_path / "worker.py"
    worker.write_text(DDP_WORKER)
    done = run_torchrun(str(worker), zoo.root, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    alone = run_inr_editing(data, "gmn", "contrast", 0, epochs=2, batch_size=3, lr=3e-3, hidden_dim=8, num_layers=2)
    assert ranks[0] == ranks[1]  # the ranks stay in lockstep
    for key in ("train_loss", "val_history"):  # 9 training INRs: global batches of 3, shares of 2 and 1
        assert ranks[0][key] == pytest.approx(alone[key], rel=1e-4, abs=1e-6), key
    assert ranks[0]["test_mse"] == pytest.approx(alone["test_mse"], rel=1e-4)
    assert ranks[0]["gamma"] == pytest.approx(alone["gamma"], rel=1e-4, abs=1e-7)


# ---------------------------------------------------------------------------------------------- CLI

def _run_cli(argv):
    """The ``gmnfx`` command's handler for ``argv``, raising its CliError instead of printing it."""
    args = build_parser().parse_args(argv)
    return args.func(args)


@pytest.mark.parametrize("argv, message", [
    (["--editors", "none,cnn"], "--editors: unknown 'cnn'; choose from none, mlp, gmn"),
    (["--seeds", "0,x"], "--seeds: expected comma-separated integers like 0,1,2 (got '0,x')"),
    (["--seeds", "0,,1"], "--seeds: expected a comma-separated list"),
    (["--seeds", "1,1"], "names an item twice"),
    (["--epochs", "0"], "--epochs: expected a positive integer (got 0)"),
    (["--lr", "-0.1"], "--lr: expected a positive number (got -0.1)"),
])
def test_edit_command_rejects_bad_arguments(zoo, argv, message):
    from gmnfx.cli import CliError

    with pytest.raises(CliError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _run_cli(["inr", "edit", "--zoo", zoo.root, *argv])


def test_edit_command_rejects_a_directory_that_is_not_a_siren_zoo(tmp_path):
    from gmnfx.cli import CliError

    with pytest.raises(CliError, match=str(tmp_path)):
        _run_cli(["inr", "edit", "--zoo", str(tmp_path)])


def test_build_and_edit_commands_run(tmp_path, capsys):
    from gmnfx.cli import CliError

    with pytest.raises(CliError, match=r"--n: expected a positive integer \(got 0\)"):
        _run_cli(["inr", "build", "--n", "0", "--out", str(tmp_path / "zoo")])
    assert _run_cli(["inr", "build", "--n", "5", "--out", str(tmp_path / "zoo"), "--hidden", "4",
                     "--image-size", "8", "--steps", "5", "-q"]) == 0
    assert len(Zoo.open(tmp_path / "zoo")) == 5
    assert _run_cli(["inr", "edit", "--zoo", str(tmp_path / "zoo"), "--editors", "none", "--seeds", "0",
                     "--target", "dilate", "--out", str(tmp_path / "out"), "-q"]) == 0
    assert "| no edit |" in capsys.readouterr().out and (tmp_path / "out" / "edits.png").exists()

"""Task 1's results table: durable, resumable runs; the markdown table; the `gmnfx accuracy` command."""
from __future__ import annotations

import json

import pytest

from gmnfx.cli import main
from gmnfx.tasks.table import ResultsFileError, accuracy_table, append_result, format_table, read_results
from gmnfx.zoo import build_zoo
from gmnfx.zoo.families import ARCH_BLOCK


def _row(predictor, setting, seed, r2, tau=0.5):
    return {"predictor": predictor, "setting": setting, "seed": seed, "r2": r2, "tau": tau}


def test_appended_runs_read_back_and_a_torn_last_line_is_dropped_then_overwritten(tmp_path):
    path = str(tmp_path / "runs.jsonl")
    assert read_results(path) == []
    append_result(path, _row("gmn", "50%", 0, 0.9))
    with open(path, "a") as f:
        f.write('{"format": "gmnfx-accuracy-run", "predic')  # a kill in the middle of a write
    assert [r["r2"] for r in read_results(path)] == [0.9]
    append_result(path, _row("gmn", "50%", 1, 0.8))
    assert [r["seed"] for r in read_results(path)] == [0, 1]
    assert all(json.loads(line) for line in open(path))  # no torn line left in the middle


def test_a_foreign_or_corrupt_results_file_names_the_line(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_text('{"format": "gmnfx-accuracy-run"}\nnot json\n{"format": "gmnfx-accuracy-run"}\n')
    with pytest.raises(ResultsFileError, match=r"runs.jsonl, line 2: not a JSON object"):
        read_results(str(path))
    path.write_text('{"a": 1}\n')
    with pytest.raises(ResultsFileError, match=r"line 1: expected a run with \"format\""):
        read_results(str(path))
    assert path.read_text() == '{"a": 1}\n'  # nothing was rewritten


def test_table_shows_mean_and_sample_std_per_setting_and_bolds_the_best():
    rows = [_row("gmn", "50%", s, r2) for s, r2 in enumerate((0.9, 0.8, 0.7))]
    rows += [_row("statnn", "50%", s, r2, tau=0.6) for s, r2 in enumerate((0.5, 0.6, 0.7))]
    rows += [_row("statnn", "ood", 0, 0.1)]
    table = format_table(rows).splitlines()
    assert table[0] == "| predictor | 50% R² | 50% τ | ood R² | ood τ |"
    assert table[2] == "| GMN (3 seeds) | **0.800 ± 0.100** | 0.500 ± 0.000 |  |  |"
    assert table[3] == "| StatNN (3 seeds) | 0.600 ± 0.100 | **0.600 ± 0.000** | **0.100** | **0.500** |"


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    ids = list(range(6)) + list(range(ARCH_BLOCK, ARCH_BLOCK + 6))
    build_zoo(root, "varying-cnn", ARCH_BLOCK + 6, progress=False, log=None, ids=ids)
    return str(root)


def test_accuracy_table_resumes_without_repeating_runs(tiny_zoo, tmp_path):
    results = str(tmp_path / "runs.jsonl")
    logged = []
    options = dict(predictors=["statnn", "deepsets"], settings=["50%"], seeds=[0, 1], epochs=2, log=logged.append)
    first = accuracy_table(tiny_zoo, results, **options)
    trained = [line for line in logged if " seed " in line]
    assert len(first) == 4 and len(trained) == 4 and len(read_results(results)) == 4
    assert "has 12 of 38 models (its build is unfinished)" in logged[0]
    again = accuracy_table(tiny_zoo, results, **{**options, "seeds": [0, 1, 2]})
    assert len(again) == 6 and len([line for line in logged if " seed " in line]) == 6  # only seed 2 trained
    assert [r["r2"] for r in again[:4]] == [r["r2"] for r in first]
    other_epochs = accuracy_table(tiny_zoo, results, **{**options, "seeds": [0], "epochs": 3})
    assert len(other_epochs) == 2 and len(read_results(results)) == 8  # other options: new runs, old ones kept


def test_accuracy_command_prints_the_table_and_plots_seed_0(tiny_zoo, tmp_path, capsys):
    plot = tmp_path / "scatter.png"
    args = ["accuracy", "--zoo", tiny_zoo, "--results", str(tmp_path / "r.jsonl"), "--predictors", "gmn,statnn",
            "--settings", "50%,5%", "--seeds", "0", "--epochs", "2", "--plot", str(plot), "-q"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| GMN (1 seed) |" in out and "| StatNN (1 seed) |" in out and "5% τ" in out
    assert plot.stat().st_size > 10_000


@pytest.mark.parametrize("args, message", [
    (["--seeds", "0,x"], "--seeds: expected comma-separated integers"),
    (["--predictors", "gmn,svm"], "--predictors: unknown 'svm'; choose from gmn, deepsets, statnn"),
    (["--settings", "10%"], "--settings: unknown '10%'; choose from 50%, 5%, ood"),
    (["--seeds", "1,1"], "--seeds: '1,1' names an item twice"),
    (["--epochs", "0"], "--epochs: expected a positive integer (got 0)"),
    (["--lr", "nan"], "--lr: expected a positive number (got nan)"),
    (["--min-steps", "-1"], "--min-steps: expected a non-negative integer (got -1)"),
])
def test_accuracy_command_errors(tiny_zoo, tmp_path, capsys, args, message):
    assert main(["accuracy", "--zoo", tiny_zoo, "--results", str(tmp_path / "r.jsonl"), *args]) == 2
    assert message in capsys.readouterr().err

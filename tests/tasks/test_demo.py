"""`gmnfx demo`, shrunk: zoo, graphs, two predictors, scores and the scatter plot, from the command line."""
from __future__ import annotations

import os

from gmnfx.cli import main


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--n", "24", "--epochs", "2", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "GMN" in printed and "StatNN" in printed and "R^2" in printed
    assert os.path.getsize(out / "accuracy_scatter.png") > 1000
    assert main(["zoo", "info", str(out / "zoo")]) == 0  # the demo's zoo is an ordinary zoo
    assert "24 of 24 models" in capsys.readouterr().out

"""Tests of the ``gmnfx`` command line (run in-process through ``gmnfx.cli.main``)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

import gmnfx
from gmnfx import examples
from gmnfx.cli import format_layer_table, main, parse_input_shape

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CNN_SHAPE = "1,3,8,8"  # small spatial size keeps the tests fast


@pytest.fixture(scope="module")
def mlp_file(tmp_path_factory):
    """A parameter graph of examples.mlp written by ``gmnfx compile``."""
    path = tmp_path_factory.mktemp("graphs") / "mlp.safetensors"
    assert main(["compile", "gmnfx.examples:mlp", "-o", str(path), "--quiet"]) == 0
    return path


def _error_of(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("gmnfx: error: "), err
    assert "Traceback" not in err
    return err


# ---------------------------------------------------------------------- compile
def test_compile_mlp_without_input_shape(tmp_path, capsys):
    out_path = tmp_path / "mlp.safetensors"
    assert main(["compile", "gmnfx.examples:mlp", "-o", str(out_path)]) == 0
    captured = capsys.readouterr()
    assert "ParameterGraph(num_nodes=93" in captured.out
    assert f"wrote parameter graph to {out_path}" in captured.out
    assert "validate done" in captured.err  # pass timings go to stderr
    graph = gmnfx.load_graph(out_path)
    assert graph.input_shapes == [(16,)] and graph.output_shapes == [(10,)]


def test_compile_quiet_prints_no_progress(tmp_path, capsys):
    assert main(["compile", "gmnfx.examples:mlp", "-o", str(tmp_path / "g.safetensors"), "-q"]) == 0
    assert capsys.readouterr().err == ""


def test_compile_small_cnn_matches_direct_compile(tmp_path, capsys):
    out_path = tmp_path / "cnn.safetensors"
    code = main(["compile", "gmnfx.examples:small_cnn", "--input-shape", CNN_SHAPE, "-o", str(out_path), "-q"])
    assert code == 0
    loaded = gmnfx.load_graph(out_path)
    direct = gmnfx.compile(examples.small_cnn(), torch.randn(1, 3, 8, 8))
    assert isinstance(loaded, gmnfx.ParameterGraph)
    assert loaded.num_edges == direct.num_edges and loaded.num_nodes == direct.num_nodes
    assert torch.equal(loaded.edge_weight, direct.edge_weight)
    assert "ParameterGraph(" in capsys.readouterr().out


def test_compile_computation_graph(tmp_path):
    out_path = tmp_path / "mlp_comp.safetensors"
    assert main(["compile", "gmnfx.examples:mlp", "--graph", "computation", "-o", str(out_path), "-q"]) == 0
    assert isinstance(gmnfx.load_graph(out_path), gmnfx.ComputationGraph)


def test_compile_from_python_file_with_several_inputs(tmp_path, monkeypatch):
    (tmp_path / "helper_layers.py").write_text("import torch.nn as nn\nWIDTH = 5\n")
    (tmp_path / "models.py").write_text(textwrap.dedent("""
        import torch.nn as nn
        from helper_layers import WIDTH

        class TwoInputs(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Linear(3, WIDTH)
                self.b = nn.Linear(4, WIDTH)

            def forward(self, x, y):
                return self.a(x) + self.b(y)

        def build():
            return TwoInputs()
    """))
    monkeypatch.chdir(tmp_path)
    out_path = tmp_path / "two.safetensors"
    code = main(["compile", "models.py:build", "--input-shape", "2,3", "--input-shape", "2,4",
                 "-o", str(out_path), "-q"])
    assert code == 0
    assert gmnfx.load_graph(out_path).input_shapes == [(3,), (4,)]


# ---------------------------------------------------------------------- inspect
def test_inspect_saved_file(mlp_file, capsys):
    assert main(["inspect", str(mlp_file)]) == 0
    out = capsys.readouterr().out
    assert "ParameterGraph(num_nodes=93" in out
    assert "module path" in out and "linear" in out
    assert any(line.startswith("total") and line.split()[-3:] == ["93", "1930", "1930"]
               for line in out.splitlines())


def test_inspect_module_factory(capsys):
    assert main(["inspect", "gmnfx.examples:small_cnn", "--input-shape", CNN_SHAPE, "-q"]) == 0
    out = capsys.readouterr().out
    assert "conv" in out and "conv1" in out and "bn1" in out
    total = [line for line in out.splitlines() if line.startswith("total")]
    assert len(total) == 1 and "9 layers" in total[0]


def test_layer_table_is_aligned():
    graph = gmnfx.compile(examples.mlp())
    lines = format_layer_table(graph).splitlines()
    assert lines[0].split() == ["index", "kind", "module", "path", "nodes", "edges", "parameters"]
    # every row ends its numeric columns at the same character position as the header
    assert len({len(line) for line in lines}) == 1
    assert len(lines) == 2 + len(graph.layers) + 2


def test_inspect_rejects_compile_options_for_a_file(mlp_file, capsys):
    assert main(["inspect", str(mlp_file), "--input-shape", "1,16"]) == 2
    assert "--input-shape can only be used with a MODULE:FACTORY target" in _error_of(capsys)


def test_inspect_missing_file(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nothing.safetensors")]) == 2
    assert "expected a saved graph file or MODULE:FACTORY" in _error_of(capsys)


def test_inspect_not_a_graph_file(tmp_path, capsys):
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_bytes(b"not a safetensors file")
    assert main(["inspect", str(bogus)]) == 2
    assert "is not a readable safetensors file" in _error_of(capsys)


# ---------------------------------------------------------------------- draw
def test_draw_writes_png(tmp_path, capsys):
    png = tmp_path / "cnn.png"
    assert main(["draw", "gmnfx.examples:small_cnn", "--input-shape", CNN_SHAPE, "-o", str(png), "-q"]) == 0
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000
    assert f"to {png}" in capsys.readouterr().out


def test_draw_saved_file(mlp_file, tmp_path):
    png = tmp_path / "mlp.png"
    assert main(["draw", str(mlp_file), "-o", str(png)]) == 0
    assert png.read_bytes().startswith(PNG_MAGIC)


def test_draw_refuses_too_big_graphs(tmp_path, capsys):
    png = tmp_path / "big.png"
    assert main(["draw", "gmnfx.examples:mlp", "-o", str(png), "--max-nodes", "50", "-q"]) == 2
    err = _error_of(capsys)
    assert "at most 50 nodes" in err and "got 93 nodes" in err and "--max-nodes" in err
    assert not png.exists()


def test_draw_rejects_non_positive_max_nodes(tmp_path, capsys):
    assert main(["draw", "gmnfx.examples:mlp", "-o", str(tmp_path / "x.png"), "--max-nodes", "0"]) == 2
    assert "--max-nodes: expected a positive integer (got 0)" in _error_of(capsys)


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize("spec, message", [
    ("nocolon", "expected MODULE:FACTORY, e.g. gmnfx.examples:mlp or models.py:build (got 'nocolon')"),
    ("gmnfx.examples:", "expected MODULE:FACTORY"),
    ("no_such_module_xyz:build", "cannot import module 'no_such_module_xyz': No module named 'no_such_module_xyz'"),
    ("gmnfx.examples:no_such_factory", "module 'gmnfx.examples' has no attribute 'no_such_factory'"),
    ("gmnfx.examples:SEED", "expected 'gmnfx.examples:SEED' to name a callable (got int)"),
    ("missing_dir/models.py:build", "expected an existing Python file for MODULE"),
])
def test_bad_model_specs(spec, message, tmp_path, capsys):
    assert main(["compile", spec, "-o", str(tmp_path / "g.safetensors")]) == 2
    assert message in _error_of(capsys)


def test_factory_must_return_a_module(tmp_path, capsys, monkeypatch):
    (tmp_path / "notmodels.py").write_text("def build():\n    return 42\n")
    monkeypatch.chdir(tmp_path)
    assert main(["compile", "notmodels:build", "-o", "g.safetensors"]) == 2
    assert "expected notmodels:build() to return an nn.Module (got int)" in _error_of(capsys)


@pytest.mark.parametrize("shape", ["1,x,3", "", "1,,3", "1,0,3", "-1,3", "1.5,3", "1 3"])
def test_malformed_input_shape(shape, tmp_path, capsys):
    # --input-shape=VALUE so that argparse takes values like "-1,3" as the option's value
    code = main(["compile", "gmnfx.examples:mlp", f"--input-shape={shape}", "-o", str(tmp_path / "g.safetensors")])
    assert code == 2
    err = _error_of(capsys)
    assert f"expected comma-separated positive integers like 1,3,32,32 (got {shape!r})" in err


def test_parse_input_shape():
    assert parse_input_shape("1,3,32,32") == (1, 3, 32, 32)
    assert parse_input_shape(" 2, 16 ") == (2, 16)


def test_wrong_input_shape_for_model(tmp_path, capsys):
    out_path = tmp_path / "g.safetensors"
    code = main(["compile", "gmnfx.examples:small_cnn", "--input-shape", "1,16", "-o", str(out_path), "-q"])
    assert code == 2
    err = _error_of(capsys)
    assert "running the example inputs failed" in err and "Expected 3D (unbatched) or 4D" in err
    assert "raised in pass 'propagate_shapes'" in err  # the compiler's note is shown too
    assert not out_path.exists()


def test_missing_example_inputs(tmp_path, capsys):
    assert main(["compile", "gmnfx.examples:small_cnn", "-o", str(tmp_path / "g.safetensors"), "-q"]) == 2
    assert "needs example inputs" in _error_of(capsys)


def test_missing_output_folder(tmp_path, capsys):
    out_path = tmp_path / "no" / "such" / "g.safetensors"
    assert main(["compile", "gmnfx.examples:mlp", "-o", str(out_path)]) == 2
    assert "expected an existing folder for the output file" in _error_of(capsys)


def test_usage_errors_exit_2(capsys):
    assert main(["compile"]) == 2
    assert "required" in capsys.readouterr().err
    assert main([]) == 2


def test_help_in_process(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "compile" in out and "inspect" in out and "draw" in out


def test_python_m_gmnfx_help():
    result = subprocess.run([sys.executable, "-m", "gmnfx", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage: gmnfx" in result.stdout and "compile" in result.stdout

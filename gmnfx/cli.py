"""The ``gmnfx`` command line: compile, inspect and draw model graphs; build model zoos.

Examples::

    gmnfx compile gmnfx.examples:mlp -o mlp.safetensors
    gmnfx compile models.py:build --input-shape 1,3,32,32 --graph computation -o g.safetensors
    gmnfx inspect mlp.safetensors
    gmnfx inspect gmnfx.examples:small_cnn --input-shape 1,3,32,32
    gmnfx draw gmnfx.examples:mlp -o mlp.png
    gmnfx zoo build --family varying-cnn --n 2000 --out zoo/ [--shard 0/2]
    gmnfx accuracy --zoo zoo/ [--seeds 0,1,2,3,4] [--settings 50%,5%,ood]
    gmnfx inr build --n 1000 --out sirens/ && gmnfx inr edit --zoo sirens/ --target both

Every error a user can cause (a bad ``MODULE:FACTORY``, a malformed
``--input-shape``, any :class:`gmnfx.GmnfxError`) is printed as
``gmnfx: error: <message>`` on stderr with exit code 2, without a traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import os
import re
import sys
from typing import Iterator, Optional, Sequence

import torch
import torch.nn as nn

import gmnfx
from gmnfx.errors import GmnfxError

__all__ = ["main", "CliError", "usage_errors", "parse_list", "check_numbers", "parse_input_shape", "load_factory",
           "build_model", "format_layer_table"]

EXIT_USAGE = 2
_SHAPE_ITEM = re.compile(r"\s*[0-9]+\s*")


class CliError(GmnfxError):
    """A mistake on the command line (bad spec, shape, path)."""


@contextlib.contextmanager
def usage_errors(*errors: type[BaseException]) -> Iterator[None]:
    """Report ``errors`` (mistakes in a command's arguments or files) as ``gmnfx: error: ...``, no traceback."""
    try:
        yield
    except errors as exc:
        raise CliError(str(exc)) from exc


def parse_list(text: str, option: str, cast=str, allowed=None) -> list:
    """``"a,b"`` -> ``[cast("a"), cast("b")]``; a :class:`CliError` naming ``option`` for an empty, malformed,
    unknown or repeated item."""
    items = [item.strip() for item in text.split(",")]
    example = "0,1,2" if cast is int else ",".join(allowed or ("a", "b"))
    if any(not item for item in items):
        raise CliError(f"{option}: expected a comma-separated list like {example} (got {text!r})")
    try:
        values = [cast(item) for item in items]
    except ValueError:
        raise CliError(f"{option}: expected comma-separated integers like 0,1,2 (got {text!r})") from None
    unknown = [v for v in values if allowed is not None and v not in allowed]
    if unknown:
        raise CliError(f"{option}: unknown {unknown[0]!r}; choose from {', '.join(map(str, allowed))}")
    if len(set(values)) != len(values):
        raise CliError(f"{option}: {text!r} names an item twice")
    return values


def check_numbers(args: argparse.Namespace, *, positive: Sequence[str] = (), non_negative: Sequence[str] = ()) -> None:
    """A :class:`CliError` naming the first option (``"--epochs"``...) of ``positive`` that is not > 0, or of
    ``non_negative`` that is < 0 (NaN fails both)."""
    for option, floor in [(o, "positive") for o in positive] + [(o, "non-negative") for o in non_negative]:
        value = getattr(args, option.lstrip("-").replace("-", "_"))
        if not (value > 0 if floor == "positive" else value >= 0):
            kind = "integer" if isinstance(value, int) else "number"
            raise CliError(f"{option}: expected a {floor} {kind} (got {value})")


# ---------------------------------------------------------------------- parsing helpers
def parse_input_shape(text: str) -> tuple[int, ...]:
    """``"1,3,32,32"`` -> ``(1, 3, 32, 32)``; anything but comma-separated positive integers is an error."""
    items = text.split(",")
    if not text.strip() or not all(_SHAPE_ITEM.fullmatch(item) for item in items) \
            or any(int(item) <= 0 for item in items):
        raise CliError(f"--input-shape: expected comma-separated positive integers like 1,3,32,32 (got {text!r})")
    return tuple(int(item) for item in items)


def _split_spec(spec: str) -> tuple[str, str]:
    """``"pkg.mod:factory"`` or ``"path/models.py:factory"`` -> (module, factory)."""
    module, sep, factory = spec.rpartition(":")
    if not sep or not module or not factory:
        raise CliError(f"expected MODULE:FACTORY, e.g. gmnfx.examples:mlp or models.py:build (got {spec!r})")
    if not factory.isidentifier():
        raise CliError(f"expected FACTORY to be a Python name after the ':' (got {factory!r} in {spec!r})")
    return module, factory


@contextlib.contextmanager
def _on_sys_path(directory: str) -> Iterator[None]:
    """Temporarily put ``directory`` first on ``sys.path`` (as ``python`` does for a script's folder)."""
    directory = os.path.abspath(directory)
    added = directory not in sys.path
    if added:
        sys.path.insert(0, directory)
    try:
        yield
    finally:
        if added and directory in sys.path:
            sys.path.remove(directory)


def _import_file(path: str):
    """Import the Python file at ``path`` as a module (its folder is importable while it loads)."""
    if not os.path.isfile(path):
        raise CliError(f"expected an existing Python file for MODULE (got {path!r}: no such file)")
    name = "_gmnfx_cli_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CliError(f"cannot import {path!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        with _on_sys_path(os.path.dirname(path) or "."):
            spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _import_module(name: str):
    """Import a dotted module name, with the current directory importable (like ``python -m``)."""
    try:
        with _on_sys_path(os.getcwd()):
            return importlib.import_module(name)
    except ImportError as exc:
        raise CliError(f"cannot import module {name!r}: {exc}") from exc


def _is_file_spec(module: str) -> bool:
    return module.endswith(".py") or os.sep in module or (os.altsep is not None and os.altsep in module)


def load_factory(spec: str):
    """Resolve ``MODULE:FACTORY`` to the callable it names (MODULE: dotted name or path to a .py file)."""
    module_name, factory_name = _split_spec(spec)
    module = _import_file(module_name) if _is_file_spec(module_name) else _import_module(module_name)
    try:
        factory = getattr(module, factory_name)
    except AttributeError:
        raise CliError(f"module {module_name!r} has no attribute {factory_name!r}") from None
    if not callable(factory):
        raise CliError(f"expected {spec!r} to name a callable (got {type(factory).__name__})")
    return factory


def build_model(spec: str) -> nn.Module:
    """Call the factory named by ``spec`` with no arguments; it must return an ``nn.Module``."""
    model = load_factory(spec)()
    if not isinstance(model, nn.Module):
        raise CliError(f"expected {spec}() to return an nn.Module (got {type(model).__name__})")
    return model


# ---------------------------------------------------------------------- shared steps
def _example_inputs(shapes: Optional[Sequence[str]]) -> Optional[tuple]:
    """``torch.randn`` inputs for each ``--input-shape`` (``None`` when none were given)."""
    if not shapes:
        return None
    return tuple(torch.randn(*parse_input_shape(text)) for text in shapes)


def _compile_spec(spec: str, args: argparse.Namespace):
    """Build the model named by ``spec`` and compile it with the command's shape/graph/progress options."""
    inputs = _example_inputs(args.input_shape)  # validate shapes before importing anything
    model = build_model(spec)
    return gmnfx.compile(model, inputs, graph=args.graph or "parameter", progress=not args.quiet)


def _load_target(args: argparse.Namespace):
    """The graph ``args.target`` names: a saved graph file, or ``MODULE:FACTORY`` compiled on the fly."""
    target = args.target
    if os.path.isfile(target):
        given = [flag for flag, value in (("--input-shape", args.input_shape), ("--graph", args.graph)) if value]
        if given:
            raise CliError(f"{' and '.join(given)} can only be used with a MODULE:FACTORY target "
                           f"(got the saved graph file {target!r})")
        return gmnfx.load_graph(target)
    if ":" not in target:
        raise CliError(f"expected a saved graph file or MODULE:FACTORY (got {target!r}: no such file)")
    return _compile_spec(target, args)


def _check_output_dir(path: str) -> None:
    """Fail before compiling if ``path`` cannot be written because its folder is missing."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CliError(f"expected an existing folder for the output file (got {path!r}: no folder {folder!r})")


def format_layer_table(graph) -> str:
    """The per-layer table of ``graph`` (index, kind, module path, nodes, edges, parameters) plus a total line."""
    header = ("index", "kind", "module path", "nodes", "edges", "parameters")
    rows = [(str(r["index"]), r["kind"], r["module_path"] or "-", str(r["nodes"]), str(r["edges"]),
             str(r["parameters"])) for r in graph.layer_table()]
    total = ("total", f"{len(rows)} layers", "", str(graph.num_nodes), str(graph.num_edges),
             str(graph.num_parameters))
    widths = [max(len(row[i]) for row in (header, *rows, total)) for i in range(len(header))]
    numeric = (True, False, False, True, True, True)

    def line(row) -> str:
        cells = [cell.rjust(w) if right else cell.ljust(w) for cell, w, right in zip(row, widths, numeric)]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *map(line, rows), rule, line(total)])


# ---------------------------------------------------------------------- subcommands
def _cmd_compile(args: argparse.Namespace) -> int:
    """``gmnfx compile``: compile MODULE:FACTORY and save the graph."""
    _check_output_dir(args.output)
    graph = _compile_spec(args.spec, args)
    try:
        graph.save(args.output)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for I/O failures
        raise CliError(f"cannot write the graph to {args.output!r}: {exc}") from exc
    print(graph.summary())
    print(f"wrote {graph.kind} graph to {args.output}")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    """``gmnfx inspect``: print the summary and per-layer table of a graph."""
    graph = _load_target(args)
    print(graph.summary())
    print()
    print(format_layer_table(graph))
    return 0


def _cmd_draw(args: argparse.Namespace) -> int:
    """``gmnfx draw``: render a graph to a PNG."""
    from gmnfx.draw import draw_graph

    check_numbers(args, positive=["--max-nodes"])
    _check_output_dir(args.output)
    graph = _load_target(args)
    draw_graph(graph, args.output, max_nodes=args.max_nodes)
    print(f"drew {graph.kind} graph ({graph.num_nodes} nodes, {graph.num_edges} edges) to {args.output}")
    return 0


# ---------------------------------------------------------------------- argument parser
def _compile_options(graph_default: Optional[str]) -> argparse.ArgumentParser:
    """Options shared by every subcommand that may compile a model."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--input-shape", action="append", metavar="SHAPE",
                        help="shape of one example input with batch dim first, e.g. 1,3,32,32; "
                             "repeat for several inputs; may be omitted when the input goes straight "
                             "into an nn.Linear")
    parent.add_argument("--graph", choices=("parameter", "computation"),
                        default=graph_default,
                        help="graph kind to build (default: parameter)")
    parent.add_argument("-q", "--quiet", action="store_true",
                        help="do not print pass timings and progress bars to stderr")
    return parent


def build_parser() -> argparse.ArgumentParser:
    """The ``gmnfx`` argument parser with its ``compile``, ``inspect`` and ``draw`` subcommands."""
    parser = argparse.ArgumentParser(
        prog="gmnfx", description="Compile PyTorch nn.Modules into graphs for Graph Metanetworks.")
    parser.add_argument("--version", action="version", version=f"gmnfx {gmnfx.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("compile", parents=[_compile_options("parameter")],
                       help="compile MODULE:FACTORY into a graph file",
                       description="Import MODULE, call FACTORY() and compile the model into a graph file.")
    p.add_argument("spec", metavar="MODULE:FACTORY",
                   help="e.g. gmnfx.examples:mlp or models.py:build")
    p.add_argument("-o", "--output", required=True, metavar="PATH", help="where to write the graph (.safetensors)")
    p.set_defaults(func=_cmd_compile)

    p = sub.add_parser("inspect", parents=[_compile_options(None)],
                       help="print a graph's summary and per-layer table",
                       description="Summarise a saved graph file, or compile MODULE:FACTORY and summarise it.")
    p.add_argument("target", metavar="TARGET", help="a saved graph file or MODULE:FACTORY")
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("draw", parents=[_compile_options(None)], help="render a small graph to a PNG",
                       description="Render a saved graph file, or MODULE:FACTORY compiled on the fly, to a PNG.")
    p.add_argument("target", metavar="TARGET", help="a saved graph file or MODULE:FACTORY")
    p.add_argument("-o", "--output", required=True, metavar="PATH", help="where to write the PNG")
    p.add_argument("--max-nodes", type=int, default=400, metavar="N",
                   help="refuse graphs with more than N nodes (default: 400)")
    p.set_defaults(func=_cmd_draw)

    from gmnfx.tasks.cli import add_accuracy_command
    from gmnfx.tasks.inr_cli import add_inr_commands
    from gmnfx.zoo.cli import add_demo_command, add_zoo_commands

    add_zoo_commands(sub)
    add_demo_command(sub)
    add_accuracy_command(sub)
    add_inr_commands(sub)
    return parser


def _print_error(exc: BaseException) -> None:
    """``gmnfx: error: <message>`` (plus any notes the compiler attached) on stderr."""
    print(f"gmnfx: error: {exc}", file=sys.stderr)
    for note in getattr(exc, "__notes__", ()):
        print(f"  {note}", file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``gmnfx`` command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, argparse usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    try:
        return args.func(args)
    except GmnfxError as exc:
        _print_error(exc)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("gmnfx: interrupted", file=sys.stderr)
        return 130

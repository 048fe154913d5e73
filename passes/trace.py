"""Pass 1: capture the model as a torch.fx graph.

torch.fx symbolic tracing first, keeping every module type that has a lowering
rule as a leaf; when it fails (data-dependent control flow and the like), the
model is captured with torch.export and its ATen-level graph is lowered.
"""
from __future__ import annotations

import contextlib
import inspect
import os
import traceback

import torch
import torch.fx as fx
import torch.nn as nn

import gmnfx
import gmnfx.passes

from gmnfx.errors import MissingExampleInputsError, UntraceableModuleError
from gmnfx.ir import META_MODULE_PATH
from gmnfx.registry import lookup_lowering, monkeypatched_original as _monkeypatched_original

__all__ = ["trace", "GmnfxTracer"]


class GmnfxTracer(fx.Tracer):
    """Symbolic tracer that keeps modules with lowering rules as leaves and records module paths."""

    proxy_buffer_attributes = True  # buffers become get_attr nodes (constants), so `mask[:, :, :T, :T]` traces

    def __init__(self):
        super().__init__()
        self.gmnfx_module_paths: list[str] = []

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return lookup_lowering(type(m)) is not None

    def call_module(self, m, forward, args, kwargs):
        path = self.path_of_module(m)
        self.gmnfx_module_paths.append(path)
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception as exc:
            if not hasattr(exc, "gmnfx_module_path"):
                exc.gmnfx_module_path = path  # innermost module where tracing failed
            raise
        finally:
            self.gmnfx_module_paths.pop()


    def create_node(self, kind, target, args, kwargs, name=None, type_expr=None):
        node = super().create_node(kind, target, args, kwargs, name, type_expr)
        frame = _user_frame()
        if frame is not None:
            node.meta["stack_trace"] = f'File "{frame.filename}", line {frame.lineno}, in {frame.name}\n    {frame.line}'
        return node


_LIBRARY_DIRS = tuple(os.path.dirname(m.__file__) + os.sep for m in (torch, gmnfx, gmnfx.passes))
_USER_FILES_IN_LIBRARY = (os.path.join(os.path.dirname(gmnfx.__file__), "examples.py"),)


def _user_frame():
    """The innermost frame of the model's own code being traced (None for e.g. a bare nn.Sequential)."""
    stack = traceback.extract_stack()
    start = max((i for i, f in enumerate(stack) if f.name == "trace" and f.filename.endswith("_symbolic_trace.py")),
                default=0)
    for frame in reversed(stack[start + 1 :]):
        if not frame.filename.startswith(_LIBRARY_DIRS) or frame.filename in _USER_FILES_IN_LIBRARY:
            return frame
    return None


def _record_module_paths(graph: fx.Graph) -> None:
    """META_MODULE_PATH from fx's own ``nn_module_stack`` (innermost module), or the call_module target."""
    for node in graph.nodes:
        stack = node.meta.get("nn_module_stack") or {}
        paths = [path for path, _ in stack.values()]
        node.meta[META_MODULE_PATH] = node.target if node.op == "call_module" else (paths[-1] if paths else "")


def _root_leaf_graph(model: nn.Module) -> fx.GraphModule:
    """A one-node graph calling ``model`` itself: for a root module whose type has a lowering rule."""
    graph = fx.Graph()
    args = []
    for name, param in inspect.signature(model.forward).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            break
        default = param.default if param.default is not param.empty else inspect.Parameter.empty
        args.append(graph.placeholder(name, default_value=default))
    call = graph.call_module("root", tuple(args))
    graph.output(call)
    gm = fx.GraphModule({"root": model}, graph, type(model).__name__)
    for node in gm.graph.nodes:
        node.meta[META_MODULE_PATH] = ""
    return gm


@contextlib.contextmanager
def _original_torch_functions():
    """Undo library monkeypatches of torch functions while tracing.

    torch_geometric replaces ``torch.index_select`` / ``torch.select`` with Python wrappers
    that branch on their arguments; torch.fx would trace into them and fail.
    """
    patched = {}
    for name in ("index_select", "select"):
        original = _monkeypatched_original(getattr(torch, name))
        if original is not None:
            patched[name] = getattr(torch, name)
            setattr(torch, name, original)
    try:
        yield
    finally:
        for name, wrapper in patched.items():
            setattr(torch, name, wrapper)


def _symbolic_trace(model: nn.Module) -> fx.GraphModule:
    if lookup_lowering(type(model)) is not None and type(model).forward is not nn.Module.forward:
        return _root_leaf_graph(model)
    tracer = GmnfxTracer()
    try:
        with _original_torch_functions():
            graph = tracer.trace(model)
    except Exception as exc:  # noqa: BLE001 - any tracer failure triggers the fallback
        if not hasattr(exc, "gmnfx_module_path"):
            exc.gmnfx_module_path = ""
        raise
    _record_module_paths(graph)
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


def _export_trace(model: nn.Module, example_inputs: tuple) -> fx.GraphModule:
    exported = torch.export.export(model, example_inputs, strict=False)
    gm = exported.module()
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and node.target == "_guards_fn":
            gm.graph.erase_node(node)
    _record_module_paths(gm.graph)
    gm.graph.lint()
    gm.recompile()
    return gm


def trace(state):
    """Capture ``state.model`` as ``state.graph_module``; ``state.frontend`` becomes the frontend used."""
    model = state.model
    if state.frontend == "export":
        fx_reason, fx_path = "not tried (frontend='export')", "<root>"
    else:
        try:
            state.graph_module = _symbolic_trace(model)
            state.frontend = "fx"
            return state
        except Exception as fx_error:  # noqa: BLE001
            if state.frontend == "fx":
                raise UntraceableModuleError(
                    f"cannot trace {type(model).__name__} with torch.fx (frontend='fx'): in module "
                    f"'{getattr(fx_error, 'gmnfx_module_path', '') or '<root>'}': {_reason(fx_error)}\n"
                    "  Fix: use frontend='auto' to fall back to torch.export, or remove data-dependent control flow."
                ) from fx_error
            fx_reason = _reason(fx_error)
            fx_path = getattr(fx_error, "gmnfx_module_path", "") or "<root>"
    if state.example_inputs is None:
        raise MissingExampleInputsError(
            f"torch.fx could not trace {type(model).__name__} (in module '{fx_path}': {fx_reason}) and the "
            "torch.export fallback needs example inputs; pass example_inputs=(torch.randn(1, ...),)"
        )
    try:
        state.graph_module = _export_trace(model, state.example_inputs)
        state.frontend = "export"
        return state
    except Exception as export_error:  # noqa: BLE001
        raise UntraceableModuleError(
            f"cannot trace {type(model).__name__}: both frontends failed.\n"
            f"  torch.fx symbolic tracing failed in module '{fx_path}': {fx_reason}\n"
            f"  torch.export failed: {_reason(export_error)}\n"
            "  Fix: remove data-dependent Python control flow from forward (use torch.where), or "
            "register a lowering rule for the offending module so it is kept as a leaf."
        ) from export_error


def _reason(exc: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return " ".join(lines[:4])[:600]

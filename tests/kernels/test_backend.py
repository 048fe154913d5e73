"""resolve_backend: GMNFX_BACKEND read at call time, clear errors, float64 always on the torch path."""
import subprocess
import sys

import pytest
import torch

import gmnfx.kernels.backend as backend
from gmnfx.kernels import BACKEND_ENV, resolve_backend



def test_env_variable_name_is_gmnfx_backend():
    assert BACKEND_ENV == "GMNFX_BACKEND"


def test_env_is_read_at_call_time(monkeypatch):
    x = torch.zeros(2, 3)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv(BACKEND_ENV, "torch")
    assert resolve_backend(x) == "torch"
    monkeypatch.setenv(BACKEND_ENV, "triton")
    assert resolve_backend(x) == "triton"
    monkeypatch.delenv(BACKEND_ENV)
    assert resolve_backend(x) == "torch"


@pytest.mark.parametrize("value", ["", None])
def test_unset_picks_torch_for_cpu_tensors(monkeypatch, value):
    if value is None:
        monkeypatch.delenv(BACKEND_ENV, raising=False)
    else:
        monkeypatch.setenv(BACKEND_ENV, value)
    assert resolve_backend(torch.zeros(2), None, torch.zeros(1, dtype=torch.long)) == "torch"


class _CudaTensorStandIn:
    """What resolve_backend reads of a CUDA tensor (this machine has none)."""

    dtype, is_cuda, device = torch.float32, True, torch.device("cuda", 0)


def test_unset_picks_triton_for_cuda_tensors(monkeypatch):
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    monkeypatch.setattr(backend, "triton_available", lambda: True)
    assert resolve_backend(_CudaTensorStandIn()) == "triton"
    assert resolve_backend(_CudaTensorStandIn(), torch.zeros(2)) == "torch"


def test_unset_picks_torch_when_triton_is_missing(monkeypatch):
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    monkeypatch.setattr(backend, "triton_available", lambda: False)
    assert resolve_backend(torch.zeros(2, device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))) \
        == "torch"


def test_invalid_value_names_the_variable_the_value_and_the_choices(monkeypatch):
    monkeypatch.setenv(BACKEND_ENV, "cuda")
    with pytest.raises(ValueError, match=r"GMNFX_BACKEND.*'torch', 'triton'.*\(got 'cuda'\)"):
        resolve_backend(torch.zeros(2))


def test_float64_always_takes_the_torch_path(monkeypatch):
    monkeypatch.setenv(BACKEND_ENV, "triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # would be an error for float32 on the CPU
    assert resolve_backend(torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.long)) == "torch"


def test_forced_triton_on_cpu_without_interpreter_says_how_to_fix(monkeypatch):
    monkeypatch.setenv(BACKEND_ENV, "triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match=r"TRITON_INTERPRET=1 before importing triton.*GMNFX_BACKEND=torch"):
        resolve_backend(torch.zeros(2))


def test_forced_triton_without_triton_says_pip_install(monkeypatch):
    monkeypatch.setenv(BACKEND_ENV, "triton")
    monkeypatch.setattr(backend, "triton_available", lambda: False)
    with pytest.raises(RuntimeError, match="pip install triton"):
        resolve_backend(torch.zeros(2))


def test_kernels_import_and_run_without_triton():
    script = (
        "import sys; sys.modules['triton'] = None\n"  # makes `import triton` raise ImportError
        "import torch\n"
        "from gmnfx.kernels import gather_act_reduce, segments_of, triton_available\n"
        "assert not triton_available()\n"
        "out = gather_act_reduce(torch.ones(2, 3), torch.tensor([0, 1]), None, *segments_of(torch.tensor([1, 1]), 2))\n"
        "assert out.tolist() == [[0.0] * 3, [2.0] * 3], out\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != BACKEND_ENV}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr

"""Launch a script under ``torchrun`` with gloo on CPU processes, for the data-parallel tests."""
from __future__ import annotations

import os
import socket
import subprocess
import sys


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_torchrun(script: str, *args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node nproc script args...`` on CPU (gloo, one thread per process)."""
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), script, *map(str, args)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)

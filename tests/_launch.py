"""Run a script under `accelerate launch` with CPU processes (gloo), as the slow multi-process tests do."""

import os
import socket
import subprocess
import sys


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(script, *args, processes=2, mixed_precision="no", timeout=300) -> subprocess.CompletedProcess:
    """``accelerate launch`` ``script`` with ``args`` on ``processes`` CPU processes; returns the result."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
        "--mixed_precision", mixed_precision, "--dynamo_backend", "no",
        "--main_process_port", str(free_port()),
        str(script), *map(str, args),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)

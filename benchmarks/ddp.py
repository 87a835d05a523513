#!/usr/bin/env python
"""Training steps per second on two CPU processes (gloo DDP), with and without the unused-parameter search.

sam-mito freezes what its loss does not reach, so DDP runs with ``find_unused_parameters=False``
(its default); with ``True`` DDP walks the autograd graph after every forward pass to look for
parameters without gradients. Both settings train the packaged tiny base on the same synthetic
patches through ``examples/train_sam_mito.py`` under ``accelerate launch``, alternating, and the
Trainer's own ``train_steps_per_second`` is reported (embedding cache built once beforehand).

    python benchmarks/ddp.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(workdir: Path, data: Path, steps: int, find_unused: bool, run: str) -> float:
    out = workdir / f"run-{run}"
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
        str(ROOT / "examples" / "train_sam_mito.py"),
        "--model_name_or_path", "sam-mito/tiny-base", "--dataset", str(data),
        "--output_dir", str(out), "--embedding_cache_dir", str(workdir / "cache"),
        "--per_device_train_batch_size", "2", "--max_steps", str(steps), "--learning_rate", "1e-4",
        "--ddp_find_unused_parameters", str(find_unused).lower(), "--eval_split", "",
        "--use_cpu", "--save_strategy", "no", "--eval_strategy", "no", "--report_to", "none",
        "--disable_tqdm", "true", "--logging_strategy", "no", "--seed", "0",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode:
        raise RuntimeError(f"accelerate launch failed:\n{result.stderr[-3000:]}")
    return json.loads((out / "train_results.json").read_text())["train_steps_per_second"]


def measure(workdir: str, quick: bool) -> dict:
    """Median training steps/s of two gloo processes with and without ``find_unused_parameters``.

    Parameters
    ----------
    workdir : str
        Scratch folder.
    quick : bool
        Fewer steps and one run per setting.

    Returns
    -------
    dict
        ``steps`` per run, ``runs`` per setting, ``steps_per_second`` (medians) and ``all`` (every
        run) keyed ``"false"`` / ``"true"``, and ``speedup`` of false over true.
    """
    from sam_mito.data.patches import prepare_dataset

    workdir = Path(workdir)
    data = workdir / "patches"
    prepare_dataset(data, synthetic_shape=(12, 512, 512), seed=2)
    steps, runs = (20, 1) if quick else (150, 2)
    measured: dict[str, list[float]] = {"false": [], "true": []}
    for run in range(runs):  # alternate, so drifting machine load hits both alike
        for find_unused in (False, True):
            rate = _launch(workdir, data, steps, find_unused, f"{run}-{find_unused}")
            measured[str(find_unused).lower()].append(rate)
    medians = {k: statistics.median(v) for k, v in measured.items()}
    return {
        "steps": steps,
        "runs": runs,
        "processes": 2,
        "per_device_batch": 2,
        "steps_per_second": medians,
        "all": measured,
        "speedup": medians["false"] / medians["true"],
    }


def render(result: dict) -> str:
    """Markdown section: steps/s with and without DDP's unused-parameter search."""
    rates = result["steps_per_second"]
    runs = {k: ", ".join(f"{v:.2f}" for v in values) for k, values in result["all"].items()}
    return f"""## DDP with and without the unused-parameter search

Two CPU processes (gloo), packaged tiny base, batch {result["per_device_batch"]} per process,
{result["steps"]} steps per run, {result["runs"]} run(s) per setting, alternating; the Trainer's
`train_steps_per_second`. sam-mito freezes the decoder parts its loss does not reach, so
`ddp_find_unused_parameters=false` (the default) works.

| `ddp_find_unused_parameters` | steps/s (median) | runs |
|---|---|---|
| false (default) | {rates["false"]:.2f} | {runs["false"]} |
| true | {rates["true"]:.2f} | {runs["true"]} |

Without the search: {result["speedup"]:.2f}× the steps per second.
"""


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, one run per setting")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        print(render(measure(scratch, options.quick)))

"""The example training script, single process and under `accelerate launch` with two CPU processes."""

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from transformers import SamModel

from sam_mito.data.patches import load_patches

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "train_sam_mito.py"
CONFIGS = ROOT / "examples" / "accelerate_configs"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def _flags(tmp_path, model_dir, dataset_dir):
    return [
        "--model_name_or_path", str(model_dir),
        "--dataset", str(dataset_dir),
        "--output_dir", str(tmp_path / "out"),
        "--embedding_cache_dir", str(tmp_path / "cache"),
        "--per_device_train_batch_size", "2",
        "--num_train_epochs", "1",
        "--save_strategy", "no",
        "--report_to", "none",
    ]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    "use_cpu", [[], ["--use_cpu"]], ids=["config-without-use_cpu", "config-with-use_cpu"]
)
def test_two_cpu_processes_share_the_work_and_save_one_model(tmp_path, tiny_model_dir, dataset_dir, use_cpu):
    # The 2-process CPU accelerate config, whether or not the training config sets use_cpu; every
    # trainable parameter gets a gradient, so DDP runs without searching for unused ones.
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(CONFIGS / "cpu_2proc.yaml"), "--main_process_port", str(_free_port()),
        str(SCRIPT), *_flags(tmp_path, tiny_model_dir, dataset_dir), *use_cpu,
        "--ddp_find_unused_parameters", "false",
    ]  # fmt: skip
    result = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "out"
    state = json.loads((out / "trainer_state.json").read_text())
    n_train = len(load_patches(dataset_dir, "train"))
    assert state["global_step"] == math.ceil(n_train / (2 * 2))  # two processes, two patches each per step
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["model.safetensors"]
    assert SamModel.from_pretrained(out).mask_decoder is not None
    caches = list((tmp_path / "cache").glob("train-*.npy"))
    assert len(caches) == 1 and not list((tmp_path / "cache").glob("*.partial.npy"))


def test_gpu_config_takes_the_process_count_at_launch():
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    config = CONFIGS / "multi_gpu.yaml"
    assert "num_processes" not in yaml.safe_load(config.read_text())
    parser = launch_command_parser()
    with pytest.raises(ValueError, match="--num_processes"):  # fails loudly instead of assuming 8 GPUs
        _validate_launch_command(parser.parse_args(["--config_file", str(config), "train.py"]))
    args = parser.parse_args(["--config_file", str(config), "--num_processes", "2", "train.py"])
    _validate_launch_command(args)
    assert args.num_processes == 2 and args.multi_gpu


def test_script_refuses_bad_settings_in_one_line(tmp_path, tiny_model_dir, dataset_dir):
    flags = _flags(tmp_path, tiny_model_dir, dataset_dir)
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *flags, "--max_steps", "0"], env=_env(), capture_output=True, text=True
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip().splitlines()[-1].startswith("train_sam_mito.py: error: max_steps 0: expected")
    )
    assert not (tmp_path / "out").exists()


def test_script_reads_a_yaml_config_with_flag_overrides(tmp_path, tiny_model_dir, dataset_dir):
    config = tmp_path / "run.yaml"
    config.write_text(
        f"model_name_or_path: {tiny_model_dir}\ndataset: {dataset_dir}\noutput_dir: {tmp_path / 'out'}\n"
        f"embedding_cache_dir: {tmp_path / 'cache'}\nmax_steps: 50\nuse_cpu: true\nreport_to: none\n"
        "save_strategy: 'no'\neval_strategy: 'no'\n"
    )
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(config), "--max_steps", "2"],
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    trained = SamModel.from_pretrained(tmp_path / "out")
    base = SamModel.from_pretrained(tiny_model_dir)
    assert torch.equal(trained.vision_encoder.neck.conv1.weight, base.vision_encoder.neck.conv1.weight)

"""Every entry point that runs a model takes a device; bad or absent devices are refused before loading."""

import numpy as np
import pytest
import torch

from sam_mito.defaults import TINY_BASE
from sam_mito.errors import SamMitoError
from sam_mito.evaluation.compare import compare
from sam_mito.inference.segmenter import Segmenter
from sam_mito.models.devices import resolve_device
from sam_mito.models.loading import load_sam


class _Reached(Exception):
    """Raised by a spy once it has seen what it looks for."""


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def one_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_the_default_is_cuda_when_present_else_the_cpu(monkeypatch, no_cuda):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert resolve_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device() == torch.device("cuda")


def test_named_devices_are_checked_against_the_machine(no_cuda):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("meta")) == torch.device("meta")
    with pytest.raises(SamMitoError, match="device 'cuda': torch sees no CUDA GPU here; pass --device cpu"):
        resolve_device("cuda")
    with pytest.raises(SamMitoError, match="device 'gpu': expected one of cpu, cuda, cuda:N, mps"):
        resolve_device("gpu")


def test_a_cuda_index_beyond_the_gpus_present_is_refused(one_gpu):
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(SamMitoError, match=r"device 'cuda:1': this machine has 1 CUDA device\(s\), 0..0"):
        resolve_device("cuda:1")


def test_load_sam_puts_the_model_on_the_requested_device():
    model, _ = load_sam(TINY_BASE, device="meta")
    assert {p.device.type for p in model.parameters()} == {"meta"}
    model, _ = load_sam(TINY_BASE, device="cpu")
    assert {p.device.type for p in model.parameters()} == {"cpu"}


def _spy_encoder(monkeypatch, module: str, seen: list):
    def spy(model, pixels):
        seen.append((next(model.parameters()).device.type, pixels.device.type))
        raise _Reached

    monkeypatch.setattr(f"{module}.image_features", spy)


def test_the_segmenter_sends_its_inputs_to_the_model_s_device_and_leaves_the_model_there(monkeypatch):
    seen = []
    _spy_encoder(monkeypatch, "sam_mito.features.encoding", seen)
    segmenter = Segmenter.from_pretrained(TINY_BASE, device="meta", precision="fp32")
    assert segmenter.device == torch.device("meta")
    with pytest.raises(_Reached):
        segmenter.segment(np.zeros((64, 64), np.uint8))
    assert seen == [("meta", "meta")]
    assert {p.device.type for p in segmenter.model.parameters()} == {"meta"}  # nothing moved back


def test_compare_loads_both_models_on_the_requested_device(monkeypatch, dataset_dir, tmp_path):
    requested = []

    def loader(name, *, device=None, **hub):
        requested.append((name, device))
        if len(requested) == 2:
            raise _Reached
        return load_sam(name, device=device)

    monkeypatch.setattr("sam_mito.evaluation.compare.load_sam", loader)
    with pytest.raises(_Reached):
        compare(TINY_BASE, TINY_BASE, dataset_dir, embedding_cache_dir=tmp_path / "cache", device="cpu")
    assert requested == [(TINY_BASE, torch.device("cpu"))] * 2


@pytest.mark.parametrize("command", ["predict", "evaluate"])
@pytest.mark.parametrize(
    ("device", "message"), [("cuda", "torch sees no CUDA GPU"), ("tpu9", "expected one of")]
)
def test_the_cli_refuses_a_device_before_loading_anything(
    cli, monkeypatch, tmp_path, dataset_dir, no_cuda, command, device, message
):
    monkeypatch.setattr("sam_mito.models.loading.load_sam", lambda *a, **k: pytest.fail("loaded a model"))
    stack = tmp_path / "stack.tif"
    stack.write_bytes(b"")
    argv = {
        "predict": ["--model", TINY_BASE, "--input", stack, "--out", tmp_path / "mask.tif"],
        "evaluate": [
            "--base",
            TINY_BASE,
            "--finetuned",
            TINY_BASE,
            "--dataset",
            dataset_dir,
            "--out",
            tmp_path / "e",
        ],
    }[command]
    status, out, err = cli(command, *argv, "--device", device)
    assert status == 2 and out == ""
    assert (
        err.count("\n") == 1
        and err.startswith(f"sam-mito {command}: error: device '{device}': ")
        and message in err
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stack.tif"]

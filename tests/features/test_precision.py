"""Encoder precision ``auto``: bf16 only on bf16 hardware and only if it stays close to fp32, recorded."""

import contextlib

import numpy as np
import pytest
import torch

import sam_mito.features.cache as embeddings
from sam_mito.cli.main import build_parser
from sam_mito.defaults import PRECISIONS
from sam_mito.errors import SamMitoError
from sam_mito.features.cache import build_cache
from sam_mito.features.encoding import encode, pixel_values
from sam_mito.features.precision import hardware_bf16, resolve_precision
from sam_mito.inference.segmenter import Segmenter
from sam_mito.models.loading import load_sam

BF16_CPU = {"avx2": True, "avx512_f": True, "avx512_bf16": True}
AVX2_CPU = {"avx2": True, "avx512_f": False, "avx512_bf16": False, "amx_bf16": False}


@pytest.fixture()
def cpu(monkeypatch):
    """Set what ``torch.cpu.get_capabilities()`` reports: ``cpu(BF16_CPU)``."""
    return lambda capabilities: monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)


class Calls(dict):
    """Encoded images by precision (the dict), and ``outputs``: each encoder run's ``(precision, result)``."""

    def __init__(self, **counts):
        super().__init__(**counts)
        self.outputs = []


@pytest.fixture()
def encodes(monkeypatch):
    """Count encoder runs by precision; ``bf16_scale`` multiplies bf16 outputs to fake a larger error."""
    calls = Calls(fp32=0, bf16=0, bf16_scale=1.0)

    def counting(model, pixels, *, precision="fp32"):
        calls[precision] += len(pixels)
        out = encode(model, pixels, precision=precision)
        out = out * calls["bf16_scale"] if precision == "bf16" else out
        calls.outputs.append((precision, out))
        return out

    for user in ("features.cache", "features.precision", "inference.segmenter"):  # each binds encode
        monkeypatch.setattr(f"sam_mito.{user}.encode", counting)
    return calls


@pytest.mark.parametrize(
    ("capabilities", "expected"),
    [
        (BF16_CPU, True),
        ({"avx2": True, "avx512_f": True, "amx_tile": True, "amx_bf16": True}, True),
        ({"avx2": True, "avx512_f": True, "avx512_bw": True}, False),  # AVX-512 without BF16
        (AVX2_CPU, False),
        ({"architecture": "arm64", "neon": True}, False),
    ],
)
def test_cpu_bf16_means_avx512_bf16_or_amx(cpu, capabilities, expected):
    cpu(capabilities)
    assert hardware_bf16("cpu") is expected


@pytest.mark.parametrize(("native", "emulated", "expected"), [(True, True, True), (False, True, False)])
def test_cuda_bf16_means_native_support_not_emulation(monkeypatch, native, emulated, expected):
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(
        torch.cuda,
        "is_bf16_supported",
        lambda including_emulation=True: native or (including_emulation and emulated),
    )
    assert hardware_bf16(torch.device("cuda", 0)) is expected
    assert hardware_bf16("meta") is False


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_explicit_precisions_pass_through_without_encoding(model_and_split, cpu, encodes, precision):
    model, processor, split = model_and_split
    cpu(BF16_CPU)
    pixels = pixel_values(processor, [split[0]["image"]])
    assert resolve_precision(model, pixels, precision) == (precision, None, None)
    assert encodes["fp32"] == encodes["bf16"] == 0


def test_auto_without_bf16_hardware_is_fp32_without_encoding(model_and_split, cpu, encodes):
    model, processor, split = model_and_split
    cpu(AVX2_CPU)
    resolution = resolve_precision(model, pixel_values(processor, [split[0]["image"]]), "auto")
    assert resolution == ("fp32", None, None)
    assert encodes["fp32"] == encodes["bf16"] == 0


@pytest.mark.parametrize(
    ("bf16_scale", "expected"), [(1.0, "bf16"), (1.005, "bf16"), (1.1, "fp32"), (float("nan"), "fp32")]
)
def test_auto_on_bf16_hardware_keeps_bf16_only_within_one_percent(
    model_and_split, cpu, encodes, caplog, bf16_scale, expected
):
    model, processor, split = model_and_split
    cpu(BF16_CPU)
    encodes["bf16_scale"] = bf16_scale
    pixels = pixel_values(processor, [split[0]["image"]])
    with caplog.at_level("INFO", logger="sam_mito.features.precision"):
        precision, error, first = resolve_precision(model, pixels, "auto")
    assert precision == expected and encodes["fp32"] == encodes["bf16"] == 1
    if bf16_scale == 1.1:
        assert error == pytest.approx(0.1, abs=0.01)
    # the embeddings handed back are the check's own run in the chosen precision, not the other one
    checked = dict(encodes.outputs)
    assert torch.equal(first, checked[expected])
    assert not torch.equal(first, checked["fp32" if expected == "bf16" else "bf16"])
    assert f"auto -> {expected}" in caplog.text and "relative L2 error" in caplog.text


def test_threshold_is_read_at_call_time(model_and_split, cpu, monkeypatch):
    model, processor, split = model_and_split
    cpu(BF16_CPU)
    monkeypatch.setattr("sam_mito.features.precision.MAX_BF16_RELATIVE_ERROR", 0.0)
    precision, error, _ = resolve_precision(model, pixel_values(processor, [split[0]["image"]]), "auto")
    assert precision == "fp32" and error > 0


def test_unknown_or_unresolved_precisions_are_named(model_and_split):
    model, processor, split = model_and_split
    pixels = pixel_values(processor, [split[0]["image"]])
    with pytest.raises(SamMitoError, match="encode precision 'fp16'"):
        resolve_precision(model, pixels, "fp16")
    with pytest.raises(SamMitoError, match="encode precision 'auto'"):
        encode(model, pixels, precision="auto")
    with pytest.raises(SamMitoError, match="encode precision 'fp16'"):
        Segmenter(model, processor, precision="fp16")


def test_cache_under_auto_records_the_choice_and_encodes_the_first_batch_once_more(
    tmp_path, model_and_split, cpu, encodes
):
    model, processor, split = model_and_split
    cpu(BF16_CPU)
    cache = build_cache(model, processor, split, name="v", cache_dir=tmp_path)
    meta = cache.metadata
    assert meta["requested"] == "auto" and meta["precision"] == meta["key"]["precision"] == "bf16"
    assert 0 < meta["bf16_relative_error"] <= 0.01
    assert encodes == {"fp32": 1, "bf16": len(split), "bf16_scale": 1.0}  # the check's bf16 row is kept
    check_fp32, check_bf16, *_ = encodes.outputs  # the check ran first: fp32, then bf16, on row 0
    assert check_fp32[0] == "fp32" and check_bf16[0] == "bf16"
    assert torch.equal(cache[0], check_bf16[1][0].half().float())  # stored as fp16, the check's bf16 row
    assert (
        build_cache(model, processor, split, name="v", cache_dir=tmp_path, precision="bf16").path
        == cache.path
    )


def test_recorded_auto_choice_is_reused_without_encoding(tmp_path, model_and_split, cpu, monkeypatch):
    model, processor, split = model_and_split
    cpu(BF16_CPU)
    first = build_cache(model, processor, split, name="v", cache_dir=tmp_path)
    monkeypatch.setattr(
        embeddings, "encode", lambda *a, **k: pytest.fail("encoded to resolve a recorded choice")
    )
    assert build_cache(model, processor, split, name="v", cache_dir=tmp_path).path == first.path


def test_fallback_is_recorded_reused_and_revisited_when_the_limit_changes(
    tmp_path, model_and_split, cpu, encodes, monkeypatch
):
    model, processor, split = model_and_split
    cpu(BF16_CPU)
    encodes["bf16_scale"] = 1.1
    fallback = build_cache(model, processor, split, name="v", cache_dir=tmp_path)
    assert fallback.metadata["precision"] == "fp32"
    assert fallback.metadata["bf16_relative_error"] == pytest.approx(0.1, abs=0.01)
    assert encodes["bf16"] == 1 and encodes["fp32"] == len(split)
    explicit = build_cache(model, processor, split, name="v", cache_dir=tmp_path, precision="fp32")
    assert explicit.path == fallback.path
    before = dict(encodes)
    assert build_cache(model, processor, split, name="v", cache_dir=tmp_path).path == fallback.path
    assert encodes == before  # the recorded fallback answered without encoding
    monkeypatch.setattr("sam_mito.features.precision.MAX_BF16_RELATIVE_ERROR", 0.2)  # now 10% is acceptable
    revisited = build_cache(model, processor, split, name="v", cache_dir=tmp_path)
    assert revisited.metadata["precision"] == "bf16" and revisited.path != fallback.path


def test_cache_without_bf16_hardware_is_fp32_and_encodes_each_row_once(
    tmp_path, model_and_split, cpu, encodes
):
    model, processor, split = model_and_split
    cpu(AVX2_CPU)
    cache = build_cache(model, processor, split, name="v", cache_dir=tmp_path)
    meta = cache.metadata
    assert (meta["requested"], meta["precision"], meta["bf16_relative_error"]) == ("auto", "fp32", None)
    assert encodes["fp32"] == len(split) and encodes["bf16"] == 0


@pytest.mark.parametrize(("capabilities", "expected"), [(BF16_CPU, "bf16"), (AVX2_CPU, "fp32")])
def test_segmenter_resolves_on_the_first_tile_and_reuses_it(
    tiny_model_dir, cpu, encodes, capabilities, expected
):
    cpu(capabilities)
    segmenter = Segmenter(*load_sam(str(tiny_model_dir)), tile=256, overlap=32)
    image = np.random.default_rng(1).integers(0, 256, (300, 500), dtype=np.uint8)
    segmenter.probabilities(image)
    segmenter.probabilities(image)
    tiles = 2 * (2 * 3)  # two calls; 256-px tiles at y = 0, 44 and x = 0, 224, 244
    assert segmenter.resolution.precision == expected and segmenter.encoder_passes == tiles
    checked = expected == "bf16"
    assert encodes[expected] == tiles and encodes["fp32" if checked else "bf16"] == int(checked)


def test_predict_precision_defaults_to_auto_and_accepts_the_library_precisions():
    argv = ["predict", "--model", "m", "--input", "i", "--out", "o"]
    assert build_parser().parse_args(argv).precision == "auto"
    for precision in PRECISIONS:
        assert build_parser().parse_args([*argv, "--precision", precision]).precision == precision
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--precision", "fp16"])

"""The embedding cache: one encode, fp16 on disk, keyed, stale caches never used."""

import json
import logging

import numpy as np
import pytest
import torch

from sam_mito.data import load_patches
from sam_mito.embeddings import build_cache, encode, pixel_values
from sam_mito.errors import SamMitoError
from sam_mito.modeling import load_sam


@pytest.fixture()
def model_and_split(tiny_model_dir, dataset_dir):
    model, processor = load_sam(str(tiny_model_dir))
    return model, processor, load_patches(dataset_dir, "validation")


def test_cache_holds_fp16_embeddings_of_every_row(tmp_path, model_and_split):
    model, processor, split = model_and_split
    cache = build_cache(model, processor, split, name="validation", cache_dir=tmp_path)
    assert len(cache) == len(split)
    assert cache.array.dtype == np.float16
    assert cache.bytes_per_item == 64 * 16 * 16 * 2
    pixels = pixel_values(processor, [split[1]["image"]])
    fresh = encode(model, pixels, precision=cache.metadata["precision"])[0]
    assert torch.allclose(cache[1], fresh, atol=2e-3, rtol=2e-3)


def test_second_build_reuses_the_cache_without_encoding(tmp_path, model_and_split, monkeypatch):
    model, processor, split = model_and_split
    first = build_cache(model, processor, split, name="v", cache_dir=tmp_path)
    monkeypatch.setattr("sam_mito.embeddings.encode", lambda *a, **k: pytest.fail("re-encoded a valid cache"))
    again = build_cache(model, processor, split, name="v", cache_dir=tmp_path)
    assert again.path == first.path


def test_changed_encoder_weights_never_use_the_old_cache(tmp_path, model_and_split):
    model, processor, split = model_and_split
    old = build_cache(model, processor, split, name="v", cache_dir=tmp_path)
    with torch.no_grad():
        model.vision_encoder.neck.layer_norm2.bias.add_(0.5)
    new = build_cache(model, processor, split, name="v", cache_dir=tmp_path)
    assert new.path != old.path
    fresh = encode(model, pixel_values(processor, [split[0]["image"]]), precision=new.metadata["precision"])[
        0
    ]
    assert torch.allclose(new[0], fresh, atol=2e-3, rtol=2e-3)
    assert not torch.allclose(old[0], fresh, atol=2e-3, rtol=2e-3)


def test_changed_preprocessing_or_precision_changes_the_key(tmp_path, model_and_split):
    model, processor, split = model_and_split
    base = build_cache(model, processor, split, name="v", cache_dir=tmp_path, precision="fp32")
    bf16 = build_cache(model, processor, split, name="v", cache_dir=tmp_path, precision="bf16")
    assert bf16.path != base.path
    assert not torch.equal(bf16[0], base[0])  # and it really encoded in bf16
    processor.image_processor.image_mean = [0.4, 0.4, 0.4]
    assert build_cache(model, processor, split, name="v", cache_dir=tmp_path).path not in (
        base.path,
        bf16.path,
    )


def test_incomplete_or_mismatched_cache_is_rebuilt(tmp_path, model_and_split, caplog):
    model, processor, split = model_and_split
    cache = build_cache(model, processor, split, name="v", cache_dir=tmp_path)
    meta_path = cache.path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["key"]["dataset"] = "something else"
    meta_path.write_text(json.dumps(meta))
    np.save(cache.path, np.zeros((1, 64, 16, 16), np.float16))  # wrong rows, wrong values
    with caplog.at_level(logging.WARNING, logger="sam_mito.embeddings"):
        rebuilt = build_cache(model, processor, split, name="v", cache_dir=tmp_path)
    assert "does not match" in caplog.text
    assert len(rebuilt) == len(split) and rebuilt[0].abs().sum() > 0


def test_unknown_precision_is_named(model_and_split):
    model, processor, split = model_and_split
    with pytest.raises(SamMitoError, match="encode precision 'int4'"):
        encode(model, pixel_values(processor, [split[0]["image"]]), precision="int4")


def test_bf16_path_stays_close_to_fp32(model_and_split):
    model, processor, split = model_and_split
    pixels = pixel_values(processor, [split[0]["image"]])
    fp32, bf16 = encode(model, pixels), encode(model, pixels, precision="bf16")
    assert ((bf16 - fp32).norm() / fp32.norm()).item() < 0.05

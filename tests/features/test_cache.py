"""The embedding cache: one encode, fp16 on disk, keyed, verified, shared safely by concurrent runs."""

import json
import logging
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
import xxhash

from sam_mito.errors import SamMitoError
from sam_mito.features.cache import build_cache
from sam_mito.features.checksums import block_checksums, corrupted_rows
from sam_mito.features.encoding import encode, pixel_values
from tests._launch import launch


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
    monkeypatch.setattr(
        "sam_mito.features.cache.encode", lambda *a, **k: pytest.fail("re-encoded a valid cache")
    )
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
    with caplog.at_level(logging.WARNING, logger="sam_mito.features.cache"):
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


def _corrupt_flip_byte(path):
    data = bytearray(path.read_bytes())
    data[-1000] ^= 0x10  # one bit of one fp16 value, near the end (the last row)
    path.write_bytes(bytes(data))


def _corrupt_zero_row(path):
    array = np.load(path, mmap_mode="r+")
    array[2] = 0
    array.flush()


def _corrupt_nan(path):
    array = np.load(path, mmap_mode="r+")
    array[1, 0, 3, 3] = np.nan
    array.flush()


@pytest.mark.parametrize("corrupt", [_corrupt_flip_byte, _corrupt_zero_row, _corrupt_nan])
def test_a_cache_changed_on_disk_is_rebuilt_with_a_warning(tmp_path, model_and_split, caplog, corrupt):
    model, processor, split = model_and_split
    cache = build_cache(model, processor, split, name="v", cache_dir=tmp_path, precision="fp32")
    intact = np.array(cache.array)
    del cache
    path = next(tmp_path.glob("v-*.npy"))
    corrupt(path)
    assert not np.array_equal(np.load(path), intact, equal_nan=True)
    with caplog.at_level(logging.WARNING, logger="sam_mito.features.cache"):
        rebuilt = build_cache(model, processor, split, name="v", cache_dir=tmp_path, precision="fp32")
    assert "do not match their recorded xxh3_64 checksums" in caplog.text
    assert rebuilt.path == path
    np.testing.assert_array_equal(np.asarray(rebuilt.array), intact)


def test_checksums_are_xxh3_of_each_block_of_rows_and_name_the_changed_rows():
    array = np.arange(6, dtype=np.uint8).reshape(3, 2)  # rows 00 01 | 02 03 | 04 05
    # XXH3-64 of the bytes 00 01 02 03 and of 04 05 (xxhash's reference values; the last block is short)
    blocks = ["60dab036a58211f2", "16260aa7bc02a0a5"]
    assert block_checksums(array, 2) == blocks
    record = {"algorithm": "xxh3_64", "rows_per_block": 2, "blocks": blocks}
    assert corrupted_rows(array, record) == []
    changed = array.copy()
    changed[1, 1] = 9  # row 1: the first block, rows [0, 2)
    assert corrupted_rows(changed, record) == [(0, 2)]
    changed[2, 0] = 7  # row 2: the one-row last block too
    assert corrupted_rows(changed, record) == [(0, 2), (2, 3)]
    # nothing is trusted without a record, with another algorithm's, or with blocks missing
    assert corrupted_rows(array, None) == [(0, 3)]
    assert corrupted_rows(array, {**record, "algorithm": "md5"}) == [(0, 3)]
    assert corrupted_rows(array, {**record, "blocks": blocks[:1]}) == [(0, 3)]


def test_a_caches_checksums_cover_its_rows_in_16_mib_blocks(tmp_path, model_and_split):
    model, processor, split = model_and_split
    cache = build_cache(model, processor, split, name="v", cache_dir=tmp_path, precision="fp32")
    record = cache.metadata["checksums"]
    # a row is 64 x 16 x 16 fp16 values = 32 KiB, so a 16 MiB block holds 512 rows: this split is one block
    assert (record["algorithm"], record["rows_per_block"]) == ("xxh3_64", 512)
    assert record["blocks"] == [xxhash.xxh3_64_hexdigest(np.asarray(cache.array).tobytes())]
    assert corrupted_rows(cache.array, record) == []
    changed = np.array(cache.array)
    changed[3, 5] += 1
    assert corrupted_rows(changed, record) == [(0, len(split))]


def test_two_runs_building_the_same_cache_at_once_encode_it_once(
    tmp_path, model_and_split, monkeypatch, caplog
):
    model, processor, split = model_and_split
    encoded = []

    def slow_encode(*args, **kwargs):
        time.sleep(0.2)  # a build long enough for the other run to find it in progress
        out = encode(*args, **kwargs)
        encoded.append(len(out))
        return out

    monkeypatch.setattr("sam_mito.features.cache.encode", slow_encode)
    start = threading.Barrier(2)
    results, errors = [], []

    def run():
        try:
            start.wait()
            results.append(
                build_cache(model, processor, split, name="v", cache_dir=tmp_path, precision="fp32")
            )
        except BaseException as err:  # reported below
            errors.append(err)

    with caplog.at_level(logging.WARNING, logger="sam_mito.features.cache"):
        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert not errors, errors
    assert sum(encoded) == len(split)  # one run encoded every row, the other reused its cache
    assert "another run is building embedding cache" in caplog.text
    assert results[0].path == results[1].path
    np.testing.assert_array_equal(np.asarray(results[0].array), np.asarray(results[1].array))
    assert not list(tmp_path.glob("*.partial.npy"))


KILLED_RUN = """
import sys, time
import sam_mito.features.cache as embeddings
from sam_mito.data.patches import load_patches
from sam_mito.models.loading import load_sam

model, processor = load_sam(sys.argv[1])
real = embeddings.encode

def encode_then_hang(*args, **kwargs):
    out = real(*args, **kwargs)
    time.sleep(600)
    return out

embeddings.encode = encode_then_hang
embeddings.build_cache(model, processor, load_patches(sys.argv[2], "validation"), name="v",
                       cache_dir=sys.argv[3], precision="fp32")
"""


@pytest.mark.slow
def test_a_build_killed_midway_leaves_nothing_the_next_run_trusts(
    tmp_path, model_and_split, tiny_model_dir, dataset_dir, caplog
):
    model, processor, split = model_and_split
    script = tmp_path / "killed.py"
    script.write_text(KILLED_RUN)
    cache_dir = tmp_path / "cache"
    run = subprocess.Popen(
        [sys.executable, str(script), str(tiny_model_dir), str(dataset_dir), str(cache_dir)]
    )
    try:
        deadline = time.monotonic() + 120
        while not list(cache_dir.glob("v-*.*.partial.npy")) and time.monotonic() < deadline:
            assert run.poll() is None, "the run ended before it started writing"
            time.sleep(0.2)
        time.sleep(1.0)  # it is now writing rows, holding the lock
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    (left,) = cache_dir.glob("v-*.*.partial.npy")
    assert not list(cache_dir.glob("v-*[0-9a-f].npy"))
    with caplog.at_level(logging.WARNING, logger="sam_mito.features.cache"):
        cache = build_cache(model, processor, split, name="v", cache_dir=cache_dir, precision="fp32")
    assert f"removing {left}" in caplog.text
    assert not list(cache_dir.glob("*.partial.npy"))
    assert len(cache) == len(split) and corrupted_rows(cache.array, cache.metadata["checksums"]) == []
    fresh = encode(model, pixel_values(processor, [split[len(split) - 1]["image"]]))[0]
    assert torch.allclose(cache[len(split) - 1], fresh, atol=2e-3, rtol=2e-3)


UNSHARED = """
import sys
from pathlib import Path
from accelerate import PartialState
from sam_mito.data.patches import load_patches
from sam_mito.features.cache import build_cache
from sam_mito.errors import SamMitoError
from sam_mito.models.loading import load_sam

state = PartialState(cpu=True)
model, processor = load_sam(sys.argv[1])
cache_dir = Path(sys.argv[3]) / f"machine-{state.process_index}"  # as if each process had its own disk
try:
    build_cache(model, processor, load_patches(sys.argv[2], "validation"), name="v", cache_dir=cache_dir,
                precision="fp32")
except SamMitoError as err:
    print(f"process {state.process_index}: error: {err}", flush=True)
    sys.exit(2)
"""


@pytest.mark.slow
def test_processes_that_do_not_share_the_cache_folder_all_stop_with_one_clear_error(
    tmp_path, tiny_model_dir, dataset_dir
):
    script = tmp_path / "unshared.py"
    script.write_text(UNSHARED)
    result = launch(script, tiny_model_dir, dataset_dir, tmp_path / "caches", timeout=180)
    assert result.returncode != 0
    for process in (0, 1):
        lines = [ln for ln in result.stdout.splitlines() if ln.startswith(f"process {process}: error:")]
        assert lines, (result.stdout[-2000:], result.stderr[-4000:])
        line = lines[0]
        assert "not shared by every process of this job" in line and "process(es) 1 (host" in line
        assert "--embedding-cache-dir" in line
    assert not list((tmp_path / "caches").rglob("*.partial.npy"))


@pytest.mark.parametrize(
    "failure",
    [OSError(28, "No space left on device"), TypeError("a bug")],
    ids=["full-disk", "bug"],
)
def test_a_failure_that_is_not_bad_input_keeps_its_cause(tmp_path, model_and_split, monkeypatch, failure):
    model, processor, split = model_and_split

    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setattr("sam_mito.features.cache.np.lib.format.open_memmap", fail)
    with pytest.raises(Exception, match=r"embedding cache .*v-[0-9a-f]{16}\.npy") as raised:
        build_cache(model, processor, split, name="v", cache_dir=tmp_path)
    assert not isinstance(raised.value, SamMitoError)  # the CLI exits 1 with the cause, not 2
    assert raised.value.__cause__ is failure
    monkeypatch.undo()  # the lock was released: the next build goes ahead
    assert len(build_cache(model, processor, split, name="v", cache_dir=tmp_path)) == len(split)

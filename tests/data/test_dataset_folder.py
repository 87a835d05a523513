"""Issue 18: `datasets.load_dataset(<prepared folder>)` in fresh processes sharing one HF cache.

For a local folder, `datasets` caches under the folder's base name and a hash of the card's
`configs` and `dataset_info`, not of the files, so same-named folders and re-prepared folders used
to share one cache entry. Each load here runs in a new process, as a new user would, and is compared
with the folder's own parquet files read by pyarrow.
"""

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from sam_mito.data.patches import prepare_dataset

ROOT = Path(__file__).resolve().parents[2]
OFFLINE = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")

# Plain `datasets` first (no sam-mito import), then `load_patches`, which must read the same cache entry.
LOAD = """
import hashlib, json, sys
import datasets
import numpy as np

def digests(loaded):
    return {
        split: [
            hashlib.sha256(b"".join(np.asarray(row[c]).tobytes() for c in ("image", "label"))).hexdigest()
            for row in part
        ]
        for split, part in loaded.items()
    }

public = datasets.load_dataset(sys.argv[1])
from sam_mito.data.patches import load_patches
ours = load_patches(sys.argv[1])
same_cache = all(public[split].cache_files == ours[split].cache_files for split in public)
print(json.dumps({"public": digests(public), "load_patches": digests(ours), "same_cache": same_cache}))
"""


def _digest(*pngs: dict) -> str:
    return hashlib.sha256(
        b"".join(np.asarray(Image.open(io.BytesIO(png["bytes"]))).tobytes() for png in pngs)
    ).hexdigest()


def _parquet_digests(folder: Path) -> dict[str, list[str]]:
    """Per split, one digest of the decoded image and label pixels per row, straight from the parquet files."""
    found: dict[str, list[str]] = {}
    for shard in sorted((folder / "data").glob("*.parquet")):
        table = pq.read_table(shard, columns=["image", "label"]).to_pydict()
        rows = found.setdefault(shard.name.split("-")[0], [])
        rows.extend(
            _digest(image, label) for image, label in zip(table["image"], table["label"], strict=True)
        )
    return found


def _load_in_fresh_process(folder: Path, cache: Path, *, offline: bool) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in OFFLINE}
    env |= {"HF_HOME": str(cache), "HF_DATASETS_CACHE": str(cache / "datasets")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    if offline:
        env |= dict.fromkeys(OFFLINE, "1")
    result = subprocess.run(
        [sys.executable, "-c", LOAD, str(folder)], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def _assert_loads_its_own_rows(folder: Path, cache: Path, *, offline: bool) -> dict[str, list[str]]:
    expected = _parquet_digests(folder)
    loaded = _load_in_fresh_process(folder, cache, offline=offline)
    for reader in ("public", "load_patches"):
        counts = {split: len(rows) for split, rows in loaded[reader].items()}
        assert counts == {split: len(rows) for split, rows in expected.items()}, (reader, folder)
        assert loaded[reader] == expected, (reader, folder)
    assert loaded["same_cache"]
    return expected


@pytest.mark.parametrize("offline", [False, True], ids=["online-variables-unset", "offline"])
def test_load_dataset_never_returns_stale_patches(tmp_path, offline):
    cache = tmp_path / "hf"  # one HF cache shared by every fresh process below
    a, b = tmp_path / "a" / "patches", tmp_path / "b" / "patches"

    prepare_dataset(a, synthetic_shape=(6, 256, 256), seed=0)
    first = _assert_loads_its_own_rows(a, cache, offline=offline)

    prepare_dataset(b, synthetic_shape=(12, 512, 512), seed=1)
    other = _assert_loads_its_own_rows(b, cache, offline=offline)
    assert len(other["train"]) != len(first["train"])

    # Same shape, other seed: the same number of rows per split, other pixels.
    prepare_dataset(a, synthetic_shape=(6, 256, 256), seed=1, overwrite=True)
    again = _assert_loads_its_own_rows(a, cache, offline=offline)
    assert {s: len(r) for s, r in again.items()} == {s: len(r) for s, r in first.items()}
    assert again != first

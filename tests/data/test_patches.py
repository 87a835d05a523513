"""Patching, splits, the Hub-format dataset folder and its card."""

import os
import re
import stat
from dataclasses import asdict

import datasets
import numpy as np
import pytest
import yaml
from huggingface_hub import DatasetCard

from sam_mito.data.dataset_folder import save_dataset
from sam_mito.data.patches import (
    PatchConfig,
    build_dataset,
    load_patches,
    patch_origins,
    prepare_dataset,
    slice_splits,
)
from sam_mito.errors import SamMitoError
from sam_mito.files import atomic_directory


def test_epfl_slice_gives_a_3_by_4_grid_of_patches():
    origins = patch_origins(768, 1024, size=256, step=256)
    assert origins == [(y, x) for y in (0, 256, 512) for x in (0, 256, 512, 768)]


def test_uneven_extent_adds_a_patch_flush_with_the_border():
    assert patch_origins(300, 256, size=256, step=256) == [(0, 0), (44, 0)]


def test_slice_smaller_than_patch_is_an_error():
    with pytest.raises(
        SamMitoError, match=r"slice shape \(100, 300\) is smaller than the patch size 256x256"
    ):
        patch_origins(100, 300, size=256, step=256)


def test_validation_is_a_contiguous_slice_block_at_the_end():
    ranges = slice_splits(20, config=PatchConfig(validation_fraction=0.2), has_test_volume=True)
    assert ranges["train"] == range(0, 16) and ranges["validation"] == range(16, 20)
    assert len(ranges["test"]) == 0
    ranges = slice_splits(
        20, config=PatchConfig(validation_fraction=0.1, test_fraction=0.1), has_test_volume=False
    )
    assert ranges == {"train": range(0, 16), "test": range(16, 18), "validation": range(18, 20)}


def _toy_volume(n=6):
    images = np.random.default_rng(0).integers(0, 255, (n, 64, 64), dtype=np.uint8)
    masks = np.zeros((n, 64, 64), np.uint8)
    masks[:, 4:10, 40:50] = 1  # only the top-right 32x32 patch has foreground
    return images, masks


def test_empty_patches_are_dropped_and_provenance_kept():
    images, masks = _toy_volume()
    config = PatchConfig(size=32, step=32, validation_fraction=0.34, test_fraction=0.0)
    dataset = build_dataset((images, masks), test=_toy_volume(2), config=config)
    assert [len(dataset[s]) for s in ("train", "validation", "test")] == [4, 2, 2]
    row = dataset["train"][1]
    assert (row["slice_index"], row["y"], row["x"], row["source"]) == (1, 0, 32, "training")
    assert row["union_box"] == [8, 4, 17, 9]
    assert np.array_equal(np.array(row["image"]), images[1, 0:32, 32:64])
    assert dataset["validation"]["slice_index"] == [4, 5]


def test_min_foreground_threshold_drops_sparse_patches():
    images, masks = _toy_volume()
    config = PatchConfig(size=32, step=32, min_foreground=0.1, validation_fraction=0.34)
    with pytest.raises(SamMitoError, match="split 'train' has no patch with foreground"):
        build_dataset((images, masks), test=_toy_volume(2), config=config)


def test_load_dataset_round_trip_is_pixel_exact(tmp_path):
    images, masks = _toy_volume()
    config = PatchConfig(size=32, step=32, validation_fraction=0.34)
    built = build_dataset((images, masks), test=_toy_volume(2), config=config)
    save_dataset(built, tmp_path / "ds", source="toy", patch_config={**config.__dict__})
    loaded = load_patches(tmp_path / "ds")
    assert set(loaded) == {"train", "validation", "test"}
    for split in loaded:
        assert loaded[split].features == built[split].features
        for a, b in zip(loaded[split], built[split], strict=True):
            assert np.array_equal(np.array(a["image"]), np.array(b["image"]))
            assert np.array_equal(np.array(a["label"]), np.array(b["label"]))
            assert a["instance_boxes"] == b["instance_boxes"]


def test_card_yaml_declares_configs_and_features(dataset_dir):
    card = DatasetCard.load(dataset_dir / "README.md")
    data = card.data.to_dict()
    assert [f["split"] for f in data["configs"][0]["data_files"]] == ["train", "validation", "test"]
    # Exact, content-fingerprinted file names (Hub-sharded names plus a suffix), not glob patterns.
    paths = {f["split"]: f["path"] for f in data["configs"][0]["data_files"]}
    assert all(re.fullmatch(rf"data/{s}-00000-of-00001-[0-9a-f]{{16}}\.parquet", p) for s, p in paths.items())
    files = sorted(p.relative_to(dataset_dir).as_posix() for p in dataset_dir.glob("data/*"))
    assert files == sorted(paths.values())
    # All three fields, as push_to_hub writes them (datasets warns about a split entry without num_bytes).
    assert all(set(s) == {"name", "num_bytes", "num_examples"} for s in data["dataset_info"]["splits"])
    counts = {s["name"]: s["num_examples"] for s in data["dataset_info"]["splits"]}
    assert counts == {split: len(load_patches(dataset_dir, split)) for split in paths}
    features = {f["name"]: f for f in data["dataset_info"]["features"]}
    assert features["image"]["dtype"] == "image" and features["label"]["dtype"] == "image"
    assert features["union_box"] == {"name": "union_box", "list": "int32", "length": 4}
    assert "Lucchi" in card.text and "| train |" in card.text
    yaml.safe_load(open(dataset_dir / "README.md").read().split("---")[1])


def test_card_split_sizes_are_checked_by_datasets(tmp_path):
    config = PatchConfig(size=32, step=32, validation_fraction=0.34)
    save_dataset(
        build_dataset(_toy_volume(), test=_toy_volume(2), config=config),
        tmp_path / "ds",
        source="toy",
        patch_config={**config.__dict__},
    )
    card = tmp_path / "ds" / "README.md"
    card.write_text(card.read_text().replace("num_examples: 4", "num_examples: 5", 1))
    with pytest.raises(SamMitoError, match=r"not a prepared sam-mito dataset .*num_examples=5"):
        load_patches(tmp_path / "ds")


def test_split_helpers_report_missing_and_empty(dataset_dir, tmp_path):
    assert len(load_patches(dataset_dir, "validation")) > 0
    with pytest.raises(SamMitoError, match=r"no split 'dev'; available: \['test', 'train', 'validation'\]"):
        load_patches(dataset_dir, "dev")
    from sam_mito.data.dataset_folder import save_dataset

    full = load_patches(dataset_dir)
    emptied = datasets.DatasetDict({"train": full["train"], "validation": full["validation"].select([])})
    save_dataset(emptied, tmp_path / "emptied", source="test", patch_config=asdict(PatchConfig()))
    with pytest.raises(
        SamMitoError, match='emptied: not a prepared sam-mito dataset .*"validation" corresponds to no data'
    ):
        load_patches(tmp_path / "emptied", "validation")


def test_same_folder_name_or_rewritten_folder_never_reads_stale_patches(tmp_path):
    config = PatchConfig(validation_fraction=0.25)
    first = prepare_dataset(tmp_path / "a" / "dataset", synthetic_shape=(4, 256, 256), seed=1, config=config)
    second = prepare_dataset(tmp_path / "b" / "dataset", synthetic_shape=(8, 256, 512), seed=2, config=config)
    assert len(load_patches(tmp_path / "a" / "dataset", "train")) == len(first["train"])
    assert len(load_patches(tmp_path / "b" / "dataset", "train")) == len(second["train"])
    again = prepare_dataset(
        tmp_path / "a" / "dataset", synthetic_shape=(8, 256, 512), seed=2, config=config, overwrite=True
    )
    assert (
        len(load_patches(tmp_path / "a" / "dataset", "train")) == len(again["train"]) != len(first["train"])
    )


def test_not_a_dataset_folder(tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(
        SamMitoError, match="not a prepared sam-mito dataset .no README.md card declaring configs"
    ):
        load_patches(tmp_path)


def test_a_folder_of_datasets_is_refused_not_merged(tmp_path):
    config = PatchConfig(size=32, step=32, validation_fraction=0.34)
    built = build_dataset(_toy_volume(), test=_toy_volume(2), config=config)
    for folder in (tmp_path / "one", tmp_path / "runs" / "two"):
        save_dataset(built, folder, source="toy", patch_config={**config.__dict__})
    with pytest.raises(
        SamMitoError, match=r"holds dataset folder\(s\) \[.*one', .*two'\] but is not one itself"
    ):
        load_patches(tmp_path)
    next((tmp_path / "one" / "data").glob("train-*.parquet")).unlink()
    with pytest.raises(SamMitoError, match="one: not a prepared sam-mito dataset"):
        load_patches(tmp_path / "one")


def test_failed_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_directory(target) as staging:
        (staging / "partial.parquet").write_text("half")
        raise RuntimeError("disk full")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_dataset_folders_get_the_usual_permissions(tmp_path):
    previous = os.umask(0o027)
    try:
        prepare_dataset(tmp_path / "ds", synthetic_shape=(4, 256, 256), seed=0)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "ds").stat().st_mode) == 0o750  # as mkdir makes it, not mkdtemp's 0700
    assert stat.S_IMODE((tmp_path / "ds" / "data").stat().st_mode) == 0o750


def test_existing_output_needs_overwrite(tmp_path, dataset_dir):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    for overwrite in (False, True):  # a folder sam-mito did not write is never replaced
        with pytest.raises(SamMitoError, match="out_dir is a non-empty folder sam-mito did not write"):
            prepare_dataset(target, synthetic_shape=(4, 256, 256), seed=0, overwrite=overwrite)
    assert (target / "keep.txt").exists()
    ours = tmp_path / "ours"
    prepare_dataset(ours, synthetic_shape=(4, 256, 256), seed=0)
    with pytest.raises(SamMitoError, match="ours: out_dir exists \\(pass --overwrite to replace it\\)"):
        prepare_dataset(ours, synthetic_shape=(4, 256, 256), seed=0)
    prepare_dataset(ours, synthetic_shape=(4, 256, 256), seed=1, overwrite=True)


def test_bad_input_in_prepare_leaves_no_output(tmp_path):
    with pytest.raises(SamMitoError, match="--test-images and --test-masks go together"):
        prepare_dataset(tmp_path / "out", images="a.tif", masks="b.tif", test_images="c.tif")
    assert not (tmp_path / "out").exists()

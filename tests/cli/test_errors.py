"""Every bad input to the command line ends the same way: exit status 2, exactly one ``error:`` line
naming the flag or file at fault, no traceback, nothing written and every input untouched."""

import os
import shutil

import datasets
import numpy as np
import pytest
import tifffile
from PIL import Image

from sam_mito.defaults import TINY_BASE


def _tree(root):
    """Every path below ``root`` with its size and modification time: what a command may not change."""
    return {
        path.relative_to(root).as_posix(): (path.is_dir(), path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
    }


def assert_refused(cli, root, argv, *needles):
    """Run the command; it must fail with one ``error:`` line holding every needle and leave ``root`` as it was."""
    before = _tree(root)
    status, _, err = cli(*argv)
    errors = [line for line in err.splitlines() if "error:" in line]
    assert status == 2, err
    assert len(errors) == 1 and "Traceback" not in err, err
    assert all(needle in errors[0] for needle in needles), (needles, errors[0])
    assert _tree(root) == before  # nothing written, nothing removed, no input touched


@pytest.fixture
def inputs(tmp_path, tiny_model_dir):
    """A uint8 stack, a slice folder, a float stack with 3 NaNs, a file, a model, a truncated model copy."""
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 80), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", images, photometric="minisblack")
    (tmp_path / "slices").mkdir()
    for index, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / "slices" / f"z{index}.png")
    float_stack = images.astype(np.float32)
    float_stack[1, 0, :3] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", float_stack, photometric="minisblack")
    (tmp_path / "notes.txt").write_text("not a folder")
    (tmp_path / "existing").mkdir()
    os.symlink(tmp_path / "stack.tif", tmp_path / "link.tif")
    shutil.copytree(tiny_model_dir, tmp_path / "model")
    shutil.copytree(tiny_model_dir, tmp_path / "truncated")
    weights = tmp_path / "truncated" / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    return tmp_path


PREDICT_CASES = {
    "output is the input": (["--out", "stack.tif"], ["--out is the same path as --input", "stack.tif"]),
    "output is a link to the input": (["--out", "link.tif"], ["--out is the same path as --input"]),
    "probabilities is the input": (
        ["--probabilities-out", "stack.tif"],
        ["--probabilities-out is the same path as --input"],
    ),
    "output inside the input folder": (
        ["--input", "slices", "--out", "slices/mask.tif"],
        ["--out", "lies inside the --input folder"],
    ),
    "output inside the model folder": (["--out", "model/mask.tif"], ["--out", "--model"]),
    "output and probabilities the same": (
        ["--probabilities-out", "mask.tif"],
        ["--out", "--probabilities-out", "same path"],
    ),
    "output an existing folder": (["--out", "existing"], ["existing", "--out is an existing folder"]),
    "output under a file": (["--out", "notes.txt/mask.tif"], ["--out lies under the file notes.txt"]),
    "tile 0": (["--tile", "0"], ["--tile"]),
    "tile negative": (["--tile", "-16"], ["--tile"]),
    "tile too large": (["--tile", "100000"], ["--tile 100000", "256"]),
    "NaN intensities": (["--input", "nan.tif"], ["nan.tif", "3 NaN or infinite"]),
    "truncated weights": (["--model", "truncated"], ["truncated/model.safetensors", "truncated or corrupt"]),
    "threshold nan": (["--threshold", "nan"], ["--threshold"]),
}


@pytest.mark.parametrize("case", PREDICT_CASES)
def test_predict_refuses(cli, inputs, case, monkeypatch):
    monkeypatch.chdir(inputs)
    extra, needles = PREDICT_CASES[case]
    argv = {"--model": "model", "--input": "stack.tif", "--out": "mask.tif"}
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        argv[flag] = value
    assert_refused(cli, inputs, ["predict", *(x for item in argv.items() for x in item)], *needles)


def _epfl_pair(folder, images=None):
    images = (
        np.random.default_rng(1).integers(0, 256, (4, 64, 64), dtype=np.uint8) if images is None else images
    )
    masks = np.zeros((4, 64, 64), np.uint8)
    masks[:, 2:12, 2:12] = 255
    folder.mkdir()
    tifffile.imwrite(folder / "training.tif", images, photometric="minisblack")
    tifffile.imwrite(folder / "training_groundtruth.tif", masks, photometric="minisblack")
    if images.dtype != np.uint8:
        return
    (folder / "img").mkdir()
    (folder / "msk").mkdir()
    for index in range(4):
        Image.fromarray(images[index]).save(folder / "img" / f"z{index}.png")
        Image.fromarray(masks[index]).save(folder / "msk" / f"z{index}.png")


SYNTHETIC = ["--synthetic", "--slices", "4", "--height", "256", "--width", "256", "--out", "ds"]
PREPARE_CASES = {
    "patch size 0": ([*SYNTHETIC, "--patch-size", "0"], ["--patch-size"]),
    "patch size negative": ([*SYNTHETIC, "--patch-size", "-64"], ["--patch-size"]),
    "step 0": ([*SYNTHETIC, "--step", "0"], ["--step"]),
    "validation fraction negative": (
        [*SYNTHETIC, "--validation-fraction", "-0.1"],
        ["--validation-fraction"],
    ),
    "validation fraction 1": ([*SYNTHETIC, "--validation-fraction", "1"], ["--validation-fraction"]),
    "validation fraction nan": ([*SYNTHETIC, "--validation-fraction", "nan"], ["--validation-fraction"]),
    "test fraction inf": ([*SYNTHETIC, "--test-fraction", "inf"], ["--test-fraction"]),
    "test fraction above 1": ([*SYNTHETIC, "--test-fraction", "1.5"], ["--test-fraction"]),
    "test fraction a word": (
        [*SYNTHETIC, "--test-fraction", "half"],
        ["--test-fraction", "'half': expected a number"],
    ),
    "mask threshold a word": (
        [*SYNTHETIC, "--mask-threshold", "x"],
        ["--mask-threshold", "'x': expected a number"],
    ),
    "mask threshold nan": (
        [*SYNTHETIC, "--mask-threshold", "nan"],
        ["--mask-threshold", "expected a finite number"],
    ),
    "min foreground 1": ([*SYNTHETIC, "--min-foreground", "1"], ["--min-foreground"]),
    "out is a file": (
        ["--synthetic", "--out", "notes.txt", "--overwrite"],
        ["notes.txt", "is a file"],
    ),
    "out under a file": (["--synthetic", "--out", "notes.txt/ds"], ["notes.txt", "lies under the file"]),
    "out is the image folder": (
        ["--images", "epfl/img", "--masks", "epfl/msk", "--out", "epfl/img", "--overwrite"],
        ["--out is the same path as --images"],
    ),
    "out inside the mask folder": (
        ["--images", "epfl/img", "--masks", "epfl/msk", "--out", "epfl/msk/ds", "--overwrite"],
        ["--out lies inside the --masks folder"],
    ),
    "out holds the inputs": (
        ["--images", "epfl/training.tif", "--masks", "epfl/training_groundtruth.tif", "--out", "epfl"]
        + ["--overwrite"],
        ["--out holds --images"],
    ),
    "NaN intensities": (
        ["--images", "nan/training.tif", "--masks", "nan/training_groundtruth.tif", "--out", "ds"],
        ["nan/training.tif", "5 NaN or infinite"],
    ),
}


@pytest.mark.parametrize("case", PREPARE_CASES)
def test_prepare_refuses(cli, tmp_path, case, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _epfl_pair(tmp_path / "epfl")
    float_images = np.ones((4, 64, 64), np.float32)
    float_images[2, 5, :4] = np.inf
    float_images[3, 0, 0] = np.nan
    _epfl_pair(tmp_path / "nan", float_images)
    (tmp_path / "notes.txt").write_text("not a folder")
    argv, needles = PREPARE_CASES[case]
    assert_refused(cli, tmp_path, ["prepare", *argv], *needles)


@pytest.fixture
def datasets_parent(tmp_path, dataset_dir):
    """A folder holding two prepared datasets, and nothing else."""
    for name in ("a", "b"):
        shutil.copytree(dataset_dir, tmp_path / "runs" / name)
    return tmp_path / "runs"


def _train(dataset, out):
    argv = ["train", "--output_dir", out, "--dataset", dataset, "--model_name_or_path", TINY_BASE]
    return [*argv, "--use_cpu", "--report_to", "none"]


def _evaluate(dataset, out):
    return ["evaluate", "--base", TINY_BASE, "--finetuned", TINY_BASE, "--dataset", dataset, "--out", out]


@pytest.mark.parametrize("command", [_train, _evaluate], ids=["train", "evaluate"])
def test_a_folder_of_datasets_is_refused_by_every_command(cli, tmp_path, datasets_parent, command):
    assert_refused(
        cli, tmp_path, command(datasets_parent, tmp_path / "out"), "runs", "holds dataset folder(s)"
    )


@pytest.mark.parametrize("command", [_train, _evaluate], ids=["train", "evaluate"])
def test_a_dataset_that_is_neither_a_folder_nor_reachable_is_one_line(cli, tmp_path, command, monkeypatch):
    (tmp_path / "keep.txt").write_text("x")
    # Offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE, set for the tests) ...
    assert_refused(cli, tmp_path, command("me/no-such-patches", tmp_path / "out"), "me/no-such-patches")
    # ... a missing local path ...
    missing = tmp_path / "nowhere" / "patches"
    assert_refused(cli, tmp_path, command(missing, tmp_path / "out"), str(missing), "no such dataset folder")

    # ... and online without a network, as `datasets` reports it.
    def unreachable(path, *args, **kwargs):
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    assert_refused(
        cli,
        tmp_path,
        command("me/no-such-patches", tmp_path / "out"),
        "me/no-such-patches",
        "cannot be reached",
    )


def test_evaluate_never_writes_into_the_dataset(cli, tmp_path, dataset_dir):
    shutil.copytree(dataset_dir, tmp_path / "patches")
    argv = _evaluate(tmp_path / "patches", tmp_path / "patches" / "eval")
    assert_refused(cli, tmp_path, argv, "--out lies inside the --dataset folder")
    assert_refused(cli, tmp_path, [*argv[:-1], tmp_path / "e", "--figure-rows", "0"], "--figure-rows")


def test_demo_refuses_to_replace_without_overwrite_or_to_replace_its_data(cli, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("keep")
    _epfl_pair(tmp_path / "epfl")
    assert_refused(
        cli,
        tmp_path,
        ["demo", "--out", tmp_path / "out"],
        "--out is a non-empty folder sam-mito did not write",
    )
    argv = ["demo", "--out", tmp_path / "out", "--overwrite"]
    assert_refused(cli, tmp_path, argv, "never replaced, with or without --overwrite")
    argv = ["demo", "--out", tmp_path / "epfl", "--data", tmp_path / "epfl", "--overwrite"]
    assert_refused(cli, tmp_path, argv, "--out is the same path as --data")
    argv = ["demo", "--out", tmp_path, "--data", tmp_path / "epfl", "--overwrite"]
    assert_refused(cli, tmp_path, argv, "--out holds --data")
    assert_refused(cli, tmp_path, ["demo", "--out", tmp_path / "new", "--steps", "0"], "--steps")


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]], ids=["plain", "overwrite"])
@pytest.mark.parametrize("flag", ["--out", "--labels-out", "--probabilities-out"])
def test_predict_never_replaces_a_folder_sam_mito_did_not_write(cli, inputs, flag, overwrite, monkeypatch):
    monkeypatch.chdir(inputs)
    (inputs / "keep.zarr").mkdir()
    (inputs / "keep.zarr" / "notes.txt").write_text("the user's own")
    outputs = {"--out": "mask.zarr", flag: "keep.zarr"}
    argv = ["predict", "--model", "model", "--input", "stack.tif", *(x for kv in outputs.items() for x in kv)]
    assert_refused(
        cli, inputs, [*argv, *overwrite], f"keep.zarr: {flag} is a non-empty folder sam-mito did not write"
    )


def test_predict_checks_its_input_and_outputs_before_loading_the_model(cli, inputs, monkeypatch):
    from sam_mito.models import loading

    monkeypatch.setattr(loading, "load_sam", lambda *a, **k: pytest.fail("the model loaded before the check"))
    monkeypatch.chdir(inputs)
    argv = ["predict", "--model", "facebook/sam-vit-base", "--out", "mask.tif"]
    assert_refused(cli, inputs, [*argv, "--input", "missing.tif"], "missing.tif")
    assert_refused(
        cli, inputs, [*argv, "--input", "stack.tif", "--labels-out", "l.png"], "--labels-out must end in"
    )

"""predict into OME-Zarr: round trip, instance labels, resume after a kill, two processes, bad input."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from sam_mito.cli.main import main
from sam_mito.data.synthetic import synthetic_volume
from sam_mito.defaults import TINY_BASE
from sam_mito.errors import SamMitoError
from sam_mito.inference import volume_prediction as predicting
from sam_mito.inference.postprocessing import PostProcessing
from sam_mito.inference.segmenter import Segmenter
from sam_mito.models.loading import load_sam
from sam_mito.volumes.instances import STRUCTURE
from sam_mito.volumes.reading import open_volume

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack_path(tmp_path_factory):
    images, _ = synthetic_volume((4, 128, 240), seed=5)
    path = tmp_path_factory.mktemp("stack") / "stack.tif"
    tifffile.imwrite(path, images, photometric="minisblack")
    return path


@pytest.fixture(scope="module")
def model():
    """The packaged tiny base: pretrained on shapes, so its masks have structure (random weights fill all)."""
    return TINY_BASE


def _segmenter(model_dir, **kwargs):
    return Segmenter(*load_sam(str(model_dir)), tile=128, overlap=16, **kwargs)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_zarr_mask_equals_the_tiff_one_and_labels_are_its_3d_components(model, stack_path, tmp_path):
    segmenter = _segmenter(model)
    unfiltered = {"post": PostProcessing(threshold=0.45, fill_holes=False, min_size=0)}  # the thresholded map
    tiff = predicting.predict_volume(segmenter, stack_path, tmp_path / "mask.tif", **unfiltered)
    summary = predicting.predict_volume(
        _segmenter(model),
        stack_path,
        tmp_path / "mask.zarr",
        labels_path=tmp_path / "labels.zarr",
        probabilities_path=tmp_path / "probs.zarr",
        **unfiltered,
    )
    mask = open_volume(tmp_path / "mask.zarr")
    assert mask.chunks == (1, 128, 240) and mask.dtype == np.uint8
    assert mask.attrs["multiscales"][0]["datasets"][0]["path"] == "0"
    assert mask.attrs["sam_mito"]["complete"] and mask.attrs["sam_mito"]["mode"] == "tile"
    assert not (tmp_path / "mask.zarr" / predicting.PROGRESS_DIR).exists()
    expected = tifffile.imread(tmp_path / "mask.tif")
    assert np.array_equal(mask.raw(), expected) and 0 < (expected > 0).mean() < 1
    assert summary.slices_predicted == 4 and summary.encoder_passes == tiff.encoder_passes == 4 * 2
    probabilities = open_volume(tmp_path / "probs.zarr").raw()
    assert probabilities.dtype == np.float32 and np.array_equal(probabilities > 0.45, expected > 0)

    labels = open_volume(tmp_path / "labels.zarr")
    assert labels.dtype == np.uint32 and "image-label" in labels.attrs
    ours = labels.raw()
    scipy_labels, count = ndimage.label(expected > 0, structure=STRUCTURE)
    assert summary.instances == count == ours.max() > 1
    assert np.array_equal(ours > 0, expected > 0)
    assert np.unique(np.stack([ours[ours > 0], scipy_labels[ours > 0]]), axis=1).shape[1] == count
    sizes = np.bincount(ours.ravel())[1:]
    assert summary.instance_sizes["p0"] == sizes.min() and summary.instance_sizes["p100"] == sizes.max()


def test_tiff_labels_from_the_cli(model, stack_path, tmp_path, capsys):
    argv = ["predict", "--model", str(model), "--input", str(stack_path), "--tile", "128", "--min-size", "50"]
    assert main([*argv, "--out", str(tmp_path / "m.tif"), "--labels-out", str(tmp_path / "l.tif")]) == 0
    out = capsys.readouterr().out
    labels = tifffile.imread(tmp_path / "l.tif")
    count = ndimage.label(tifffile.imread(tmp_path / "m.tif") > 0, structure=STRUCTURE)[1]
    assert labels.dtype == np.uint32 and labels.shape == (4, 128, 240) and labels.max() == count
    assert f"{count} instances; sizes in voxels: p0 " in out


class _Killed(Exception):
    pass


def test_killed_run_resumes_and_ends_byte_identical(model, stack_path, tmp_path, monkeypatch):
    out, labels = tmp_path / "mask.zarr", tmp_path / "labels.zarr"
    kwargs = {
        "labels_path": labels,
        "probabilities_path": tmp_path / "p.zarr",
        "post": PostProcessing(z_window=1),
    }
    predicting.predict_volume(_segmenter(model), stack_path, out, **kwargs)
    uninterrupted = {name: _tree(tmp_path / name) for name in ("mask.zarr", "labels.zarr", "p.zarr")}
    predicting.predict_volume(_segmenter(model), stack_path, out, overwrite=True, **kwargs)
    assert {name: _tree(tmp_path / name) for name in uninterrupted} == uninterrupted  # deterministic

    killed = _segmenter(model)
    original, calls = killed.probabilities, []

    def dies_on_the_third_slice(image, boxes=None):
        calls.append(1)
        if len(calls) == 3:
            raise _Killed
        return original(image, boxes)

    killed.probabilities = dies_on_the_third_slice
    with pytest.raises(_Killed):
        predicting.predict_volume(killed, stack_path, out, overwrite=True, **kwargs)
    assert sorted(p.name for p in (out / predicting.PROGRESS_DIR).iterdir()) == ["000000", "000001"]
    assert not labels.exists()

    resumed = _segmenter(model)
    summary = predicting.predict_volume(resumed, stack_path, out, **kwargs)
    assert (summary.slices_skipped, summary.slices_predicted) == (2, 2)
    assert resumed.encoder_passes == 2 * 2
    assert {name: _tree(tmp_path / name) for name in uninterrupted} == uninterrupted


def test_finished_or_changed_runs_are_refused_without_overwrite(model, stack_path, tmp_path):
    out = tmp_path / "mask.zarr"
    predicting.predict_volume(_segmenter(model), stack_path, out)
    with pytest.raises(SamMitoError, match="prediction is finished \\(pass --overwrite"):
        predicting.predict_volume(_segmenter(model), stack_path, out)
    (out / predicting.PROGRESS_DIR).mkdir()  # make it look unfinished, then change a setting
    group = predicting.open_image(out)[0]
    group.attrs["sam_mito"] = {**group.attrs["sam_mito"], "complete": False}
    with pytest.raises(SamMitoError, match="started with other settings \\(threshold\\)"):
        predicting.predict_volume(_segmenter(model), stack_path, out, post=PostProcessing(threshold=0.7))
    summary = predicting.predict_volume(
        _segmenter(model), stack_path, out, post=PostProcessing(threshold=0.7), overwrite=True
    )
    assert summary.slices_predicted == 4


def _bad_cases(tmp_path, stack_path):
    import zarr

    from sam_mito.volumes.omezarr import create_image

    create_image(tmp_path / "in.zarr", (2, 64, 64), np.uint8)
    zarr.open_group(str(tmp_path / "group.zarr"), mode="w")
    (tmp_path / "taken.zarr").mkdir()
    (tmp_path / "taken.zarr" / "keep.txt").write_text("not a prediction")
    stack = str(stack_path)
    return {
        "output is input": (
            ["--input", str(tmp_path / "in.zarr"), "--out", "in.zarr"],
            "--out is the same path as --input",
        ),
        "zarr not an image": (
            ["--input", "group.zarr", "--out", "out.zarr"],
            "without OME-Zarr multiscales",
        ),
        "labels is input": (
            ["--input", stack, "--out", "out.zarr", "--labels-out", stack],
            "--labels-out is the same path as --input",
        ),
        "foreign output": (
            ["--input", stack, "--out", "taken.zarr"],
            "--out is a non-empty folder sam-mito did not write",
        ),
        "tiff probabilities": (
            ["--input", stack, "--out", "out.zarr", "--probabilities-out", "p.tif"],
            "--probabilities-out must be .zarr exactly when --out is",
        ),
    }


@pytest.mark.parametrize(
    "case",
    ["output is input", "zarr not an image", "labels is input", "foreign output", "tiff probabilities"],
)
def test_bad_input_is_one_error_line_and_writes_nothing(
    model, stack_path, tmp_path, monkeypatch, capsys, case
):
    argv, message = _bad_cases(tmp_path, stack_path)[case]
    monkeypatch.chdir(tmp_path)
    before = _tree(tmp_path)
    assert main(["predict", "--model", str(model), *argv]) == 2
    error = capsys.readouterr().err
    errors = [line for line in error.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("sam-mito predict: error: ") and message in errors[0], (
        error
    )
    assert _tree(tmp_path) == before and not (tmp_path / "out.zarr").exists()


def test_tiff_output_is_single_process(model, stack_path, tmp_path, monkeypatch):
    monkeypatch.setattr(predicting, "_processes", lambda segmenter: (0, 2, lambda: None))
    with pytest.raises(SamMitoError, match="TIFF output is single-process"):
        predicting.predict_volume(_segmenter(model), stack_path, tmp_path / "m.tif")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_two_processes_write_what_one_process_writes(model, stack_path, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    common = ["-m", "sam_mito", "predict", "--model", str(model), "--input", str(stack_path)]
    common += ["--tile", "128", "--overlap", "16"]
    outputs = {}
    for processes in (1, 2):
        folder = tmp_path / f"p{processes}"
        folder.mkdir()
        launch = [sys.executable, "-m", "accelerate.commands.launch"]
        if processes == 2:
            config = ROOT / "examples" / "accelerate_configs" / "cpu_2proc.yaml"
            launch += ["--config_file", str(config), "--main_process_port", "29531"]
        else:  # as many threads as each launched process gets: float sums then add up in the same order
            launch = [sys.executable]
            env = {**env, "OMP_NUM_THREADS": "1"}
        args = [*common, "--out", "mask.zarr", "--labels-out", "labels.zarr", "--probabilities-out", "p.zarr"]
        args += ["--instances", "watershed"]  # the split, too, is the same for any number of processes
        result = subprocess.run(
            [*launch, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[processes] = {
            name: {k: v for k, v in _tree(folder / name).items() if k != ".zattrs"}
            for name in ("mask.zarr", "labels.zarr", "p.zarr")
        }
        if processes == 2:
            assert "process 1 of 2" in result.stdout and "process 0 of 2" in result.stdout
    assert outputs[1] == outputs[2]


@pytest.mark.slow
def test_sigkilled_run_restarted_with_the_same_command_ends_byte_identical(model, tmp_path):
    import signal
    import time

    images, _ = synthetic_volume((10, 128, 240), seed=6)  # the default z-window of 7 spans most of it
    tifffile.imwrite(tmp_path / "stack.tif", images, photometric="minisblack")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "sam_mito", "predict", "--model", model, "--input", "stack.tif"]
    command += ["--tile", "128", "--out", "mask.zarr", "--labels-out", "labels.zarr", "--overwrite"]
    command += ["--min-size", "200"]
    subprocess.run(command, cwd=tmp_path, env=env, check=True, capture_output=True, timeout=600)
    uninterrupted = {name: _tree(tmp_path / name) for name in ("mask.zarr", "labels.zarr")}

    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    progress = tmp_path / "mask.zarr" / predicting.PROGRESS_DIR
    deadline = time.monotonic() + 300
    while not (progress.is_dir() and len(list(progress.iterdir())) >= 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    done = len(list(progress.iterdir()))
    assert 2 <= done < 10 and not (tmp_path / "labels.zarr").exists()

    resumed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"({done} already complete)" in resumed.stdout
    assert {name: _tree(tmp_path / name) for name in uninterrupted} == uninterrupted

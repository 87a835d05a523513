"""The z-window: it restores flickering objects, streams exactly like the in-memory window, and gives the
same mask whatever the split into processes and however often the run is resumed."""

import os
import shutil
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from sam_mito.data.synthetic import synthetic_volume
from sam_mito.defaults import TINY_BASE
from sam_mito.errors import SamMitoError
from sam_mito.inference import volume_prediction as predicting
from sam_mito.inference.postprocessing import PostProcessing
from sam_mito.inference.zcontext import smooth_slices, window_slices, z_weights
from sam_mito.volumes.instances import STRUCTURE
from sam_mito.volumes.reading import open_volume
from tests._launch import launch
from tests._scripted import Killed, ScriptedSegmenter, index_stack

ROOT = Path(__file__).resolve().parents[2]


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _flickering(depth=9, size=40):
    """A disk the model sees clearly (0.95) in even slices and only faintly (0.3) in odd ones."""
    yy, xx = np.mgrid[:size, :size]
    disk = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < 10**2
    maps = np.zeros((depth, size, size), np.float32)
    maps[:, disk] = np.where(np.arange(depth) % 2 == 0, 0.95, 0.3)[:, None]
    return maps, disk


@pytest.mark.parametrize(("window", "weighting"), [(3, "mean"), (5, "gaussian")])
def test_an_object_present_in_alternate_slices_is_restored_by_the_z_window(tmp_path, window, weighting):
    maps, disk = _flickering()
    tifffile.imwrite(tmp_path / "stack.tif", index_stack(*maps.shape), photometric="minisblack")
    common = {"fill_holes": False, "min_size": 0}

    predicting.predict_volume(
        ScriptedSegmenter(maps),
        tmp_path / "stack.tif",
        tmp_path / "off.tif",
        post=PostProcessing(z_window=1, **common),
    )
    off = tifffile.imread(tmp_path / "off.tif") > 0
    assert [bool(s[disk].all()) for s in off] == [z % 2 == 0 for z in range(9)]  # flickers slice to slice
    assert ndimage.label(off, structure=STRUCTURE)[1] == 5  # five 3D fragments of one object

    summary = predicting.predict_volume(
        ScriptedSegmenter(maps),
        tmp_path / "stack.tif",
        tmp_path / "on.zarr",
        labels_path=tmp_path / "labels.zarr",
        post=PostProcessing(z_window=window, z_weighting=weighting, **common),
    )
    on = open_volume(tmp_path / "on.zarr").raw() > 0
    assert np.array_equal(on, np.broadcast_to(disk, on.shape))  # whole in every slice, nothing else
    assert summary.instances == 1


def test_z_weights_are_flat_or_gaussian_and_only_odd_windows_are_accepted():
    assert np.array_equal(z_weights(5, "mean"), np.ones(5))
    gaussian = z_weights(5, "gaussian")  # standard deviation (5 - 1) / 4 = 1 slice
    np.testing.assert_allclose(gaussian, np.exp(-0.5 * np.array([4, 1, 0, 1, 4])))
    for bad in (0, 2, -3, 4.0, True):
        with pytest.raises(SamMitoError, match="z_window .*expected an odd number of slices"):
            z_weights(bad)
    with pytest.raises(SamMitoError, match="z_weighting 'median'"):
        z_weights(3, "median")


def test_a_range_of_slices_reads_its_halo_clipped_at_the_volume_ends():
    assert window_slices([3, 4], 10, 5) == [1, 2, 3, 4, 5, 6]
    assert window_slices(range(0, 2), 10, 7) == [0, 1, 2, 3, 4]
    assert window_slices([9], 10, 3) == [8, 9]
    assert window_slices([2, 7], 10, 3) == [1, 2, 3, 6, 7, 8]  # a resumed run's gaps
    assert window_slices([4], 10, 1) == [4]


def _in_memory(stack, window, weighting):
    """The z-window over a whole stack at once: weighted sums over the slices that exist, renormalised."""
    weights = z_weights(window, weighting)
    total = ndimage.correlate1d(stack.astype(np.float64), weights, axis=0, mode="constant", cval=0.0)
    norm = ndimage.correlate1d(np.ones(stack.shape[0]), weights, mode="constant", cval=0.0)
    return total / norm[:, None, None]


@pytest.mark.parametrize(
    ("window", "weighting"), [(1, "mean"), (3, "mean"), (5, "gaussian"), (9, "mean"), (7, "gaussian")]
)
def test_streaming_equals_the_whole_stack_at_once_and_holds_only_the_window(window, weighting):
    depth = 8
    stack = np.random.default_rng(window).random((depth, 6, 7)).astype(np.float32)
    alive, read = [], []

    def slices():
        for z in range(depth):
            read.append(z)
            array = stack[z].copy()
            alive.append(weakref.ref(array))
            yield z, array
            del array

    streamed = {}
    for z, smoothed in smooth_slices(slices(), range(depth), depth=depth, window=window, weighting=weighting):
        assert read[-1] == min(z + window // 2, depth - 1)  # yielded as soon as its window is in
        assert sum(ref() is not None for ref in alive) <= window  # earlier slices already let go
        streamed[z] = smoothed.copy()  # (window 1 yields the very maps it was given)
    assert sorted(streamed) == list(range(depth))
    result = np.stack([streamed[z] for z in range(depth)])
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, _in_memory(stack, window, weighting), rtol=0, atol=1e-6)
    if window == 1:
        assert np.array_equal(result, stack)


def test_a_window_missing_a_slice_is_an_error_not_a_guess():
    stack = np.zeros((5, 2, 2), np.float32)
    with pytest.raises(ValueError, match="lacks slices \\[1\\]"):
        list(smooth_slices([(0, stack[0]), (2, stack[2])], [0, 1, 2], depth=5, window=3))


def _random_maps(depth=7, seed=0):
    """Smooth blobs drifting through the stack: thresholds and size filters have real work to do."""
    noise = np.random.default_rng(seed).random((depth, 48, 64))
    return ndimage.gaussian_filter(noise, (1.0, 3.0, 3.0)).astype(np.float32) * 2 - 0.5


def test_a_resumed_run_recomputes_the_window_before_it_and_ends_identical(tmp_path):
    maps = _random_maps()
    tifffile.imwrite(tmp_path / "stack.tif", index_stack(*maps.shape), photometric="minisblack")
    outputs = {"labels_path": tmp_path / "labels.zarr", "probabilities_path": tmp_path / "p.zarr"}
    settings = {"post": PostProcessing(z_window=5, z_weighting="gaussian", min_size=40), **outputs}
    names = ("mask.zarr", "labels.zarr", "p.zarr")
    predicting.predict_volume(
        ScriptedSegmenter(maps), tmp_path / "stack.tif", tmp_path / "mask.zarr", **settings
    )
    uninterrupted = {name: _tree(tmp_path / name) for name in names}
    smoothed = open_volume(tmp_path / "p.zarr").raw()  # the probabilities written are the smoothed ones
    np.testing.assert_allclose(smoothed, _in_memory(maps, 5, "gaussian"), rtol=0, atol=1e-6)

    killed = ScriptedSegmenter(maps, fail_on=6)  # slices 0..4 predicted: 0, 1 and 2 written
    with pytest.raises(Killed):
        predicting.predict_volume(
            killed, tmp_path / "stack.tif", tmp_path / "mask.zarr", overwrite=True, **settings
        )
    progress = tmp_path / "mask.zarr" / predicting.PROGRESS_DIR
    assert sorted(p.name for p in progress.iterdir()) == ["000000", "000001", "000002"]

    resumed = ScriptedSegmenter(maps)
    summary = predicting.predict_volume(resumed, tmp_path / "stack.tif", tmp_path / "mask.zarr", **settings)
    assert resumed.calls == [1, 2, 3, 4, 5, 6]  # slices 3..6, and the two before slice 3 again
    assert (summary.slices_skipped, summary.slices_predicted, summary.halo_slices) == (3, 4, 2)
    assert {name: _tree(tmp_path / name) for name in names} == uninterrupted


def test_processes_predicting_their_ranges_with_halos_write_what_one_process_writes(tmp_path, monkeypatch):
    maps = _random_maps(depth=9, seed=1)
    tifffile.imwrite(tmp_path / "stack.tif", index_stack(*maps.shape), photometric="minisblack")
    settings = {"post": PostProcessing(z_window=5, min_size=40), "labels_path": tmp_path / "labels.zarr"}
    names = ("mask.zarr", "labels.zarr")
    predicting.predict_volume(
        ScriptedSegmenter(maps), tmp_path / "stack.tif", tmp_path / "mask.zarr", **settings
    )
    one = {name: _tree(tmp_path / name) for name in names}
    for name in names:
        shutil.rmtree(tmp_path / name)

    barrier = threading.Barrier(3)
    monkeypatch.setattr(predicting, "_processes", lambda segmenter: (segmenter.rank, 3, barrier.wait))
    segmenters = [ScriptedSegmenter(maps, rank=rank) for rank in range(3)]
    errors = []

    def run(segmenter):
        try:
            predicting.predict_volume(segmenter, tmp_path / "stack.tif", tmp_path / "mask.zarr", **settings)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(s,)) for s in segmenters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert [s.calls for s in segmenters] == [[0, 1, 2, 3, 4], [1, 2, 3, 4, 5, 6, 7], [4, 5, 6, 7, 8]]
    assert {name: _tree(tmp_path / name) for name in names} == one


@pytest.mark.slow
def test_two_accelerate_processes_with_a_z_window_write_what_one_process_writes(tmp_path):
    images, _ = synthetic_volume((6, 128, 160), seed=7)
    tifffile.imwrite(tmp_path / "stack.tif", images, photometric="minisblack")
    script = tmp_path / "predict.py"
    script.write_text(  # one thread in every process: float sums then add up in the same order
        "import sys\nimport torch\ntorch.set_num_threads(1)\nfrom sam_mito.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    names = ("mask.zarr", "labels.zarr", "p.zarr")
    outputs = {}
    for processes in (1, 2):
        folder = tmp_path / f"p{processes}"
        folder.mkdir()
        argv = ["predict", "--model", TINY_BASE, "--input", tmp_path / "stack.tif", "--tile", "128"]
        argv += ["--z-window", "3", "--min-size", "200", "--out", folder / "mask.zarr"]
        argv += ["--labels-out", folder / "labels.zarr", "--probabilities-out", folder / "p.zarr"]
        if processes == 1:
            env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
            command = [sys.executable, str(script), *map(str, argv)]
            result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        else:
            result = launch(script, *argv, processes=2)
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[processes] = {
            name: {k: v for k, v in _tree(folder / name).items() if k != ".zattrs"} for name in names
        }
    assert "(+1 for the z-window)" in result.stdout  # each process predicts one halo slice
    assert outputs[1] == outputs[2]

"""predict's instance labels: components keep touching mitochondria together, watershed splits them."""

import numpy as np
import pytest
import tifffile

from sam_mito.cli.main import main
from sam_mito.defaults import TINY_BASE
from sam_mito.inference import volume_prediction as predicting
from sam_mito.inference.pipeline import segment_volume
from sam_mito.inference.postprocessing import PostProcessing
from sam_mito.volumes.labelling import label_array
from sam_mito.volumes.reading import open_volume
from sam_mito.volumes.volume import Volume
from tests._scripted import ScriptedSegmenter, index_stack


def _touching_spheres(shape=(24, 24, 40)) -> np.ndarray:
    grid = np.indices(shape)
    balls = [
        sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= 64
        for centre in ((12, 12, 12), (12, 12, 26))
    ]
    return balls[0] | balls[1]


def _post(method: str) -> PostProcessing:
    """Keep the scripted mask as it is (no smoothing, filling or size filter); label by ``method``."""
    return PostProcessing(z_window=1, fill_holes=False, min_size=0, instances=method)


@pytest.mark.parametrize(("method", "count"), [("components", 1), ("watershed", 2)])
def test_every_prediction_path_labels_by_the_chosen_method(tmp_path, method, count):
    maps = _touching_spheres().astype(np.float32) * 0.9
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, index_stack(*maps.shape), photometric="minisblack")
    in_memory = segment_volume(ScriptedSegmenter(maps), index_stack(*maps.shape), post=_post(method))
    assert in_memory.summary.instances == count and in_memory.labels.max() == count
    for suffix in (".zarr", ".tif"):
        labels = tmp_path / f"labels-{method}{suffix}"
        summary = predicting.predict_volume(
            ScriptedSegmenter(maps),
            stack,
            tmp_path / f"mask-{method}{suffix}",
            labels_path=labels,
            post=_post(method),
        )
        assert summary.instances == count
        assert np.array_equal(open_volume(labels).raw(), in_memory.labels)
    recorded = open_volume(tmp_path / f"mask-{method}.zarr").attrs["sam_mito"]
    assert recorded["instances"] == method and recorded["seed_height"] == 2.0


def test_watershed_from_the_cli_is_the_library_split_of_its_mask(tmp_path, capsys):
    from sam_mito.data.synthetic import synthetic_volume

    images, _ = synthetic_volume((4, 128, 240), seed=5)
    tifffile.imwrite(tmp_path / "stack.tif", images, photometric="minisblack")
    argv = ["predict", "--model", TINY_BASE, "--input", str(tmp_path / "stack.tif"), "--tile", "128"]
    argv += ["--min-size", "0", "--out", str(tmp_path / "m.tif"), "--labels-out", str(tmp_path / "l.tif")]
    assert main([*argv, "--instances", "watershed", "--seed-height", "1.5"]) == 0
    out = capsys.readouterr().out
    mask = Volume.from_array(tifffile.imread(tmp_path / "m.tif"))
    expected, summary = label_array(mask, method="watershed", seed_height=1.5)
    assert np.array_equal(tifffile.imread(tmp_path / "l.tif"), expected)
    assert (
        f"watershed split {summary['components_split']} of {summary['components']} connected objects" in out
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--instances", "voronoi"], "argument --instances: invalid choice: 'voronoi'"),
        (["--seed-height", "0"], "argument --seed-height: 0: expected a number > 0"),
    ],
)
def test_bad_instance_flags_are_one_error_line(tmp_path, cli, flags, message):
    argv = ["predict", "--model", TINY_BASE, "--input", tmp_path / "x.tif", "--out", tmp_path / "m.tif"]
    status, _, err = cli(*argv, *flags)
    assert status == 2 and message in err and "Traceback" not in err
    assert [line for line in err.splitlines() if "error:" in line] == [err.strip().splitlines()[-1]]
    assert list(tmp_path.iterdir()) == []

"""Touching objects split by the watershed, whatever the blocks; components keep them merged."""

import numpy as np
import pytest
import tifffile

from sam_mito.errors import SamMitoError
from sam_mito.volumes import watershed
from sam_mito.volumes.instances import BlockGrid
from sam_mito.volumes.labelling import label_array, label_mask
from sam_mito.volumes.reading import open_volume
from sam_mito.volumes.volume import Volume
from sam_mito.volumes.watershed import split_component, split_components


def _ball(shape, centre, radius) -> np.ndarray:
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2


def _touching_spheres(shape=(24, 24, 40)) -> np.ndarray:
    """Two balls of radius 8 whose centres are 14 apart: they overlap in a narrow waist."""
    return _ball(shape, (12, 12, 12), 8) | _ball(shape, (12, 12, 26), 8)


def test_two_touching_spheres_are_split_by_watershed_and_merged_by_components():
    mask = Volume.from_array(_touching_spheres().astype(np.uint8) * 255)
    merged, summary = label_array(mask, method="components")
    assert summary["instances"] == 1 and set(np.unique(merged)) == {0, 1}
    split, summary = label_array(mask, method="watershed", seed_height=2)
    assert summary["instances"] == 2 and summary["components"] == 1 and summary["components_split"] == 1
    # each ball's centre is in its own instance, numbered in raster order: the left ball first
    assert split[12, 12, 12] == 1 and split[12, 12, 26] == 2
    assert np.array_equal(split > 0, merged > 0)  # splitting moves no voxel in or out
    sizes = np.bincount(split.ravel())[1:]
    assert abs(int(sizes[0]) - int(sizes[1])) <= sizes.sum() * 0.02  # the cut is at the waist


def test_one_sphere_and_a_sphere_with_a_bump_stay_whole():
    ball = _ball((24, 24, 24), (12, 12, 12), 8)
    bumped = ball | _ball((24, 24, 24), (12, 12, 20), 2)  # a bump on the surface, no waist
    for shape in (ball, bumped):
        labels, n = split_component(shape, seed_height=2)
        assert n == 1 and np.array_equal(labels, shape.astype(np.uint32))


def test_a_higher_seed_height_keeps_a_shallow_waist_whole():
    spheres = _touching_spheres()  # the waist is about 4 voxels below each centre's distance
    assert split_component(spheres, seed_height=2)[1] == 2
    assert split_component(spheres, seed_height=6)[1] == 1


def test_two_dimensional_objects_split_too():
    pair = np.zeros((7, 13), bool)
    pair[1:6, 1:6] = pair[1:6, 7:12] = True
    pair[3, 6] = True  # a one-pixel bridge
    labels, n = split_component(pair, seed_height=1)
    assert n == 2 and labels[3, 3] == 1 and labels[3, 9] == 2 and labels[0, 0] == 0


@pytest.mark.parametrize("block", [(24, 24, 40), (5, 24, 40), (3, 7, 11), (1, 24, 9)])
def test_labels_do_not_depend_on_the_blocks(block):
    shape = (24, 24, 40)
    scene = _touching_spheres(shape) | _ball(shape, (4, 4, 36), 3) | _ball(shape, (20, 20, 36), 3)
    mask = Volume.from_array(scene.astype(np.uint8) * 255)
    reference, _ = label_array(mask, method="watershed")
    out = np.zeros(shape, np.uint32)

    def write(zs, labels):
        assert labels.shape[1:] == shape[1:] and not out[zs].any()  # whole slices, each written once
        out[zs] = labels

    summary = split_components(mask, BlockGrid(shape, block), write, seed_height=2)
    assert np.array_equal(out, reference) and summary["instances"] == 4


def test_the_window_holds_the_slices_of_overlapping_objects_only(monkeypatch):
    """Three objects one above the other: the split never holds more slices than one object spans."""
    shape = (30, 12, 12)
    scene = np.zeros(shape, bool)
    for z0 in (0, 10, 20):
        scene[z0 + 1 : z0 + 9, 2:10, 2:10] = True
    held = []
    real = watershed._Window.extend_to

    def spy(self, z, slabs):
        real(self, z, slabs)
        held.append(self.stop - self.start)

    monkeypatch.setattr(watershed._Window, "extend_to", spy)
    mask = Volume.from_array(scene.astype(np.uint8) * 255)
    split_components(mask, BlockGrid(shape, (1, 12, 12)), lambda zs, labels: None, seed_height=2)
    assert max(held) <= 10  # never the whole 30 slices


def test_an_object_too_large_to_split_is_kept_whole_and_counted(monkeypatch, caplog):
    monkeypatch.setattr(watershed, "MAX_SPLIT_VOXELS", 100)
    labels, summary = label_array(Volume.from_array(_touching_spheres().astype(np.uint8)), method="watershed")
    assert summary["instances"] == 1 and summary["components_too_large"] == 1
    assert "kept whole" in caplog.text


@pytest.mark.parametrize("suffix", [".zarr", ".tif"])
def test_written_labels_equal_the_in_memory_ones(tmp_path, suffix):
    mask = Volume.from_array(_touching_spheres().astype(np.uint8) * 255)
    expected, _ = label_array(mask, method="watershed")
    summary = label_mask(mask, tmp_path / f"labels{suffix}", method="watershed")
    written = open_volume(tmp_path / f"labels{suffix}")
    assert np.array_equal(written.raw(), expected) and summary["instances"] == 2
    if suffix == ".tif":
        assert tifffile.imread(tmp_path / "labels.tif").dtype == np.uint32


def test_an_empty_mask_has_no_instances():
    labels, summary = label_array(Volume.from_array(np.zeros((3, 5, 5), np.uint8)), method="watershed")
    assert summary["instances"] == 0 and not labels.any() and summary["instance_sizes"] == {}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"method": "voronoi"}, r"instances 'voronoi': expected one of \['components', 'watershed'\]"),
        ({"method": "watershed", "seed_height": 0}, r"seed_height 0: expected a number of voxels > 0"),
    ],
)
def test_bad_settings_are_one_clear_error(settings, message):
    with pytest.raises(SamMitoError, match=message):
        label_array(Volume.from_array(np.zeros((2, 4, 4), np.uint8)), **settings)

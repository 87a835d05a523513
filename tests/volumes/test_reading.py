"""Reading EM stacks and slice folders, and normalising images and masks."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from sam_mito.errors import SamMitoError
from sam_mito.volumes.reading import load_pair, open_volume, to_binary_mask
from sam_mito.volumes.volume import Volume


def _write_pair(folder, images, masks, *, compress=None):
    folder.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder / "training.tif", images, compression=compress, photometric="minisblack")
    tifffile.imwrite(
        folder / "training_groundtruth.tif", masks, compression=compress, photometric="minisblack"
    )
    return folder / "training.tif", folder / "training_groundtruth.tif"


@pytest.mark.parametrize("compress", [None, "zlib"])
def test_epfl_tiff_pair_reads_as_uint8_and_binary(tmp_path, compress):
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    masks = np.zeros((3, 4, 5), np.uint8)
    masks[1, 1:3, 2:4] = 255
    image_path, mask_path = _write_pair(tmp_path, images, masks, compress=compress)
    read_images, read_masks, window = load_pair(image_path, mask_path)
    assert window is None  # uint8 is kept as stored
    assert read_images.dtype == np.uint8 and np.array_equal(read_images, images)
    assert set(np.unique(read_masks)) == {0, 1}
    assert read_masks.sum() == 4


def test_slice_folders_match_masks_by_file_name(tmp_path):
    for name, value in [("b.png", 20), ("a.png", 10)]:
        (tmp_path / "img").mkdir(exist_ok=True)
        (tmp_path / "msk").mkdir(exist_ok=True)
        Image.fromarray(np.full((4, 4), value, np.uint8)).save(tmp_path / "img" / name)
        Image.fromarray(np.full((4, 4), 1, np.uint8)).save(tmp_path / "msk" / name)
    images, masks, _ = load_pair(tmp_path / "img", tmp_path / "msk")
    assert images.shape == (2, 4, 4)
    assert images[0, 0, 0] == 10 and images[1, 0, 0] == 20  # sorted by name
    assert masks.min() == 1


def test_slice_folder_with_missing_mask_names_the_image(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "img" / "s01.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "msk" / "other.png")
    with pytest.raises(SamMitoError, match=r"s01\.png: no mask with the same file name"):
        load_pair(tmp_path / "img", tmp_path / "msk")


def test_uint16_and_float_rescale_by_percentiles():
    ramp = np.linspace(0, 60000, 1000, dtype=np.float64).reshape(1, 10, 100)
    for stack in (ramp.astype(np.uint16), ramp.astype(np.float32) / 60000):
        out = Volume.from_array(stack).read()
        assert out.dtype == np.uint8
        assert out.min() == 0 and out.max() == 255
        assert np.all(np.diff(out.ravel().astype(int)) >= 0)  # order preserved


def test_one_window_per_volume_so_every_slice_is_scaled_alike():
    # Slice 0 spans 0..1000, slice 1 only 0..500: per volume, slice 1 stays darker (per slice it
    # would be stretched to the same 0..255).
    stack = np.stack([np.linspace(0, 1000, 400), np.linspace(0, 500, 400)]).reshape(2, 20, 20)
    volume = Volume.from_array(stack.astype(np.uint16))
    first, second = volume.slices({"rule": "volume-percentiles", "percentiles": [0, 100]})
    assert first.max() == 255 and second.max() == 128
    assert volume.intensity_range((0, 100)) == (0.0, 1000.0)


def test_integers_within_0_255_are_cast_not_stretched():
    stack = np.array([[[3, 40], [90, 120]]], dtype=np.uint16)
    assert Volume.from_array(stack).read().tolist() == [[[3, 40], [90, 120]]]


def test_nan_intensities_are_counted_and_named(tmp_path):
    stack = np.ones((2, 4, 4), np.float32)
    stack[1, 0, :3] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", stack, photometric="minisblack")
    with pytest.raises(SamMitoError, match=r"nan\.tif: 3 NaN or infinite pixel value\(s\)"):
        open_volume(tmp_path / "nan.tif").read()


def test_rgb_becomes_grayscale_mean():
    rgb = np.zeros((1, 2, 2, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 30, 60, 90
    assert np.all(Volume.from_array(rgb).read() == 60)


@pytest.mark.parametrize("values", [(0, 1), (0, 255)])
def test_masks_in_0_1_or_0_255_become_0_1(values):
    mask = np.array([[[values[0], values[1]]]], np.uint8)
    assert to_binary_mask(mask).tolist() == [[[0, 1]]]


def test_other_mask_values_are_an_error_unless_thresholded():
    mask = np.array([[[0, 7, 200]]], np.uint8)
    with pytest.raises(SamMitoError, match=r"mask values \{0, 7, 200\}; expected \{0, 1\} or \{0, 255\}"):
        to_binary_mask(mask)
    assert to_binary_mask(mask, threshold=100).tolist() == [[[0, 0, 1]]]


def test_shape_mismatch_names_both_files(tmp_path):
    tifffile.imwrite(tmp_path / "img.tif", np.zeros((3, 4, 4), np.uint8), photometric="minisblack")
    tifffile.imwrite(tmp_path / "msk.tif", np.zeros((2, 4, 4), np.uint8), photometric="minisblack")
    with pytest.raises(
        SamMitoError, match=r"msk\.tif: mask stack shape \(2, 4, 4\) does not match .*img\.tif"
    ):
        load_pair(tmp_path / "img.tif", tmp_path / "msk.tif")


def test_corrupt_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"not a tiff at all")
    with pytest.raises(SamMitoError, match=r"broken\.tif: cannot read image"):
        open_volume(bad)


def test_empty_folder_and_missing_path(tmp_path):
    with pytest.raises(SamMitoError, match="holds no PNG/TIFF slices"):
        open_volume(tmp_path)
    with pytest.raises(SamMitoError, match="no such file or folder"):
        open_volume(tmp_path / "absent.tif")


def test_ome_zarr_round_trip_reads_the_full_resolution_level(tmp_path):
    from sam_mito.volumes.omezarr import create_image

    data = np.arange(3 * 600 * 700, dtype=np.uint32).reshape(3, 600, 700)
    array = create_image(tmp_path / "labels.zarr", data.shape, data.dtype, labels=True)
    array[:] = data
    assert array.chunks == (1, 512, 512)
    volume = open_volume(tmp_path / "labels.zarr")
    assert volume.shape == (3, 600, 700) and volume.chunks == (1, 512, 512)
    assert volume.attrs["image-label"] == {"version": "0.4"}
    assert [a["name"] for a in volume.attrs["multiscales"][0]["axes"]] == ["z", "y", "x"]
    assert np.array_equal(volume.raw(), data)
    assert np.array_equal(volume.block(slice(1, 3), slice(500, 600), slice(5, 9)), data[1:3, 500:600, 5:9])


def test_ngff_05_image_with_a_channel_axis_and_a_pyramid(tmp_path):
    import zarr

    data = np.random.default_rng(0).integers(0, 255, (1, 4, 6, 8), dtype=np.uint8)
    group = zarr.open_group(str(tmp_path / "img.zarr"), mode="w", zarr_format=3)
    group.create_array("s0", shape=data.shape, dtype="uint8", chunks=(1, 1, 6, 8))[:] = data
    group.create_array("s1", shape=(1, 4, 3, 4), dtype="uint8")
    axes = [{"name": "c", "type": "channel"}] + [{"name": n, "type": "space"} for n in "zyx"]
    datasets = [
        {"path": p, "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 1, 1]}]}
        for p in ("s0", "s1")
    ]
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": datasets}]}
    volume = open_volume(tmp_path / "img.zarr")
    assert volume.shape == (4, 6, 8) and not volume.single_image
    assert np.array_equal(volume.read(), data[0])


def test_plain_zarr_arrays_3d_and_2d(tmp_path):
    import zarr

    stack = np.arange(2 * 5 * 7, dtype=np.uint16).reshape(2, 5, 7) * 1000
    zarr.open_array(str(tmp_path / "s.zarr"), mode="w", shape=stack.shape, dtype="uint16")[:] = stack
    volume = open_volume(tmp_path / "s.zarr")
    assert volume.shape == (2, 5, 7) and volume.read().max() == 255  # 16-bit: rescaled like TIFF
    image = zarr.open_array(str(tmp_path / "i.zarr"), mode="w", shape=(5, 7), dtype="uint8")
    image[:] = 9
    single = open_volume(tmp_path / "i.zarr")
    assert single.single_image and single.shape == (1, 5, 7) and single.read()[0, 4, 6] == 9


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p, zarr: zarr.open_group(str(p), mode="w"), "without OME-Zarr multiscales"),
        (
            lambda p, zarr: zarr.open_array(str(p), mode="w", shape=(2, 3, 4, 5), dtype="uint8"),
            "expected an OME-Zarr",
        ),
        (lambda p, zarr: zarr.open_array(str(p), mode="w", shape=(2, 3), dtype="complex64"), "of numbers"),
        (lambda p, zarr: p.mkdir(), "cannot open as zarr"),
    ],
)
def test_zarr_that_is_not_an_image_is_refused(tmp_path, make, message):
    import zarr

    make(tmp_path / "x.zarr", zarr)
    with pytest.raises(SamMitoError, match=message):
        open_volume(tmp_path / "x.zarr")

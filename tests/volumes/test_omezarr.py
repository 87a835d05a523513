"""OME-Zarr voxel sizes: written as the NGFF scale with a unit, read back in nanometres from any NGFF image."""

import math

import numpy as np
import pytest

from sam_mito.errors import SamMitoError
from sam_mito.volumes.omezarr import (
    check_voxel_size,
    create_image,
    image_attrs,
    read_voxel_size,
    set_voxel_size,
    voxel_size_from_attrs,
)
from sam_mito.volumes.reading import open_volume


def test_create_image_writes_the_voxel_size_as_scale_and_nanometer_units(tmp_path):
    array = create_image(tmp_path / "m.zarr", (2, 6, 7), np.uint8, voxel_size=(40, 5, 5))
    array[:] = 1
    multiscale = open_volume(tmp_path / "m.zarr").attrs["multiscales"][0]
    assert multiscale["axes"] == [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"]
    assert multiscale["datasets"][0]["coordinateTransformations"] == [{"type": "scale", "scale": [40, 5, 5]}]
    assert read_voxel_size(tmp_path / "m.zarr") == (40.0, 5.0, 5.0)


def test_without_a_voxel_size_the_scale_is_1_and_the_axes_have_no_unit(tmp_path):
    create_image(tmp_path / "m.zarr", (2, 6, 7), np.uint8)
    multiscale = open_volume(tmp_path / "m.zarr").attrs["multiscales"][0]
    assert all("unit" not in axis for axis in multiscale["axes"])
    assert multiscale["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 1.0, 1.0]
    assert read_voxel_size(tmp_path / "m.zarr") is None


def test_set_voxel_size_keeps_every_other_attribute(tmp_path):
    create_image(
        tmp_path / "l.zarr", (2, 6, 7), np.uint32, labels=True, attrs={"sam_mito": {"complete": True}}
    )
    set_voxel_size(tmp_path / "l.zarr", (5, 5, 5))
    attrs = open_volume(tmp_path / "l.zarr").attrs
    assert attrs["sam_mito"] == {"complete": True} and "image-label" in attrs
    assert attrs["multiscales"][0]["name"] == "l" and read_voxel_size(tmp_path / "l.zarr") == (5, 5, 5)


def _ngff(axes, scale, *, outer=None, key=None):
    multiscale = {
        "axes": axes,
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
    }
    if outer is not None:
        multiscale["coordinateTransformations"] = [{"type": "scale", "scale": outer}]
    return {key: {"multiscales": [multiscale]}} if key else {"multiscales": [multiscale]}


SPACE = [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        (_ngff(SPACE, [0.04, 0.005, 0.005]), (40.0, 5.0, 5.0)),  # micrometres, converted
        (_ngff(SPACE, [0.04, 0.005, 0.005], key="ome"), (40.0, 5.0, 5.0)),  # NGFF 0.5
        (_ngff(SPACE, [1, 1, 1], outer=[0.008, 0.004, 0.004]), (8.0, 4.0, 4.0)),  # the multiscale's own scale too
        (
            _ngff(
                [{"name": "c", "type": "channel"}, *[{"name": a, "type": "space", "unit": "angstrom"} for a in "yx"]],
                [1, 50, 50],
            ),
            (5.0, 5.0),  # a 2D image with a channel axis
        ),
        (image_attrs("x", voxel_size=(5, 5, 5)), (5.0, 5.0, 5.0)),
        (image_attrs("x"), None),  # no unit
        (_ngff([{"name": a, "type": "space", "unit": "parsec"} for a in "zyx"], [1, 1, 1]), None),  # not a length
        (_ngff(SPACE, [0, 1, 1]), None),
        (_ngff(SPACE, [1, 1]), None),  # does not match the axes
        ({}, None),
        ({"multiscales": "nonsense"}, None),
    ],
)  # fmt: skip
def test_voxel_size_from_ngff_attributes(attrs, expected):
    found = voxel_size_from_attrs(attrs)
    assert found == (pytest.approx(expected) if expected is not None else None)


def test_check_voxel_size():
    assert check_voxel_size(5) == (5.0, 5.0, 5.0)
    assert check_voxel_size([40, 5, 5]) == (40.0, 5.0, 5.0)
    assert check_voxel_size(np.array([1, 2, 3])) == (1.0, 2.0, 3.0)
    assert check_voxel_size((40, 5, 4), dimensions=2) == (5.0, 4.0)  # one image: its z dropped
    for bad in (0, -1, (5, 5), (5, 0, 5), (5, math.inf, 5), "5", True, None, (5, "a", 5)):
        with pytest.raises(SamMitoError, match="expected 3 sizes in nanometres"):
            check_voxel_size(bad)


def test_read_voxel_size_of_something_that_is_not_zarr(tmp_path):
    (tmp_path / "x.zarr").mkdir()
    with pytest.raises(SamMitoError, match="cannot open as zarr"):
        read_voxel_size(tmp_path / "x.zarr")

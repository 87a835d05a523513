"""sam-mito measure: per-object volumes, surfaces and shapes of hand-made labels, streamed, in nm, from the CLI."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image
from skimage.measure import marching_cubes, mesh_surface_area

from sam_mito.errors import SamMitoError
from sam_mito.measurement import objects
from sam_mito.measurement.objects import measure
from sam_mito.measurement.outputs import output_paths, write_measurements
from sam_mito.measurement.summary import summarize, summary_text
from sam_mito.volumes.omezarr import create_image


def _ball(shape, centre, radius) -> np.ndarray:
    grid = np.indices(shape)
    return ((grid - np.asarray(centre)[:, None, None, None]) ** 2).sum(0) <= radius**2


def _objects() -> np.ndarray:
    """20x40x44 labels: balls, an ellipsoid through every slice, a label in two parts, one at a corner."""
    labels = np.zeros((20, 40, 44), np.uint32)
    labels[_ball(labels.shape, (10, 12, 12), 6)] = 5
    labels[_ball(labels.shape, (5, 30, 30), 4)] = 2
    grid = np.indices(labels.shape)
    long = ((grid[1] - 28) / 5.0) ** 2 + ((grid[2] - 10) / 4.0) ** 2 <= 1  # a column through all slices
    labels[long] = 9
    labels[_ball(labels.shape, (3, 8, 36), 2)] = 11  # label 11 in two parts, far apart in z
    labels[_ball(labels.shape, (16, 8, 36), 2)] = 11
    labels[:3, :4, -5:] = 70000  # a box at a corner
    return labels


# --- geometry -------------------------------------------------------------------------------------


def test_a_voxelised_ball_has_its_volume_surface_and_sphericity():
    radius = 10
    labels = _ball((30, 30, 30), (15, 15, 15), radius).astype(np.uint16)
    (row,) = measure(labels).to_dict("records")
    assert row["label"] == 1 and row["voxels"] == labels.sum()
    assert abs(row["voxels"] / (4 / 3 * math.pi * radius**3) - 1) < 0.01  # volume within 1%
    # raw marching cubes follows the voxels' staircase: 8-9% above a smooth ball (documented), never below
    excess = row["surface_vx2"] / (4 * math.pi * radius**2) - 1
    assert 0.0 < excess < 0.10, excess
    assert 0.88 < row["sphericity"] < 0.95
    assert row["equivalent_diameter_vx"] == pytest.approx((6 * row["voxels"] / math.pi) ** (1 / 3))
    assert (row["centroid_z"], row["centroid_y"], row["centroid_x"]) == (15, 15, 15)
    assert row["slices"] == 21 and not row["touches_border"]
    # smoothed (sigma 0.7 voxels) the staircase is gone: within 2% and sphericity near 1
    (smooth,) = measure(labels, smoothing=0.7).to_dict("records")
    assert abs(smooth["surface_vx2"] / (4 * math.pi * radius**2) - 1) < 0.02
    assert smooth["sphericity"] == pytest.approx(1.0, abs=0.03)
    assert smooth["voxels"] == row["voxels"]  # smoothing changes the surface only


def test_the_surface_is_marching_cubes_of_the_padded_object_with_the_voxel_spacing():
    labels = _objects()
    table = measure(labels, voxel_size=(10, 5, 4)).set_index("label")
    for label in (2, 5, 9, 11):
        padded = np.pad(labels == label, 1).astype(np.float32)
        vertices, faces, _, _ = marching_cubes(padded, 0.5, spacing=(10, 5, 4))
        assert table.loc[label, "surface_nm2"] == pytest.approx(mesh_surface_area(vertices, faces), rel=1e-9)


def test_a_voxel_size_scales_volumes_surfaces_and_diameters():
    labels = _objects()
    voxels = measure(labels).set_index("label")
    nm = measure(labels, voxel_size=5).set_index("label")
    assert "volume_nm3" not in voxels and "surface_vx2" in voxels and "surface_nm2" not in voxels
    assert (nm["volume_nm3"] == voxels["voxels"] * 125).all()
    assert np.allclose(nm["volume_um3"], voxels["voxels"] * 125 / 1e9)
    assert np.allclose(nm["surface_nm2"], voxels["surface_vx2"] * 25)
    assert np.allclose(nm["equivalent_diameter_nm"], voxels["equivalent_diameter_vx"] * 5)
    assert np.allclose(nm["sphericity"], voxels["sphericity"])  # unitless
    assert list(nm.columns[:6]) == [
        "voxels", "volume_nm3", "volume_um3", "surface_nm2", "equivalent_diameter_nm", "sphericity",
    ]  # fmt: skip
    anisotropic = measure(labels, voxel_size=(40, 5, 5)).set_index("label")
    assert (anisotropic["volume_nm3"] == voxels["voxels"] * 1000).all()


def test_columns_bounding_boxes_centroids_and_the_border():
    labels = _objects()
    table = measure(labels)
    assert list(table.columns) == [
        "label", "voxels", "surface_vx2", "equivalent_diameter_vx", "sphericity",
        "z0", "y0", "x0", "z1", "y1", "x1", "centroid_z", "centroid_y", "centroid_x", "slices",
        "touches_border",
    ]  # fmt: skip
    assert table["label"].tolist() == [2, 5, 9, 11, 70000]  # sorted by label
    rows = table.set_index("label")
    for label, row in rows.iterrows():
        z, y, x = np.nonzero(labels == label)
        assert row["voxels"] == z.size
        assert [row[c] for c in ("z0", "y0", "x0")] == [z.min(), y.min(), x.min()]
        assert [row[c] for c in ("z1", "y1", "x1")] == [z.max() + 1, y.max() + 1, x.max() + 1]
        assert row[["centroid_z", "centroid_y", "centroid_x"]].tolist() == pytest.approx(
            [z.mean(), y.mean(), x.mean()]
        )
        assert row["slices"] == z.max() + 1 - z.min()
        volume, area = row["voxels"], row["surface_vx2"]
        assert row["sphericity"] == pytest.approx(math.pi ** (1 / 3) * (6 * volume) ** (2 / 3) / area)
    assert rows["touches_border"].to_dict() == {2: False, 5: False, 9: True, 11: False, 70000: True}
    assert rows.loc[9, "slices"] == 20  # the column crosses every slice: cut by the top and bottom faces
    # label 11's two parts: one object, its surface the two balls' together
    one_part = measure((_ball(labels.shape, (3, 8, 36), 2)).astype(np.uint8)).iloc[0]
    assert rows.loc[11, "voxels"] == 2 * one_part["voxels"]
    assert rows.loc[11, "surface_vx2"] == pytest.approx(2 * one_part["surface_vx2"])


def test_two_objects_one_touching_the_border():
    labels = np.zeros((12, 14, 16), np.uint8)
    labels[4:8, 5:9, 6:10] = 3  # inside
    labels[0:2, 0:3, 10:16] = 1  # against three faces
    table = measure(labels)
    assert table["label"].tolist() == [1, 3]
    assert table["touches_border"].tolist() == [True, False]
    assert table["voxels"].tolist() == [36, 64]
    inside = table.set_index("label").loc[3]
    assert inside[["z0", "y0", "x0", "z1", "y1", "x1"]].tolist() == [4, 5, 6, 8, 9, 10]
    assert inside[["centroid_z", "centroid_y", "centroid_x"]].tolist() == [5.5, 6.5, 7.5]


def test_mean_intensity_is_the_mean_of_the_image_as_stored_over_each_object():
    labels = _objects()
    image = np.random.default_rng(0).integers(0, 4000, labels.shape).astype(np.uint16)  # 16-bit, not rescaled
    table = measure(labels, image=image).set_index("label")
    for label in table.index:
        assert table.loc[label, "mean_intensity"] == pytest.approx(image[labels == label].mean())
    assert "mean_intensity" not in measure(labels)


# --- streaming ------------------------------------------------------------------------------------


def test_streaming_in_small_slabs_from_a_chunked_zarr_equals_the_array_in_memory(tmp_path, monkeypatch):
    import zarr

    labels = _objects()
    image = np.random.default_rng(1).random(labels.shape).astype(np.float32)
    store = zarr.open_array(str(tmp_path / "labels.zarr"), mode="w", shape=labels.shape, chunks=(3, 16, 16), dtype="uint32")  # fmt: skip
    store[:] = labels
    tifffile.imwrite(tmp_path / "image.tif", image, photometric="minisblack")
    in_memory = measure(labels, image=image, smoothing=0.5)
    monkeypatch.setattr(objects, "COMPACT_ENTRIES", 2)  # merge the slabs' entries again and again
    for slab in (1, 2, 3, 7):
        streamed = measure(tmp_path / "labels.zarr", image=tmp_path / "image.tif", smoothing=0.5, slab=slab)
        pd.testing.assert_frame_equal(streamed, in_memory, check_exact=False, rtol=1e-12)
    # the default slab: about SLAB_VOXELS voxels of whole slices, a multiple of the chunks' depth
    monkeypatch.setattr(objects, "SLAB_VOXELS", 40 * 44 * 5)
    from sam_mito.volumes.reading import open_volume

    assert objects.slab_depth(open_volume(tmp_path / "labels.zarr")) == 3
    pd.testing.assert_frame_equal(measure(tmp_path / "labels.zarr", image=tmp_path / "image.tif", smoothing=0.5), in_memory)  # fmt: skip


def test_a_tiff_stack_and_a_slice_folder_read_like_the_array(tmp_path):
    labels = _objects().astype(np.uint16)
    tifffile.imwrite(tmp_path / "labels.tif", labels, photometric="minisblack")
    (tmp_path / "slices").mkdir()
    for z, page in enumerate(labels):
        tifffile.imwrite(tmp_path / "slices" / f"z{z:03d}.tif", page)
    expected = measure(labels)
    pd.testing.assert_frame_equal(measure(tmp_path / "labels.tif", slab=4), expected)
    pd.testing.assert_frame_equal(measure(tmp_path / "slices"), expected)


# --- 2D, empty, summary ---------------------------------------------------------------------------


def test_a_single_image_is_measured_in_2d():
    radius = 10
    labels = np.zeros((40, 50), np.uint32)
    labels[_ball((40, 50, 1), (20, 25, 0), radius)[..., 0]] = 4
    labels[0:3, 0:6] = 8
    table = measure(labels, voxel_size=(3, 2, 2), image=np.full(labels.shape, 7.0))
    assert list(table.columns) == [
        "label", "pixels", "area_nm2", "area_um2", "perimeter_nm", "equivalent_diameter_nm", "circularity",
        "y0", "x0", "y1", "x1", "centroid_z", "centroid_y", "centroid_x", "touches_border", "mean_intensity",
    ]  # fmt: skip
    disk = table.set_index("label").loc[4]
    assert abs(disk["pixels"] / (math.pi * radius**2) - 1) < 0.01
    assert disk["area_nm2"] == disk["pixels"] * 4  # (y, x) of (z, y, x): the z of one image is ignored
    excess = disk["perimeter_nm"] / (2 * math.pi * radius * 2) - 1  # marching squares: a staircase too
    assert 0 < excess < 0.10, excess  # +9.5% for this integer-centred disk, +4% for others
    assert disk["circularity"] == pytest.approx(4 * math.pi * disk["area_nm2"] / disk["perimeter_nm"] ** 2)
    assert 0.8 < disk["circularity"] < 1
    assert (disk["centroid_z"], disk["centroid_y"], disk["centroid_x"]) == (0, 20, 25)
    assert table["touches_border"].tolist() == [False, True]
    assert table.attrs["measurement"]["dimensions"] == 2
    assert table.attrs["measurement"]["shape"] == [40, 50]
    unknown = measure(labels[None])  # a one-slice stack is an image too
    assert {"pixels", "perimeter_px", "equivalent_diameter_px"} <= set(unknown.columns)


def test_no_objects_is_an_empty_table_and_a_summary_without_means():
    table = measure(np.zeros((3, 8, 8), np.uint32), voxel_size=5)
    assert len(table) == 0 and "volume_um3" in table.columns and "sphericity" in table.columns
    summary = summarize(table)
    assert summary["objects"] == 0 and summary["volume_fraction"] == 0
    assert summary["mean_voxels"] is None and summary["median_volume_um3"] is None
    assert summary["objects_per_um3"] == 0
    assert "0 objects" in summary_text(summary)


def test_the_summary_by_hand():
    labels = np.zeros((10, 10, 10), np.uint16)
    labels[4:6, 4:6, 4:6] = 1  # 8 voxels, inside
    labels[0:3, 0:3, 0:3] = 2  # 27 voxels, at a corner
    labels[7:8, 7:9, 7:9] = 3  # 4 voxels
    summary = summarize(measure(labels, voxel_size=(5, 5, 5)))
    assert summary["objects"] == 3 and summary["objects_touching_border"] == 1
    assert summary["object_voxels"] == 39 and summary["volume_fraction"] == pytest.approx(39 / 1000)
    assert summary["mean_voxels"] == pytest.approx(13) and summary["median_voxels"] == 8
    assert summary["mean_volume_um3"] == pytest.approx(13 * 125 / 1e9)
    assert summary["median_volume_um3"] == pytest.approx(8 * 125 / 1e9)
    assert summary["imaged_volume_um3"] == pytest.approx(1000 * 125 / 1e9)
    assert summary["objects_per_um3"] == pytest.approx(3 / (1000 * 125 / 1e9))
    assert summary["voxel_size_nm"] == [5, 5, 5] and summary["voxel_size_from"] == "argument"
    json.dumps(summary)  # plain JSON values
    text = summary_text(summary)
    assert "3 objects" in text and "1 touching the border" in text and "objects per um^3" in text


def test_a_binary_mask_is_one_object_with_a_warning():
    mask = np.zeros((4, 10, 10), np.uint8)
    mask[1:3, 1:3, 1:3] = 255
    mask[1:3, 6:8, 6:8] = 255
    summary = summarize(measure(mask))
    assert summary["objects"] == 1 and "binary mask" in summary["warnings"][0]


@pytest.mark.parametrize(
    ("labels", "kwargs", "message"),
    [
        (np.zeros((2, 4, 4), np.float32), {}, "labels of dtype float32; expected integer instance labels"),
        (np.zeros((2, 4, 4), bool), {}, "label a binary mask first"),
        (np.zeros((2, 4, 4), np.uint8), {"image": np.zeros((2, 4, 5))}, "expected the labels' shape"),
        (np.zeros((2, 4, 4), np.uint8), {"voxel_size": (0, 5, 5)}, "voxel_size"),
        (np.zeros((2, 4, 4), np.uint8), {"voxel_size": (5, 5)}, "expected 3 sizes"),
        (np.zeros((2, 4, 4), np.uint8), {"smoothing": -1}, "smoothing"),
        (np.zeros((2, 4, 4), np.uint8), {"slab": 0}, "slab"),
        (np.full((2, 4, 4), -3, np.int16), {}, "label -3 below 0"),
        (np.zeros((2, 2, 4, 4), np.uint8), {}, "expected (Y, X) or (Z, Y, X)"),
    ],
)
def test_bad_input_is_one_clear_error(labels, kwargs, message):
    with pytest.raises(SamMitoError, match=message.replace("(", r"\(").replace(")", r"\)")):
        measure(labels, **kwargs)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(SamMitoError, match="nope.tif: no such file"):
        measure(tmp_path / "nope.tif")


# --- voxel size from OME-Zarr, files ---------------------------------------------------------------


def test_the_voxel_size_is_read_from_an_ome_zarr_labels_image(tmp_path):
    labels = _objects()
    array = create_image(tmp_path / "labels.zarr", labels.shape, np.uint32, labels=True, voxel_size=(8, 4, 4))
    array[:] = labels
    table = measure(tmp_path / "labels.zarr")
    assert table.attrs["measurement"]["voxel_size_nm"] == [8, 4, 4]
    assert table.attrs["measurement"]["voxel_size_from"] == "labels metadata"
    assert (table["volume_nm3"] == table["voxels"] * 128).all()
    given = measure(tmp_path / "labels.zarr", voxel_size=2)  # an explicit size wins
    assert (given["volume_nm3"] == given["voxels"] * 8).all()
    plain = create_image(tmp_path / "plain.zarr", labels.shape, np.uint32, labels=True)  # scale 1, no unit
    plain[:] = labels
    assert "volume_nm3" not in measure(tmp_path / "plain.zarr")


def test_write_measurements_writes_the_table_summary_and_figure(tmp_path):
    table = measure(_objects(), voxel_size=5)
    paths = write_measurements(table, tmp_path / "objects.parquet")
    assert paths == output_paths(tmp_path / "objects.parquet")
    assert paths["summary"].name == "objects.summary.json" and paths["figure"].name == "objects.png"
    pd.testing.assert_frame_equal(pd.read_parquet(paths["table"]), table)
    assert json.loads(paths["summary"].read_text()) == summarize(table)
    with Image.open(paths["figure"]) as figure:
        assert figure.format == "PNG" and figure.size[0] > 2 * figure.size[1] > 400
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "objects.parquet",
        "objects.png",
        "objects.summary.json",
    ]
    with pytest.raises(SamMitoError, match="must end in .csv or .parquet"):
        write_measurements(table, tmp_path / "objects.xlsx")


# --- the command line -----------------------------------------------------------------------------


@pytest.fixture
def inputs(tmp_path):
    labels = _objects()
    array = create_image(tmp_path / "labels.zarr", labels.shape, np.uint32, labels=True, voxel_size=(5, 5, 5))
    array[:] = labels
    tifffile.imwrite(tmp_path / "labels.tif", labels, photometric="minisblack")
    image = np.random.default_rng(2).integers(0, 256, labels.shape, dtype=np.uint8)
    tifffile.imwrite(tmp_path / "image.tif", image, photometric="minisblack")
    tifffile.imwrite(tmp_path / "float.tif", labels.astype(np.float32), photometric="minisblack")
    tifffile.imwrite(tmp_path / "small.tif", image[:, :10], photometric="minisblack")
    Image.fromarray(image[0]).save(tmp_path / "t.png")
    return tmp_path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_the_cli_writes_the_table_summary_and_figure_and_prints_the_summary(cli, inputs, suffix):
    out = inputs / "out" / f"objects{suffix}"
    out.parent.mkdir()
    status, printed, err = cli("measure", "--labels", inputs / "labels.zarr", "--image", inputs / "image.tif", "--out", out)  # fmt: skip
    assert status == 0, err
    expected = measure(inputs / "labels.zarr", image=inputs / "image.tif")
    written = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    pd.testing.assert_frame_equal(written, expected, check_exact=False, rtol=1e-12)
    summary = json.loads((inputs / "out" / "objects.summary.json").read_text())
    assert summary == summarize(expected) and summary["voxel_size_from"] == "labels metadata"
    assert (inputs / "out" / "objects.png").exists()
    assert summary_text(summary) in printed and "voxel size 5 x 5 x 5 nm" in printed
    assert f"wrote {out}" in printed
    # again, with a voxel size given and another smoothing: the files are replaced
    status, printed, err = cli(
        "measure", "--labels", inputs / "labels.tif", "--voxel-size", "40", "5", "5", "--out", out,
        "--surface-smoothing", "0.7",
    )  # fmt: skip
    assert status == 0, err
    summary = json.loads((inputs / "out" / "objects.summary.json").read_text())
    assert summary["voxel_size_nm"] == [40, 5, 5] and summary["surface_smoothing"] == 0.7
    assert summary["image"] is None


def _tree(root):
    return {
        p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


MEASURE_CASES = {
    "missing labels": (["--labels", "nope.tif", "--out", "t.csv"], ["nope.tif", "no such file"]),
    "labels not integer": (["--labels", "float.tif", "--out", "t.csv"], ["float.tif", "float32", "integer"]),
    "image of another shape": (
        ["--labels", "labels.tif", "--image", "small.tif", "--out", "t.csv"],
        ["small.tif", "(20, 10, 44)", "expected the labels' shape (20, 40, 44)"],
    ),
    "bad --out suffix": (["--labels", "labels.tif", "--out", "t.xlsx"], ["t.xlsx", "--out must end in .csv or .parquet"]),
    "--out's figure would replace the image": (
        ["--labels", "labels.tif", "--image", "t.png", "--out", "t.csv"],
        ["--out's figure is the same path as --image"],
    ),
    "--out would overwrite the labels": (["--labels", "float.tif", "--out", "labels.zarr"], ["--out must end in"]),
    "--out inside the labels": (
        ["--labels", "labels.zarr", "--out", "labels.zarr/t.csv"],
        ["--out lies inside the --labels folder"],
    ),
    "--out's folder is missing": (["--labels", "labels.tif", "--out", "missing/t.csv"], ["--out's folder", "does not exist"]),
    "voxel size not positive": (
        ["--labels", "labels.tif", "--voxel-size", "0", "5", "5", "--out", "t.csv"],
        ["--voxel-size", "expected a number > 0"],
    ),
    "two voxel sizes": (["--labels", "labels.tif", "--voxel-size", "5", "5", "--out", "t.csv"], ["--voxel-size"]),
}  # fmt: skip


@pytest.mark.parametrize("case", MEASURE_CASES)
def test_bad_cli_input_is_one_error_line_exit_2_and_nothing_written(cli, inputs, case, monkeypatch):
    argv, needles = MEASURE_CASES[case]
    monkeypatch.chdir(inputs)
    before = _tree(inputs)
    status, _, err = cli("measure", *argv)
    errors = [line for line in err.splitlines() if "error:" in line]
    assert status == 2, err
    assert len(errors) == 1 and "Traceback" not in err, err
    assert all(needle in errors[0] for needle in needles), (needles, errors[0])
    assert _tree(inputs) == before


def test_measure_help_imports_nothing_heavy():
    import subprocess
    import sys

    code = (
        "import sys\nfrom sam_mito.cli.main import main\ntry:\n    main(['measure', '--help'])\n"
        "except SystemExit:\n    pass\nprint(sorted(m for m in ('numpy', 'pandas', 'skimage', 'torch') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--voxel-size NM NM NM" in run.stdout and run.stdout.strip().splitlines()[-1] == "[]"


def test_the_figure_draws_a_bin_of_one_beside_a_bin_of_thousands():
    from sam_mito.measurement.figures import measurement_figure

    table = pd.DataFrame({"voxels": [10] * 5000 + [5000], "sphericity": [0.8] * 5000 + [0.3]})
    figure = measurement_figure(table, title="many")
    assert figure.size == (920, 350)
    empty = measurement_figure(pd.DataFrame({"pixels": [], "circularity": []}))
    assert empty.size == (920, 320)

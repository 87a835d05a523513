"""Open sam-mito's outputs in napari: OME-Zarr masks, labels and probabilities, and TIFF stacks.

napari asks :func:`get_reader` for every path it opens with this plugin (``napari --plugin sam-mito
PATH``, ``viewer.open(PATH, plugin="sam-mito")``, or the choice napari offers when several readers
can open a path). What it opens, and as which layer:

- **an OME-Zarr output of** ``sam-mito predict`` (a zarr group with NGFF ``multiscales`` that
  sam-mito wrote: its ``sam_mito`` run record or its marker file): instance labels (marked
  ``image-label``) and the 0/255 mask as a labels layer, the probabilities as an image with the
  ``magma`` colormap, contrast 0..1 (0..255 for 8-bit probabilities), blended additively over the
  EM image. The array is read lazily, one slice at a time, and scaled (and translated) by the NGFF
  ``coordinateTransformations``. Any other folder, or a zarr that sam-mito did not write, is left
  to other readers (:func:`get_reader` returns None).
- **a grayscale TIFF image or stack** (2D or 3D): ``uint32`` (or any integer wider than 16 bits) as
  instance labels, ``uint8`` with only 0/255 (or 0/1) as a mask (a labels layer), floats within
  0..1 as probabilities, anything else (the EM input) as a grayscale image. The file is loaded
  whole.

Each layer is visible and named after its file (``test-labels.zarr`` -> ``test-labels``); its
``metadata["sam_mito"]`` holds the run record of a zarr output. Reading writes nothing, anywhere:
zarr stores are opened read-only, and no folder above them is probed.

The plugin needs the ``napari`` extra: ``pip install "sam-mito[napari]"``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from sam_mito.files import written_by_sam_mito

#: What a reader returns: napari's layer data tuples ``(data, keyword arguments, layer type)``.
LayerData = tuple[object, dict, str]

TIFF_SUFFIXES = (".tif", ".tiff")
#: How probabilities are shown: a perceptual colormap, added onto the EM image beneath.
PROBABILITY_COLORMAP = "magma"
#: The files that make a folder a zarr group (format 2, format 3).
ZARR_METADATA = (".zgroup", ".zattrs", "zarr.json")


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """napari's reader hook: :func:`read` if ``path`` (every path of a list) is a sam-mito output or a
    grayscale TIFF, else None."""
    paths = path if isinstance(path, list) else [path]
    if not paths or any(_kind(Path(p)) is None for p in paths):
        return None
    return read


def read(path: str | list[str]) -> list[LayerData]:
    """The layers of one path or several: see the module docstring."""
    paths = path if isinstance(path, list) else [path]
    layers = []
    for item in paths:
        item = Path(item)
        layers.append(_read_zarr(item) if _kind(item) == "zarr" else _read_tiff(item))
    return layers


def _kind(path: Path) -> str | None:
    """``zarr`` for an OME-Zarr image sam-mito wrote, ``tiff`` for a 2D/3D grayscale TIFF, else None."""
    if path.is_dir():
        attrs = _zarr_attrs(path)
        if attrs is None or _multiscales(attrs) is None:
            return None
        return "zarr" if "sam_mito" in attrs or written_by_sam_mito(path) else None
    if path.suffix.lower() in TIFF_SUFFIXES and path.is_file():
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                gray = "S" not in series.axes and len(series.shape) in (2, 3)
        except (OSError, IndexError, ValueError, tifffile.TiffFileError):
            return None
        return "tiff" if gray else None
    return None


def _zarr_attrs(path: Path) -> dict | None:
    """The attributes of the zarr group at ``path``, opened read-only; None if it is no zarr group."""
    if not any((path / name).is_file() for name in ZARR_METADATA):
        return None
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return dict(group.attrs)


def _multiscales(attrs: dict) -> dict | None:
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if not multiscales or not multiscales[0].get("datasets"):
        return None
    return multiscales[0]


def _read_zarr(path: Path) -> LayerData:
    import zarr

    group = zarr.open_group(str(path), mode="r")
    attrs = dict(group.attrs)
    multiscales = _multiscales(attrs)
    levels = [group[dataset["path"]] for dataset in multiscales["datasets"]]
    scale, translate = _transform(multiscales, levels[0].ndim)
    kwargs = {
        "name": _name(path),
        "visible": True,
        "scale": scale,
        "translate": translate,
        "multiscale": len(levels) > 1,
        "metadata": {"sam_mito": attrs.get("sam_mito"), "source": str(path)},
    }
    data = levels if len(levels) > 1 else levels[0]
    dtype = levels[0].dtype
    if "image-label" in attrs:
        return data, kwargs, "labels"
    if dtype.kind == "f" or _written_as_probabilities(path, attrs.get("sam_mito")):
        return data, {**kwargs, **_probability_display(1.0 if dtype.kind == "f" else 255.0)}, "image"
    return data, kwargs, "labels"  # the 0/255 mask


def _written_as_probabilities(path: Path, record) -> bool:
    """Whether the run record names ``path`` as one of its outputs other than the mask (the first):
    the probabilities, the only other output that carries the record."""
    outputs = record.get("outputs") if isinstance(record, dict) else None
    return bool(outputs) and str(path.resolve()) in outputs[1:]


def _transform(multiscales: dict, ndim: int) -> tuple[list[float], list[float]]:
    """Scale and translation of the first level: its own transformations, then the multiscale's."""
    scale, translate = np.ones(ndim), np.zeros(ndim)
    for transforms in (
        multiscales["datasets"][0].get("coordinateTransformations", []),
        multiscales.get("coordinateTransformations", []),
    ):
        for transform in transforms:
            if transform.get("type") == "scale" and len(transform.get("scale", [])) == ndim:
                factor = np.asarray(transform["scale"], dtype=float)
                scale, translate = scale * factor, translate * factor
            elif transform.get("type") == "translation" and len(transform.get("translation", [])) == ndim:
                translate = translate + np.asarray(transform["translation"], dtype=float)
    return scale.tolist(), translate.tolist()


def _read_tiff(path: Path) -> LayerData:
    import tifffile

    data = tifffile.imread(path)
    kwargs = {"name": _name(path), "visible": True, "metadata": {"source": str(path)}}
    dtype = data.dtype
    if dtype.kind == "b" or (dtype.kind in "iu" and dtype.itemsize > 2):
        return data, kwargs, "labels"
    if dtype == np.uint8 and _binary(data):
        return data, kwargs, "labels"
    if dtype.kind == "f" and data.size and np.isfinite(data).all() and data.min() >= 0 and data.max() <= 1:
        return data, {**kwargs, **_probability_display(1.0)}, "image"
    return data, {**kwargs, "colormap": "gray"}, "image"


def _binary(data: np.ndarray) -> bool:
    """Whether ``uint8`` ``data`` holds only 0 and 255, or only 0 and 1 (a mask)."""
    present = set(np.flatnonzero(np.bincount(data.ravel(), minlength=256)).tolist())
    return present <= {0, 255} or present <= {0, 1}


def _probability_display(top: float) -> dict:
    return {"colormap": PROBABILITY_COLORMAP, "contrast_limits": [0.0, top], "blending": "additive"}


def _name(path: Path) -> str:
    """The layer name: the file or folder name without its suffix (``test-labels.zarr`` -> ``test-labels``)."""
    name = path.name
    for suffix in (".zarr", *TIFF_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name

"""What a measurement table says about the whole volume: counts, volume fraction, sizes, density."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sam_mito.errors import SamMitoError
from sam_mito.measurement.objects import ATTRS_KEY


def _number(value) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    value = float(value)
    return value if math.isfinite(value) else None


def summarize(table: pd.DataFrame) -> dict:
    """The summary of a table :func:`sam_mito.measurement.objects.measure` returned.

    Parameters
    ----------
    table : pandas.DataFrame
        Its ``attrs["measurement"]`` (shape, dimensions, voxel size) is read.

    Returns
    -------
    dict
        ``labels``, ``image``, ``shape``, ``dimensions``, ``voxel_size_nm``, ``voxel_size_from``,
        ``surface_smoothing``; ``objects``, ``objects_touching_border``; ``object_voxels`` and
        ``volume_fraction`` (object voxels / all voxels); ``mean_voxels`` and ``median_voxels``;
        with a voxel size also ``mean_volume_um3``, ``median_volume_um3``, ``imaged_volume_um3``
        and ``objects_per_um3``; ``median_sphericity``; ``warnings``. For one slice (2D) the same
        with pixels, areas (``um2``) and circularity: ``object_pixels``, ``area_fraction``,
        ``mean_pixels``, ``median_pixels``, ``mean_area_um2``, ``median_area_um2``,
        ``imaged_area_um2``, ``objects_per_um2``, ``median_circularity``. Means and medians of
        no objects are None.
    """
    info = table.attrs.get(ATTRS_KEY)
    if info is None:
        raise SamMitoError(f"table has no attrs[{ATTRS_KEY!r}]; expected a table measure() returned")
    flat = info["dimensions"] == 2
    count, fraction, measure_unit, shape_column = (
        ("pixels", "area_fraction", "area_um2", "circularity")
        if flat
        else ("voxels", "volume_fraction", "volume_um3", "sphericity")
    )
    total = math.prod(info["shape"])
    counts = table[count].to_numpy(np.float64) if len(table) else np.zeros(0)
    summary = {
        "labels": info["labels"],
        "image": info["image"],
        "shape": list(info["shape"]),
        "dimensions": info["dimensions"],
        "voxel_size_nm": info["voxel_size_nm"],
        "voxel_size_from": info["voxel_size_from"],
        "surface_smoothing": info["surface_smoothing"],
        "objects": len(table),
        "objects_touching_border": int(table["touches_border"].sum()) if len(table) else 0,
        f"object_{count}": int(counts.sum()),
        fraction: float(counts.sum() / total),
        f"mean_{count}": _number(counts.mean()) if len(table) else None,
        f"median_{count}": _number(np.median(counts)) if len(table) else None,
    }
    sizes = info["voxel_size_nm"]
    if sizes is not None:
        values = table[measure_unit].to_numpy(np.float64) if len(table) else np.zeros(0)
        imaged = total * math.prod(sizes) / (1e6 if flat else 1e9)
        per = "um2" if flat else "um3"
        summary[f"mean_{measure_unit}"] = _number(values.mean()) if len(table) else None
        summary[f"median_{measure_unit}"] = _number(np.median(values)) if len(table) else None
        summary[f"imaged_{'area' if flat else 'volume'}_{per}"] = float(imaged)
        summary[f"objects_per_{per}"] = float(len(table) / imaged)
    shapes = table[shape_column].dropna().to_numpy(np.float64) if len(table) else np.zeros(0)
    summary[f"median_{shape_column}"] = _number(np.median(shapes)) if shapes.size else None
    summary["warnings"] = list(info.get("warnings", []))
    return summary


def _format(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def summary_text(summary: dict) -> str:
    """The summary as a few lines of text, as ``sam-mito measure`` prints it."""
    flat = summary["dimensions"] == 2
    shape = "x".join(str(n) for n in summary["shape"])
    sizes = summary["voxel_size_nm"]
    size = (
        f"{'pixel' if flat else 'voxel'} size {' x '.join(f'{v:g}' for v in sizes)} nm"
        if sizes is not None
        else f"{'pixel' if flat else 'voxel'} size unknown: sizes in {'pixels' if flat else 'voxels'}"
    )
    lines = [
        f"{summary['objects']} objects in {summary['labels']} ({shape}, {size}); "
        f"{summary['objects_touching_border']} touching the border (cut: not whole)"
    ]
    if flat:
        parts = [
            f"area fraction {_format(summary['area_fraction'])}",
            f"area mean {_format(summary['mean_pixels'])} px, median {_format(summary['median_pixels'])} px",
        ]
        if sizes is not None:
            parts.append(
                f"mean {_format(summary['mean_area_um2'])} um^2, median {_format(summary['median_area_um2'])} "
                f"um^2, {_format(summary['objects_per_um2'])} objects per um^2"
            )
        parts.append(f"median circularity {_format(summary['median_circularity'], 3)}")
    else:
        parts = [
            f"volume fraction {_format(summary['volume_fraction'])}",
            f"volume mean {_format(summary['mean_voxels'])} voxels, median {_format(summary['median_voxels'])} "
            "voxels",
        ]
        if sizes is not None:
            parts.append(
                f"mean {_format(summary['mean_volume_um3'])} um^3, median "
                f"{_format(summary['median_volume_um3'])} um^3, {_format(summary['objects_per_um3'])} "
                "objects per um^3"
            )
        parts.append(f"median sphericity {_format(summary['median_sphericity'], 3)}")
    lines += parts
    lines += [f"warning: {warning}" for warning in summary["warnings"]]
    return "\n".join(lines)

"""The files of a measurement: the table (CSV or parquet), its summary (JSON) and its figure (PNG), side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from sam_mito.errors import SamMitoError
from sam_mito.files import atomic_file, check_output_file
from sam_mito.measurement.figures import measurement_figure
from sam_mito.measurement.summary import summarize

#: The table formats, by the suffix of the table's path.
TABLE_SUFFIXES = (".csv", ".parquet")


def output_paths(table_path: str | Path) -> dict[str, Path]:
    """Where a measurement's files go: ``table.csv`` -> ``table.summary.json`` and ``table.png`` beside it."""
    table = Path(table_path)
    return {
        "table": table,
        "summary": table.with_suffix(".summary.json"),
        "figure": table.with_suffix(".png"),
    }


def check_table_path(table_path: str | Path, *, name: str = "out") -> dict[str, Path]:
    """Refuse a table path sam-mito cannot write (suffix, folder) before any work; returns :func:`output_paths`.

    Parameters
    ----------
    table_path : str or Path
        ``.csv`` or ``.parquet``.
    name : str, keyword-only
        What the caller calls it (``--out`` on the command line), repeated in the error.
    """
    suffix = Path(table_path).suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise SamMitoError(
            f"{table_path}: {name} must end in {' or '.join(TABLE_SUFFIXES)}; "
            f"{suffix or 'no suffix'} is not a table format sam-mito writes"
        )
    paths = output_paths(table_path)
    for path in paths.values():
        check_output_file(path, name=name)
    return paths


def write_measurements(
    table: pd.DataFrame, table_path: str | Path, *, summary: dict | None = None
) -> dict[str, Path]:
    """Write the table, its summary and its figure, each atomically (replacing earlier ones).

    Parameters
    ----------
    table : pandas.DataFrame
        What :func:`sam_mito.measurement.objects.measure` returned.
    table_path : str or Path
        ``.csv`` or ``.parquet``; the summary (``<stem>.summary.json``) and the figure
        (``<stem>.png``) go beside it.
    summary : dict, keyword-only
        The summary to write (default: :func:`sam_mito.measurement.summary.summarize` of ``table``).

    Returns
    -------
    dict of str to Path
        ``table``, ``summary`` and ``figure``.
    """
    paths = check_table_path(table_path, name="table_path")
    summary = summarize(table) if summary is None else summary
    with atomic_file(paths["table"]) as partial:
        if paths["table"].suffix.lower() == ".parquet":
            table.to_parquet(partial, index=False)
        else:
            table.to_csv(partial, index=False)
    with atomic_file(paths["summary"]) as partial:
        partial.write_text(json.dumps(summary, indent=2) + "\n")
    title = f"{summary['objects']} objects in {Path(summary['labels']).name}"
    with atomic_file(paths["figure"]) as partial:
        measurement_figure(table, title=title).save(partial, format="PNG")
    return paths

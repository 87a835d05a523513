"""Write files and folders so that a failure, or a kill, never leaves half-written output."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import SamMitoError


def check_output_dir(out_dir: str | Path, *, overwrite: bool) -> Path:
    """Refuse a non-empty existing ``out_dir`` unless ``overwrite``; call before any long work.

    Parameters
    ----------
    out_dir : str or Path
        The folder about to be written.
    overwrite : bool, keyword-only
        Whether an existing non-empty folder may be replaced.

    Returns
    -------
    Path
        ``out_dir`` as a path.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise SamMitoError(
            f"{out_dir}: output folder exists and is not empty (pass --overwrite to replace it)"
        )
    return out_dir


@contextlib.contextmanager
def atomic_directory(out_dir: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``out_dir`` that becomes ``out_dir`` only if the block succeeds.

    A failure inside the block removes the temporary folder and leaves ``out_dir`` untouched.

    Parameters
    ----------
    out_dir : str or Path
        The final folder.
    overwrite : bool, keyword-only
        Replace an existing non-empty ``out_dir`` (checked before the block runs).

    Yields
    ------
    Path
        The staging folder to fill.
    """
    out_dir = check_output_dir(out_dir, overwrite=overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out_dir.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.replace(out_dir, retired / out_dir.name)
        shutil.rmtree(retired, ignore_errors=True)
    os.replace(staging, out_dir)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` that is renamed to ``path`` only if the block succeeds.

    A failure inside the block removes the temporary file and leaves ``path`` untouched.

    Parameters
    ----------
    path : str or Path
        The final file.

    Yields
    ------
    Path
        The temporary file to write.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)

"""Write files and folders so that a failure, or a kill, never leaves half-written output or harms an input."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import json
import os
import re
import secrets
import shutil
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from sam_mito.errors import SamMitoError
from sam_mito.version import __version__

#: The file sam-mito leaves in every folder it writes: only a folder holding it is ever replaced.
MARKER = ".sam-mito"


def mark(folder: str | Path) -> None:
    """Leave :data:`MARKER` in ``folder``, which sam-mito wrote, so a later run may replace it."""
    (Path(folder) / MARKER).write_text(json.dumps({"written_by": "sam-mito", "version": __version__}) + "\n")


def written_by_sam_mito(folder: str | Path) -> bool:
    """Whether ``folder`` is a folder sam-mito wrote (it holds :data:`MARKER`)."""
    return (Path(folder) / MARKER).is_file()


def check_output_dir(
    out_dir: str | Path, *, overwrite: bool, name: str = "output folder", resumable: bool = False
) -> Path:
    """Refuse an ``out_dir`` that cannot be written, or replaced, before any long work.

    A path that is a file, or lies under a file, is refused even with ``overwrite``: only folders
    are ever replaced. A non-empty folder is replaced only when sam-mito wrote it (it holds
    :data:`MARKER`) and ``overwrite`` is given; any other non-empty folder is refused, with or
    without ``overwrite``, so nothing sam-mito did not write is ever removed.

    Parameters
    ----------
    out_dir : str or Path
        The folder about to be written.
    overwrite : bool, keyword-only
        Whether an existing folder that sam-mito wrote may be replaced.
    name : str, keyword-only
        How the caller calls it, repeated in the errors (a flag such as ``--out``).
    resumable : bool, keyword-only
        Accept a folder sam-mito wrote even without ``overwrite``: the caller resumes it, or
        refuses it itself.

    Returns
    -------
    Path
        ``out_dir`` as a path.
    """
    out_dir = Path(out_dir)
    for ancestor in (out_dir, *out_dir.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                where = "is a file" if ancestor == out_dir else f"lies under the file {ancestor}"
                raise SamMitoError(f"{out_dir}: {name} {where}; expected a folder path")
            break
    if not (out_dir.is_dir() and any(out_dir.iterdir())):
        return out_dir
    if not written_by_sam_mito(out_dir):
        raise SamMitoError(
            f"{out_dir}: {name} is a non-empty folder sam-mito did not write (no {MARKER} file in it), "
            "which is never replaced, with or without --overwrite; choose a new or empty folder"
        )
    if not (overwrite or resumable):
        raise SamMitoError(f"{out_dir}: {name} exists (pass --overwrite to replace it)")
    return out_dir


def _check_existing(path: Path, name: str, *, overwrite: bool, resumable: bool) -> None:
    """An existing file is replaced only with ``overwrite``; a folder as :func:`check_output_dir` says."""
    if path.exists() and not path.is_dir():
        if not overwrite:
            raise SamMitoError(f"{path}: {name} exists (pass --overwrite to replace it)")
    else:
        check_output_dir(path, overwrite=overwrite, name=name, resumable=resumable)


def check_output_file(path: str | Path | None, *, name: str = "output_path") -> None:
    """Refuse an output file path that is a folder, or whose folder is missing or a file.

    Parameters
    ----------
    path : str, Path or None
        The file about to be written (None: nothing to check).
    name : str, keyword-only
        How the caller calls it, repeated in the error (``--out`` on the command line).
    """
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise SamMitoError(f"{path}: {name} is an existing folder; expected a file path such as mask.tif")
    if not path.parent.is_dir():
        problem = "is not a folder" if path.parent.exists() else "does not exist"
        raise SamMitoError(f"{path}: {name}'s folder {path.parent} {problem}")


def _resolved(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def _same(a: Path, b: Path) -> bool:
    if a == b:
        return True
    with contextlib.suppress(OSError):  # hard links, bind mounts
        return a.exists() and b.exists() and os.path.samefile(a, b)
    return False


def check_outputs(
    outputs: Mapping[str, str | Path | None],
    inputs: Mapping[str, str | Path | None],
    *,
    replaced: bool = True,
    overwrite: bool = False,
    resumable: bool = False,
) -> None:
    """Refuse outputs that could harm an input, each other, or data sam-mito did not write.

    The one check of every function that writes, called before any work (the command line calls
    it too, with its flag names, before loading a model). An output may not be an input (same
    path, symlink or hard link), lie inside an input folder, or, when it is ``replaced`` as a
    whole, hold an input (replacing it would delete the input); two outputs may not name the same
    path. A ``replaced`` output that exists must be replaceable: a file only with ``overwrite``, a
    non-empty folder only when sam-mito wrote it (:func:`check_output_dir`), and none may lie
    under a file. ``None`` entries, and inputs that do not exist (Hub ids), are skipped.

    Parameters
    ----------
    outputs, inputs : mapping of str to path
        Paths by the name the user gave them (a flag such as ``--out``, or a parameter name),
        which the error message repeats.
    replaced : bool, keyword-only
        Whether an existing output is replaced as a whole (False: files are added to the folder).
    overwrite : bool, keyword-only
        Whether existing outputs may be replaced.
    resumable : bool, keyword-only
        Accept existing output folders that sam-mito wrote without ``overwrite``: the caller
        resumes them or refuses them itself.

    Raises
    ------
    SamMitoError
        Naming the output, the input and how they collide.
    """
    outs = {name: (path, _resolved(path)) for name, path in outputs.items() if path is not None}
    # an input that does not exist here (a Hub id, a path reported missing elsewhere) cannot be harmed
    ins = {
        name: (path, _resolved(path))
        for name, path in inputs.items()
        if path is not None and Path(path).exists()
    }
    names = list(outs)
    for index, name in enumerate(names):
        for other in names[index + 1 :]:
            if _same(outs[name][1], outs[other][1]):
                raise SamMitoError(f"{outs[name][0]}: {name} and {other} name the same path; give two paths")
    for name, (path, out) in outs.items():
        for source, (given, read) in ins.items():
            if _same(out, read):
                raise SamMitoError(
                    f"{path}: {name} is the same path as {source}; an output never overwrites an input"
                )
            if out.is_relative_to(read):
                raise SamMitoError(
                    f"{path}: {name} lies inside the {source} folder {given}; write it outside the inputs"
                )
            if replaced and read.is_relative_to(out):
                raise SamMitoError(
                    f"{path}: {name} holds {source} ({given}), which replacing it would delete; "
                    "write it outside the inputs"
                )
        if replaced:
            _check_existing(Path(path), name, overwrite=overwrite, resumable=resumable)


# Ours are .<name>.<kind>-<pid>-<hex>; mkdtemp's of earlier versions .<name>.<kind>-<random>.
_LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?P<kind>tmp|old)-(?:(?P<pid>\d+)-)?[0-9a-z_]+")


def _sibling(out_dir: Path, kind: str) -> Path:
    """A fresh ``.<name>.<kind>-<pid>-<random>`` path beside ``out_dir`` (not created)."""
    return out_dir.with_name(f".{out_dir.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}")


def _alive(pid: int) -> bool:
    """Whether another process ``pid`` runs on this machine (never true for this process)."""
    if pid == os.getpid() or os.name != "posix":
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_leftovers(out_dir: str | Path) -> None:
    """Tidy what killed runs of :func:`atomic_directory` left beside ``out_dir``.

    A ``.<name>.old-*`` folder is an earlier complete output moved aside: it is moved back if
    ``out_dir`` is missing (the run died between its two renames), else removed. A
    ``.<name>.tmp-*`` folder is a staging folder (or, after a swap, the old output) and is removed.
    Leftovers of a process that is still running are left alone.

    Parameters
    ----------
    out_dir : str or Path
        The final folder whose siblings are tidied.
    """
    out_dir = Path(out_dir)
    for path in sorted(out_dir.parent.glob(f".{glob.escape(out_dir.name)}.*-*")):
        match = _LEFTOVER.fullmatch(path.name)
        if not match or match["name"] != out_dir.name or (match["pid"] and _alive(int(match["pid"]))):
            continue
        old = path / out_dir.name if match["pid"] is None else path  # earlier versions nested it
        if match["kind"] == "old" and old.is_dir() and not out_dir.exists():
            os.rename(old, out_dir)
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False  # kernel or filesystem without exchange
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def _move_in(staging: Path, out_dir: Path) -> None:
    """Put ``staging`` at ``out_dir``; an existing ``out_dir`` is removed only once the new one is in place."""
    if not out_dir.exists():
        os.rename(staging, out_dir)
        return
    if _exchange(staging, out_dir):  # staging now holds the old output
        shutil.rmtree(staging, ignore_errors=True)
        return
    retired = _sibling(out_dir, "old")
    os.rename(out_dir, retired)  # a kill here leaves the old output aside: clean_leftovers moves it back
    os.rename(staging, out_dir)
    shutil.rmtree(retired, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(out_dir: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a staging folder beside ``out_dir`` that becomes ``out_dir`` only if the block succeeds.

    A failure inside the block removes the staging folder and leaves ``out_dir`` untouched. On
    success the new folder is swapped in atomically where the system allows it (Linux), else
    moved in right after the old one is moved aside; the old one is deleted last. So a kill at
    any moment leaves the old or the new output under the final name, or (between the two renames
    of the fallback) the old one aside, which the next run moves back. Leftovers of killed runs
    are tidied first (:func:`clean_leftovers`). The staging folder is made with the usual
    permissions (the process umask), not ``mkdtemp``'s 0700; it gets sam-mito's :data:`MARKER`
    when the block succeeds, so a later run may replace it.

    Parameters
    ----------
    out_dir : str or Path
        The final folder.
    overwrite : bool, keyword-only
        Replace an existing non-empty ``out_dir`` that sam-mito wrote (checked before the block
        runs, :func:`check_output_dir`); a folder sam-mito did not write is always refused.

    Yields
    ------
    Path
        The staging folder to fill.
    """
    out_dir = check_output_dir(out_dir, overwrite=overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(out_dir)
    staging = _sibling(out_dir, "tmp")
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    mark(staging)
    _move_in(staging, out_dir)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` that is renamed to ``path`` only if the block succeeds.

    A failure inside the block removes the temporary file and leaves ``path`` untouched; a
    ``.<name>.partial`` left by a killed run is removed before writing.

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
    partial.unlink(missing_ok=True)
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)

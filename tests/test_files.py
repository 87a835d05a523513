"""Atomic folders and files: a failure or a kill at any moment leaves the old or the new output, and
outputs never collide with inputs."""

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sam_mito import files
from sam_mito.errors import SamMitoError
from sam_mito.files import atomic_directory, atomic_file, check_output_dir, check_outputs, clean_leftovers

ROOT = Path(__file__).resolve().parents[1]

# Replaces `out` (holding old.txt = "old") by a folder holding new.txt = "new", and dies with
# os._exit at the N-th step: steps are taken before and after every rename, swap and removal.
KILLED_RUN = """
import os, shutil, sys
from pathlib import Path
from sam_mito import files

out, die_at, exchange = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
steps = 0

def step():
    global steps
    steps += 1
    if steps == die_at:
        os._exit(9)

def around(function):
    def wrapped(*args, **kwargs):
        step()
        result = function(*args, **kwargs)
        step()
        return result
    return wrapped

os.rename = around(os.rename)
shutil.rmtree = around(shutil.rmtree)
files._exchange = around(files._exchange if exchange else lambda a, b: False)
with files.atomic_directory(out, overwrite=True) as staging:
    (staging / "new.txt").write_text("new")
"""


def _content(folder: Path) -> dict[str, str]:
    """The files of ``folder`` but sam-mito's marker (which every folder it wrote holds)."""
    return {p.name: p.read_text() for p in folder.iterdir() if p.name != files.MARKER}


def _earlier_output(out: Path) -> None:
    """``out`` as an earlier sam-mito run left it: old.txt and the marker."""
    out.mkdir(parents=True)
    (out / "old.txt").write_text("old")
    files.mark(out)


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name != out.name)


OLD, NEW = {"old.txt": "old"}, {"new.txt": "new"}


@pytest.mark.parametrize("exchange", [True, False], ids=["atomic-swap", "two-renames"])
def test_a_kill_at_any_step_leaves_the_old_or_the_new_output(tmp_path, exchange):
    probe = [tmp_path / "a", tmp_path / "b"]
    for folder in probe:
        folder.mkdir()
    if exchange and not files._exchange(*probe):
        pytest.skip("this filesystem cannot swap folders atomically")
    out = tmp_path / "work" / "dataset"
    outcomes = []
    for die_at in range(1, 30):
        _earlier_output(out)
        run = subprocess.run(
            [sys.executable, "-c", KILLED_RUN, str(out), str(die_at), "1" if exchange else "0"],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
        )
        assert run.returncode in (0, 9), run.stderr
        if exchange:  # the swap never leaves the final name empty, not even for an instant
            assert _content(out) in (OLD, NEW), die_at
        clean_leftovers(out)  # what the next run does first: two renames may have left the old aside
        assert _content(out) in (OLD, NEW) and _leftovers(out) == [], die_at
        outcomes.append("new" if _content(out) == NEW else "old")
        if run.returncode == 0:
            break
        shutil.rmtree(out)
    assert run.returncode == 0 and outcomes[-1] == "new" and files.written_by_sam_mito(out)
    assert "old" in outcomes and "new" in outcomes[:-1]  # killed both before and after the switch


def test_leftovers_of_a_live_run_are_left_alone(tmp_path):
    out = tmp_path / "out"
    live = tmp_path / f".out.tmp-{os.getppid()}-abcd"  # the parent (pytest's launcher) is alive
    dead = tmp_path / ".out.tmp-999999999-abcd"
    earlier_version = tmp_path / ".out.tmp-k2_x9abc"  # tempfile.mkdtemp's name, no process id
    unrelated = tmp_path / ".other.tmp-999999999-abcd"
    for folder in (live, dead, earlier_version, unrelated):
        folder.mkdir()
    with atomic_directory(out) as staging:
        (staging / "x").write_text("x")
    assert live.exists() and unrelated.exists() and not dead.exists() and not earlier_version.exists()
    assert (out / "x").read_text() == "x"


def test_an_old_output_left_aside_by_an_earlier_version_is_moved_back(tmp_path):
    aside = tmp_path / ".out.old-q8z_1kd" / "out"  # how earlier versions moved the old output aside
    aside.mkdir(parents=True)
    (aside / "old.txt").write_text("old")
    clean_leftovers(tmp_path / "out")
    assert _content(tmp_path / "out") == OLD and _leftovers(tmp_path / "out") == []


def test_folders_get_the_usual_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        with atomic_directory(tmp_path / "out") as staging:
            (staging / "x").write_text("x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755


def test_a_failed_block_keeps_the_old_folder(tmp_path):
    out = tmp_path / "out"
    _earlier_output(out)
    with pytest.raises(RuntimeError), atomic_directory(out, overwrite=True) as staging:
        (staging / "new.txt").write_text("half")
        raise RuntimeError("disk full")
    assert _content(out) == {"old.txt": "old"} and _leftovers(out) == []


def test_a_partial_file_of_a_killed_run_is_not_reused_half_written(tmp_path):
    target = tmp_path / "mask.tif"
    (tmp_path / ".mask.tif.partial").write_text("half of a killed run")
    with atomic_file(target) as partial:
        assert not partial.exists()
        with open(partial, "a") as stream:  # even a writer that appends starts empty
            stream.write("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["mask.tif"]


def test_output_folder_that_is_or_lies_under_a_file_is_refused_even_with_overwrite(tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep")
    for target, message in ((a_file, "is a file"), (a_file / "out", "lies under the file")):
        with pytest.raises(SamMitoError, match=message):
            check_output_dir(target, overwrite=True)
    assert a_file.read_text() == "keep"


def test_outputs_never_collide_with_inputs(tmp_path):
    folder = tmp_path / "slices"
    folder.mkdir()
    stack = tmp_path / "stack.tif"
    stack.write_text("pixels")
    link = tmp_path / "link.tif"
    link.symlink_to(stack)
    hard = tmp_path / "hard.tif"
    os.link(stack, hard)
    cases = [
        ({"--output": stack}, {"--input": stack}, "--output is the same path as --input"),
        ({"--output": link}, {"--input": stack}, "--output is the same path as --input"),
        ({"--output": hard}, {"--input": stack}, "--output is the same path as --input"),
        ({"--out": folder}, {"--images": folder}, "--out is the same path as --images"),
        ({"--out": folder / "ds"}, {"--images": folder}, "--out lies inside the --images folder"),
        ({"--out": tmp_path}, {"--images": stack}, "--out holds --images"),
        ({"--output": tmp_path / "m.tif", "--probabilities": tmp_path / "m.tif"}, {}, "name the same path"),
    ]
    for outputs, inputs, message in cases:
        with pytest.raises(SamMitoError, match=message):
            check_outputs(outputs, inputs)
    check_outputs({"--output": tmp_path / "mask.tif", "--probabilities": None}, {"--input": stack})
    check_outputs({"--out": tmp_path}, {"--dataset": folder}, replaced=False)  # files added beside it


def test_only_a_folder_sam_mito_wrote_is_ever_replaced(tmp_path):
    users = tmp_path / "keep.zarr"
    users.mkdir()
    (users / "thesis.tex").write_text("a user's file")
    for overwrite in (False, True):
        with pytest.raises(
            SamMitoError, match="keep.zarr: --out is a non-empty folder sam-mito did not write"
        ):
            check_outputs({"--out": users}, {}, overwrite=overwrite)
        with (
            pytest.raises(SamMitoError, match="sam-mito did not write"),
            atomic_directory(users, overwrite=overwrite),
        ):
            pass
    assert _content_of(users) == {"thesis.tex": "a user's file"}
    with atomic_directory(tmp_path / "ours") as staging:  # a folder sam-mito wrote ...
        (staging / "a.txt").write_text("first")
    with pytest.raises(SamMitoError, match="ours: --out exists \\(pass --overwrite"):
        check_outputs({"--out": tmp_path / "ours"}, {})  # ... is replaced only with overwrite
    check_outputs({"--out": tmp_path / "ours"}, {}, overwrite=True)
    check_outputs({"--out": tmp_path / "ours"}, {}, resumable=True)  # or resumed by its caller
    (tmp_path / "empty").mkdir()
    check_outputs({"--out": tmp_path / "empty"}, {})  # an empty folder holds nothing to lose


def test_an_existing_file_is_replaced_only_with_overwrite(tmp_path):
    (tmp_path / "mask.tif").write_bytes(b"an earlier mask")
    with pytest.raises(SamMitoError, match="mask.tif: --out exists \\(pass --overwrite to replace it\\)"):
        check_outputs({"--out": tmp_path / "mask.tif"}, {})
    check_outputs({"--out": tmp_path / "mask.tif"}, {}, overwrite=True)
    check_outputs({"--out": tmp_path / "mask.tif"}, {}, replaced=False)  # files are added beside it


def _content_of(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in folder.iterdir()}

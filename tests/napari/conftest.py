"""The napari tests' screen and data: a virtual X screen started for them, and sam-mito outputs.

napari's canvas needs OpenGL, which Qt's ``offscreen`` platform lacks, so the viewers run on a
real X screen through Qt's ``xcb`` platform: an ``Xvfb`` server started here (once, for the
session, on a free display number) with GLX on a 24-bit screen, and stopped at the end, so no
window opens on a developer's desktop and screenshots do not depend on it; only without Xvfb is
``DISPLAY`` used. ``.ci/run`` installs Xvfb and the libraries Qt's xcb platform loads; with neither
the tests fail saying so (they are never skipped).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
import tifffile

#: The virtual screen: large enough for napari's window with a widget docked, 24-bit for OpenGL.
SCREEN = "1600x1000x24"


@pytest.fixture(scope="session")
def virtual_screen():
    """The X display the tests' Qt application opens: an Xvfb started for them, else ``DISPLAY``."""
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        if os.environ.get("DISPLAY"):
            yield os.environ["DISPLAY"]
            return
        pytest.fail(
            "the napari tests need an X screen: no Xvfb and no DISPLAY (apt-get install xvfb; see .ci/run)"
        )
    shown = os.environ.get("DISPLAY")
    read, write = os.pipe()
    server = subprocess.Popen(
        [xvfb, "-displayfd", str(write), "-screen", "0", SCREEN, "-nolisten", "tcp", "+extension", "GLX"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as numbers:
        number = numbers.readline().strip()  # Xvfb writes its display number once it accepts clients
    if not number:
        server.kill()
        pytest.fail("Xvfb did not start")
    os.environ["DISPLAY"] = f":{number}"
    try:
        yield os.environ["DISPLAY"]
    finally:
        server.terminate()
        server.wait(timeout=10)
        if shown is None:
            del os.environ["DISPLAY"]
        else:
            os.environ["DISPLAY"] = shown


@pytest.fixture(scope="session")
def qapp_args(virtual_screen):
    """pytest-qt's QApplication arguments; asking for them first puts the screen in place."""
    return ["sam-mito-tests"]


@pytest.fixture(scope="session")
def em_stack():
    """A synthetic EM stack of 3 slices of 256x256 (uint8)."""
    from sam_mito.data.synthetic import SyntheticEM

    scene = SyntheticEM((3, 256, 256), seed=5)
    return np.stack([scene.render(z)[0] for z in range(3)])


@pytest.fixture(scope="session")
def outputs(tmp_path_factory, em_stack):
    """``sam-mito predict`` on the stack ``testing.tif`` (tiny base, every object kept): ``test-mask``,
    ``test-labels`` and ``test-probabilities``, each as ``.zarr`` and as ``.tif``, in one folder."""
    from sam_mito.cli.main import main
    from sam_mito.defaults import TINY_BASE

    folder = tmp_path_factory.mktemp("outputs")
    tifffile.imwrite(folder / "testing.tif", em_stack, photometric="minisblack")
    common = ["predict", "--model", TINY_BASE, "--input", str(folder / "testing.tif"), "--min-size", "0"]
    for suffix in (".zarr", ".tif"):
        flags = {"--out": "mask", "--labels-out": "labels", "--probabilities-out": "probabilities"}
        names = [
            item for flag, kind in flags.items() for item in (flag, str(folder / f"test-{kind}{suffix}"))
        ]
        assert main([*common, *names]) == 0
    return folder


@pytest.fixture
def predict(capsys):
    """Run ``sam-mito predict ARGS...`` in-process; returns (status, stderr's error message or '')."""
    from sam_mito.cli.main import main

    def run(*argv):
        status = main(["predict", *(str(arg) for arg in argv)])
        err = capsys.readouterr().err
        prefix = "sam-mito predict: error: "
        lines = [line for line in err.splitlines() if line.startswith(prefix)]
        return status, lines[-1][len(prefix) :] if lines else ""

    return run

"""A stand-in for ``Segmenter`` whose probability maps are scripted per slice, for tests of what follows them."""

from types import SimpleNamespace

import numpy as np

from sam_mito.inference.postprocessing import PostProcessing
from sam_mito.inference.segmenter import Segmenter
from sam_mito.volumes.volume import NORMALIZATION


class Killed(Exception):
    """Raised by a scripted segmenter to stop a run part-way, as a kill would."""


def index_stack(depth: int, height: int, width: int) -> np.ndarray:
    """A ``uint8`` stack whose slice ``z`` is filled with the value ``z``: the segmenter reads it back."""
    return np.broadcast_to(np.arange(depth, dtype=np.uint8)[:, None, None], (depth, height, width)).copy()


class ScriptedSegmenter:
    """Answers slice ``z`` of an :func:`index_stack` with ``maps[z]``; what ``predict_volume`` needs of a Segmenter.

    ``fail_on`` raises :class:`Killed` on that call (1-based); ``rank`` is read by tests that simulate
    several processes.
    """

    mode, tile, overlap, halo, cores_only, grid_size, precision = "tile", 256, 0, 32, False, 1, "fp32"
    normalization = NORMALIZATION
    post = PostProcessing()
    settings = Segmenter.settings  # what a zarr output records of a segmenter

    def __init__(self, maps: np.ndarray, *, fail_on: int | None = None, rank: int = 0) -> None:
        self.maps, self.fail_on, self.rank = np.asarray(maps, np.float32), fail_on, rank
        self.model = SimpleNamespace(config=SimpleNamespace(_name_or_path="scripted"))
        self.encoder_passes = 0
        self.calls: list[int] = []

    def probabilities(self, image, boxes=None):
        z = int(image[0, 0])
        self.calls.append(z)
        if self.fail_on is not None and len(self.calls) == self.fail_on:
            raise Killed
        self.encoder_passes += 1
        return self.maps[z].copy()

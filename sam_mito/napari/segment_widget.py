"""The "Segment mitochondria" widget: ``sam-mito predict`` on an image layer, inside napari.

Pick a model (a fine-tuned folder, a Hub id, or the packaged tiny base), the image layer (an image
or a stack), the prompts (prompt-free ``tile`` or ``grid`` prompts, or ``boxes``: rectangles drawn
in a shapes layer, each on the slice it was drawn on, or on every slice when the shapes layer is
2D) and the post-processing, then press *Segment*. The settings are the command line's, with its
defaults (:mod:`sam_mito.defaults`, :class:`~sam_mito.inference.postprocessing.PostProcessing`);
each field's tooltip names its ``sam-mito predict`` flag. The prediction is
:func:`~sam_mito.inference.pipeline.segment_volume`, so the instance labels (and probabilities)
equal what ``sam-mito predict`` writes for the same data and settings.

It runs in a napari worker thread: napari's activity panel shows its progress in tiles, and the
widget's *Cancel* button (or the task's cancel in napari's status bar) stops it at the next tile.
The result is a labels layer ``<image> instances`` (and, if asked, an image layer ``<image>
probabilities``) with the image's scale and translation; its ``metadata["sam_mito"]`` holds the
prediction summary. Bad settings are shown as a napari notification carrying the message the
command line prints after ``error:``; nothing starts.

The plugin needs the ``napari`` extra: ``pip install "sam-mito[napari]"``.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Image, Shapes
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import notification_manager, show_error, show_info, show_warning
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from sam_mito.defaults import (
    DEFAULT_FILL_HOLES,
    DEFAULT_HALO,
    DEFAULT_INSTANCES,
    DEFAULT_MIN_AREA,
    DEFAULT_OPENING,
    DEFAULT_SEED_HEIGHT,
    DEFAULT_Z_WEIGHTING,
    DEFAULT_Z_WINDOW,
    GRID_SIZE,
    INSTANCE_METHODS,
    PRECISIONS,
    PREDICT_MODES,
    THRESHOLD,
    TINY_BASE,
    Z_WEIGHTINGS,
)
from sam_mito.errors import SamMitoError
from sam_mito.napari.layer_choices import fill_layer_choices
from sam_mito.volumes.volume import Volume

if TYPE_CHECKING:
    import napari

    from sam_mito.inference.pipeline import Segmentation
    from sam_mito.inference.postprocessing import PostProcessing
    from sam_mito.inference.segmenter import Segmenter

#: How the prompt modes read in the widget.
MODE_LABELS = {
    "tile": "tile: one box per tile (prompt-free)",
    "grid": "grid: points per tile (prompt-free)",
    "boxes": "boxes: rectangles of a shapes layer",
}
AUTO = "auto"
#: The largest tile, halo and overlap the spin boxes offer (the model's input size limits the tile).
MAX_PIXELS = 8192
MAX_VOXELS = 2**31 - 1


class Cancelled(Exception):
    """Raised inside the prediction at the next tile once the run is cancelled."""


@dataclass
class Job:
    """Everything one run needs, read from the widget (and checked) in the main thread."""

    model: str
    device: str | None
    volume: Volume
    mode: str
    tile: int | None
    overlap: int
    halo: int
    grid_size: int
    precision: str
    post: PostProcessing
    boxes: dict[int, list[list[int]]] | None
    probabilities: bool
    image: Image
    cancel: threading.Event = field(default_factory=threading.Event)
    #: The thread the prediction runs in, once started.
    thread: threading.Thread | None = None


#: The last model loaded, by name, device and files: a second run on the same model does not load it again.
_loaded: dict[tuple, tuple] = {}
_loading = threading.Lock()


def load_model(name: str, device: str | None):
    """``load_sam(name, device=device)``, remembering the last model loaded (a folder's, until its
    files change)."""
    from sam_mito.models.devices import resolve_device
    from sam_mito.models.loading import load_sam

    folder = Path(name)
    stamp = (
        tuple(
            sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir() if p.is_file())
        )
        if folder.is_dir()
        else None
    )
    key = (name, str(resolve_device(device)), stamp)
    with _loading:
        if key not in _loaded:
            _loaded.clear()
            _loaded[key] = load_sam(name, device=device)
        return _loaded[key]


def build_segmenter(job: Job) -> Segmenter:
    """The segmenter ``sam-mito predict`` builds from the same settings, with its checks in its order."""
    from sam_mito.inference.segmenter import Segmenter, check_tile

    model, processor = load_model(job.model, job.device)
    check_tile(job.tile, model.config, name="--tile")
    return Segmenter(
        model,
        processor,
        mode=job.mode,
        tile=job.tile,
        overlap=job.overlap,
        halo=job.halo,
        grid_size=job.grid_size,
        precision=job.precision,
        post=job.post,
    )


def tiles_per_slice(height: int, width: int, tile: int, overlap: int) -> int:
    """How many tiles (encoder passes, in prompt-free modes) one slice takes."""
    from sam_mito.inference.segmenter import tile_origins

    return len(tile_origins(height, tile, overlap)) * len(tile_origins(width, tile, overlap))


def run_job(job: Job, stopped: Callable[[], bool]) -> Generator[tuple[int, int], None, Segmentation]:
    """Segment ``job``'s volume, yielding ``(tiles done, tiles in all)`` after each tile.

    The prediction runs in a thread of its own so that this generator (napari's worker) can report
    each tile as it ends; ``stopped()`` is asked before every tile and ends it with
    :class:`Cancelled`.
    """
    from sam_mito.inference.pipeline import segment_volume

    segmenter = build_segmenter(job)
    depth, height, width = job.volume.shape
    total = depth * tiles_per_slice(height, width, segmenter.tile, segmenter.overlap)
    yield 0, total
    done: queue.SimpleQueue = queue.SimpleQueue()
    tile_probability = segmenter._tile_probability

    def counted(*args, **kwargs):
        if stopped():
            raise Cancelled
        values = tile_probability(*args, **kwargs)
        done.put(1)
        return values

    segmenter._tile_probability = counted  # the instance's, not the class's
    outcome: dict = {}

    def predict() -> None:
        try:
            outcome["result"] = segment_volume(
                segmenter,
                job.volume,
                boxes=job.boxes,
                post=job.post,
                labels=True,
                probabilities=job.probabilities,
            )
        except BaseException as err:  # handed to the worker, which reports it
            outcome["error"] = err
        finally:
            done.put(None)

    thread = threading.Thread(target=predict, name="sam-mito segmentation", daemon=True)
    job.thread = thread
    thread.start()
    count = 0
    while done.get() is not None:
        count += 1
        yield count, total
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def layer_volume(layer: Image) -> Volume:
    """The image layer's pixels as a :class:`Volume` (a stack is read slice by slice)."""
    data = layer.data[0] if layer.multiscale else layer.data
    shape = tuple(int(n) for n in data.shape)
    if layer.rgb or len(shape) == 2:
        return Volume.from_array(np.asarray(data), source=f"layer '{layer.name}'")
    if len(shape) != 3:
        raise SamMitoError(
            f"image layer '{layer.name}' has shape {shape}; expected a 2D image (height, width) or a "
            "3D stack (slices, height, width)"
        )
    return Volume(shape, data.dtype, lambda z: np.asarray(data[z]), f"layer '{layer.name}'")


def boxes_from_shapes(
    shapes: Shapes, image: Image, shape: tuple[int, int, int]
) -> dict[int, list[list[int]]]:
    """The rectangles of ``shapes`` as ``{slice: [[x0, y0, x1, y1], ...]}`` in the image's pixels.

    A 3D shapes layer's rectangle prompts the slice it was drawn on; a 2D one's prompts every slice.
    Corners go from the shapes layer's coordinates to the image's through both layers' scale and
    translation; a box covers the pixels whose centres the rectangle holds, clipped to the image.
    """
    depth, height, width = shape
    if not len(shapes.data):
        raise SamMitoError(f"shapes layer '{shapes.name}' holds no rectangles: draw a box around each object")
    spatial = 3 if shapes.ndim >= 3 and image.ndim >= 3 and not image.rgb else 2
    image_scale = np.asarray(image.scale[-spatial:], float)
    image_translate = np.asarray(image.translate[-spatial:], float)
    per_slice: dict[int, list[list[int]]] = {}
    for index, (vertices, kind) in enumerate(zip(shapes.data, shapes.shape_type, strict=True)):
        where = f"shapes layer '{shapes.name}': shape {index}"
        if kind != "rectangle":
            raise SamMitoError(f"{where} is of type '{kind}'; draw the boxes as rectangles")
        world = np.asarray(vertices, float)[:, -spatial:] * np.asarray(shapes.scale[-spatial:]) + np.asarray(
            shapes.translate[-spatial:]
        )
        pixels = (world - image_translate) / image_scale
        if spatial == 3:
            zs = np.round(pixels[:, 0])
            if zs.min() != zs.max():
                raise SamMitoError(f"{where} spans several slices; draw each box on one slice")
            slices = [int(zs[0])]
            if not 0 <= slices[0] < depth:
                raise SamMitoError(f"{where} lies on slice {slices[0]}, outside the stack's 0..{depth - 1}")
        else:
            slices = list(range(depth))
        ys, xs = pixels[:, -2], pixels[:, -1]
        x0, x1 = max(math.ceil(xs.min()), 0), min(math.floor(xs.max()), width - 1)
        y0, y1 = max(math.ceil(ys.min()), 0), min(math.floor(ys.max()), height - 1)
        if x0 > x1 or y0 > y1:
            raise SamMitoError(f"{where} covers no pixel of the {width}x{height} image")
        for z in slices:
            per_slice.setdefault(z, []).append([x0, y0, x1, y1])
    return per_slice


def _spin(low: int, high: int, value: int, *, special: str | None = None) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    if special is not None:
        box.setSpecialValueText(special)  # shown at the minimum, which means "the default"
    return box


class SegmentWidget(QWidget):
    """Segment mitochondria in an image layer with a SAM, as ``sam-mito predict`` does.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer whose layers it segments and to which it adds the result.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self.job: Job | None = None
        self.result: Segmentation | None = None
        self.error: BaseException | None = None
        self._progress: progress | None = None

        self.model = QLineEdit(TINY_BASE)
        self.model.setToolTip("--model: a Hub id, a local model folder, or sam-mito/tiny-base")
        browse = QPushButton("Folder…")
        browse.clicked.connect(self._choose_model_folder)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model)
        model_row.addWidget(browse)
        self.image = QComboBox()
        self.image.setToolTip("--input: the image layer to segment, a 2D image or a 3D stack")
        self.mode = QComboBox()
        for mode in PREDICT_MODES:
            self.mode.addItem(MODE_LABELS.get(mode, mode), mode)
        self.mode.setToolTip("--prompt-mode")
        self.shapes = QComboBox()
        self.shapes.setToolTip("--boxes: a shapes layer of rectangles, each on the slice it prompts")
        self.tile = _spin(0, MAX_PIXELS, 0, special="model's")
        self.tile.setToolTip("--tile: tile side in pixels (default: the model's training patch)")
        self.overlap = _spin(0, MAX_PIXELS, 0)
        self.overlap.setToolTip("--overlap: minimum tile overlap in pixels")
        self.halo = _spin(0, MAX_PIXELS, DEFAULT_HALO)
        self.halo.setToolTip("--halo: context margin per side of each tile, in pixels")
        self.grid_size = _spin(1, 256, GRID_SIZE)
        self.grid_size.setToolTip("--grid-size: grid mode's points per side")
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 0.999)
        self.threshold.setDecimals(3)
        self.threshold.setSingleStep(0.05)
        self.threshold.setValue(THRESHOLD)
        self.threshold.setToolTip("--threshold: probability threshold")
        self.z_window = _spin(1, 999, DEFAULT_Z_WINDOW)
        self.z_window.setSingleStep(2)
        self.z_window.setToolTip("--z-window: slices averaged around each slice (odd; 1: off)")
        self.z_weighting = QComboBox()
        self.z_weighting.addItems(list(Z_WEIGHTINGS))
        self.z_weighting.setCurrentText(DEFAULT_Z_WEIGHTING)
        self.z_weighting.setToolTip("--z-weighting")
        self.opening = _spin(0, 999, DEFAULT_OPENING)
        self.opening.setToolTip("--opening: radius of a per-slice opening in pixels (0: off)")
        self.fill_holes = QCheckBox("fill holes")
        self.fill_holes.setChecked(DEFAULT_FILL_HOLES)
        self.fill_holes.setToolTip("--fill-holes / --no-fill-holes")
        self.min_size = _spin(-1, MAX_VOXELS, -1, special="auto")
        self.min_size.setToolTip(
            "--min-size: drop smaller objects, in voxels (pixels for an image); auto: the stack's default"
        )
        self.min_area = _spin(0, MAX_VOXELS, DEFAULT_MIN_AREA)
        self.min_area.setToolTip("--min-area: keep objects crossing every slice with this mean cross-section")
        self.instances = QComboBox()
        self.instances.addItems(list(INSTANCE_METHODS))
        self.instances.setCurrentText(DEFAULT_INSTANCES)
        self.instances.setToolTip(
            "--instances: components (touching objects are one) or watershed (split where they narrow)"
        )
        self.seed_height = QDoubleSpinBox()
        self.seed_height.setRange(0.01, 1000.0)
        self.seed_height.setDecimals(2)
        self.seed_height.setValue(DEFAULT_SEED_HEIGHT)
        self.seed_height.setToolTip("--seed-height: watershed's split depth, in voxels of distance")
        self.precision = QComboBox()
        self.precision.addItems(list(PRECISIONS))
        self.precision.setToolTip("--precision: image encoder precision")
        self.device = QComboBox()
        self.device.addItems(_devices())
        self.device.setToolTip("--device (auto: CUDA when present, else the CPU)")
        self.probabilities = QCheckBox("also add the probabilities")
        self.probabilities.setToolTip("--probabilities-out")
        self.run_button = QPushButton("Segment")
        self.run_button.clicked.connect(self.run_or_cancel)
        self.progress_bar = QProgressBar()
        self.progress_bar.setFormat("%v / %m tiles")
        self.progress_bar.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("model", model_row)
        form.addRow("image", self.image)
        form.addRow("prompts", self.mode)
        form.addRow("boxes", self.shapes)
        form.addRow("tile", self.tile)
        form.addRow("overlap", self.overlap)
        form.addRow("halo", self.halo)
        form.addRow("grid size", self.grid_size)
        form.addRow("threshold", self.threshold)
        form.addRow("z-window", self.z_window)
        form.addRow("z-weighting", self.z_weighting)
        form.addRow("opening", self.opening)
        form.addRow("", self.fill_holes)
        form.addRow("min size", self.min_size)
        form.addRow("min area", self.min_area)
        form.addRow("instances", self.instances)
        form.addRow("seed height", self.seed_height)
        form.addRow("precision", self.precision)
        form.addRow("device", self.device)
        form.addRow("", self.probabilities)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.run_button)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)
        layout.addStretch()

        self.mode.currentIndexChanged.connect(self._mode_changed)
        self.instances.currentIndexChanged.connect(self._mode_changed)
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(self.reset_choices)
        self.reset_choices()
        self._mode_changed()

    # ---- the form

    def reset_choices(self, event=None) -> None:
        """Fill the layer choices from the viewer's image and shapes layers, keeping the current ones."""
        for box, kind in ((self.image, Image), (self.shapes, Shapes)):
            fill_layer_choices(box, self.viewer.layers, kind)

    def _mode_changed(self, *_) -> None:
        mode = self.mode.currentData()
        self.shapes.setEnabled(mode == "boxes")
        self.grid_size.setEnabled(mode == "grid")
        self.seed_height.setEnabled(self.instances.currentText() == "watershed")

    def _choose_model_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model folder (config.json, model.safetensors)")
        if folder:
            self.model.setText(folder)

    def set_mode(self, mode: str) -> None:
        """Choose the prompt mode by name (``tile``, ``grid`` or ``boxes``)."""
        self.mode.setCurrentIndex(self.mode.findData(mode))

    def postprocessing(self) -> PostProcessing:
        """The post-processing the form sets (checked: a bad value is a :class:`SamMitoError`)."""
        from sam_mito.inference.postprocessing import PostProcessing

        return PostProcessing(
            threshold=float(self.threshold.value()),
            z_window=int(self.z_window.value()),
            z_weighting=self.z_weighting.currentText(),
            opening=int(self.opening.value()),
            fill_holes=self.fill_holes.isChecked(),
            min_size=None if self.min_size.value() < 0 else int(self.min_size.value()),
            min_area=int(self.min_area.value()),
            instances=self.instances.currentText(),
            seed_height=float(self.seed_height.value()),
        )

    def make_job(self) -> Job:
        """Read and check the form; every problem is a :class:`SamMitoError` with the CLI's message."""
        from sam_mito.models.devices import resolve_device

        model = self.model.text().strip()
        if not model:
            raise SamMitoError(
                "model: empty; give a Hub id, a local model folder or sam-mito/tiny-base (--model)"
            )
        image = self.image.currentData()
        if image is None:
            raise SamMitoError("no image layer to segment: open or add an image (a 2D image or a 3D stack)")
        device = None if self.device.currentText() == AUTO else self.device.currentText()
        resolve_device(device)
        post = self.postprocessing()
        volume = layer_volume(image)
        mode = self.mode.currentData()
        boxes = None
        if mode == "boxes":
            shapes = self.shapes.currentData()
            if shapes is None:
                raise SamMitoError(
                    "mode 'boxes' needs boxes: add a shapes layer and draw rectangles on the slices to segment"
                )
            boxes = boxes_from_shapes(shapes, image, volume.shape)
        return Job(
            model=model,
            device=device,
            volume=volume,
            mode=mode,
            tile=self.tile.value() or None,
            overlap=int(self.overlap.value()),
            halo=int(self.halo.value()),
            grid_size=int(self.grid_size.value()),
            precision=self.precision.currentText(),
            post=post,
            boxes=boxes,
            probabilities=self.probabilities.isChecked(),
            image=image,
        )

    # ---- running

    def run_or_cancel(self) -> None:
        """The button: start a run, or cancel the one running."""
        if self.worker is not None:
            self.cancel()
        else:
            self.run()

    def run(self):
        """Check the form and start the segmentation in a napari worker; returns the worker (None if
        the settings were refused, which a notification then says)."""
        if self.worker is not None:
            return self.worker
        try:
            job = self.make_job()
        except SamMitoError as err:
            self._refuse(err)
            return None
        self.job, self.result, self.error = job, None, None
        holder: dict = {}

        def stopped() -> bool:
            worker = holder.get("worker")
            return job.cancel.is_set() or (worker is not None and worker.abort_requested)

        worker = create_worker(run_job, job, stopped, _start_thread=False, _ignore_errors=True)
        holder["worker"] = worker
        self.worker = worker
        self._progress = progress(total=0, desc=f"Segmenting {job.image.name}")
        worker.yielded.connect(self._advance)
        worker.returned.connect(self._finished)
        worker.errored.connect(self._failed)
        worker.finished.connect(self._closed)
        self.run_button.setText("Cancel")
        self.status.setText(f"loading {job.model}…")
        self.progress_bar.setRange(0, 0)
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop the run at its next tile; nothing is added."""
        if self.worker is None:
            return
        self.job.cancel.set()
        self.worker.quit()
        self.status.setText("cancelling…")

    def _cancelled(self) -> bool:
        """Whether this run was asked to stop (the widget's button or napari's task cancel)."""
        return self.job is not None and (
            self.job.cancel.is_set() or (self.worker is not None and self.worker.abort_requested)
        )

    def _advance(self, step: tuple[int, int]) -> None:
        done, total = step
        if self._cancelled():
            return
        if self._progress is not None:
            if self._progress.total != total:
                self._progress.total = total
            self._progress.update(done - self._progress.n)
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(done)
        self.status.setText(f"segmenting {self.job.image.name}: tile {done} of {total}")

    def _finished(self, result: Segmentation | None) -> None:
        if result is None:
            return
        self.result = result
        image = self.job.image
        placement = {
            "scale": image.scale[-result.labels.ndim :],
            "translate": image.translate[-result.labels.ndim :],
        }
        summary = result.summary.to_dict()
        if result.probabilities is not None:
            self.viewer.add_image(
                result.probabilities,
                name=f"{image.name} probabilities",
                colormap="magma",
                contrast_limits=(0.0, 1.0),
                blending="additive",
                metadata={"sam_mito": summary},
                **placement,
            )
        self.viewer.add_labels(
            result.labels, name=f"{image.name} instances", metadata={"sam_mito": summary}, **placement
        )
        message = f"{image.name}: {summary.get('instances', 0)} instances"
        if "objects_removed" in summary:
            message += f" ({summary['objects_removed']} smaller objects dropped)"
        self.status.setText(message)
        show_info(message)
        for warning in summary.get("warnings", []):
            show_warning(warning)

    def _failed(self, err: BaseException) -> None:
        if isinstance(err, Cancelled):  # the prediction saw the cancel before the worker did
            return
        self.error = err
        if isinstance(err, SamMitoError):
            self._refuse(err)
        else:  # a bug, not bad input: napari's error notification, with its traceback
            self.status.setText(f"failed: {type(err).__name__}: {err}")
            notification_manager.receive_error(type(err), err, err.__traceback__)

    def _refuse(self, err: SamMitoError) -> None:
        self.status.setText(f"error: {err}")
        show_error(str(err))

    def _closed(self) -> None:
        """The worker ended (returned, failed or cancelled): say so if cancelled, free the button."""
        if self.result is None and self.error is None and self._cancelled():
            self.status.setText("cancelled")
            show_info("segmentation cancelled")
        self.worker = None
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        self.run_button.setText("Segment")
        if self.progress_bar.maximum() == 0:
            self.progress_bar.setRange(0, 1)


def _devices() -> list[str]:
    """The devices offered: auto, the CPU, each CUDA GPU torch sees, MPS where it is available."""
    import torch

    devices = [AUTO, "cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return devices

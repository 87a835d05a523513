"""Cut EM volumes into patches with box prompts, split them by slice, and save a Hub-format dataset."""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import numpy as np
import yaml
from huggingface_hub import DatasetCard
from PIL import Image
from tqdm.auto import tqdm

from sam_mito.data.prompts import instance_boxes, tile_box, union_box
from sam_mito.defaults import PATCH_SIZE, PATCH_STEP, TEST_FRACTION, VALIDATION_FRACTION
from sam_mito.errors import SamMitoError

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")

FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "label": datasets.Image(),
        "union_box": datasets.List(datasets.Value("int32"), length=4),
        "instance_boxes": datasets.List(datasets.List(datasets.Value("int32"), length=4)),
        "instance_ids": datasets.List(datasets.Value("int32")),
        "tile_box": datasets.List(datasets.Value("int32"), length=4),
        "foreground_fraction": datasets.Value("float32"),
        "source": datasets.Value("string"),
        "slice_index": datasets.Value("int32"),
        "y": datasets.Value("int32"),
        "x": datasets.Value("int32"),
    }
)


@dataclass
class PatchConfig:
    """How volumes are cut into patches.

    Attributes
    ----------
    size : int
        Patch height and width in pixels.
    step : int
        Distance between neighbouring patch origins (``step < size`` overlaps).
    min_foreground : float
        Patches whose foreground fraction is at or below this are dropped (0: drop empty patches).
    min_instance_pixels : int
        Connected components smaller than this get no instance box (slivers at patch borders).
    validation_fraction : float
        Fraction of the training volume's slices, taken as one contiguous block at its end, that
        forms the validation split. Neighbouring slices are nearly identical, so a split by
        random patches would leak.
    test_fraction : float
        Used only without a separate test volume: a contiguous block of slices before the
        validation block becomes the test split.
    """

    size: int = PATCH_SIZE
    step: int = PATCH_STEP
    min_foreground: float = 0.0
    min_instance_pixels: int = 16
    validation_fraction: float = VALIDATION_FRACTION
    test_fraction: float = TEST_FRACTION

    def __post_init__(self) -> None:
        for name in ("size", "step"):
            if not getattr(self, name) > 0:
                raise SamMitoError(
                    f"patch {name} {getattr(self, name)}: expected a positive number of pixels"
                )
        if self.min_instance_pixels < 0:
            raise SamMitoError(f"min_instance_pixels {self.min_instance_pixels}: expected 0 or more")
        for name in ("min_foreground", "validation_fraction", "test_fraction"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 <= value < 1):
                raise SamMitoError(f"{name} {value}: expected a fraction, 0 <= {name} < 1")


def patch_origins(height: int, width: int, *, size: int, step: int) -> list[tuple[int, int]]:
    """Top-left corners of a grid of ``size`` patches with stride ``step`` covering the image.

    When the stride does not land on the border, one more row/column is placed flush with it.
    """
    if height < size or width < size:
        raise SamMitoError(f"slice shape {(height, width)} is smaller than the patch size {size}x{size}")
    if step <= 0:
        raise SamMitoError(f"patch step {step}: expected a positive number of pixels")

    def starts(extent: int) -> list[int]:
        found = list(range(0, extent - size + 1, step))
        if found[-1] != extent - size:
            found.append(extent - size)
        return found

    return [(y, x) for y in starts(height) for x in starts(width)]


def slice_splits(n_slices: int, *, config: PatchConfig, has_test_volume: bool) -> dict[str, range]:
    """Contiguous slice ranges for each split of the training volume: train | test | validation."""

    def block(fraction: float) -> int:
        return max(1, round(n_slices * fraction)) if fraction > 0 else 0

    n_val = block(config.validation_fraction)
    n_test = 0 if has_test_volume else block(config.test_fraction)
    n_train = n_slices - n_val - n_test
    if n_train < 1:
        raise SamMitoError(
            f"training volume has {n_slices} slices: too few for validation_fraction="
            f"{config.validation_fraction} and test_fraction={config.test_fraction}"
        )
    return {
        "train": range(0, n_train),
        "test": range(n_train, n_train + n_test),
        "validation": range(n_train + n_test, n_slices),
    }


def _png(array: np.ndarray) -> dict:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return {"bytes": buffer.getvalue(), "path": None}


def iter_patches(
    images: np.ndarray, masks: np.ndarray, slices: range, *, source: str, config: PatchConfig
) -> Iterator[dict]:
    """Yield dataset rows for the non-empty patches of the given slices of one volume."""
    _, height, width = images.shape
    origins = patch_origins(height, width, size=config.size, step=config.step)
    for z in tqdm(slices, desc=f"patching {source}", unit="slice", leave=False):
        for y, x in origins:
            label = masks[z, y : y + config.size, x : x + config.size]
            fraction = float(label.mean())
            if fraction <= config.min_foreground:
                continue
            boxes, ids = instance_boxes(label, min_pixels=config.min_instance_pixels)
            yield {
                "image": _png(images[z, y : y + config.size, x : x + config.size]),
                "label": _png(label),
                "union_box": union_box(label),
                "instance_boxes": boxes,
                "instance_ids": ids,
                "tile_box": tile_box(config.size, config.size),
                "foreground_fraction": fraction,
                "source": source,
                "slice_index": z,
                "y": y,
                "x": x,
            }


def build_dataset(
    train: tuple[np.ndarray, np.ndarray],
    *,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    config: PatchConfig | None = None,
    sources: tuple[str, str] = ("training", "testing"),
) -> datasets.DatasetDict:
    """Patch the training volume (and optional test volume) into a train/validation/test DatasetDict.

    Parameters
    ----------
    train : tuple of numpy.ndarray
        ``uint8`` image stack and {0, 1} mask stack of the training volume.
    test : tuple of numpy.ndarray, optional
        The test volume; without it the test split is a slice block of the training volume.
    config : PatchConfig, optional
        Patching and split parameters.
    sources : tuple of str
        Names recorded in the ``source`` column for the training and test volumes.
    """
    config = config or PatchConfig()
    ranges = slice_splits(len(train[0]), config=config, has_test_volume=test is not None)
    rows: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for split, slices in ranges.items():
        rows[split].extend(iter_patches(*train, slices, source=sources[0], config=config))
    if test is not None:
        rows["test"].extend(iter_patches(*test, range(len(test[0])), source=sources[1], config=config))
    for split in SPLITS:
        if not rows[split]:
            raise SamMitoError(
                f"split '{split}' has no patch with foreground (slices {ranges.get(split)}); "
                "give more slices, more foreground or a lower --min-foreground"
            )
    columns = {split: {key: [row[key] for row in rows[split]] for key in FEATURES} for split in SPLITS}
    dataset = datasets.DatasetDict(
        {split: datasets.Dataset.from_dict(columns[split], features=FEATURES) for split in SPLITS}
    )
    logger.info("patches per split: %s", {split: len(dataset[split]) for split in SPLITS})
    return dataset


def _check_dataset_folder(folder: Path) -> None:
    """Refuse a local folder whose README.md card declares no ``configs``.

    Without the card's list of data files, ``datasets.load_dataset`` would read every data file it
    finds below the folder, merging for instance the parquet files of several prepared datasets.
    """
    card = folder / "README.md"
    try:
        configs = DatasetCard.load(card).data.get("configs") if card.is_file() else None
    except (ValueError, yaml.YAMLError) as err:
        raise SamMitoError(f"{card}: unreadable dataset card ({err})") from err
    if configs:
        return
    below = [
        shard for pattern in ("*/data/*.parquet", "*/*/data/*.parquet") for shard in folder.glob(pattern)
    ]
    nested = sorted({str(shard.parents[1]) for shard in below})
    if nested:
        raise SamMitoError(
            f"{folder}: holds dataset folder(s) {nested} but is not one itself; pass one of them"
        )
    raise SamMitoError(f"{folder}: not a prepared sam-mito dataset (no README.md card declaring configs)")


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def load_patches(path: str | Path, split: str | None = None) -> datasets.DatasetDict | datasets.Dataset:
    """Load a dataset written by :func:`sam_mito.data.dataset_folder.save_dataset`, or a Hub id, with ``load_dataset``.

    Reads exactly as ``datasets.load_dataset(str(path))`` does: the card lists content-fingerprinted
    file names, so the ``datasets`` cache never serves another folder's patches.

    Parameters
    ----------
    path : str or pathlib.Path
        A prepared dataset folder or a Hub dataset id.
    split : str, optional
        Return only this split.

    Returns
    -------
    datasets.DatasetDict or datasets.Dataset
        All splits, or the one asked for.

    Raises
    ------
    SamMitoError
        If the folder is not such a dataset (or holds several), a column is missing, or ``split``
        does not exist or is empty.
    """
    from sam_mito.paths import is_hub_id

    if Path(path).is_dir():
        _check_dataset_folder(Path(path))
    elif not is_hub_id(str(path)):
        raise SamMitoError(f"{path}: no such dataset folder (and not a Hub dataset id, owner/name)")
    try:
        loaded = datasets.load_dataset(str(path))
    except ConnectionError as err:  # offline, or the Hub cannot be reached
        raise SamMitoError(
            f"{path}: no such folder, and the Hub dataset cannot be reached "
            f"({_first_line(err)}); check the id and the network, or pass a local folder"
        ) from err
    except (OSError, ValueError, datasets.exceptions.DatasetsError) as err:
        raise SamMitoError(f"{path}: not a prepared sam-mito dataset ({_first_line(err)})") from err
    for name, part in loaded.items():
        missing = [column for column in ("image", "label", "union_box") if column not in part.column_names]
        if missing:
            raise SamMitoError(
                f"{path}: split '{name}' lacks column(s) {missing}; expected a dataset made by `sam-mito prepare`"
            )
    if split is None:
        return loaded
    if split not in loaded:
        raise SamMitoError(f"{path}: no split '{split}'; available: {sorted(loaded)}")
    if len(loaded[split]) == 0:
        raise SamMitoError(f"{path}: split '{split}' is empty")
    return loaded[split]


def prepare_dataset(
    out_dir: str | Path,
    *,
    images: str | Path | None = None,
    masks: str | Path | None = None,
    test_images: str | Path | None = None,
    test_masks: str | Path | None = None,
    synthetic_shape: tuple[int, int, int] | None = None,
    seed: int = 0,
    config: PatchConfig | None = None,
    mask_threshold: float | None = None,
    overwrite: bool = False,
) -> datasets.DatasetDict:
    """Read (or synthesise) volumes, patch them and write the dataset folder; return the splits.

    Pushing is a separate step: :func:`sam_mito.hub.uploads.push_dataset` uploads the folder.

    Give either ``images`` and ``masks`` (EPFL TIFF stacks or slice folders, with optional
    ``test_images``/``test_masks``), or ``synthetic_shape`` for a synthetic training volume and a
    smaller synthetic test volume.

    The output folder is checked first (:func:`sam_mito.files.check_outputs`): it may not be, lie
    inside, or hold an input, nor lie under a file, and an existing one is replaced only with
    ``overwrite`` and only when sam-mito wrote it.
    """
    from sam_mito.data.dataset_folder import SOURCE_LICENSE, SYNTHETIC_LICENSE, save_dataset
    from sam_mito.data.synthetic import synthetic_volume
    from sam_mito.files import check_outputs
    from sam_mito.volumes.reading import load_pair
    from sam_mito.volumes.volume import NORMALIZATION

    config = config or PatchConfig()
    inputs = {"images": images, "masks": masks, "test_images": test_images, "test_masks": test_masks}
    check_outputs({"out_dir": out_dir}, inputs, overwrite=overwrite)
    license = SYNTHETIC_LICENSE if synthetic_shape is not None else SOURCE_LICENSE
    if synthetic_shape is not None:
        depth, height, width = synthetic_shape
        train = synthetic_volume(synthetic_shape, seed=seed)
        test = synthetic_volume((max(2, depth // 4), height, width), seed=seed + 1)
        windows = {"training": None, "testing": None}
        source = (
            f"Synthetic EM generated by `sam_mito.data.synthetic` (training volume {depth}×{height}×{width}, "
            f"seed {seed}; test volume seed {seed + 1}). Not real microscopy data."
        )
    else:
        if images is None or masks is None:
            raise SamMitoError("prepare needs --images and --masks, or --synthetic")
        if (test_images is None) != (test_masks is None):
            raise SamMitoError("--test-images and --test-masks go together; give both or neither")
        *train, train_window = load_pair(images, masks, mask_threshold=mask_threshold)
        windows = {"training": train_window}
        test = None
        if test_images:
            *test, windows["testing"] = load_pair(test_images, test_masks, mask_threshold=mask_threshold)
        source = f"Image stack `{Path(images).name}` with masks `{Path(masks).name}`" + (
            f"; test stack `{Path(test_images).name}` with masks `{Path(test_masks).name}`."
            if test_images
            else "."
        )
        source += " The layout follows the EPFL mitochondria dataset (Lucchi et al., 2012)."
    dataset = build_dataset(train, test=test, config=config)
    normalization = {**NORMALIZATION, "intensity_windows": windows}
    card = {"source": source, "patch_config": {**asdict(config), "normalization": normalization}}
    save_dataset(dataset, out_dir, **card, license=license, overwrite=overwrite)
    return dataset

"""The offline end-to-end demo: synthetic (or real) EM → dataset → fine-tuned tiny SAM → scores → prediction → measurement."""

from __future__ import annotations

import logging
from pathlib import Path

import tifffile

from sam_mito.data.patches import PatchConfig, prepare_dataset, slice_splits
from sam_mito.data.synthetic import SyntheticEM
from sam_mito.defaults import TINY_BASE
from sam_mito.evaluation.compare import compare
from sam_mito.evaluation.figures import overlay
from sam_mito.evaluation.metrics import dice_iou
from sam_mito.evaluation.scoring import score_volumes
from sam_mito.files import atomic_directory, check_outputs
from sam_mito.hub.cards import ModelCardInfo
from sam_mito.inference.segmenter import Segmenter
from sam_mito.inference.volume_prediction import predict_volume
from sam_mito.measurement.objects import measure
from sam_mito.measurement.outputs import write_measurements
from sam_mito.measurement.summary import summarize
from sam_mito.models.loading import load_sam
from sam_mito.training.config import SamMitoConfig
from sam_mito.training.trainer import train
from sam_mito.volumes.reading import load_pair

logger = logging.getLogger(__name__)

DATA_SPLITS = PatchConfig(validation_fraction=0.15, test_fraction=0.25)


def run_demo(
    out_dir: str | Path, *, data: str | Path | None = None, steps: int = 300, overwrite: bool = False
) -> dict:
    """Prepare data, fine-tune the packaged tiny base's mask decoder, and compare base vs fine-tuned.

    ``data`` is an EPFL-layout folder (``training.tif`` + ``training_groundtruth.tif``); without it
    a synthetic volume pair is generated. Everything is written into a staging folder that
    replaces ``out_dir`` only at the end (:func:`sam_mito.files.atomic_directory`), so with
    ``overwrite`` nothing of an earlier output survives, and a failure leaves it as it was.
    """
    check_outputs({"out_dir": out_dir}, {"data": data}, overwrite=overwrite)
    with atomic_directory(out_dir, overwrite=overwrite) as staging:
        return _run(staging, data=data, steps=steps)


def _run(out_dir: Path, *, data: str | Path | None, steps: int) -> dict:
    dataset_dir = out_dir / "dataset"
    if data is None:
        prepare_dataset(dataset_dir, synthetic_shape=(24, 512, 512), seed=0, overwrite=True)
    else:
        data = Path(data)
        prepare_dataset(
            dataset_dir,
            images=data / "training.tif",
            masks=data / "training_groundtruth.tif",
            config=DATA_SPLITS,
            overwrite=True,
        )
    model_dir = out_dir / "model"
    config = SamMitoConfig(
        output_dir=str(model_dir),
        model_name_or_path=TINY_BASE,
        dataset=str(dataset_dir),
        embedding_cache_dir=str(out_dir / "embedding_cache"),
        max_steps=steps,
        per_device_train_batch_size=8,
        learning_rate=1e-4,
        box_jitter=10,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=25,
        use_cpu=True,
        report_to="none",
        seed=0,
    )
    train(config)
    report = compare(
        TINY_BASE,
        str(model_dir),
        dataset_dir,
        embedding_cache_dir=config.embedding_cache_dir,
        out_dir=model_dir,
    )
    card = ModelCardInfo.load(model_dir)
    card.add_comparison(report, figure="comparison.png")
    card.write(model_dir)  # now with the comparison and the figure
    return {**report.to_dict(), "prediction": predict_full_slice(out_dir / "predict", model_dir, data=data)}


def predict_full_slice(out_dir: Path, model_dir: Path, *, data: str | Path | None = None) -> dict:
    """Segment one whole slice the model never trained on, prompt-free, and score it.

    Synthetic: a fresh 768x1024 scene (another seed). Real data: the first slice of the test block.
    Writes ``slice.tif``, ``truth.tif``, ``mask.tif`` (0/255), ``prediction.png`` (the mask over the
    slice), and the same prediction as OME-Zarr (``mask.zarr``, ``labels.zarr``) scored by
    :func:`sam_mito.evaluation.scoring.score_volumes` into ``scores.json``; its instances are measured
    (:func:`sam_mito.measurement.objects.measure`, in 2D: one slice) into ``measurements.csv``,
    ``measurements.summary.json`` and ``measurements.png``.
    """
    if data is None:
        image, truth = SyntheticEM((1, 768, 1024), seed=1000).render(0)
    else:
        images, masks, _ = load_pair(Path(data) / "training.tif", Path(data) / "training_groundtruth.tif")
        index = slice_splits(len(images), config=DATA_SPLITS, has_test_volume=False)["test"].start
        image, truth = images[index], masks[index]
    out_dir.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(out_dir / "slice.tif", image)
    tifffile.imwrite(out_dir / "truth.tif", (truth > 0).astype("uint8") * 255)
    segmenter = Segmenter(*load_sam(str(model_dir)), mode="tile")
    predict_volume(segmenter, out_dir / "slice.tif", out_dir / "mask.tif")  # as `sam-mito predict` does
    mask = tifffile.imread(out_dir / "mask.tif") > 0
    overlay(image, mask, (0, 160, 255), size=None).save(out_dir / "prediction.png")
    scores = dice_iou(mask, truth)
    # the same slice as OME-Zarr with instance labels, scored as a volume (what `sam-mito score` does)
    zarr_segmenter = Segmenter(segmenter.model, segmenter.processor, mode="tile")
    predict_volume(
        zarr_segmenter,
        out_dir / "slice.tif",
        out_dir / "mask.zarr",
        labels_path=out_dir / "labels.zarr",
        overwrite=True,
    )
    volume_scores = score_volumes(
        out_dir / "mask.zarr",
        out_dir / "truth.tif",
        labels=out_dir / "labels.zarr",
        json_path=out_dir / "scores.json",
    )
    # each predicted object measured, as `sam-mito measure` does
    table = measure(out_dir / "labels.zarr", image=out_dir / "slice.tif")
    measurement = {**summarize(table), "labels": "labels.zarr", "image": "slice.tif"}  # not the staging path
    files = write_measurements(table, out_dir / "measurements.csv", summary=measurement)
    return {
        "dice": scores["dice"],
        "iou": scores["iou"],
        "encoder_passes": segmenter.encoder_passes,
        "volume_scores": {k: v for k, v in volume_scores.to_dict().items() if k != "per_slice"},
        "measurement": measurement,
        "measurement_files": {name: str(path.relative_to(out_dir.parent)) for name, path in files.items()},
    }

"""Prepared rows as the Trainer's inputs: box prompts, target masks, and cached embeddings or pixels."""

from __future__ import annotations

import datasets
import numpy as np
import torch
from transformers import SamModel, SamProcessor

from sam_mito.data.prompts import BOX_COLUMNS, label_instances, row_boxes
from sam_mito.errors import SamMitoError
from sam_mito.features.cache import EmbeddingCache, build_cache
from sam_mito.features.encoding import pixel_values
from sam_mito.models.decoding import pad_boxes
from sam_mito.training.config import SamMitoConfig
from sam_mito.volumes.volume import NORMALIZATION


def _check_split(split: datasets.Dataset, name: str, prompt_mode: str) -> None:
    column = BOX_COLUMNS[prompt_mode]
    for needed in ("image", "label", column):
        if needed not in split.column_names:
            raise SamMitoError(
                f"split '{name}' has no column '{needed}' (needed for prompt_mode={prompt_mode}); "
                "expected a dataset made by `sam-mito prepare`"
            )
    rows = split[column]
    boxes = [box for row in rows for box in row] if prompt_mode == "instance" else rows
    for box in boxes:
        if len(box) != 4:
            raise SamMitoError(
                f"split '{name}' column '{column}': a box has {len(box)} numbers {list(box)}; "
                "expected 4, [x0, y0, x1, y1]"
            )


class PromptDataset(torch.utils.data.Dataset):
    """Rows of a prepared split as model inputs: boxes, target masks, and embeddings or pixels.

    Labels are decoded once and held as ``uint8``; images come from the embedding cache when one
    is given (the fast path) or are preprocessed for the encoder on every access. With
    ``instances=True`` each item also holds the patch's connected objects, labelled 1..N
    (``"instances"``), from which the Trainer samples point prompts.
    """

    def __init__(
        self,
        split: datasets.Dataset,
        *,
        name: str,
        prompt_mode: str,
        processor: SamProcessor,
        embeddings: EmbeddingCache | None = None,
        max_instances: int = 16,
        instances: bool = False,
    ) -> None:
        _check_split(split, name, prompt_mode)
        self.split, self.prompt_mode, self.processor = split, prompt_mode, processor
        self.embeddings, self.max_instances, self.with_instances = embeddings, max_instances, instances
        self.labels = [np.asarray(image, dtype=np.uint8) for image in split["label"]]
        for index, label in enumerate(self.labels):
            if label.max() > 1:
                raise SamMitoError(
                    f"split '{name}' row {index}: label values up to {label.max()}; expected {{0, 1}} "
                    "(0/255 masks must be normalised, as `sam-mito prepare` does)"
                )
        self.boxes = split[BOX_COLUMNS[prompt_mode]]
        self.instance_ids = split["instance_ids"] if prompt_mode == "instance" else None

    def __len__(self) -> int:
        return len(self.labels)

    def inference_settings(self) -> dict:
        """What a model trained on these rows records as ``config.sam_mito`` for inference.

        Returns
        -------
        dict
            ``patch_size`` (the patches' longest side), ``prompt_mode`` and ``normalization``
            (:data:`sam_mito.volumes.volume.NORMALIZATION`, the rule ``prepare`` applies).
        """
        return {
            "patch_size": max(self.labels[0].shape) if self.labels else None,
            "prompt_mode": self.prompt_mode,
            "normalization": NORMALIZATION,
        }

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        label = self.labels[index]
        if self.prompt_mode == "instance" and self.boxes[index]:
            instances = label_instances(label)
            ids = self.instance_ids[index][: self.max_instances]
            boxes = self.boxes[index][: self.max_instances]
            targets = np.stack([instances == i for i in ids])
        else:  # one box; an instance row with only slivers falls back to its union box
            boxes, targets = row_boxes(self.split[index], self.prompt_mode), label[None]
        item = {
            "index": torch.tensor(index),
            "boxes": torch.tensor(boxes, dtype=torch.float32),
            "targets": torch.from_numpy(targets.astype(np.float32)),
        }
        if self.with_instances:
            item["instances"] = torch.from_numpy(label_instances(label).astype(np.int32))
        if self.embeddings is not None:
            item["image_embeddings"] = self.embeddings[index]
        else:
            item["pixel_values"] = pixel_values(self.processor, [self.split[index]["image"]])[0]
        return item


def collate_prompts(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack items, padding the box axis to the largest count; ``box_valid`` marks the real boxes."""
    boxes, valid = pad_boxes([item["boxes"].tolist() for item in items])
    height, width = items[0]["targets"].shape[-2:]
    targets = torch.zeros(*valid.shape, height, width)
    for row, item in enumerate(items):
        targets[row, : len(item["targets"])] = item["targets"]
    batch = {
        "boxes": boxes,
        "targets": targets,
        "box_valid": valid,
        "index": torch.stack([item["index"] for item in items]),
    }
    for key in ("image_embeddings", "pixel_values", "instances"):
        if key in items[0]:
            batch[key] = torch.stack([item[key] for item in items])
    return batch


def prompt_dataset(
    model: SamModel, processor: SamProcessor, split: datasets.Dataset, config: SamMitoConfig, *, name: str
) -> PromptDataset:
    """A split as training inputs, encoding its images once into the embedding cache if enabled.

    Parameters
    ----------
    model, processor : SamModel, SamProcessor
        The SAM whose frozen encoder makes the embeddings.
    split : datasets.Dataset
        A split made by ``sam-mito prepare``.
    config : SamMitoConfig
        Prompt mode, cache and encoder settings.
    name : str
        The split's name (cache file prefix, error messages).

    Returns
    -------
    PromptDataset
    """
    cache = None
    if config.embedding_cache:
        cache = build_cache(
            model,
            processor,
            split,
            name=name,
            cache_dir=config.embedding_cache_dir,
            precision=config.precision,
            batch_size=config.encode_batch_size,
        )
    return PromptDataset(
        split,
        name=name,
        prompt_mode=config.prompt_mode,
        processor=processor,
        embeddings=cache,
        max_instances=config.max_instances,
        instances=config.point_weight > 0,
    )

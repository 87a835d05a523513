"""Decoder-only fine-tuning of SAM: config, prompt datasets, the Trainer subclass and the recipe."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from transformers import (
    EvalPrediction,
    HfArgumentParser,
    SamModel,
    SamProcessor,
    Trainer,
    TrainingArguments,
    set_seed,
)

from .embeddings import ENCODE_BATCH_SIZE, PRECISIONS, EmbeddingCache, build_cache, pixel_values
from .errors import SamMitoError
from .hub import TRAINING_CONFIG
from .losses import DiceCELoss
from .metrics import dice_iou
from .modeling import DEFAULT_MODEL, freeze_for_decoder_training, load_sam
from .prompts import jitter_boxes, label_instances, prompts_to_input

logger = logging.getLogger(__name__)

PROMPT_MODES = ("union", "instance", "tile")
BOX_COLUMNS = {"union": "union_box", "instance": "instance_boxes", "tile": "tile_box"}


@dataclass
class SamMitoConfig(TrainingArguments):
    """Training arguments for decoder-only SAM fine-tuning; every ``TrainingArguments`` field applies."""

    model_name_or_path: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "SAM to fine-tune: Hub id, local folder, or sam-mito/tiny-base."},
    )
    dataset: str | None = field(
        default=None, metadata={"help": "Folder or Hub id made by `sam-mito prepare`."}
    )
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str | None = field(default="validation", metadata={"help": "Split for validation Dice/IoU."})
    prompt_mode: str = field(
        default="union",
        metadata={"help": "Box prompts: union (all foreground), instance (one per object), tile."},
    )
    box_jitter: int = field(
        default=20, metadata={"help": "Move each box side by up to this many pixels (train)."}
    )
    max_instances: int = field(
        default=16, metadata={"help": "instance mode: at most this many boxes per patch."}
    )
    dice_weight: float = field(default=1.0, metadata={"help": "Weight of the Dice term of the loss."})
    ce_weight: float = field(default=1.0, metadata={"help": "Weight of the cross-entropy term of the loss."})
    embedding_cache: bool = field(
        default=True, metadata={"help": "Encode each patch once and train on cached embeddings."}
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Embedding cache folder (default ~/.cache)."}
    )
    encode_precision: str = field(
        default="fp32", metadata={"help": f"Encoder precision, one of {PRECISIONS}."}
    )
    encode_batch_size: int = field(
        default=ENCODE_BATCH_SIZE,
        metadata={"help": "Images per encoder pass when caching (on CPU, 1 is leanest and fastest)."},
    )
    learning_rate: float = field(default=1e-5, metadata={"help": "Adam learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "Adam weight decay."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep prompt columns."})
    label_names: list[str] | None = field(
        default_factory=lambda: ["targets"], metadata={"help": "Label keys."}
    )

    def __post_init__(self) -> None:
        if self.prompt_mode not in PROMPT_MODES:
            raise SamMitoError(f"prompt_mode '{self.prompt_mode}': expected one of {PROMPT_MODES}")
        if self.encode_precision not in PRECISIONS:
            raise SamMitoError(f"encode_precision '{self.encode_precision}': expected one of {PRECISIONS}")
        if self.box_jitter < 0:
            raise SamMitoError(f"box_jitter {self.box_jitter}: expected a non-negative number of pixels")
        super().__post_init__()


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
    is given (the fast path) or are preprocessed for the encoder on every access.
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
    ) -> None:
        _check_split(split, name, prompt_mode)
        self.split, self.prompt_mode, self.processor = split, prompt_mode, processor
        self.embeddings, self.max_instances = embeddings, max_instances
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

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        label = self.labels[index]
        if self.prompt_mode == "instance" and self.boxes[index]:
            instances = label_instances(label)
            ids = self.instance_ids[index][: self.max_instances]
            boxes = self.boxes[index][: self.max_instances]
            targets = np.stack([instances == i for i in ids])
        elif self.prompt_mode == "instance":  # only slivers: fall back to the union box
            boxes, targets = [self.split[index]["union_box"]], label[None]
        else:
            boxes, targets = [self.boxes[index]], label[None]
        item = {
            "index": torch.tensor(index),
            "boxes": torch.tensor(boxes, dtype=torch.float32),
            "targets": torch.from_numpy(targets.astype(np.float32)),
        }
        if self.embeddings is not None:
            item["image_embeddings"] = self.embeddings[index]
        else:
            item["pixel_values"] = pixel_values(self.processor, [self.split[index]["image"]])[0]
        return item


def collate_prompts(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack items, padding the box axis to the largest count; ``box_valid`` marks the real boxes."""
    most = max(len(item["boxes"]) for item in items)
    batch: dict[str, torch.Tensor] = {}
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(len(items), most, 1)
    height, width = items[0]["targets"].shape[-2:]
    targets = torch.zeros(len(items), most, height, width)
    valid = torch.zeros(len(items), most, dtype=torch.bool)
    for row, item in enumerate(items):
        count = len(item["boxes"])
        boxes[row, :count], targets[row, :count], valid[row, :count] = item["boxes"], item["targets"], True
    batch.update(
        boxes=boxes, targets=targets, box_valid=valid, index=torch.stack([i["index"] for i in items])
    )
    for key in ("image_embeddings", "pixel_values"):
        if key in items[0]:
            batch[key] = torch.stack([item[key] for item in items])
    return batch


def masks_to_image(low_res: torch.Tensor, size: tuple[int, int], image_size: int) -> torch.Tensor:
    """Map SAM's low-resolution mask logits ``(..., h, w)`` back onto the original ``size`` image.

    The low-resolution grid covers the padded encoder input; the part covering the resized image
    is cropped and interpolated to ``size``, as ``SamProcessor.post_process_masks`` does, but
    differentiably and without going through the full input resolution.
    """
    height, width = size
    scale = image_size / max(height, width)
    low_h, low_w = low_res.shape[-2:]
    crop_h = max(1, round(height * scale * low_h / image_size))
    crop_w = max(1, round(width * scale * low_w / image_size))
    lead = low_res.shape[:-2]
    cropped = low_res[..., :crop_h, :crop_w].reshape(-1, 1, crop_h, crop_w)
    resized = F.interpolate(cropped, size=(height, width), mode="bilinear", align_corners=False)
    return resized.reshape(*lead, height, width)


def compute_segmentation_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """Trainer ``compute_metrics``: Dice and IoU of thresholded logits against the reference masks."""
    logits, references = prediction.predictions, prediction.label_ids
    scores = dice_iou(logits > 0, references > 0.5)
    return {k: v for k, v in scores.items() if k != "n_images"}


class SamMitoTrainer(Trainer):
    """A Trainer that fine-tunes SAM's mask decoder from box prompts with Dice + cross-entropy and Adam."""

    args: SamMitoConfig

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("data_collator", collate_prompts)
        super().__init__(*args, **kwargs)
        self.loss_fn = DiceCELoss(dice_weight=self.args.dice_weight, ce_weight=self.args.ce_weight)
        self.loss_is_scaled_for_ga = False

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        """Adam over the parameters that require gradients (the mask decoder's)."""
        if self.optimizer is None:
            parameters = [p for p in self.model.parameters() if p.requires_grad]
            self.optimizer = torch.optim.Adam(
                parameters, lr=self.args.learning_rate, weight_decay=self.args.weight_decay
            )
        return self.optimizer

    def _jitter(self, boxes: torch.Tensor, indices: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        moved = []
        for row, index in zip(boxes, indices.tolist(), strict=True):
            seed = np.random.SeedSequence([self.args.seed, self.state.global_step, index]).generate_state(1)[
                0
            ]
            generator = torch.Generator().manual_seed(int(seed))
            moved.append(
                jitter_boxes(row.cpu(), max_shift=self.args.box_jitter, size=size, generator=generator)
            )
        return torch.stack(moved).to(boxes.device)

    def mask_logits(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mask logits ``(B, K, H, W)`` at the targets' resolution for the batch's box prompts."""
        size = tuple(inputs["targets"].shape[-2:])
        boxes = inputs["boxes"]
        if model.training and self.args.box_jitter > 0:
            boxes = self._jitter(boxes, inputs["index"], size)
        image_size = self.model.config.vision_config.image_size
        image = {k: inputs[k] for k in ("image_embeddings", "pixel_values") if k in inputs}
        outputs = model(
            **image, input_boxes=prompts_to_input(boxes, size, image_size), multimask_output=False
        )
        return masks_to_image(outputs.pred_masks[:, :, 0], size, image_size)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """DiceCE between the mask logits of every real (unpadded) box and its target mask."""
        logits = self.mask_logits(model, inputs)
        valid = inputs["box_valid"]
        loss = self.loss_fn(logits[valid][:, None], inputs["targets"][valid][:, None])
        return (loss, {"logits": logits}) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Loss, per-patch union of the boxes' logits, and the union of their targets."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
        if prediction_loss_only:
            return loss.detach(), None, None
        valid = inputs["box_valid"][..., None, None]
        merged = outputs["logits"].masked_fill(~valid, -math.inf).amax(dim=1)
        reference = (inputs["targets"] * valid).amax(dim=1)
        return loss.detach(), merged, reference

    def create_model_card(self, model_name: str | None = None, **kwargs) -> None:
        """Write our model card (hub_cards/model_card.md) into the output folder."""
        from .hub import write_model_card

        if self.is_world_process_zero():
            write_model_card(self.args.output_dir, config=self.args, model=self.model, model_name=model_name)


def prompt_dataset(
    model: SamModel, processor: SamProcessor, split: datasets.Dataset, config: SamMitoConfig, *, name: str
) -> PromptDataset:
    """A split as training inputs, encoding its images once into the embedding cache if enabled."""
    cache = None
    if config.embedding_cache:
        cache = build_cache(
            model,
            processor,
            split,
            name=name,
            cache_dir=config.cache_dir,
            precision=config.encode_precision,
            batch_size=config.encode_batch_size,
        )
    return PromptDataset(
        split,
        name=name,
        prompt_mode=config.prompt_mode,
        processor=processor,
        embeddings=cache,
        max_instances=config.max_instances,
    )


def parse_config(argv: list[str] | None = None) -> SamMitoConfig:
    """Build a :class:`SamMitoConfig` from ``[CONFIG.yaml|CONFIG.json] [--field value ...]``.

    Values in the file become defaults; flags after it override them.
    """
    import sys

    import yaml

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(SamMitoConfig)
    if argv and argv[0].endswith((".yaml", ".yml", ".json")):
        path = Path(argv.pop(0))
        try:
            values = yaml.safe_load(path.read_text())  # JSON is YAML too
        except (OSError, yaml.YAMLError) as err:
            raise SamMitoError(f"{path}: cannot read config ({err})") from err
        if not isinstance(values, dict):
            raise SamMitoError(f"{path}: expected a mapping of field names to values")
        unknown = sorted(set(values) - {f.name for f in fields(SamMitoConfig)})
        if unknown:
            raise SamMitoError(f"{path}: unknown field(s) {unknown}; see `sam-mito train --help`")
        parser.set_defaults(**values)
    (config,) = parser.parse_args_into_dataclasses(args=argv)
    return config


def train(config: SamMitoConfig) -> dict[str, float]:
    """The fine-tuning recipe, top to bottom; returns the final metrics.

    Load the base SAM, freeze all but the mask decoder, load the prepared patches, encode them
    once, train with Dice + cross-entropy and Adam, save model + processor + card, evaluate, and
    push to the Hub if asked.
    """
    from .data import load_patches

    if config.dataset is None:
        raise SamMitoError("no dataset given: set `dataset` to a folder or Hub id made by `sam-mito prepare`")
    set_seed(config.seed)
    model, processor = load_sam(config.model_name_or_path)
    freeze_for_decoder_training(model)
    model.to(config.device)

    train_split = load_patches(config.dataset, config.train_split)
    eval_split = load_patches(config.dataset, config.eval_split) if config.eval_split else None
    # Saved with the model, so inference tiles slices the way the model was trained.
    model.config.sam_mito = {
        "patch_size": max(train_split[0]["image"].size),
        "prompt_mode": config.prompt_mode,
    }
    train_set = prompt_dataset(model, processor, train_split, config, name=config.train_split)
    eval_set = (
        prompt_dataset(model, processor, eval_split, config, name=config.eval_split) if eval_split else None
    )

    trainer = SamMitoTrainer(
        model=model,
        args=config,
        train_dataset=train_set,
        eval_dataset=eval_set,
        # The image processor alone: SamProcessor.from_pretrained reads it back, and Trainer's
        # tokenizer alignment fails on a processor without a tokenizer.
        processing_class=processor.image_processor,
        compute_metrics=compute_segmentation_metrics,
    )
    result = trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    trainer.save_model()
    if trainer.is_world_process_zero():  # the settings, for cards rewritten after `sam-mito evaluate`
        (Path(config.output_dir) / TRAINING_CONFIG).write_text(config.to_json_string())
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()
    metrics = dict(result.metrics)
    if eval_set is not None:
        eval_metrics = trainer.evaluate()
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)
    trainer.create_model_card()
    if config.push_to_hub:
        trainer.push_to_hub()
    return metrics

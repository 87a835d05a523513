"""One process or many: every trainable parameter used, every evaluation row scored once, the run recorded."""

import json
from functools import partial
from pathlib import Path

import pytest

from sam_mito.data.patches import load_patches
from sam_mito.defaults import TINY_BASE
from sam_mito.models.decoding import decode
from sam_mito.models.loading import freeze_for_decoder_training, load_sam
from sam_mito.training.config import SamMitoConfig, parse_config
from sam_mito.training.processes import whole_modules
from sam_mito.training.prompt_dataset import collate_prompts
from sam_mito.training.trainer import SamMitoTrainer, train
from tests._launch import launch
from tests._training_config import tiny_training_config

ROOT = Path(__file__).resolve().parents[2]
IOU_HEAD = "mask_decoder.iou_prediction_head"


_config = partial(tiny_training_config, max_steps=2, box_jitter=0, precision="fp32")


def _mask_dice(trainer, model, inputs):
    """A single-mask loss written out here: 1 - soft Dice of mask 0 of every real box."""
    size = tuple(inputs["targets"].shape[-2:])
    decoded = decode(model, size, boxes=inputs["boxes"], image_embeddings=inputs["image_embeddings"])
    valid = inputs["box_valid"]
    probs, target = decoded.logits[:, :, 0][valid].sigmoid(), inputs["targets"][valid]
    loss = 1 - 2 * (probs * target).sum() / (probs.square().sum() + target.square().sum())
    return loss, decoded


class MaskOnly(SamMitoTrainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, decoded = _mask_dice(self, model, inputs)
        return (loss, {"logits": decoded.logits[:, :, 0]}) if return_outputs else loss


class MaskAndIoU(SamMitoTrainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, decoded = _mask_dice(self, model, inputs)
        loss = loss + decoded.iou_scores[..., 0][inputs["box_valid"]].sub(0.5).square().mean()
        return (loss, {"logits": decoded.logits[:, :, 0]}) if return_outputs else loss


def _splits(dataset_dir):
    return load_patches(dataset_dir, "train"), load_patches(dataset_dir, "validation")


def test_every_trainable_parameter_receives_a_gradient(tmp_path, tiny_model_dir, dataset_dir):
    trainer = SamMitoTrainer(
        args=_config(tmp_path, tiny_model_dir, dataset_dir), train_dataset=_splits(dataset_dir)[0]
    )
    batch = trainer._prepare_inputs(collate_prompts([trainer.train_dataset[i] for i in (3, 4, 5)]))
    trainer.compute_loss(trainer.model, batch).backward()
    trainable = {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("mask_decoder.") for n in trainable)
    assert [n for n, p in trainable.items() if p.grad is None] == []
    assert trainer.trainable_parameters == sum(p.numel() for p in trainable.values())


def test_what_the_loss_cannot_reach_is_frozen_and_a_loss_that_trains_more_freezes_less(
    tmp_path, tiny_model_dir, dataset_dir
):
    train_split, _ = _splits(dataset_dir)
    mask_only = MaskOnly(args=_config(tmp_path, tiny_model_dir, dataset_dir), train_dataset=train_split)
    assert mask_only.unreached == [IOU_HEAD]  # SAM computes IoU predictions that this loss never uses
    head = mask_only.model.mask_decoder.iou_prediction_head
    assert head.proj_out.weight.numel() > 0 and not any(p.requires_grad for p in head.parameters())
    with_iou = MaskAndIoU(args=_config(tmp_path, tiny_model_dir, dataset_dir), train_dataset=train_split)
    assert with_iou.unreached == []
    assert all(p.requires_grad for p in with_iou.model.mask_decoder.parameters())
    assert with_iou.trainable_parameters > mask_only.trainable_parameters


def test_frozen_names_are_grouped_into_whole_modules(tiny_model_dir):
    model, _ = load_sam(str(tiny_model_dir))
    freeze_for_decoder_training(model)
    head = [f"{IOU_HEAD}.{n}" for n, _ in model.mask_decoder.iou_prediction_head.named_parameters()]
    stray = "mask_decoder.output_hypernetworks_mlps.1.proj_in.bias"
    assert whole_modules(model, [*head, stray]) == [IOU_HEAD, stray]


def test_ddp_runs_without_the_unused_parameter_search_by_default():
    assert SamMitoConfig(output_dir="x").ddp_find_unused_parameters is False


def test_evaluation_keeps_every_row_and_its_loss_does_not_depend_on_batching(
    tmp_path, tiny_model_dir, dataset_dir
):
    train_split, validation = _splits(dataset_dir)
    assert len(validation) % 4 and len(train_split) % 4  # a last, partial batch to drop
    metrics = {}
    for batch in (4, 1):
        config = _config(
            tmp_path, tiny_model_dir, dataset_dir, dataloader_drop_last=True, per_device_eval_batch_size=batch
        )
        config.per_device_train_batch_size = 4
        trainer = SamMitoTrainer(args=config, train_dataset=train_split, eval_dataset=validation)
        rows = [int(i) for b in trainer.get_eval_dataloader() for i in b["index"]]
        assert sorted(rows) == list(range(len(validation)))
        assert len(trainer.predict(trainer.eval_dataset).predictions) == len(validation)
        trained_rows = sum(len(b["index"]) for b in trainer.get_train_dataloader())
        assert trained_rows == len(train_split) // 4 * 4  # training still drops its last rows
        metrics[batch] = trainer.evaluate()
    assert metrics[4]["eval_loss"] == pytest.approx(metrics[1]["eval_loss"], rel=1e-5)
    assert metrics[4]["eval_dice"] == pytest.approx(metrics[1]["eval_dice"], rel=1e-6)


def test_card_and_training_config_record_how_the_run_was_launched(tmp_path, tiny_model_dir, dataset_dir):
    config = _config(tmp_path, tiny_model_dir, dataset_dir, gradient_accumulation_steps=3, eval_split=None)
    train(config)
    out = Path(config.output_dir)
    record = json.loads((out / "training_config.json").read_text())["run"]
    assert record == {
        "num_processes": 1,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 3,
        "effective_train_batch_size": 6,
        "mixed_precision": "no",
    }
    card = (out / "README.md").read_text()
    assert (
        "Run: 1 process(es); effective batch size 6 =\n  2 per device × 1 process(es) × 3" in card
        and "mixed precision `no`" in card
    )
    assert parse_config([str(out / "training_config.json")]).gradient_accumulation_steps == 3


@pytest.mark.slow
def test_two_processes_train_without_the_unused_parameter_search_and_record_the_run(
    tmp_path, tiny_model_dir, dataset_dir
):
    # point prompts on: a second decoder pass per step, which DDP must reduce with the boxes' one
    flags = [
        "--model_name_or_path", tiny_model_dir, "--dataset", dataset_dir, "--point_weight", "1",
        "--output_dir", tmp_path / "out", "--embedding_cache_dir", tmp_path / "cache",
        "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2", "--max_steps", "2",
        "--use_cpu", "--save_strategy", "no", "--eval_strategy", "no", "--report_to", "none",
    ]  # fmt: skip
    # bf16 comes from the launcher (as from an accelerate config), not from a training flag
    result = launch(ROOT / "examples" / "train_sam_mito.py", *flags, mixed_precision="bf16", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = json.loads((tmp_path / "out" / "training_config.json").read_text())
    assert saved["ddp_find_unused_parameters"] is False and saved["bf16"] is False
    assert saved["run"] == {
        "num_processes": 2,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 2,
        "effective_train_batch_size": 8,
        "mixed_precision": "bf16",
    }
    card = (tmp_path / "out" / "README.md").read_text()
    assert (
        "Run: 2 process(es); effective batch size 8 =\n  2 per device × 2 process(es) × 2" in card
        and "mixed precision `bf16`" in card
        and "single-point prompts 1.0" in card
    )


EVALUATE = """
import json, sys
from sam_mito.training.config import SamMitoConfig
from sam_mito.data.patches import load_patches
from sam_mito.training.trainer import SamMitoTrainer

model, dataset, out = sys.argv[1:4]
config = SamMitoConfig(
    output_dir=out, model_name_or_path=model, dataset=dataset, embedding_cache_dir=out + "/cache",
    per_device_eval_batch_size=4, dataloader_drop_last=True, precision="fp32",
    use_cpu=True, report_to="none", disable_tqdm=True,
)
validation = load_patches(dataset, "validation")
trainer = SamMitoTrainer(args=config, eval_dataset=validation)
metrics = trainer.evaluate()
rows = len(trainer.predict(trainer.eval_dataset).predictions)
if trainer.is_world_process_zero():
    with open(out + "/metrics.json", "w") as stream:
        json.dump({**metrics, "rows": rows}, stream)
"""


@pytest.mark.slow
def test_two_processes_score_every_evaluation_row_once(tmp_path, dataset_dir):
    script = tmp_path / "evaluate.py"
    script.write_text(EVALUATE)
    # the packaged base, whose per-row losses differ enough for repeated rows to bias a mean
    result = launch(script, TINY_BASE, dataset_dir, tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    two = json.loads((tmp_path / "metrics.json").read_text())
    validation = load_patches(dataset_dir, "validation")
    assert len(validation) % (2 * 4)  # the processes' batches are evened out with repeated rows
    config = _config(tmp_path / "one", TINY_BASE, dataset_dir, per_device_eval_batch_size=4)
    one = SamMitoTrainer(args=config, eval_dataset=validation).evaluate()
    assert two["rows"] == len(validation)
    assert two["eval_loss"] == pytest.approx(one["eval_loss"], rel=1e-5)
    assert two["eval_dice"] == pytest.approx(one["eval_dice"], rel=1e-5)
    assert two["eval_iou"] == pytest.approx(one["eval_iou"], rel=1e-5)

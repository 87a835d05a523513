"""Decoder-only fine-tuning: what changes, what stays, caching, resuming, saving, pushing, bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import SamModel, SamProcessor

from sam_mito.config import SamMitoConfig, parse_config
from sam_mito.data import load_patches
from sam_mito.decoding import masks_to_image, prompts_to_input
from sam_mito.errors import SamMitoError
from sam_mito.modeling import TINY_BASE, freeze_for_decoder_training, load_sam
from sam_mito.training import (
    PromptDataset,
    SamMitoTrainer,
    collate_prompts,
    prompt_dataset,
    train,
)


def _config(tmp_path, model_dir, dataset_dir, **overrides):
    values = dict(
        output_dir=str(tmp_path / "out"),
        model_name_or_path=str(model_dir),
        dataset=str(dataset_dir),
        embedding_cache_dir=str(tmp_path / "cache"),
        per_device_train_batch_size=2,
        max_steps=4,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        seed=0,
        disable_tqdm=True,
    )
    values.update(overrides)
    return SamMitoConfig(**values)


def _trainer(config, *, cached=True):
    model, processor = load_sam(config.model_name_or_path)
    freeze_for_decoder_training(model)
    split = load_patches(config.dataset, "train")
    config.embedding_cache = cached
    dataset = prompt_dataset(model, processor, split, config, name="train")
    return SamMitoTrainer(model=model, args=config, train_dataset=dataset), dataset


def _fixed_batch_loss(trainer, dataset):
    trainer.model.eval()
    with torch.no_grad():
        return trainer.compute_loss(trainer.model, collate_prompts([dataset[i] for i in range(4)])).item()


def test_only_the_mask_decoder_changes_and_loss_drops(tmp_path, tiny_model_dir, dataset_dir):
    config = _config(tmp_path, tiny_model_dir, dataset_dir, max_steps=25, learning_rate=3e-3, box_jitter=0)
    trainer, dataset = _trainer(config)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    loss_before = _fixed_batch_loss(trainer, dataset)
    trainer.train()
    after = trainer.model.state_dict()
    frozen = [k for k in before if not k.startswith("mask_decoder.")]
    trained = [k for k in before if k.startswith("mask_decoder.")]
    assert any(k.startswith("vision_encoder.") for k in frozen) and any(
        k.startswith("prompt_encoder.") for k in frozen
    )
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    changed = [k for k in trained if not torch.equal(before[k], after[k])]
    assert len(changed) > 0.5 * len(trained)
    assert _fixed_batch_loss(trainer, dataset) < loss_before


def test_the_trainer_stands_alone_from_a_model_name_and_a_load_dataset_split(tmp_path, dataset_dir):
    import datasets

    config = _config(tmp_path, TINY_BASE, dataset_dir, max_steps=3, box_jitter=0)
    split = datasets.load_dataset(str(dataset_dir), split="train")
    trainer = SamMitoTrainer(model=TINY_BASE, args=config, train_dataset=split)
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("mask_decoder.") for n in trainable)
    assert isinstance(trainer.train_dataset, PromptDataset) and trainer.train_dataset.embeddings is not None
    assert len(list((tmp_path / "cache").glob("train-*.npy"))) == 1
    assert trainer.train().global_step == 3


def test_optimizer_settings_take_effect(tmp_path, tiny_model_dir, dataset_dir):
    config = _config(tmp_path, tiny_model_dir, dataset_dir, adam_beta2=0.9, weight_decay=0.01)
    trainer, _ = _trainer(config)
    trainer.create_optimizer()
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert {g["betas"] for g in optimizer.param_groups} == {(0.9, 0.9)}
    decayed = [g for g in optimizer.param_groups if g["weight_decay"] == 0.01]
    params = [p for g in optimizer.param_groups for p in g["params"]]
    assert decayed and len(params) == sum(p.requires_grad for p in trainer.model.parameters())


def test_freezing_counts_parameters(tiny_model_dir):
    model, _ = load_sam(str(tiny_model_dir))
    trainable, total = freeze_for_decoder_training(model)
    assert trainable == sum(p.numel() for p in model.mask_decoder.parameters())
    assert total == sum(p.numel() for p in model.parameters()) and trainable < total


def test_cached_and_uncached_paths_give_the_same_first_loss(tmp_path, tiny_model_dir, dataset_dir):
    config = _config(tmp_path, tiny_model_dir, dataset_dir, box_jitter=0, encode_precision="fp32")
    cached = _fixed_batch_loss(*_trainer(config, cached=True))
    uncached = _fixed_batch_loss(*_trainer(config, cached=False))
    assert cached == pytest.approx(uncached, rel=1e-3)


def test_instance_prompts_are_padded_and_masked(tiny_model_dir, dataset_dir):
    _, processor = load_sam(str(tiny_model_dir))
    split = load_patches(dataset_dir, "train")
    dataset = PromptDataset(split, name="train", prompt_mode="instance", processor=processor)
    counts = [len(dataset[i]["boxes"]) for i in range(len(dataset))]
    assert max(counts) > 1, "fixture should contain a patch with several mitochondria"
    batch = collate_prompts([dataset[i] for i in range(len(dataset))])
    assert batch["boxes"].shape == (len(dataset), max(counts), 4)
    assert batch["targets"].shape == (len(dataset), max(counts), 256, 256)
    assert batch["box_valid"].sum(1).tolist() == counts
    assert batch["targets"][~batch["box_valid"]].sum() == 0
    first = dataset[counts.index(max(counts))]
    union = (first["targets"].sum(0) > 0).float()
    label = torch.from_numpy(np.asarray(split[counts.index(max(counts))]["label"], dtype=np.float32))
    assert torch.all(union <= label)  # each instance target is inside the label


def test_boxes_and_masks_map_like_the_processor(tiny_model_dir):
    _, processor = load_sam(str(tiny_model_dir))
    image = np.zeros((128, 256, 3), np.uint8)
    box = [[[10.0, 20.0, 100.0, 90.0]]]
    expected = processor(images=[image], input_boxes=box, return_tensors="pt")["input_boxes"]
    ours = prompts_to_input(torch.tensor(box), (128, 256), 256)
    assert torch.allclose(ours.float(), expected.float())
    low_res = torch.zeros(1, 1, 64, 64)
    low_res[..., :32, :] = 1.0  # the resized 128x256 image fills the top half of the padded input
    assert torch.all(masks_to_image(low_res, (128, 256), 256) == 1.0)


def test_resumed_run_ends_with_the_same_weights(tmp_path, tiny_model_dir, dataset_dir):
    common = dict(max_steps=6, learning_rate=1e-3, save_strategy="steps", save_steps=3, box_jitter=5)
    straight, _ = _trainer(_config(tmp_path / "a", tiny_model_dir, dataset_dir, **common))
    straight.train()

    class StopAtThree:
        def __getattr__(self, name):
            return lambda args, state, control, **kw: None

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                control.should_training_stop = True
            return control

    killed, _ = _trainer(_config(tmp_path / "b", tiny_model_dir, dataset_dir, **common))
    killed.add_callback(StopAtThree())
    killed.train()
    assert killed.state.global_step == 3
    resumed, _ = _trainer(_config(tmp_path / "b", tiny_model_dir, dataset_dir, **common))
    resumed.train(resume_from_checkpoint=str(tmp_path / "b" / "out" / "checkpoint-3"))
    for key, value in straight.model.state_dict().items():
        assert torch.allclose(value, resumed.model.state_dict()[key], atol=1e-6), key


def test_train_recipe_saves_a_stock_loadable_model_with_card(tmp_path, tiny_model_dir, dataset_dir):
    config = _config(tmp_path, tiny_model_dir, dataset_dir, eval_strategy="steps", eval_steps=2)
    metrics = train(config)
    out = Path(config.output_dir)
    assert {"eval_dice", "eval_iou", "train_loss"} <= set(metrics)
    model = SamModel.from_pretrained(out)
    processor = SamProcessor.from_pretrained(out)
    assert processor.image_processor.size["longest_edge"] == 256
    assert model.config.sam_mito == {  # read by inference
        "patch_size": 256,
        "prompt_mode": "union",
        "normalization": {"rule": "volume-percentiles", "percentiles": [0.5, 99.5]},
    }
    assert (out / "model.safetensors").exists()
    reference, _ = load_sam(str(tiny_model_dir))
    assert torch.equal(
        model.vision_encoder.patch_embed.projection.weight,
        reference.vision_encoder.patch_embed.projection.weight,
    )
    card = (out / "README.md").read_text()
    assert "mask decoder only" in card and "adamw_torch" in card and "model-index" in card
    assert str(tmp_path) not in card  # local paths appear as folder names only
    assert json.loads((out / "eval_results.json").read_text())["eval_dice"] == pytest.approx(
        metrics["eval_dice"]
    )


def test_config_file_with_flag_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("output_dir: x\nmax_steps: 7\nprompt_mode: tile\nlearning_rate: 1.0e-4\n")
    config = parse_config([str(path), "--max_steps", "9", "--use_cpu"])
    assert (config.max_steps, config.prompt_mode, config.learning_rate) == (9, "tile", 1e-4)
    path.write_text("output_dir: x\nmax_stepz: 7\n")
    with pytest.raises(SamMitoError, match=r"unknown field\(s\) \['max_stepz'\]"):
        parse_config([str(path)])


def test_bad_prompt_mode_is_named_from_python_and_the_command_line(tmp_path, capsys):
    with pytest.raises(SamMitoError, match="prompt_mode 'boxes': expected one of"):
        SamMitoConfig(output_dir=str(tmp_path), prompt_mode="boxes")
    with pytest.raises(SystemExit):
        parse_config(["--output_dir", str(tmp_path), "--prompt_mode", "boxes"])
    assert "invalid choice: 'boxes'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.remove_columns("union_box"), "has no column 'union_box'"),
        (lambda d: d.map(lambda r: {"union_box": r["union_box"][:3]}), "a box has 3 numbers"),
        (
            lambda d: d.map(lambda r: {"label": np.asarray(r["label"], dtype=np.uint8) * 255}),
            "label values up to 255; expected",
        ),
    ],
)
def test_bad_dataset_inputs_are_named(tiny_model_dir, dataset_dir, mutate, message):
    _, processor = load_sam(str(tiny_model_dir))
    split = mutate(load_patches(dataset_dir, "train"))
    with pytest.raises(SamMitoError, match=message):
        PromptDataset(split, name="train", prompt_mode="union", processor=processor)


def test_missing_split_is_named(tmp_path, tiny_model_dir, dataset_dir):
    config = _config(tmp_path, tiny_model_dir, dataset_dir, eval_split="dev")
    with pytest.raises(SamMitoError, match="no split 'dev'"):
        train(config)

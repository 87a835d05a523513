"""Decoder-only fine-tuning: what changes, what stays, caching, resuming, saving, pushing, bad input."""

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import SamModel, SamProcessor

from sam_mito.data.patches import load_patches
from sam_mito.defaults import TINY_BASE
from sam_mito.errors import SamMitoError
from sam_mito.evaluation.metrics import dice_iou
from sam_mito.models.decoding import decode, decode_all_masks, masks_to_image, prompts_to_input
from sam_mito.models.loading import freeze_for_decoder_training, load_sam
from sam_mito.training.config import SamMitoConfig, parse_config
from sam_mito.training.losses import DiceCELoss, MaskDecoderLoss
from sam_mito.training.prompt_dataset import PromptDataset, collate_prompts, prompt_dataset
from sam_mito.training.run_checks import prepare_output_dir
from sam_mito.training.trainer import SamMitoTrainer, train
from tests._training_config import tiny_training_config as _config


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
    config = _config(tmp_path, tiny_model_dir, dataset_dir, max_steps=100, learning_rate=3e-3, box_jitter=0)
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


@pytest.mark.parametrize("wrapped", [False, True], ids=["raw-split", "prompt-dataset"])
def test_the_saved_config_records_how_inference_must_tile_and_normalise(
    tmp_path, tiny_model_dir, dataset_dir, wrapped
):
    config = _config(tmp_path, tiny_model_dir, dataset_dir, prompt_mode="instance")
    model, processor = load_sam(str(tiny_model_dir))
    split = load_patches(dataset_dir, "train")
    dataset = prompt_dataset(model, processor, split, config, name="train") if wrapped else split
    trainer = SamMitoTrainer(model=model, args=config, train_dataset=dataset)
    assert trainer.model.config.sam_mito == {
        "patch_size": 256,
        "prompt_mode": "instance",
        "normalization": {"rule": "volume-percentiles", "percentiles": [0.5, 99.5]},
    }


def test_point_prompts_add_the_decoder_loss_of_the_points_drawn_for_the_step_in_training_only(
    tmp_path, tiny_model_dir, dataset_dir
):
    from sam_mito.training.prompt_sampling import point_batch

    config = _config(
        tmp_path, tiny_model_dir, dataset_dir, box_jitter=0, point_weight=0.5, background_points=2
    )
    trainer, dataset = _trainer(config)
    batch = collate_prompts([dataset[i] for i in range(3)])
    assert torch.equal(batch["instances"][0].bool(), batch["targets"][0, 0].bool())  # union mode: one target
    model = trainer.model
    with torch.no_grad():
        model.eval()
        evaluated = trainer.compute_loss(model, batch)
        model.train()
        trained = trainer.compute_loss(model, batch)
        points, targets, valid = point_batch(
            batch["instances"], batch["index"], seed=config.seed, step=0, max_objects=2, background=2
        )
        both = decode_all_masks(model, (256, 256), image_embeddings=batch["image_embeddings"], points=points)
        loss_fn = MaskDecoderLoss(iou_weight=config.iou_weight)
        expected = loss_fn(both.logits[:, :, :1][valid], both.iou_scores[:, :, :1][valid], targets[valid])
        expected += loss_fn(both.logits[:, :, 1:][valid], both.iou_scores[:, :, 1:][valid], targets[valid])
    assert valid.sum(dim=1).tolist() == [min(2, int(i.max())) + 2 for i in batch["instances"]]
    assert torch.allclose(trained - evaluated, 0.5 * expected, rtol=1e-4)


def test_without_point_prompts_items_carry_no_instance_labels(tmp_path, tiny_model_dir, dataset_dir):
    _, dataset = _trainer(_config(tmp_path, tiny_model_dir, dataset_dir))
    assert "instances" not in dataset[0]


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
    config = _config(tmp_path, tiny_model_dir, dataset_dir, box_jitter=0, precision="fp32")
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
    result = train(config)
    out = Path(config.output_dir)
    assert result.output_dir == str(out)
    assert {"eval_dice", "eval_iou"} <= set(result.eval_metrics) and "train_loss" in result.train_metrics
    assert result.metrics == {**result.train_metrics, **result.eval_metrics}
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
        result.eval_metrics["eval_dice"]
    )


def test_config_file_with_flag_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("output_dir: x\nmax_steps: 7\nprompt_mode: tile\nlearning_rate: 1.0e-4\n")
    config = parse_config([str(path), "--max_steps", "9", "--use_cpu"])
    assert (config.max_steps, config.prompt_mode, config.learning_rate) == (9, "tile", 1e-4)
    path.write_text("output_dir: x\nmax_stepz: 7\n")
    with pytest.raises(SamMitoError, match=r"unknown field\(s\) \['max_stepz'\]"):
        parse_config([str(path)])


def test_bad_prompt_mode_is_named_from_python_and_the_command_line(tmp_path):
    with pytest.raises(SamMitoError, match="prompt_mode 'boxes': expected one of"):
        SamMitoConfig(output_dir=str(tmp_path), prompt_mode="boxes")
    with pytest.raises(SamMitoError, match="--prompt-mode: invalid choice: 'boxes'"):
        parse_config(["--output_dir", str(tmp_path), "--prompt_mode", "boxes"])


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


# --- SAM's decoder loss: single mask, best of the three multimask outputs, IoU head ---


@pytest.mark.parametrize(
    ("mask_outputs", "iou_weight"), [("all", 1.0), ("all", 0.0), ("single", 1.0), ("single", 0.0)]
)
def test_every_trainable_parameter_gets_a_gradient(
    tmp_path, tiny_model_dir, dataset_dir, mask_outputs, iou_weight
):
    config = _config(tmp_path, tiny_model_dir, dataset_dir, mask_outputs=mask_outputs, iou_weight=iou_weight)
    trainer, dataset = _trainer(config)
    trainer.model.train()
    trainer.compute_loss(trainer.model, collate_prompts([dataset[i] for i in range(3)])).backward()
    trainable = {name: p for name, p in trainer.model.named_parameters() if p.requires_grad}
    assert [name for name, p in trainable.items() if p.grad is None] == []  # DDP without unused parameters
    multimask_head = "mask_decoder.output_hypernetworks_mlps.2.layers.0.weight"
    iou_head = "mask_decoder.iou_prediction_head.proj_out.weight"
    assert (multimask_head in trainable) == (mask_outputs == "all")
    assert (iou_head in trainable) == (iou_weight > 0)
    assert "mask_decoder.output_hypernetworks_mlps.0.layers.0.weight" in trainable


def test_all_four_masks_in_one_pass_equal_the_two_stock_calls():
    model, _ = load_sam(TINY_BASE)
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(2, 64, 16, 16, generator=generator)
    boxes = torch.tensor(
        [[[10.0, 20.0, 200.0, 220.0], [5, 5, 60, 50]], [[30, 40, 100, 120], [0, 0, 255, 255]]]
    )
    with torch.no_grad():
        single = decode(model, (256, 256), image_embeddings=embeddings, boxes=boxes)
        multi = decode(model, (256, 256), image_embeddings=embeddings, boxes=boxes, multimask_output=True)
        both = decode_all_masks(model, (256, 256), image_embeddings=embeddings, boxes=boxes)
    assert both.logits.shape == (2, 2, 4, 256, 256) and both.iou_scores.shape == (2, 2, 4)
    assert torch.allclose(both.logits[:, :, :1], single.logits, atol=1e-5)
    assert torch.equal(both.logits[:, :, 1:], multi.logits)
    assert torch.equal(both.iou_scores, torch.cat([single.iou_scores, multi.iou_scores], dim=2))
    decoder = model.mask_decoder
    decoder.__class__ = type("OtherFamilysDecoder", (type(decoder),), {})  # no hooks: two stock calls
    with torch.no_grad():
        other = decode_all_masks(model, (256, 256), image_embeddings=embeddings, boxes=boxes)
    assert torch.equal(other.logits, torch.cat([single.logits, multi.logits], dim=2))
    assert torch.equal(other.iou_scores, both.iou_scores)


def test_loss_adds_the_best_of_three_to_the_single_mask(tmp_path, tiny_model_dir, dataset_dir):
    config = _config(tmp_path, TINY_BASE, dataset_dir, box_jitter=0, iou_weight=2.0, multimask_weight=0.5)
    trainer, dataset = _trainer(config)
    batch = collate_prompts([dataset[i] for i in range(3)])
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch).item()
        image = {"image_embeddings": batch["image_embeddings"], "boxes": batch["boxes"]}
        single = decode(trainer.model, (256, 256), **image)
        multi = decode(trainer.model, (256, 256), multimask_output=True, **image)
    targets = batch["targets"][:, 0]  # union prompts: one box per patch
    loss_fn = MaskDecoderLoss(iou_weight=2.0)
    expected = loss_fn(single.logits[:, 0], single.iou_scores[:, 0], targets)
    expected += 0.5 * loss_fn(multi.logits[:, 0], multi.iou_scores[:, 0], targets)
    assert loss == pytest.approx(expected.item(), rel=1e-4)
    seed = _config(
        tmp_path / "seed", TINY_BASE, dataset_dir, box_jitter=0, mask_outputs="single", iou_weight=0
    )
    seed_trainer, _ = _trainer(seed)
    seed_trainer.model.eval()
    with torch.no_grad():
        seed_loss = seed_trainer.compute_loss(seed_trainer.model, batch).item()
    assert seed_loss == pytest.approx(DiceCELoss()(single.logits[:, 0], targets[:, None]).item(), rel=1e-4)


def _stock_masks(model_dir, row):
    """What a SAM user gets without sam-mito: the single mask and the best of three by iou_scores."""
    model, processor = SamModel.from_pretrained(model_dir), SamProcessor.from_pretrained(model_dir)
    rgb = np.stack([np.asarray(row["image"])] * 3, axis=-1)
    inputs = processor(images=rgb, input_boxes=[[row["union_box"]]], return_tensors="pt")
    masks = {}
    with torch.no_grad():
        for multimask in (False, True):
            outputs = model(**inputs, multimask_output=multimask)
            best = int(outputs.iou_scores[0, 0].argmax())
            upscaled = processor.post_process_masks(
                outputs.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"]
            )
            masks[multimask] = upscaled[0][0, best].numpy()
    return masks


@pytest.mark.parametrize("mask_outputs", ["all", "single"])
def test_card_describes_the_loss_and_its_snippet_gives_the_stock_mask(tmp_path, dataset_dir, mask_outputs):
    from huggingface_hub import ModelCard

    config = _config(
        tmp_path, TINY_BASE, dataset_dir, max_steps=2, mask_outputs=mask_outputs, eval_split=None
    )
    train(config)
    card = ModelCard.load(Path(config.output_dir) / "README.md")
    assert (
        card.data.pipeline_tag == "mask-generation"
    )  # the call is run in tests/training/test_mask_generation.py
    assert "Dice 1.0, binary cross-entropy 1.0, IoU-prediction mean squared error 30.0" in card.text
    assert ("three multimask outputs (best one's Dice + cross-entropy, all IoUs) 1.0" in card.text) == (
        mask_outputs == "all"
    )
    snippet = re.search(r"```python\n(.*?)```", card.text, re.S).group(1)  # the first: SAM's own call
    assert f"multimask_output={mask_outputs == 'all'}" in snippet
    row = load_patches(dataset_dir, "test")[0]
    x0, y0, x1, y1 = row["union_box"]
    namespace = {"rgb_patch": np.stack([np.asarray(row["image"])] * 3, axis=-1), "x0": x0, "y0": y0}
    namespace.update(x1=x1, y1=y1)
    exec(snippet.replace(f'"{Path(config.output_dir).name}"', f'"{config.output_dir}"'), namespace)
    stock = _stock_masks(config.output_dir, row)[mask_outputs == "all"]
    assert np.array_equal(np.asarray(namespace["mask"]), stock)


@pytest.mark.slow
def test_best_of_three_by_iou_scores_is_usable_only_when_trained(tmp_path, dataset_dir):
    test_split = load_patches(dataset_dir, "test")
    dice = {}
    for mask_outputs in ("all", "single"):
        config = _config(
            tmp_path / mask_outputs, TINY_BASE, dataset_dir, max_steps=15, learning_rate=1e-4, box_jitter=10,
            per_device_train_batch_size=8, mask_outputs=mask_outputs, eval_split=None,
        )  # fmt: skip
        train(config)
        scores = {False: [], True: []}
        for row in test_split:
            truth = np.asarray(row["label"]) > 0
            for multimask, mask in _stock_masks(config.output_dir, row).items():
                scores[multimask].append(dice_iou(mask, truth)["dice"])
        dice[mask_outputs] = {multimask: float(np.mean(values)) for multimask, values in scores.items()}
    assert dice["all"][True] >= dice["all"][False] - 0.05  # SAM's usual call works after sam-mito training
    assert dice["single"][True] < dice["single"][False] - 0.1  # but not after the single-mask recipe


# --- Trainer conventions: optimizer flags, output_dir, bad settings, TensorBoard, non-finite values ---


def test_optimizer_flags_from_the_command_line_take_effect(tmp_path, tiny_model_dir, dataset_dir):
    flags = ["--output_dir", str(tmp_path / "out"), "--model_name_or_path", str(tiny_model_dir)]
    flags += ["--dataset", str(dataset_dir), "--embedding_cache_dir", str(tmp_path / "cache"), "--use_cpu"]
    changed = ["--adam_beta1", "0.8", "--adam_beta2", "0.95", "--adam_epsilon", "1e-6", "--weight_decay", "0.1"]  # fmt: skip
    config = parse_config(flags + changed + ["--lr_scheduler_type", "linear", "--max_steps", "10"])
    trainer, _ = _trainer(config)
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert {(g["betas"], g["eps"]) for g in optimizer.param_groups} == {((0.8, 0.95), 1e-6)}
    assert 0.1 in {g["weight_decay"] for g in optimizer.param_groups}
    assert trainer.lr_scheduler.lr_lambdas[0](5) == pytest.approx(0.5)  # linear decay, not constant
    sgd = parse_config(flags + ["--optim", "sgd", "--max_steps", "10"])
    trainer, _ = _trainer(sgd)
    trainer.create_optimizer()
    assert isinstance(getattr(trainer.optimizer, "optimizer", trainer.optimizer), torch.optim.SGD)


def test_default_optimizer_takes_the_seed_recipes_adam_step(tmp_path, tiny_model_dir, dataset_dir):
    trainer, _ = _trainer(_config(tmp_path, tiny_model_dir, dataset_dir))
    trainer.create_optimizer()
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    reference = [p.detach().clone().requires_grad_() for p in params]
    generator = torch.Generator().manual_seed(0)
    for p, q in zip(params, reference, strict=True):
        p.grad = torch.randn(p.shape, generator=generator)
        q.grad = p.grad.clone()
    trainer.optimizer.step()
    torch.optim.Adam(reference, lr=1e-5).step()  # the seed notebook's optimizer
    assert all(torch.allclose(p, q, atol=1e-8) for p, q in zip(params, reference, strict=True))


def _run_dir(tmp_path, checkpoints=(2, 10)):
    out = tmp_path / "out"
    for step in checkpoints:
        (out / f"checkpoint-{step}").mkdir(parents=True)
        (out / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
        (out / f"checkpoint-{step}" / "training_config.json").write_text("{}")  # sam-mito's own record
    out.mkdir(exist_ok=True)
    (out / "model.safetensors").write_text("an earlier run's model")
    return out


def test_output_dir_with_another_runs_checkpoints_is_refused_before_any_work(
    tmp_path, tiny_model_dir, dataset_dir
):
    out = _run_dir(tmp_path)
    before = sorted(p.name for p in out.rglob("*"))
    with pytest.raises(
        SamMitoError, match=r"holds checkpoints of another run \(checkpoint-2, checkpoint-10\)"
    ):
        train(_config(tmp_path, tiny_model_dir, dataset_dir))
    assert sorted(p.name for p in out.rglob("*")) == before and not (tmp_path / "cache").exists()
    (out / "checkpoint-2").rename(tmp_path / "elsewhere")
    (out / "checkpoint-10").rename(tmp_path / "elsewhere-10")
    with pytest.raises(SamMitoError, match=r"holds files of another run \(model.safetensors\)"):
        train(_config(tmp_path, tiny_model_dir, dataset_dir))


def test_resume_true_takes_the_last_checkpoint_and_a_path_must_be_one(tmp_path, tiny_model_dir, dataset_dir):
    out = _run_dir(tmp_path)
    assert prepare_output_dir(
        _config(tmp_path, tiny_model_dir, dataset_dir, resume_from_checkpoint="true")
    ) == str(out / "checkpoint-10")
    given = _config(tmp_path, tiny_model_dir, dataset_dir, resume_from_checkpoint=str(out / "checkpoint-2"))
    assert prepare_output_dir(given) == str(out / "checkpoint-2")
    with pytest.raises(SamMitoError, match=r"resume_from_checkpoint .*model.safetensors: not a checkpoint"):
        prepare_output_dir(
            _config(
                tmp_path, tiny_model_dir, dataset_dir, resume_from_checkpoint=str(out / "model.safetensors")
            )
        )
    both = _config(
        tmp_path, tiny_model_dir, dataset_dir, resume_from_checkpoint="true", empty_output_dir=True
    )
    with pytest.raises(SamMitoError, match="resume_from_checkpoint and empty_output_dir together"):
        prepare_output_dir(both)
    fresh = _config(tmp_path / "fresh", tiny_model_dir, dataset_dir, resume_from_checkpoint="true")
    with pytest.raises(SamMitoError, match="holds no checkpoint-\\* folder"):
        prepare_output_dir(fresh)
    assert not (tmp_path / "fresh").exists()


def test_train_resumes_from_the_last_checkpoint(tmp_path, tiny_model_dir, dataset_dir):
    common = dict(save_strategy="steps", save_steps=2, eval_split=None)
    train(_config(tmp_path, tiny_model_dir, dataset_dir, max_steps=2, **common))
    train(
        _config(tmp_path, tiny_model_dir, dataset_dir, max_steps=4, resume_from_checkpoint="true", **common)
    )
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and (tmp_path / "out" / "checkpoint-4").is_dir()


def test_empty_output_dir_empties_an_earlier_runs_folder(tmp_path, tiny_model_dir, dataset_dir):
    out = _run_dir(tmp_path)
    (out / "notes.txt").write_text("stale")
    train(_config(tmp_path, tiny_model_dir, dataset_dir, max_steps=1, empty_output_dir=True, eval_split=None))
    names = {p.name for p in out.iterdir()}
    assert not {"checkpoint-2", "checkpoint-10", "notes.txt"} & names
    assert SamModel.from_pretrained(out) is not None


def test_empty_output_dir_never_empties_a_folder_training_did_not_write(
    tmp_path, tiny_model_dir, dataset_dir
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("a user's file")
    (out / "checkpoint-3").mkdir()  # named like a checkpoint, but no training_config.json
    config = _config(tmp_path, tiny_model_dir, dataset_dir, empty_output_dir=True)
    with pytest.raises(SamMitoError, match=r"holds files sam-mito's training did not write \(checkpoint-3"):
        prepare_output_dir(config)
    assert (out / "thesis.tex").read_text() == "a user's file" and (out / "checkpoint-3").is_dir()


def test_the_old_name_overwrite_output_dir_is_refused_and_says_it_empties(
    tmp_path, tiny_model_dir, dataset_dir
):
    out = _run_dir(tmp_path)
    with pytest.raises(SamMitoError, match=r"overwrite_output_dir: refused, since it would have emptied"):
        _config(tmp_path, tiny_model_dir, dataset_dir, overwrite_output_dir=True)
    with pytest.raises(SamMitoError, match="pass empty_output_dir"):
        parse_config(["--output_dir", str(out), "--overwrite_output_dir"])
    assert (out / "checkpoint-2" / "trainer_state.json").exists()


def test_output_dir_never_clobbers_an_input(tmp_path, tiny_model_dir, dataset_dir):
    with pytest.raises(SamMitoError, match="is or lies inside the model_name_or_path folder"):
        prepare_output_dir(_config(tmp_path, tiny_model_dir, dataset_dir, output_dir=str(tiny_model_dir)))
    with pytest.raises(SamMitoError, match="is or lies inside the dataset folder"):
        prepare_output_dir(
            _config(tmp_path, tiny_model_dir, dataset_dir, output_dir=str(dataset_dir / "model"))
        )
    parent = _config(
        tmp_path, tiny_model_dir, dataset_dir, output_dir=str(dataset_dir.parent), empty_output_dir=True
    )
    with pytest.raises(SamMitoError, match="holds the dataset folder"):
        prepare_output_dir(parent)
    assert (dataset_dir / "README.md").exists() and (tiny_model_dir / "config.json").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max_steps", "0"], "max_steps 0: expected a positive number of steps"),
        (["--num_train_epochs", "0"], "num_train_epochs 0.0 with max_steps -1: zero training steps"),
        (["--learning_rate=-1e-4"], "learning_rate -0.0001: expected a finite number >= 0"),
        (["--learning_rate", "nan"], "learning_rate nan: expected a finite number >= 0"),
        (["--per_device_train_batch_size", "0"], "per_device_train_batch_size 0: expected at least 1"),
        (["--max_instances", "0"], "max_instances 0: expected at least 1"),
        (["--point_weight", "-1"], "point_weight -1.0: expected a finite number >= 0"),
        (["--point_objects", "-1"], "point_objects -1: expected a count >= 0"),
        (["--background_points", "-2"], "background_points -2: expected a count >= 0"),
        (["--encode_batch_size", "0"], "encode_batch_size 0: expected at least 1"),
        (["--iou_weight", "-1"], "iou_weight -1.0: expected a finite number >= 0"),
        (["--dice_weight", "0", "--ce_weight", "0"], "dice_weight and ce_weight are both 0"),
        (["--mask_outputs", "best"], "--mask-outputs: invalid choice: 'best'"),
        (["--max_steps", "many"], "--max-steps: invalid int value: 'many'"),
        (["--max_stepz", "3"], "unrecognized arguments: --max_stepz 3"),
        (["extra.txt"], "unrecognized arguments: extra.txt"),
    ],
)
def test_bad_settings_end_in_one_error_line_before_any_work(tmp_path, capsys, dataset_dir, flags, message):
    from sam_mito.cli.main import main

    out = tmp_path / "out"
    argv = ["train", "--output_dir", str(out), "--dataset", str(dataset_dir), "--model_name_or_path", TINY_BASE]  # fmt: skip
    assert main(argv + ["--embedding_cache_dir", str(tmp_path / "cache"), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sam-mito train: error: ") and message in err[0]
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_a_split_smaller_than_one_dropped_batch_is_refused(tmp_path, tiny_model_dir, dataset_dir):
    rows = len(load_patches(dataset_dir, "train"))
    config = _config(
        tmp_path, tiny_model_dir, dataset_dir, per_device_train_batch_size=rows + 1, dataloader_drop_last=True
    )
    with pytest.raises(SamMitoError, match=f"has {rows} rows, fewer than one batch of {rows + 1}"):
        train(config)
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_report_to_tensorboard_writes_event_files(tmp_path, tiny_model_dir, dataset_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = _config(
        tmp_path, tiny_model_dir, dataset_dir, report_to="tensorboard", logging_steps=1, max_steps=2
    )
    train(config)
    events = list((tmp_path / "out" / "runs").rglob("events.out.tfevents.*"))
    assert events
    scalars = EventAccumulator(str(events[0].parent)).Reload().Tags()["scalars"]
    assert "train/loss" in scalars


class _PoisonDecoder:
    """Callback: set a mask-decoder weight to NaN at the end of step ``at``, as a diverging update would."""

    def __init__(self, model, at):
        self.model, self.at = model, at

    def __getattr__(self, name):
        return lambda args, state, control, **kw: None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            with torch.no_grad():
                self.model.mask_decoder.iou_token.weight.fill_(float("nan"))


def test_non_finite_loss_stops_training_naming_the_step(tmp_path, tiny_model_dir, dataset_dir):
    trainer, _ = _trainer(_config(tmp_path, tiny_model_dir, dataset_dir, max_steps=4))
    trainer.add_callback(_PoisonDecoder(trainer.model, at=2))
    with pytest.raises(SamMitoError, match="non-finite training loss at step 3"):
        trainer.train()
    assert trainer.state.global_step == 2
    assert not list((tmp_path / "out").rglob("*.safetensors"))


def test_nan_weights_are_never_saved(tmp_path, tiny_model_dir, dataset_dir):
    config = _config(tmp_path, tiny_model_dir, dataset_dir, max_steps=4, save_strategy="steps", save_steps=1)
    trainer, _ = _trainer(config)
    trainer.add_callback(_PoisonDecoder(trainer.model, at=2))
    with pytest.raises(
        SamMitoError, match=r"non-finite weights after step 2 \(mask_decoder.iou_token.weight\)"
    ):
        trainer.train()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["checkpoint-1"]
    with pytest.raises(SamMitoError, match="non-finite weights"):
        trainer.save_model()
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_validation_metrics_count_the_patches_with_predicted_foreground():
    from transformers import EvalPrediction

    from sam_mito.training.trainer import compute_segmentation_metrics

    logits = np.full((4, 2, 2), -1.0)
    logits[1, 0, 0] = logits[3, 1, 1] = 2.0  # two of the four patches have a foreground pixel
    references = np.zeros((4, 2, 2))
    metrics = compute_segmentation_metrics(EvalPrediction(predictions=logits, label_ids=references))
    assert metrics["predicted_foreground"] == 0.5
    empty = np.full((4, 2, 2), -1.0)
    nothing = compute_segmentation_metrics(EvalPrediction(predictions=empty, label_ids=references))
    assert nothing["predicted_foreground"] == 0.0


def test_a_model_that_predicts_nothing_is_named_after_the_final_evaluation(tmp_path, dataset_dir, caplog):
    from tests._blind_model import save_blind_model

    blind = save_blind_model(tmp_path / "blind")
    config = _config(tmp_path, blind, dataset_dir, max_steps=1, learning_rate=0.0, iou_weight=30.0)
    with caplog.at_level(logging.WARNING, logger="sam_mito"):
        result = train(config)
    assert result.eval_metrics["eval_predicted_foreground"] == 0.0
    patches = len(load_patches(dataset_dir, "validation"))
    (warning,) = [r.getMessage() for r in caplog.records if "no foreground" in r.getMessage()]
    assert f"model out predicts no foreground on any of the {patches} validation patches" in warning
    assert "learning_rate 0.0" in warning and "iou_weight 30.0" in warning

"""The model card's `pipeline("mask-generation")` call, run as written on a freshly fine-tuned checkpoint.

The pipeline needs torchvision (its deduplication is `torchvision.ops.batched_nms`), so these tests
are in the vision tier (`make test-vision`).
"""

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sam_mito.data.patches import load_patches
from sam_mito.defaults import MASK_GENERATION_SETTINGS, TINY_BASE
from sam_mito.training.trainer import train
from tests._training_config import tiny_training_config


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, dataset_dir):
    folder = tmp_path_factory.mktemp("mask-generation")
    config = tiny_training_config(
        folder, TINY_BASE, dataset_dir, max_steps=60, per_device_train_batch_size=4, learning_rate=1e-3
    )
    train(config)
    return Path(config.output_dir)


def _card_call(card_text: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", card_text, re.S)
    return next(block for block in blocks if 'pipeline("mask-generation"' in block)


@pytest.mark.vision
def test_the_card_claims_mask_generation_and_passes_the_measured_settings(finetuned):
    from huggingface_hub import ModelCard

    card = ModelCard.load(finetuned / "README.md")
    assert card.data.pipeline_tag == "mask-generation"
    call = _card_call(card.text)
    for name, value in MASK_GENERATION_SETTINGS.items():
        assert f"{name}={value}," in call
    assert (
        "train with `--point_weight 1`" in card.text
    )  # trained on boxes only: the card says how to add points


@pytest.mark.vision
def test_the_cards_call_returns_masks_that_overlap_the_mitochondria_of_a_held_out_patch(
    finetuned, dataset_dir, monkeypatch
):
    row = max(load_patches(dataset_dir, "test"), key=lambda r: np.asarray(r["label"]).sum())
    truth = np.asarray(row["label"]) > 0
    monkeypatch.chdir(finetuned.parent)  # the card names the model by its folder
    Image.fromarray(np.asarray(row["image"])).save("em_patch.png")
    namespace = {}
    exec(_card_call((finetuned / "README.md").read_text()), namespace)  # the snippet, as a user runs it
    masks = [np.asarray(mask, bool) for mask in namespace["masks"]]
    assert masks and all(mask.shape == truth.shape for mask in masks)
    union = np.logical_or.reduce(masks)
    chance = truth.mean()  # the IoU of marking the whole patch, and the precision of a mask put anywhere
    assert (union & truth).sum() / (union | truth).sum() > chance
    assert (union & truth).sum() / union.sum() > 2 * chance

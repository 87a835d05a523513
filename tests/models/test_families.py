"""SAM, SAM-HQ, SAM 2.1, EdgeTAM and SAM 3 through the same pipeline: detection, decoder-only training,
cache, stock load.

EdgeTAM needs timm and torchvision, and the stock processors of SAM 2.1, EdgeTAM and SAM 3 need
torchvision: those tests are marked ``vision`` and run in ``make test-vision``'s environment (the
main targets deselect them with ``-m "not vision"``).
"""

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
import torch
from transformers import AutoModel, Sam3TrackerModel, SamHQModel, SamModel

from sam_mito.data.patches import load_patches
from sam_mito.data.synthetic import SyntheticEM, synthetic_volume
from sam_mito.errors import SamMitoError
from sam_mito.evaluation.compare import compare
from sam_mito.features.encoding import encode, pixel_values
from sam_mito.inference.segmenter import Segmenter
from sam_mito.inference.volume_prediction import predict_volume
from sam_mito.models.decoding import decode, masks_to_image, prompts_to_input
from sam_mito.models.families import (
    FAMILIES,
    family_of,
    input_size,
    processor_for,
    tiny_edgetam_config,
    tiny_sam2_config,
    tiny_sam3_config,
    tiny_sam_hq_config,
)
from sam_mito.models.loading import (
    encoder_fingerprint,
    freeze_for_decoder_training,
    load_sam,
    tiny_sam_config,
)
from sam_mito.models.sam2_processing import (
    TorchSam2ImageProcessor,
    TorchSam2Processor,
    TorchSam3ImageProcessor,
    TorchSam3TrackerProcessor,
)
from sam_mito.training.prompt_dataset import collate_prompts, prompt_dataset
from sam_mito.training.trainer import SamMitoTrainer, train
from sam_mito.volumes.volume import Volume
from tests._training_config import tiny_training_config

TINY_CONFIGS = {
    "sam": tiny_sam_config,
    "sam_hq": tiny_sam_hq_config,
    "sam2": tiny_sam2_config,
    "sam3": tiny_sam3_config,
    "edgetam": tiny_edgetam_config,
}
#: The stock classes, by name: EdgeTamModel is only imported where timm is installed.
STOCK = {
    "sam": ("SamModel", "SamProcessor"),
    "sam_hq": ("SamHQModel", "SamHQProcessor"),
    "sam2": ("Sam2Model", "Sam2Processor"),
    "sam3": ("Sam3TrackerModel", "Sam3TrackerProcessor"),
    "edgetam": ("EdgeTamModel", "Sam2Processor"),
}
#: EdgeTAM's timm RepViT encoder needs timm and torchvision: its tests are in the vision tier.
VISION_ONLY = {"edgetam"}


def _families(*names: str) -> list:
    """Test parameters for these families, the vision-only ones marked ``vision``."""
    return [pytest.param(name, marks=pytest.mark.vision) if name in VISION_ONLY else name for name in names]


FAMILY_PARAMS = _families(*TINY_CONFIGS)
SQUARE_FAMILIES = ("sam2", "edgetam", "sam3")  # SAM 2.1's decoder, inputs resized to a square


def _stock(family: str, which: int) -> type:
    import transformers

    return getattr(transformers, STOCK[family][which])


def _save_tiny(family: str, folder: Path) -> Path:
    torch.manual_seed(0)
    config = TINY_CONFIGS[family]()
    FAMILIES[family].model_class(config).save_pretrained(folder)
    processor_for(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=FAMILY_PARAMS)
def family_dir(request, tmp_path_factory):
    """A randomly initialised tiny checkpoint of each family, with its processor config."""
    return request.param, _save_tiny(request.param, tmp_path_factory.mktemp(request.param) / "base")


@pytest.mark.parametrize(
    ("model_type", "family"),
    [
        ("sam", "sam"), ("sam_hq", "sam_hq"), ("sam2", "sam2"), ("sam2_video", "sam2"),
        ("edgetam", "edgetam"), ("edgetam_video", "edgetam"),
        ("sam3_tracker", "sam3"), ("sam3_tracker_video", "sam3"), ("sam3_video", "sam3"),
    ],
)  # fmt: skip
def test_the_family_comes_from_model_type(model_type, family):
    assert family_of({"model_type": model_type}).name == family


def test_other_model_types_are_named_with_the_expected_ones():
    with pytest.raises(SamMitoError, match=r"ckpt: model_type is 'bert', expected a SAM checkpoint.*'sam2'"):
        family_of({"model_type": "bert"}, source="ckpt")


@pytest.mark.parametrize("family", _families("sam_hq", *SQUARE_FAMILIES))
def test_tiny_configs_are_about_as_small_as_the_tiny_sam(family):
    sam = sum(p.numel() for p in SamModel(tiny_sam_config()).parameters())
    other = sum(p.numel() for p in FAMILIES[family].model_class(TINY_CONFIGS[family]()).parameters())
    assert other < 1.2 * sam


def test_every_family_trains_only_its_decoder_saves_a_stock_folder_and_runs_the_pipeline(
    tmp_path, family_dir, dataset_dir
):
    family, base_dir = family_dir
    config = tiny_training_config(
        tmp_path, base_dir, dataset_dir, max_steps=100, learning_rate=3e-3, box_jitter=0
    )
    model, processor = load_sam(str(base_dir))
    assert type(model) is _stock(family, 0)
    freeze_for_decoder_training(model)
    dataset = prompt_dataset(model, processor, load_patches(dataset_dir, "train"), config, name="train")
    trainer = SamMitoTrainer(model=model, args=config, train_dataset=dataset, processing_class=processor)

    def memorised_loss():
        trainer.model.eval()
        with torch.no_grad():
            return trainer.compute_loss(trainer.model, collate_prompts([dataset[i] for i in range(4)])).item()

    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss_before = memorised_loss()
    trainer.train()
    assert memorised_loss() < 0.8 * loss_before
    after = model.state_dict()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    frozen = [k for k in before if k not in trainable]
    assert all(torch.equal(before[k], after[k]) for k in frozen)  # every other tensor, bit for bit
    assert any(k.startswith("vision_encoder.") for k in frozen) and any(
        k.startswith("prompt_encoder.") for k in frozen
    )
    assert all(k.startswith("mask_decoder.") for k in trainable)
    assert sum(not torch.equal(before[k], after[k]) for k in trainable) > 0.5 * len(trainable)
    if family == "sam_hq":  # the HQ token and the fusion layers are trained
        assert {"mask_decoder.hq_token.weight", "mask_decoder.compress_vit_conv1.weight"} <= trainable
        assert (
            "mask_decoder.encoder_conv1.weight" in trainable and "mask_decoder.mask_conv1.weight" in trainable
        )
    if FAMILIES[family].sam2_decoder:  # applied while encoding, so frozen with the encoder
        assert not any("conv_s0" in k or "conv_s1" in k for k in trainable)
        assert "no_memory_embedding" in frozen

    trainer.save_model()
    trainer.create_model_card()
    out = Path(config.output_dir)
    assert "auto_map" not in json.loads((out / "config.json").read_text())  # no custom code needed
    stock = AutoModel.from_pretrained(out)
    assert type(stock) is _stock(family, 0)
    assert all(torch.equal(value, after[key]) for key, value in stock.state_dict().items())
    if FAMILIES[family].sam2_decoder:  # their stock image processors need torchvision: see the vision tests
        side = TINY_CONFIGS[family]().prompt_encoder_config.image_size
        saved = json.loads((out / "preprocessor_config.json").read_text())
        assert saved["size"] == {"height": side, "width": side}
    else:
        assert type(_stock(family, 1).from_pretrained(out)) is _stock(family, 1)
    card = (out / "README.md").read_text()
    model_name, processor_name = STOCK[family]
    assert f"Family: {FAMILIES[family].title} (`{model_name}`" in card
    assert f"from transformers import {model_name}, {processor_name}" in card
    assert json.loads((out / "card_data.json").read_text())["family"] == family

    report = compare(str(base_dir), str(out), dataset_dir, embedding_cache_dir=str(tmp_path / "cache"))
    scores = {(r["model"], r["mode"]): r["dice"] for r in report["results"]}
    assert len(scores) == 8 and all(0 <= dice <= 1 for dice in scores.values())
    images, _ = synthetic_volume((2, 200, 300), seed=4)
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, images, photometric="minisblack")
    segmenter = Segmenter.from_pretrained(str(out), precision="fp32")
    assert predict_volume(segmenter, stack, tmp_path / "mask.tif").shape == (2, 200, 300)
    mask = tifffile.imread(tmp_path / "mask.tif")
    assert mask.shape == (2, 200, 300) and set(np.unique(mask)) <= {0, 255}
    assert segmenter.encoder_passes == 4  # two 256-pixel tiles across 300 pixels, per slice


@pytest.mark.parametrize("family", _families("sam3", "edgetam"))
def test_the_train_recipe_fine_tunes_the_newer_families_into_a_stock_folder(tmp_path, dataset_dir, family):
    base = _save_tiny(family, tmp_path / "base")
    config = tiny_training_config(tmp_path, base, dataset_dir, eval_strategy="steps", eval_steps=4)
    result = train(config)  # the recipe: load, freeze, cache, train, save, evaluate, card
    assert result.eval_metrics is not None and np.isfinite(result.eval_metrics["eval_loss"])
    out = Path(result.output_dir)
    stock = _stock(family, 0).from_pretrained(out)
    base_weights = _stock(family, 0).from_pretrained(base).state_dict()
    changed = {k for k, v in stock.state_dict().items() if not torch.equal(v, base_weights[k])}
    assert changed and all(k.startswith("mask_decoder.") and "conv_s" not in k for k in changed)
    assert json.loads((out / "card_data.json").read_text())["family"] == family
    saved = json.loads(
        (out / "preprocessor_config.json").read_text()
    )  # the Trainer saves the image processor
    expected = {"sam3": "Sam3ImageProcessor", "edgetam": "Sam2ImageProcessor"}[family]
    assert saved["image_processor_type"] == expected and saved["size"]["height"] == input_size(stock.config)
    assert list((tmp_path / "cache").glob("train-*.npy"))  # decoder steps ran on cached features


def test_a_family_whose_modules_are_missing_is_named_with_the_install(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    here = {"timm": None, "torchvision": object()}  # as if only timm were missing, in any environment
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: here[name] if name in here else real(name, *a)
    )
    folder = tmp_path / "edgetam"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "edgetam"}))
    with pytest.raises(
        SamMitoError,
        match=r"EdgeTAM \(`EdgeTamModel`\) needs torchvision and timm, and timm is not installed: "
        r"pip install torchvision timm$",
    ):
        load_sam(str(folder))
    assert FAMILIES["sam3"].model_class is Sam3TrackerModel  # SAM 3's tracker needs neither


def test_cached_features_decode_like_the_encoder_in_the_loop(family_dir):
    family, base_dir = family_dir
    model, processor = load_sam(str(base_dir))
    model.eval()
    image = synthetic_volume((1, 256, 256), seed=1)[0][0]
    pixels = pixel_values(processor, [image])
    features = encode(model, pixels)
    side = 16  # 256-pixel tiny models: 16x16 image embeddings of 64 channels
    three_levels = (8 * 64 * 64 + 16 * 32 * 32 + 64 * side * side,)  # C/8 @ 4s, C/4 @ 2s, C @ s
    expected = {
        "sam": (64, side, side),
        "sam_hq": (64 * side * side + side * side * 64,),  # + the first global ViT block's output
        "sam2": three_levels,
        "edgetam": three_levels,  # RepViT's strides 4, 8, 16 through the FPN neck, as SAM 2.1's Hiera
        "sam3": (8 * 80 * 80 + 16 * 40 * 40 + 64 * 20 * 20,),  # 280 px, patch 14: s = 20
    }
    assert tuple(features.shape[1:]) == expected[family]
    boxes = torch.tensor([[[30.0, 40.0, 200.0, 220.0]]])
    with torch.no_grad():
        cached = decode(model, (256, 256), image_embeddings=features.half().float(), boxes=boxes).logits
        direct = decode(model, (256, 256), pixel_values=pixels, boxes=boxes).logits
    assert torch.allclose(cached, direct, atol=1e-2 * direct.abs().max().item())


def _stand_in(model_type: str):
    """A model as encoder_fingerprint sees it: a vision config of one field and two encoder tensors."""
    encoder = torch.nn.Module()
    encoder.register_buffer("z", torch.tensor([0.5]))
    encoder.register_buffer("a", torch.tensor([-2.0], dtype=torch.float64))
    vision_config = SimpleNamespace(to_dict=lambda: {"image_size": 4})
    return SimpleNamespace(
        config=SimpleNamespace(model_type=model_type, vision_config=vision_config), vision_encoder=encoder
    )


def test_a_sams_fingerprint_is_what_it_was_so_existing_caches_stay_valid():
    # Before the families: SHA-256 of the vision config's sorted JSON, then each encoder tensor by
    # name (names sorted), its values as little-endian float32: -2.0 = 00 00 00 c0, 0.5 = 00 00 00 3f.
    tensors = b"a" + b"\x00\x00\x00\xc0" + b"z" + b"\x00\x00\x00\x3f"
    old_format = b'{"image_size": 4}' + tensors
    assert encoder_fingerprint(_stand_in("sam")) == hashlib.sha256(old_format).hexdigest()
    # SAM-HQ (new with the families) hashes its family name around the same vision config
    hq_format = b'{"family": "sam_hq", "vision_config": {"image_size": 4}}' + tensors
    assert encoder_fingerprint(_stand_in("sam_hq")) == hashlib.sha256(hq_format).hexdigest()


def test_a_sams_fingerprint_follows_its_encoder_not_its_decoder():
    torch.manual_seed(0)
    sam = SamModel(tiny_sam_config())
    before = encoder_fingerprint(sam)
    with torch.no_grad():
        sam.mask_decoder.iou_token.weight += 1  # fine-tuning the decoder keeps the cache valid
        sam.prompt_encoder.no_mask_embed.weight += 1
    assert encoder_fingerprint(sam) == before
    with torch.no_grad():
        sam.vision_encoder.neck.layer_norm2.bias += 1
    assert encoder_fingerprint(sam) != before


def test_the_cache_key_covers_the_family():
    sam = SamModel(tiny_sam_config())
    hq = SamHQModel(tiny_sam_hq_config())
    hq.vision_encoder.load_state_dict(sam.vision_encoder.state_dict())  # the same ViT weights
    assert encoder_fingerprint(sam) != encoder_fingerprint(hq)


@pytest.mark.parametrize("family", _families(*SQUARE_FAMILIES))
def test_the_cache_key_covers_sam2_decoders_encoder_side_projections(family):
    model = FAMILIES[family].model_class(TINY_CONFIGS[family]())
    before = encoder_fingerprint(model)
    with torch.no_grad():
        model.mask_decoder.conv_s0.bias += 1
    assert encoder_fingerprint(model) != before
    with torch.no_grad():
        model.mask_decoder.iou_token.weight += 1  # a trained weight: the cache stays valid
        model.mask_decoder.conv_s0.bias -= 1
    assert encoder_fingerprint(model) == before


def test_sam2_resize_is_bilinear_and_antialiased_like_torchvision():
    processor = TorchSam2ImageProcessor(size=4, image_mean=(0, 0, 0), image_std=(1, 1, 1), rescale_factor=1)
    up = np.zeros((2, 2, 3), np.uint8)
    up[:, 1] = 100  # columns 0 and 100
    # Output pixel centres sit at -0.25, 0.25, 0.75, 1.25 input pixels: clamped, 0 / 25 / 75 / 100.
    assert processor.preprocess(up)[0, 0].tolist() == [[0, 25, 75, 100]] * 4
    processor = TorchSam2ImageProcessor(size=2, image_mean=(0, 0, 0), image_std=(1, 1, 1), rescale_factor=1)
    down = np.zeros((4, 4, 3), np.uint8)
    down[:, 2:] = 100
    # Halving with a triangle filter two input pixels wide: output 0 weighs inputs 0, 1, 2 by
    # 0.75, 0.75, 0.25, so 100 * 0.25 / 1.75 = 14.3 -> 14, and output 1 is 100 - 14.3 -> 86.
    assert processor.preprocess(down)[0, 0].tolist() == [[14, 86], [14, 86]]


def test_sam2_normalisation_uses_the_processor_mean_and_std():
    processor = TorchSam2ImageProcessor(size=2)
    white = np.full((2, 2, 3), 255, np.uint8)
    # (1 - mean) / std per channel: 0.515 / 0.229, 0.544 / 0.224, 0.594 / 0.225
    expected = [2.248908, 2.428571, 2.64]
    values = processor(images=[white])["pixel_values"]
    assert values.shape == (1, 3, 2, 2)
    assert torch.allclose(values[0, :, 0, 0], torch.tensor(expected), atol=1e-6)


def test_sam2_prompts_and_masks_map_onto_the_square_input():
    box = torch.tensor([[[0.0, 0.0, 400.0, 100.0]]])
    assert prompts_to_input(box, (200, 800), 1024, pad=False).tolist() == [[[0.0, 0.0, 512.0, 512.0]]]
    low_res = torch.zeros(1, 1, 4, 4)
    low_res[..., :, :2] = 1.0  # the left half of the square covers the left half of the image
    full = masks_to_image(low_res, (200, 800), 1024, pad=False)
    assert full.shape == (1, 1, 200, 800)
    # Low-res column centres 1.5 and 2.5 land on image x = 300 and 500: the ramp lies between them.
    assert torch.all(full[..., :300] == 1) and torch.all(full[..., 500:] == 0)
    # x = 399 samples low-res column (399.5) * 4 / 800 - 0.5 = 1.4975: 0.4975 of the way from 1 to 0
    assert full[0, 0, 0, 399].item() == pytest.approx(0.5025, abs=1e-5)


def test_sam2_processor_config_is_the_stock_layout_and_round_trips(tmp_path):
    from transformers.image_processing_base import ImageProcessingMixin
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES
    from transformers.processing_utils import ImagesKwargs

    processor = processor_for(tiny_sam2_config())
    processor.save_pretrained(tmp_path / "p")
    processor.image_processor.save_pretrained(tmp_path / "i")
    for folder in (tmp_path / "p", tmp_path / "i"):
        values, _ = ImageProcessingMixin.get_image_processor_dict(str(folder))  # how stock loading reads it
        classes = {name for backends in IMAGE_PROCESSOR_MAPPING_NAMES.values() for name in backends.values()}
        assert values["image_processor_type"] == "Sam2ImageProcessor" and "Sam2ImageProcessor" in classes
        assert set(values) - {"image_processor_type", "mask_size"} <= set(ImagesKwargs.__annotations__)
        assert values["size"] == {"height": 256, "width": 256} and values["resample"] == 2
    saved = json.loads((tmp_path / "p" / "processor_config.json").read_text())
    assert saved["processor_class"] == "Sam2Processor" and saved["target_size"] == 256
    _, reloaded = load_sam(str(_save_tiny("sam2", tmp_path / "m")))
    assert reloaded.image_processor.to_dict() == processor.image_processor.to_dict()


def test_unsupported_sam2_preprocessing_is_named(tmp_path):
    folder = _save_tiny("sam2", tmp_path / "m")
    path = folder / "processor_config.json"
    values = json.loads(path.read_text())
    values["image_processor"]["resample"] = 3
    path.write_text(json.dumps(values))
    with pytest.raises(
        SamMitoError, match=r"m: image processor settings \{'resample': 3\} are not supported"
    ):
        load_sam(str(folder))


#: The released checkpoints' processors: SAM 2.1 and EdgeTAM (Sam2Processor, 1024 px), SAM 3 (1008 px).
RELEASED_PROCESSORS = {
    "sam2": (TorchSam2ImageProcessor(size=1024, mask_size=256), TorchSam2Processor, "Sam2Processor"),
    "sam3": (TorchSam3ImageProcessor(size=1008, mask_size=288), TorchSam3TrackerProcessor, "Sam3TrackerProcessor"),
}  # fmt: skip


def _em_slice(shape: tuple[int, int], dtype: str) -> np.ndarray:
    """A synthetic EM slice as a microscope would store it: uint8 gray, 16-bit counts or float intensities."""
    image = SyntheticEM((1, *shape), seed=sum(shape)).render(0)[0]
    if dtype == "uint8":
        return image
    if dtype == "uint16":
        return (image.astype(np.uint16) * 180 + 3000).astype(np.uint16)  # a 12-16-bit detector's range
    return (image.astype(np.float32) / 255 * 2.5 - 0.7).astype(np.float32)  # e.g. a reconstruction


@pytest.mark.vision
@pytest.mark.parametrize("family", ["sam2", "sam3"])
@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((256, 256), "uint8"), ((768, 1024), "uint16"), ((1000, 700), "float32"), ((1536, 2048), "uint8")],
)
def test_square_preprocessing_matches_the_stock_torchvision_processor(tmp_path, family, shape, dtype):
    """sam-mito's torchvision-free resize + normalise against stock ``Sam2Processor`` / ``Sam3TrackerProcessor``.

    Slices of each dtype go through sam-mito's intensity rule to uint8 (as every stage feeds the
    processor), then through both processors: up-sampled (256², 768x1024, 1000x700) and down-sampled
    (1536x2048) to the released input sizes. Tolerance: 1e-5 after normalisation, float rounding
    only (one grey level is 1 / 255 / std = 0.0175 for SAM 2.1, 0.0078 for SAM 3): every resized
    pixel is the grey level torchvision's uint8 resize gives.
    """
    import transformers

    ours, processor_class, stock_name = RELEASED_PROCESSORS[family]
    processor_class(ours).save_pretrained(tmp_path)
    stock = getattr(transformers, stock_name).from_pretrained(tmp_path)
    assert type(stock).__name__ == stock_name
    raw = _em_slice(shape, dtype)
    assert raw.dtype == np.dtype(dtype)
    image = next(Volume.from_array(raw).slices())  # the intensity rule: uint8 kept, else a percentile window
    assert image.dtype == np.uint8 and image.std() > 10  # real-looking: not flattened by the rule
    rgb = np.repeat(image[..., None], 3, axis=-1)
    expected = stock(images=[rgb], return_tensors="pt")["pixel_values"]
    got = pixel_values(processor_class(ours), [image])
    assert got.shape == expected.shape == (1, 3, ours.size, ours.size)
    assert (got - expected).abs().max().item() <= 1e-5


@pytest.mark.vision
@pytest.mark.parametrize("family", _families(*SQUARE_FAMILIES))
def test_a_square_familys_saved_processor_loads_in_stock_transformers(tmp_path, family):
    folder = _save_tiny(family, tmp_path / "m")
    stock = _stock(family, 1).from_pretrained(folder)
    assert type(stock) is _stock(family, 1)
    ours = load_sam(str(folder))[1]
    image = np.repeat(synthetic_volume((1, 300, 200), seed=2)[0][0][..., None], 3, axis=-1)
    expected = stock(images=[image], return_tensors="pt")["pixel_values"]
    got = ours(images=[image])["pixel_values"]
    assert (got - expected).abs().max().item() <= 1e-5  # as above: float rounding only


def _video_config(family: str):
    """A tiny video checkpoint's configuration around the family's tiny image model (small memory parts)."""
    import transformers

    tiny = TINY_CONFIGS[family]().to_dict()
    parts = {k: tiny[k] for k in ("vision_config", "prompt_encoder_config", "mask_decoder_config")}
    side = tiny["prompt_encoder_config"]["image_size"]
    if family == "sam2":
        small = {"memory_attention_num_layers": 1, "memory_attention_feed_forward_hidden_size": 64}
        return transformers.Sam2VideoConfig(
            **parts, image_size=side, memory_attention_hidden_size=64, memory_encoder_hidden_size=64,
            mask_downsampler_embed_dim=64, memory_fuser_embed_dim=64, memory_fuser_intermediate_dim=64, **small,
        )  # fmt: skip
    name = {"edgetam": "EdgeTamVideoConfig", "sam3": "Sam3TrackerVideoConfig"}[family]
    return getattr(transformers, name)(**parts, image_size=side)


@pytest.mark.parametrize("family", _families(*SQUARE_FAMILIES))
def test_hub_video_checkpoints_load_as_the_image_model(tmp_path, family):
    import transformers

    config = _video_config(family)
    assert (
        config.model_type
        == {"sam2": "sam2_video", "edgetam": "edgetam_video", "sam3": "sam3_tracker_video"}[family]
    )
    torch.manual_seed(0)
    video = transformers.AutoModel.from_config(config)
    video.save_pretrained(tmp_path / "video")
    model, processor = load_sam(str(tmp_path / "video"))  # no processor saved: matched to the input size
    assert type(model) is _stock(family, 0) and family_of(model.config).name == family
    weights = video.state_dict()
    assert all(torch.equal(value, weights[key]) for key, value in model.state_dict().items())
    assert processor.image_processor.size == TINY_CONFIGS[family]().prompt_encoder_config.image_size


def _tiny_sam3_video_config():
    """A tiny ``sam3_video`` configuration (facebook/sam3's layout): a detector around the tiny SAM 3
    vision encoder and a tracker around the tiny SAM 3 prompt encoder and decoder."""
    from transformers import CLIPTextConfig, Sam3Config, Sam3VideoConfig
    from transformers.models.sam3 import configuration_sam3 as sam3

    tiny, h = tiny_sam3_config(), 64
    small = {"hidden_size": h, "num_attention_heads": 2, "intermediate_size": 2 * h}
    detector = Sam3Config(
        vision_config=tiny.vision_config.to_dict(),
        text_config=CLIPTextConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            projection_dim=32, vocab_size=49408, max_position_embeddings=32,
        ).to_dict(),
        geometry_encoder_config=sam3.Sam3GeometryEncoderConfig(num_layers=1, **small).to_dict(),
        detr_encoder_config=sam3.Sam3DETREncoderConfig(num_layers=1, **small).to_dict(),
        detr_decoder_config=sam3.Sam3DETRDecoderConfig(num_layers=1, num_queries=8, **small).to_dict(),
        mask_decoder_config=sam3.Sam3MaskDecoderConfig(hidden_size=h, num_attention_heads=2).to_dict(),
    )  # fmt: skip
    return Sam3VideoConfig(detector_config=detector.to_dict(), tracker_config=_video_config("sam3").to_dict())


def test_sam3s_hub_layout_loads_as_the_tracker_with_the_detectors_vision_encoder(tmp_path):
    """facebook/sam3 is a ``sam3_video`` checkpoint: the tracker's weights under ``tracker_model.``, the
    vision backbone (shared with the detector) under ``detector_model.vision_encoder.backbone.`` and the
    tracker's FPN neck under ``tracker_neck.``; sam-mito loads them as ``Sam3TrackerModel``."""
    from safetensors.torch import save_file
    from transformers import Sam3VideoModel

    config = _tiny_sam3_video_config()
    torch.manual_seed(0)
    video = Sam3VideoModel(config)
    folder = tmp_path / "sam3"
    config.save_pretrained(folder)
    weights = {key: value.contiguous() for key, value in video.state_dict().items()}
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})  # the modules' names
    model, processor = load_sam(str(folder))
    assert type(model) is Sam3TrackerModel and family_of(model.config).name == "sam3"

    def hub_name(key: str) -> str:
        if key.startswith("vision_encoder.backbone."):
            return "detector_model." + key
        if key.startswith("vision_encoder.neck."):
            return "tracker_neck." + key.removeprefix("vision_encoder.neck.")
        return "tracker_model." + key

    assert all(torch.equal(value, weights[hub_name(key)]) for key, value in model.state_dict().items())
    assert isinstance(processor, TorchSam3TrackerProcessor) and processor.image_processor.size == 280

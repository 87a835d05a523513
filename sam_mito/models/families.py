"""The SAM family: SAM (``SamModel``), SAM-HQ (``SamHQModel``) and SAM 2.1 (``Sam2Model``) side by side.

Everything that differs between the families lives here, so the stages above (cache, training,
evaluation, inference) stay family-blind:

- detection from a checkpoint's ``model_type`` and the classes that load it;
- what decoder-only fine-tuning trains, named by the model's own modules;
- what the decoder needs from the frozen encoder, stored per patch in the embedding cache as one
  tensor (SAM: the image embeddings, as before; the others: their feature maps flattened and
  concatenated in the order of :func:`feature_layout`) and handed back to ``forward``;
- preprocessing geometry: SAM and SAM-HQ resize the longest side and pad, SAM 2.1 resizes to a
  square; :func:`processor_for` and :func:`load_processor` give each family its processor (SAM
  2.1's, done without torchvision, is in :mod:`sam_mito.models.sam2_processing`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from transformers import (
    Sam2Config,
    Sam2HieraDetConfig,
    Sam2MaskDecoderConfig,
    Sam2Model,
    Sam2PromptEncoderConfig,
    Sam2VisionConfig,
    SamHQConfig,
    SamHQMaskDecoderConfig,
    SamHQModel,
    SamHQProcessor,
    SamHQPromptEncoderConfig,
    SamHQVisionConfig,
    SamModel,
    SamProcessor,
)
from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

from sam_mito.errors import SamMitoError
from sam_mito.models.sam2_processing import TorchSam2ImageProcessor, TorchSam2Processor


@dataclass(frozen=True)
class Family:
    """What sam-mito needs to know about one family of SAM checkpoints.

    Attributes
    ----------
    name : str
        ``sam``, ``sam_hq`` or ``sam2``.
    title : str
        Its name in cards and logs.
    model_types : tuple of str
        The ``model_type`` values of its checkpoints.
    model_class : type
        The transformers class that loads it.
    processor_class : str
        The transformers processor class name its saved processor config is for.
    trained, frozen : str
        What decoder-only fine-tuning trains and keeps frozen, for model cards.
    pads : bool
        The encoder input is the image resized by its longest side and padded (SAM, SAM-HQ), not
        resized to a square (SAM 2.1).
    """

    name: str
    title: str
    model_types: tuple[str, ...]
    model_class: type
    processor_class: str
    trained: str
    frozen: str
    pads: bool


FAMILIES = {
    "sam": Family(
        "sam", "SAM", ("sam",), SamModel, "SamProcessor",
        trained="`mask_decoder`",
        frozen="vision encoder, prompt encoder, shared positional embedding",
        pads=True,
    ),
    "sam_hq": Family(
        "sam_hq", "SAM-HQ", ("sam_hq",), SamHQModel, "SamHQProcessor",
        trained="`mask_decoder`, with its HQ token, HQ mask MLP and feature-fusion layers",
        frozen="vision encoder, prompt encoder, shared positional embedding",
        pads=True,
    ),
    "sam2": Family(
        "sam2", "SAM 2.1", ("sam2", "sam2_video"), Sam2Model, "Sam2Processor",
        trained="`mask_decoder` except `conv_s0`/`conv_s1`",
        frozen="Hiera vision encoder, prompt encoder, `no_memory_embedding`, and the decoder's "
        "`conv_s0`/`conv_s1` projections of the high-resolution features (applied when encoding, "
        "so their output is what the embedding cache holds)",
        pads=False,
    ),
}  # fmt: skip

#: Parameters inside ``mask_decoder`` that run at encoding time (``Sam2Model.get_image_features``)
#: and are therefore frozen with the encoder.
ENCODER_SIDE = {"sam2": ("mask_decoder.conv_s0.", "mask_decoder.conv_s1.")}


def family_of(config, *, source: str | None = None) -> Family:
    """The family of a model configuration (or its ``config.json`` dict), from its ``model_type``.

    Raises :class:`SamMitoError` naming ``source`` for any other model type.
    """
    model_type = config.get("model_type") if isinstance(config, dict) else getattr(config, "model_type", None)
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    known = ", ".join(f"'{t}'" for f in FAMILIES.values() for t in f.model_types)
    raise SamMitoError(
        f"{source or 'model'}: model_type is '{model_type}', expected a SAM checkpoint (one of {known})"
    )


def load_model(source: str, config_dict: dict, family: Family, **hub):
    """Load ``source`` with its family's class (SDPA attention); SAM 2.1 video checkpoints as ``Sam2Model``.

    ``hub`` holds ``revision`` and ``token`` for a Hub id.
    """
    kwargs = dict(hub)
    if config_dict.get("model_type") == "sam2_video":  # the Hub's SAM 2.1 repos: keep the image model
        parts = {
            key: {k: v for k, v in config_dict[key].items() if k != "model_type"}
            for key in ("vision_config", "prompt_encoder_config", "mask_decoder_config")
        }
        parts["vision_config"]["model_type"] = "sam2_vision_model"
        kwargs["config"] = Sam2Config(**parts)
    # SDPA attention: measured 2x faster than eager on the ViT-B encoder on CPU (BENCHMARKS.md).
    return family.model_class.from_pretrained(source, attn_implementation="sdpa", **kwargs)


def input_size(config) -> int:
    """Side of the square encoder input (1024 for the released checkpoints)."""
    if family_of(config).name == "sam":
        return config.vision_config.image_size
    return config.prompt_encoder_config.image_size


def is_trainable(family: Family, name: str) -> bool:
    """Whether decoder-only fine-tuning trains the parameter called ``name``."""
    return name.startswith("mask_decoder.") and not name.startswith(ENCODER_SIDE.get(family.name, ()))


def encoder_tensors(model) -> dict[str, torch.Tensor]:
    """Every tensor the cached features depend on, by name: the vision encoder's, plus SAM 2.1's
    ``no_memory_embedding`` and decoder-side ``conv_s0``/``conv_s1`` (applied when encoding)."""
    tensors = dict(model.vision_encoder.state_dict())
    family = family_of(model.config)
    if family.name == "sam2":
        tensors["no_memory_embedding"] = model.no_memory_embedding.detach()
        tensors.update(
            {
                name: p.detach()
                for name, p in model.named_parameters()
                if name.startswith(ENCODER_SIDE["sam2"])
            }
        )
    return tensors


def feature_layout(config) -> list[tuple[str, tuple[int, ...]]]:
    """Name and per-image shape of each tensor the decoder needs from the encoder, in cache order.

    SAM: ``image_embeddings (C, s, s)``. SAM-HQ: that plus ``intermediate_embeddings (s, s, D)``,
    the first global-attention ViT block's output, the only one its decoder fuses. SAM 2.1: its three
    feature levels after ``conv_s0``/``conv_s1`` and ``no_memory_embedding`` (``get_image_embeddings``).
    """
    family = family_of(config)
    if family.name == "sam2":
        hidden, sizes = config.mask_decoder_config.hidden_size, config.vision_config.backbone_feature_sizes
        channels = (hidden // 8, hidden // 4, config.vision_config.fpn_hidden_size)
        return [
            (f"level_{i}", (c, *map(int, size)))
            for i, (c, size) in enumerate(zip(channels, sizes, strict=True))
        ]
    side = config.prompt_encoder_config.image_embedding_size
    layout = [("image_embeddings", (config.vision_config.output_channels, side, side))]
    if family.name == "sam_hq":
        vit_side = config.vision_config.image_size // config.vision_config.patch_size
        layout.append(("intermediate_embeddings", (vit_side, vit_side, config.vision_config.hidden_size)))
    return layout


def embedding_shape(config) -> tuple[int, ...]:
    """Per-image shape of a cache row: SAM's ``(C, s, s)`` embeddings, else the flat concatenation."""
    layout = feature_layout(config)
    if family_of(config).name == "sam":
        return layout[0][1]
    return (sum(math.prod(shape) for _, shape in layout),)


def image_features(model, pixels: torch.Tensor) -> torch.Tensor:
    """Run the frozen encoder: one tensor per image, shaped :func:`embedding_shape`."""
    family = family_of(model.config)
    if family.name == "sam":
        return model.get_image_embeddings(pixels)
    if family.name == "sam_hq":
        embeddings, intermediate = model.get_image_embeddings(pixels)
        parts = [embeddings, intermediate[0]]
    else:
        parts = model.get_image_embeddings(pixels)
    return torch.cat([part.float().flatten(1) for part in parts], dim=1)


def decoder_inputs(config, embeddings: torch.Tensor, device: torch.device) -> dict:
    """``forward`` keyword arguments for a batch of :func:`image_features` rows, on ``device``."""
    family = family_of(config)
    if family.name == "sam":
        return {"image_embeddings": embeddings.to(device)}
    parts, start = [], 0
    for _, shape in feature_layout(config):
        size = math.prod(shape)
        parts.append(embeddings[:, start : start + size].reshape(-1, *shape).to(device))
        start += size
    if family.name == "sam_hq":
        return {"image_embeddings": parts[0], "intermediate_embeddings": [parts[1]]}
    return {"image_embeddings": parts}


def processor_for(config):
    """A processor whose preprocessing matches the model's input size, for any family (no torchvision)."""
    family, size = family_of(config), input_size(config)
    if family.name == "sam2":
        low_res = 4 * size // config.prompt_encoder_config.patch_size
        return TorchSam2Processor(TorchSam2ImageProcessor(size=size, mask_size=low_res))
    low_res = config.prompt_encoder_config.image_embedding_size * 4
    image_processor = SamImageProcessorPil(
        size={"longest_edge": size},
        pad_size={"height": size, "width": size},
        mask_size={"longest_edge": low_res},
        mask_pad_size={"height": low_res, "width": low_res},
    )
    return (SamHQProcessor if family.name == "sam_hq" else SamProcessor)(image_processor=image_processor)


def load_processor(source: str, config, **hub):
    """The processor saved with a checkpoint (Hub id or folder), or None if it has none.

    ``hub`` holds ``revision`` and ``token`` for a Hub id.
    """
    from transformers.image_processing_base import ImageProcessingMixin

    family = family_of(config)
    try:
        if family.name != "sam2":
            return (SamHQProcessor if family.name == "sam_hq" else SamProcessor).from_pretrained(
                source, **hub
            )
        values, _ = ImageProcessingMixin.get_image_processor_dict(source, **hub)
    except (OSError, ValueError):
        return None
    image_processor = TorchSam2ImageProcessor.from_dict(values, source=source, size=input_size(config))
    return TorchSam2Processor(image_processor)


def tiny_sam_hq_config(*, image_size: int = 256, hidden: int = 64) -> SamHQConfig:
    """A SAM-HQ configuration as small as :func:`sam_mito.models.loading.tiny_sam_config` (about 0.37M parameters)."""
    vision = SamHQVisionConfig(
        hidden_size=hidden, num_hidden_layers=2, num_attention_heads=4, image_size=image_size, patch_size=16,
        window_size=4, global_attn_indexes=[1], mlp_dim=2 * hidden, num_pos_feats=hidden // 2,
        output_channels=hidden, initializer_range=0.02,
    )  # fmt: skip
    prompt = SamHQPromptEncoderConfig(hidden_size=hidden, image_size=image_size, patch_size=16)
    decoder = SamHQMaskDecoderConfig(
        hidden_size=hidden,
        mlp_dim=2 * hidden,
        num_attention_heads=4,
        iou_head_hidden_dim=hidden,
        vit_dim=hidden,
    )
    return SamHQConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


def tiny_sam2_config(*, image_size: int = 256, hidden: int = 64) -> Sam2Config:
    """A SAM 2.1 configuration (four-stage Hiera) about as small as the tiny SAM (about 0.38M parameters)."""
    dims = [16, 32, 64, 128]
    backbone = Sam2HieraDetConfig(
        hidden_size=dims[0], num_attention_heads=1, image_size=[image_size, image_size],
        blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=dims, num_attention_heads_per_stage=[1, 1, 2, 2],
        window_size_per_stage=[4, 4, 4, 4], global_attention_blocks=[3],
        window_positional_embedding_background_size=[4, 4], mlp_ratio=2.0,
    )  # fmt: skip
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=dims[::-1],
        backbone_feature_sizes=[[image_size // s] * 2 for s in (4, 8, 16)],
        fpn_hidden_size=hidden,
    )
    prompt = Sam2PromptEncoderConfig(hidden_size=hidden, image_size=image_size, patch_size=16)
    decoder = Sam2MaskDecoderConfig(
        hidden_size=hidden, mlp_dim=2 * hidden, num_attention_heads=4, iou_head_hidden_dim=hidden
    )
    return Sam2Config(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)

"""The SAM family: SAM (``SamModel``), SAM-HQ (``SamHQModel``), SAM 2.1 (``Sam2Model``), EdgeTAM
(``EdgeTamModel``) and SAM 3's tracker (``Sam3TrackerModel``) side by side.

Everything that differs between the families lives here, so the stages above (cache, training,
evaluation, inference) stay family-blind:

- detection from a checkpoint's ``model_type`` and the classes that load it;
- what decoder-only fine-tuning trains, named by the model's own modules;
- what the decoder needs from the frozen encoder, stored per patch in the embedding cache as one
  tensor (SAM: the image embeddings, as before; the others: their feature maps flattened and
  concatenated in the order of :func:`feature_layout`) and handed back to ``forward``;
- preprocessing geometry: SAM and SAM-HQ resize the longest side and pad, SAM 2.1, EdgeTAM and SAM
  3 resize to a square; :func:`processor_for` and :func:`load_processor` give each family its
  processor (those of the square families, done without torchvision, are in
  :mod:`sam_mito.models.sam2_processing`).

EdgeTAM and SAM 3's tracker reuse SAM 2.1's prompt encoder and mask decoder (three feature levels,
``conv_s0``/``conv_s1`` applied when encoding, ``no_memory_embedding``), so they share its code
paths here (:attr:`Family.sam2_decoder`). EdgeTAM's RepViT image encoder is a timm model: its
classes are imported only when the family is used, and a missing ``timm``/``torchvision`` is a
:class:`SamMitoError` (:attr:`Family.model_class`).
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass

import torch
import transformers
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
from sam_mito.models.sam2_processing import (
    TorchSam2ImageProcessor,
    TorchSam2Processor,
    TorchSam3ImageProcessor,
    TorchSam3TrackerProcessor,
)


@dataclass(frozen=True)
class Family:
    """What sam-mito needs to know about one family of SAM checkpoints.

    Attributes
    ----------
    name : str
        ``sam``, ``sam_hq``, ``sam2``, ``edgetam`` or ``sam3``.
    title : str
        Its name in cards and logs.
    model_types : tuple of str
        The ``model_type`` values of its checkpoints.
    model_class_name : str
        The transformers class that loads it (:attr:`model_class` imports it).
    processor_class : str
        The transformers processor class name its saved processor config is for.
    trained, frozen : str
        What decoder-only fine-tuning trains and keeps frozen, for model cards.
    pads : bool
        The encoder input is the image resized by its longest side and padded (SAM, SAM-HQ), not
        resized to a square (the others).
    sam2_decoder : bool
        SAM 2.1's prompt encoder and mask decoder: three feature levels, ``conv_s0``/``conv_s1``
        applied when encoding, ``no_memory_embedding`` (SAM 2.1, EdgeTAM, SAM 3).
    requires : tuple of str
        Modules the model needs beyond the main install (EdgeTAM: ``timm``, ``torchvision``).
    """

    name: str
    title: str
    model_types: tuple[str, ...]
    model_class_name: str
    processor_class: str
    trained: str
    frozen: str
    pads: bool
    sam2_decoder: bool = False
    requires: tuple[str, ...] = ()

    @property
    def model_class(self) -> type:
        """The transformers class, imported now; :class:`SamMitoError` naming the install if a module
        it needs is missing."""
        missing = [module for module in self.requires if importlib.util.find_spec(module) is None]
        if missing:
            raise SamMitoError(
                f"{self.title} (`{self.model_class_name}`) needs {' and '.join(self.requires)}, and "
                f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed: "
                f"pip install {' '.join(self.requires)}"
            )
        return getattr(transformers, self.model_class_name)


_SAM2_FROZEN = (
    "prompt encoder, `no_memory_embedding`, and the decoder's `conv_s0`/`conv_s1` projections of the "
    "high-resolution features (applied when encoding, so their output is what the embedding cache holds)"
)


FAMILIES = {
    "sam": Family(
        "sam", "SAM", ("sam",), SamModel.__name__, "SamProcessor",
        trained="`mask_decoder`",
        frozen="vision encoder, prompt encoder, shared positional embedding",
        pads=True,
    ),
    "sam_hq": Family(
        "sam_hq", "SAM-HQ", ("sam_hq",), SamHQModel.__name__, "SamHQProcessor",
        trained="`mask_decoder`, with its HQ token, HQ mask MLP and feature-fusion layers",
        frozen="vision encoder, prompt encoder, shared positional embedding",
        pads=True,
    ),
    "sam2": Family(
        "sam2", "SAM 2.1", ("sam2", "sam2_video"), Sam2Model.__name__, "Sam2Processor",
        trained="`mask_decoder` except `conv_s0`/`conv_s1`",
        frozen="Hiera vision encoder, " + _SAM2_FROZEN,
        pads=False, sam2_decoder=True,
    ),
    "edgetam": Family(
        "edgetam", "EdgeTAM", ("edgetam", "edgetam_video"), "EdgeTamModel", "Sam2Processor",
        trained="`mask_decoder` except `conv_s0`/`conv_s1`",
        frozen="RepViT vision encoder (timm) and its FPN neck, " + _SAM2_FROZEN,
        pads=False, sam2_decoder=True, requires=("torchvision", "timm"),
    ),
    "sam3": Family(
        "sam3", "SAM 3", ("sam3_tracker", "sam3_tracker_video", "sam3_video"), "Sam3TrackerModel",
        "Sam3TrackerProcessor",
        trained="`mask_decoder` except `conv_s0`/`conv_s1`",
        frozen="SAM 3 ViT vision encoder and its FPN neck, " + _SAM2_FROZEN,
        pads=False, sam2_decoder=True,
    ),
}  # fmt: skip

#: Parameters inside ``mask_decoder`` that run at encoding time (``Sam2Model.get_image_features``)
#: and are therefore frozen with the encoder (every family with SAM 2.1's decoder).
SAM2_ENCODER_SIDE = ("mask_decoder.conv_s0.", "mask_decoder.conv_s1.")

#: Video checkpoints whose image model (the family's class) sam-mito loads: the image model's
#: ``model_type`` and vision ``model_type``, and where their sub-configurations are (None: at the top;
#: SAM 3's Hub layout ``sam3_video`` keeps the tracker's in ``tracker_config`` and the shared vision
#: encoder's in ``detector_config``, and transformers renames its weights for ``Sam3TrackerModel``).
VIDEO_TYPES = {
    "sam2_video": ("sam2", "sam2_vision_model", None),
    "edgetam_video": ("edgetam", "edgetam_vision_model", None),
    "sam3_tracker_video": ("sam3_tracker", "sam3_vision_model", None),
    "sam3_video": ("sam3_tracker", "sam3_vision_model", ("detector_config", "tracker_config")),
}


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
    """Load ``source`` with its family's class (SDPA attention); video checkpoints (SAM 2.1's Hub
    repos are ``sam2_video``) as the image model.

    ``hub`` holds ``revision`` and ``token`` for a Hub id.
    """
    model_class = family.model_class  # first: a missing timm is named before anything loads
    kwargs = dict(hub)
    if config_dict.get("model_type") in VIDEO_TYPES:  # keep the image model
        kwargs["config"] = _image_model_config(config_dict)
    # SDPA attention: measured 2x faster than eager on the ViT-B encoder on CPU (BENCHMARKS.md).
    return model_class.from_pretrained(source, attn_implementation="sdpa", **kwargs)


def _image_model_config(config_dict: dict):
    """The image model's configuration inside a video checkpoint's ``config.json`` (:data:`VIDEO_TYPES`):
    its vision encoder, prompt encoder and mask decoder."""
    image_type, vision_type, nested = VIDEO_TYPES[config_dict["model_type"]]
    vision, rest = (config_dict, config_dict) if nested is None else (config_dict[key] for key in nested)
    parts = {
        key: {
            k: v
            for k, v in (vision if key == "vision_config" else rest).get(key, {}).items()
            if k != "model_type"
        }
        for key in ("vision_config", "prompt_encoder_config", "mask_decoder_config")
    }
    parts["vision_config"]["model_type"] = vision_type
    return transformers.AutoConfig.for_model(image_type, **parts)


def input_size(config) -> int:
    """Side of the square encoder input (1024 for the released checkpoints)."""
    if family_of(config).name == "sam":
        return config.vision_config.image_size
    return config.prompt_encoder_config.image_size


def is_trainable(family: Family, name: str) -> bool:
    """Whether decoder-only fine-tuning trains the parameter called ``name``."""
    encoder_side = SAM2_ENCODER_SIDE if family.sam2_decoder else ()
    return name.startswith("mask_decoder.") and not name.startswith(encoder_side)


def encoder_tensors(model) -> dict[str, torch.Tensor]:
    """Every tensor the cached features depend on, by name: the vision encoder's, plus (SAM 2.1's
    decoder) ``no_memory_embedding`` and decoder-side ``conv_s0``/``conv_s1`` (applied when encoding)."""
    tensors = dict(model.vision_encoder.state_dict())
    family = family_of(model.config)
    if family.sam2_decoder:
        tensors["no_memory_embedding"] = model.no_memory_embedding.detach()
        tensors.update(
            {name: p.detach() for name, p in model.named_parameters() if name.startswith(SAM2_ENCODER_SIDE)}
        )
    return tensors


def feature_layout(config) -> list[tuple[str, tuple[int, ...]]]:
    """Name and per-image shape of each tensor the decoder needs from the encoder, in cache order.

    SAM: ``image_embeddings (C, s, s)``. SAM-HQ: that plus ``intermediate_embeddings (s, s, D)``,
    the first global-attention ViT block's output, the only one its decoder fuses. SAM 2.1, EdgeTAM,
    SAM 3: the three feature levels after ``conv_s0``/``conv_s1`` and ``no_memory_embedding``
    (``get_image_embeddings``): ``C/8 @ 4s``, ``C/4 @ 2s``, ``C @ s``.
    """
    family = family_of(config)
    if family.sam2_decoder:
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
    if family.sam2_decoder:
        low_res = 4 * size // config.prompt_encoder_config.patch_size
        image_processor_class, processor_class = _square_processor(family)
        return processor_class(image_processor_class(size=size, mask_size=low_res))
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
        if not family.sam2_decoder:
            return (SamHQProcessor if family.name == "sam_hq" else SamProcessor).from_pretrained(
                source, **hub
            )
        values, _ = ImageProcessingMixin.get_image_processor_dict(source, **hub)
    except (OSError, ValueError):
        return None
    image_processor_class, processor_class = _square_processor(family)
    return processor_class(image_processor_class.from_dict(values, source=source, size=input_size(config)))


def _square_processor(family: Family) -> tuple[type, type]:
    """The torch image processor and processor of a family that resizes to a square (no torchvision)."""
    if family.name == "sam3":
        return TorchSam3ImageProcessor, TorchSam3TrackerProcessor
    return TorchSam2ImageProcessor, TorchSam2Processor


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


def tiny_edgetam_config(*, image_size: int = 256, hidden: int = 64):
    """An EdgeTAM configuration (a four-stage RepViT, timm's ``repvit_m1`` made narrow and shallow)
    about as small as the tiny SAM. Building a model from it needs timm (:attr:`Family.model_class`)."""
    from transformers import (
        EdgeTamConfig,
        EdgeTamMaskDecoderConfig,
        EdgeTamPromptEncoderConfig,
        EdgeTamVisionConfig,
        TimmWrapperConfig,
    )

    dims = [8, 16, 32, 64]  # strides 4, 8, 16, 32: RepViT's stages, as in EdgeTAM
    backbone = TimmWrapperConfig(
        architecture="repvit_m1",
        model_args={
            "in_chans": 3, "features_only": True, "out_indices": [0, 1, 2, 3],
            "embed_dim": dims, "depth": [1, 1, 1, 1],
        },
    )  # fmt: skip
    vision = EdgeTamVisionConfig(
        backbone_config=backbone,
        backbone_channel_list=dims[::-1],
        backbone_feature_sizes=[[image_size // s] * 2 for s in (4, 8, 16)],
        fpn_hidden_size=hidden,
    )
    prompt = EdgeTamPromptEncoderConfig(hidden_size=hidden, image_size=image_size, patch_size=16)
    decoder = EdgeTamMaskDecoderConfig(
        hidden_size=hidden, mlp_dim=2 * hidden, num_attention_heads=4, iou_head_hidden_dim=hidden
    )
    return EdgeTamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


def tiny_sam3_config(*, image_size: int = 280, hidden: int = 64):
    """A SAM 3 tracker configuration (a two-layer SAM 3 ViT with patch 14 and its FPN neck) about as
    small as the tiny SAM. Its input is 280 px (20 patches of 14), at least the 256-px training patch."""
    from transformers import Sam3TrackerConfig, Sam3TrackerMaskDecoderConfig, Sam3TrackerPromptEncoderConfig
    from transformers.models.sam3.configuration_sam3 import Sam3VisionConfig, Sam3ViTConfig

    patch = 14
    side = image_size // patch
    vit = Sam3ViTConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=image_size, patch_size=patch, window_size=side // 2, global_attn_indexes=[1],
        pretrain_image_size=image_size // 2,
    )  # fmt: skip
    vision = Sam3VisionConfig(
        backbone_config=vit,
        fpn_hidden_size=hidden,
        backbone_feature_sizes=[[side * s] * 2 for s in (4, 2, 1)],
    )
    prompt = Sam3TrackerPromptEncoderConfig(hidden_size=hidden, image_size=image_size, patch_size=patch)
    decoder = Sam3TrackerMaskDecoderConfig(
        hidden_size=hidden, mlp_dim=2 * hidden, num_attention_heads=4, iou_head_hidden_dim=hidden
    )
    return Sam3TrackerConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)

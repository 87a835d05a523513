"""Load a SAM (Hub id, local folder or the packaged tiny base), freeze it, fingerprint it."""

from __future__ import annotations

import hashlib
import json
import logging
from importlib import resources
from pathlib import Path

import torch
from transformers import (
    SamConfig,
    SamMaskDecoderConfig,
    SamModel,
    SamProcessor,
    SamPromptEncoderConfig,
    SamVisionConfig,
)
from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

from .errors import SamMitoError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "facebook/sam-vit-base"
#: Name that resolves to the tiny SAM shipped in the package (pretrained on generic shapes, not EM).
TINY_BASE = "sam-mito/tiny-base"
TRAINABLE_PREFIX = "mask_decoder."


def tiny_base_path() -> Path:
    """Folder of the packaged tiny SAM checkpoint (model.safetensors, config, processor config)."""
    return Path(str(resources.files("sam_mito").joinpath("assets", "tiny-sam-base")))


def tiny_sam_config(*, image_size: int = 256, hidden: int = 64) -> SamConfig:
    """A SAM configuration small enough for CPU tests and the offline demo (about 0.34M parameters)."""
    vision = SamVisionConfig(
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=16,
        window_size=4,
        global_attn_indexes=[1],
        mlp_dim=2 * hidden,
        num_pos_feats=hidden // 2,
        output_channels=hidden,
        initializer_range=0.02,  # SAM's default (1e-10) gives embeddings that underflow in fp16
    )
    prompt = SamPromptEncoderConfig(hidden_size=hidden, image_size=image_size, patch_size=16)
    decoder = SamMaskDecoderConfig(
        hidden_size=hidden, mlp_dim=2 * hidden, num_attention_heads=4, iou_head_hidden_dim=hidden
    )
    return SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


def processor_for(config: SamConfig) -> SamProcessor:
    """A SamProcessor whose resize/pad size matches the model's input size (no torchvision needed)."""
    size = config.vision_config.image_size
    low_res = config.prompt_encoder_config.image_embedding_size * 4
    image_processor = SamImageProcessorPil(
        size={"longest_edge": size},
        pad_size={"height": size, "width": size},
        mask_size={"longest_edge": low_res},
        mask_pad_size={"height": low_res, "width": low_res},
    )
    return SamProcessor(image_processor=image_processor)


def load_sam(name_or_path: str = DEFAULT_MODEL) -> tuple[SamModel, SamProcessor]:
    """Load a SAM model and its processor from a Hub id, a local folder, or :data:`TINY_BASE`.

    Never runs remote code. Without network access, a Hub id that is not in the local cache fails
    with one line suggesting the local-folder route.
    """
    source = str(tiny_base_path()) if name_or_path == TINY_BASE else str(name_or_path)
    local = Path(source)
    if local.exists() and not (local / "config.json").exists():
        raise SamMitoError(f"{source}: not a SAM checkpoint folder (no config.json)")
    try:
        config = SamConfig.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise SamMitoError(
            f"cannot load SAM '{name_or_path}': {str(err).splitlines()[0]} "
            "(offline or wrong id? download it once with `hf download ID --local-dir DIR` and pass DIR)"
        ) from err
    if getattr(config, "model_type", None) != "sam":
        raise SamMitoError(
            f"{source}: model_type is '{config.model_type}', expected a SAM checkpoint ('sam')"
        )
    # SDPA attention: measured 2x faster than eager on the ViT-B encoder on CPU (BENCHMARKS.md).
    model = SamModel.from_pretrained(source, attn_implementation="sdpa")
    try:
        processor = SamProcessor.from_pretrained(source)
    except (OSError, ValueError):
        logger.warning("%s has no processor config; using one matched to the model's input size", source)
        processor = processor_for(model.config)
    return model, processor


def freeze_for_decoder_training(model: SamModel) -> tuple[int, int]:
    """Freeze everything but the mask decoder (vision encoder, prompt encoder, shared embedding).

    Returns
    -------
    trainable, total : int
        Parameter counts after freezing.
    """
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.startswith(TRAINABLE_PREFIX)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    logger.info(
        "trainable parameters: %s of %s (%.1f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / total
    )
    return trainable, total


def freeze_unreached(model: SamModel, *, mask_outputs: str, iou_weight: float) -> None:
    """Freeze the decoder parts the configured loss never reaches, so every trainable parameter gets a gradient.

    With ``mask_outputs='single'`` only mask token 0 is decoded, so the hypernetwork MLPs of the
    multimask tokens 1-3 are frozen; with ``iou_weight=0`` the IoU-prediction head is. (Distributed
    training can then run with ``ddp_find_unused_parameters=False``.)

    Parameters
    ----------
    model : SamModel
        A SAM frozen for decoder training (:func:`freeze_for_decoder_training`).
    mask_outputs : {"all", "single"}, keyword-only
        The decoder outputs the loss fits (:data:`sam_mito.losses.MASK_OUTPUTS`).
    iou_weight : float, keyword-only
        Weight of the IoU-prediction term of the loss.
    """
    decoder = getattr(model, "module", model).mask_decoder
    unreached = list(decoder.output_hypernetworks_mlps[1:]) if mask_outputs == "single" else []
    if iou_weight == 0:
        unreached.append(decoder.iou_prediction_head)
    for module in unreached:
        module.requires_grad_(False)


def encoder_fingerprint(model: SamModel) -> str:
    """SHA-256 over the vision configuration and vision-encoder weights: what image embeddings depend on."""
    digest = hashlib.sha256(json.dumps(model.config.vision_config.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(model.vision_encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()

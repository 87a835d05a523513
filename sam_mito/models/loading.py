"""Load a SAM (Hub id, local folder or the packaged tiny base), freeze it, fingerprint it."""

from __future__ import annotations

import hashlib
import json
import logging
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import (
    PreTrainedConfig,
    SamConfig,
    SamMaskDecoderConfig,
    SamModel,
    SamProcessor,
    SamPromptEncoderConfig,
    SamVisionConfig,
)

from sam_mito.defaults import DEFAULT_MODEL, TINY_BASE
from sam_mito.errors import SamMitoError
from sam_mito.models import families
from sam_mito.models.devices import resolve_device

logger = logging.getLogger(__name__)

#: Files transformers reads a checkpoint's preprocessing from (the newer layout first).
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")


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


def processor_for(config) -> SamProcessor:
    """A processor whose resize/pad size matches the model's input size, for any family (no torchvision).

    SAM and SAM-HQ get a ``SamProcessor`` / ``SamHQProcessor``; SAM 2.1 a
    :class:`sam_mito.models.sam2_processing.TorchSam2Processor`.
    """
    return families.processor_for(config)


def load_sam(
    name_or_path: str = DEFAULT_MODEL,
    *,
    device: str | torch.device | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
) -> tuple[SamModel, SamProcessor]:
    """Load a SAM, SAM-HQ, SAM 2.1, EdgeTAM or SAM 3 (tracker) model and its processor from a Hub id,
    a folder, or :data:`TINY_BASE`.

    The family comes from the checkpoint's ``model_type`` (:func:`sam_mito.models.families.family_of`);
    EdgeTAM needs timm and torchvision, and says so before anything loads.
    Never runs remote code. Without network access, a Hub id that is not in the local cache fails
    with one line suggesting the local-folder route.

    Parameters
    ----------
    name_or_path : str
        Hub id, local folder, or :data:`TINY_BASE`.
    device : str or torch.device, keyword-only
        Where the model goes (checked first, before anything loads); default
        :func:`sam_mito.models.devices.default_device`: the ``accelerate launch`` process's device,
        else CUDA when present, else the CPU.
    revision, token : keyword-only
        The Hub revision (branch, tag or commit) and token, as for transformers'
        ``from_pretrained``; never logged or written.

    Returns
    -------
    model, processor
        The model in eval mode on ``device``, and its processor.
    """
    target = resolve_device(device)
    hub = {key: value for key, value in (("revision", revision), ("token", token)) if value is not None}
    source = str(tiny_base_path()) if name_or_path == TINY_BASE else str(name_or_path)
    local = Path(source)
    if local.exists() and not (local / "config.json").exists():
        raise SamMitoError(f"{source}: not a SAM checkpoint folder (no config.json)")
    try:
        config_dict, _ = PreTrainedConfig.get_config_dict(source, **hub)
    except (OSError, ValueError) as err:
        raise SamMitoError(
            f"cannot load SAM '{name_or_path}': {str(err).splitlines()[0]} "
            "(offline or wrong id? download it once with `hf download ID --local-dir DIR` and pass DIR)"
        ) from err
    family = families.family_of(config_dict, source=source)
    try:
        model = families.load_model(source, config_dict, family, **hub)
    except (OSError, SafetensorError) as err:
        weights = local / "model.safetensors" if local.is_dir() else source
        raise SamMitoError(
            f"{weights}: cannot load the SAM weights ({str(err).splitlines()[0]}); the file is missing, "
            "truncated or corrupt: copy or download it again"
        ) from err
    _check_processor_files(source, revision)
    processor = families.load_processor(source, model.config, **hub)
    if processor is None:
        logger.warning("%s has no processor config; using one matched to the model's input size", source)
        processor = processor_for(model.config)
    return model.to(target).eval(), processor


def _check_processor_files(source: str, revision: str | None) -> None:
    """Refuse a checkpoint's processor file that is not valid JSON, naming it.

    transformers reports a corrupt file as it does a missing one (``OSError``), and a missing
    processor is replaced by one matched to the model: without this check a corrupt file would
    silently give other preprocessing than the model was trained with. Looks in a local folder,
    or in the Hub cache for a Hub id (nothing is downloaded).
    """
    if Path(source).is_dir():
        paths = [Path(source) / name for name in PROCESSOR_FILES]
    else:
        from huggingface_hub import try_to_load_from_cache

        cached = (try_to_load_from_cache(source, name, revision=revision) for name in PROCESSOR_FILES)
        paths = [Path(path) for path in cached if isinstance(path, str)]
    for path in paths:
        if not path.is_file():
            continue
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            where = f"line {err.lineno} column {err.colno}" if hasattr(err, "lineno") else "not UTF-8"
            raise SamMitoError(
                f"{path}: not valid JSON ({where}); expected the processor settings saved with the "
                "model: copy or download the file again (or delete it to use preprocessing matched "
                "to the model's input size)"
            ) from err


def freeze_for_decoder_training(model: SamModel) -> tuple[int, int]:
    """Freeze everything but the mask decoder (vision encoder, prompt encoder, shared embedding).

    What counts as the decoder is the family's (:func:`sam_mito.models.families.is_trainable`): SAM 2.1's
    ``conv_s0``/``conv_s1`` run at encoding time and stay frozen with the encoder.

    Returns
    -------
    trainable, total : int
        Parameter counts after freezing.
    """
    family = families.family_of(model.config)
    for name, parameter in model.named_parameters():
        parameter.requires_grad = families.is_trainable(family, name)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    logger.info(
        "trainable parameters: %s of %s (%.1f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / total
    )
    return trainable, total


def freeze_unused_outputs(model: SamModel, *, mask_outputs: str, iou_weight: float) -> None:
    """Freeze the decoder parts the configured loss never reaches, so every trainable parameter gets a gradient.

    With ``mask_outputs='single'`` only mask token 0 is decoded, so the hypernetwork MLPs of the
    multimask tokens 1-3 are frozen; with ``iou_weight=0`` the IoU-prediction head is. (Distributed
    training can then run with ``ddp_find_unused_parameters=False``.)

    Parameters
    ----------
    model : SamModel
        A SAM frozen for decoder training (:func:`freeze_for_decoder_training`).
    mask_outputs : {"all", "single"}, keyword-only
        The decoder outputs the loss fits (:data:`sam_mito.training.losses.MASK_OUTPUTS`).
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
    """SHA-256 over the vision configuration and encoder weights: what the cached features depend on.

    For SAM-HQ and SAM 2.1 the family name is hashed too, and SAM 2.1's encoder-side decoder
    projections (:func:`sam_mito.models.families.encoder_tensors`); a SAM's fingerprint is unchanged.
    """
    header = model.config.vision_config.to_dict()
    family = families.family_of(model.config).name
    if family != "sam":
        header = {"family": family, "vision_config": header}
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for name, tensor in sorted(families.encoder_tensors(model).items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()

"""The decoding core: prompts in image pixels → SAM decoder inputs → mask logits at image resolution.

Training, evaluation and inference all decode through this module, so a box or a point means the
same thing in each of them, and decoder outputs are mapped back onto the image one way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import SamModel

from sam_mito.errors import SamMitoError
from sam_mito.models.families import decoder_inputs, family_of, input_size

Box = list[float]


def prompts_to_input(
    coords: torch.Tensor, size: tuple[int, int], image_size: int, *, pad: bool = True
) -> torch.Tensor:
    """Scale boxes ``(..., 4)`` or points ``(..., 2)`` from image pixels to the resized encoder input.

    Parameters
    ----------
    coords : torch.Tensor
        Boxes ``[x0, y0, x1, y1]`` or points ``[x, y]`` in pixels of a ``size`` image.
    size : tuple of int
        ``(height, width)`` of that image.
    image_size : int
        The encoder's input side (the longest edge is resized to it).
    pad : bool, keyword-only
        The image was resized by its longest edge and padded (SAM, SAM-HQ); False: resized to an
        ``image_size`` square (SAM 2.1).

    Returns
    -------
    torch.Tensor
        The same prompts in encoder-input pixels, as ``SamProcessor`` (``Sam2Processor``) rescales them.
    """
    height, width = size
    if pad:
        scale = image_size / max(height, width)
        new_h, new_w = int(height * scale + 0.5), int(width * scale + 0.5)
    else:
        new_h = new_w = image_size
    pairs = coords.shape[-1] // 2
    factor = torch.tensor([new_w / width, new_h / height] * pairs, dtype=coords.dtype)
    return coords * factor.to(coords.device)


def masks_to_image(
    low_res: torch.Tensor, size: tuple[int, int], image_size: int, *, pad: bool = True
) -> torch.Tensor:
    """Map SAM's low-resolution mask logits ``(..., h, w)`` back onto the original ``size`` image.

    The low-resolution grid covers the padded encoder input; the part covering the resized image
    is cropped and interpolated to ``size``, as ``SamProcessor.post_process_masks`` does, but
    differentiably and without going through the full input resolution.

    Parameters
    ----------
    low_res : torch.Tensor
        Logits ``(..., h, w)`` as SAM's ``pred_masks``.
    size : tuple of int
        ``(height, width)`` of the original image.
    image_size : int
        The encoder's input side.
    pad : bool, keyword-only
        As in :func:`prompts_to_input`; False: the whole grid covers the image (nothing is cropped,
        as ``Sam2Processor.post_process_masks``).

    Returns
    -------
    torch.Tensor
        Logits ``(..., height, width)``.
    """
    height, width = size
    low_h, low_w = low_res.shape[-2:]
    if pad:
        scale = image_size / max(height, width)
        crop_h = max(1, round(height * scale * low_h / image_size))
        crop_w = max(1, round(width * scale * low_w / image_size))
    else:
        crop_h, crop_w = low_h, low_w
    lead = low_res.shape[:-2]
    cropped = low_res[..., :crop_h, :crop_w].reshape(-1, 1, crop_h, crop_w)
    resized = F.interpolate(cropped, size=(height, width), mode="bilinear", align_corners=False)
    return resized.reshape(*lead, height, width)


def pad_boxes(per_image: list[list[Box]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack each image's boxes into ``(B, K, 4)``, padding to the largest count ``K``.

    Padding repeats an image's first box, so a union over an image's masks is unchanged by it.

    Parameters
    ----------
    per_image : list of list of box
        At least one ``[x0, y0, x1, y1]`` box per image.

    Returns
    -------
    boxes : torch.Tensor
        ``(B, K, 4)`` float32.
    valid : torch.Tensor
        ``(B, K)`` bool, True for the real boxes.
    """
    if any(len(boxes) == 0 for boxes in per_image):
        raise SamMitoError("pad_boxes: every image needs at least one box")
    most = max(len(boxes) for boxes in per_image)
    padded = [list(boxes) + [boxes[0]] * (most - len(boxes)) for boxes in per_image]
    valid = torch.tensor([[k < len(boxes) for k in range(most)] for boxes in per_image])
    return torch.tensor(padded, dtype=torch.float32), valid


@dataclass
class Decoded:
    """Decoder outputs at image resolution.

    Attributes
    ----------
    logits : torch.Tensor
        ``(B, K, M, H, W)`` mask logits: ``M`` masks (1, or 3 with multimask output) per prompt.
    iou_scores : torch.Tensor
        ``(B, K, M)`` the IoU the decoder predicts for each mask.
    """

    logits: torch.Tensor
    iou_scores: torch.Tensor


def decode(
    model: SamModel,
    size: tuple[int, int],
    *,
    image_embeddings: torch.Tensor | None = None,
    pixel_values: torch.Tensor | None = None,
    boxes: torch.Tensor | None = None,
    points: torch.Tensor | None = None,
    multimask_output: bool = False,
) -> Decoded:
    """Prompt SAM's decoder and return its masks at image resolution (differentiable).

    Parameters
    ----------
    model : SamModel, SamHQModel or Sam2Model
        Any SAM-family model, possibly wrapped for distributed training.
    size : tuple of int
        ``(H, W)`` of the images the prompts refer to, in pixels.
    image_embeddings, pixel_values : torch.Tensor, keyword-only
        Exactly one: cached features (SAM: embeddings ``(B, C, h, w)``; other families: the rows of
        :func:`sam_mito.models.families.image_features`) or encoder inputs ``(B, 3, S, S)``.
    boxes : torch.Tensor, keyword-only
        ``(B, K, 4)`` boxes ``[x0, y0, x1, y1]`` in image pixels: masks per box.
    points : torch.Tensor, keyword-only
        ``(B, K, N, 2)`` positive points ``[x, y]`` in image pixels: masks per group of N.
    multimask_output : bool, keyword-only
        Three masks per prompt (SAM's ambiguity-aware output) instead of one.

    Returns
    -------
    Decoded
        Logits and predicted IoUs.
    """
    if (boxes is None) == (points is None):
        raise SamMitoError("decode: give exactly one of boxes or points")
    if (image_embeddings is None) == (pixel_values is None):
        raise SamMitoError("decode: give exactly one of image_embeddings or pixel_values")
    config = getattr(model, "module", model).config  # DDP wraps the model
    image_size, pad = input_size(config), family_of(config).pads
    device = next(model.parameters()).device
    if boxes is not None:
        prompt = {"input_boxes": prompts_to_input(boxes.float(), size, image_size, pad=pad).to(device)}
    else:
        prompt = {
            "input_points": prompts_to_input(points.float(), size, image_size, pad=pad).to(device),
            "input_labels": torch.ones(points.shape[:-1], dtype=torch.long, device=device),
        }
    if image_embeddings is not None:
        image = decoder_inputs(config, image_embeddings, device)
    else:
        image = {"pixel_values": pixel_values.to(device)}
    outputs = model(**image, multimask_output=multimask_output, **prompt)
    return Decoded(masks_to_image(outputs.pred_masks, size, image_size, pad=pad), outputs.iou_scores)


def decode_all_masks(
    model: SamModel,
    size: tuple[int, int],
    *,
    image_embeddings: torch.Tensor | None = None,
    pixel_values: torch.Tensor | None = None,
    boxes: torch.Tensor | None = None,
    points: torch.Tensor | None = None,
) -> Decoded:
    """All four masks of SAM's decoder in one pass: the single mask, then the three multimask outputs.

    ``SamModel`` returns either mask 0 (``multimask_output=False``) or masks 1-3, although its
    decoder computes all four. Training needs both, so for SAM's own decoder (``SamMaskDecoder``)
    this runs the multimask pass and rebuilds mask 0 and its predicted IoU from the decoder's
    intermediate outputs (captured by forward hooks) instead of running the decoder twice; any
    other decoder runs both stock calls. The result equals the two stock calls.

    Parameters
    ----------
    model, size, image_embeddings, pixel_values, boxes, points
        As in :func:`decode`.

    Returns
    -------
    Decoded
        Logits ``(B, K, 4, H, W)`` and predicted IoUs ``(B, K, 4)``; index 0 is what
        ``multimask_output=False`` returns, indices 1-3 what ``multimask_output=True`` returns.
    """
    image = {"image_embeddings": image_embeddings, "pixel_values": pixel_values}
    prompts = {"boxes": boxes, "points": points}
    unwrapped = getattr(model, "module", model)
    decoder = unwrapped.mask_decoder
    if type(decoder).__name__ != "SamMaskDecoder":  # another family's decoder: two passes
        single = decode(model, size, **image, **prompts)
        multi = decode(model, size, **image, **prompts, multimask_output=True)
        logits = torch.cat([single.logits, multi.logits], dim=2)
        return Decoded(logits, torch.cat([single.iou_scores, multi.iou_scores], dim=2))
    captured: dict[str, torch.Tensor] = {}

    def keep(name):
        return lambda module, args, output: captured.__setitem__(name, output)

    hooks = [
        decoder.iou_prediction_head.register_forward_hook(keep("iou")),
        decoder.output_hypernetworks_mlps[0].register_forward_hook(keep("hyper")),
        decoder.upscale_conv2.register_forward_hook(keep("upscaled")),
    ]
    try:
        multi = decode(model, size, **image, **prompts, multimask_output=True)
    finally:
        for hook in hooks:
            hook.remove()
    batch, count = multi.iou_scores.shape[:2]
    upscaled = decoder.activation(captured["upscaled"])  # (B * K, C, h, w), as the decoder computes it
    channels, height, width = upscaled.shape[1:]
    upscaled = upscaled.reshape(batch, count, channels, height * width)
    low_res = (captured["hyper"][:, :, None, :] @ upscaled).reshape(batch, count, 1, height, width)
    single = masks_to_image(low_res, size, input_size(unwrapped.config))
    return Decoded(torch.cat([single, multi.logits], dim=2), captured["iou"])


def decode_probabilities(
    model: SamModel,
    embeddings: torch.Tensor,
    size: tuple[int, int],
    *,
    boxes: torch.Tensor | None = None,
    points: torch.Tensor | None = None,
) -> torch.Tensor:
    """Single-mask probabilities ``(B, K, H, W)`` for ``K`` prompts per image, without gradients.

    Parameters
    ----------
    model : SamModel
        Any SAM; only its prompt encoder and mask decoder run.
    embeddings : torch.Tensor
        ``(B, C, h, w)`` image embeddings from :func:`sam_mito.features.cache.encode`.
    size : tuple of int
        ``(H, W)`` of the images the prompts refer to, in pixels.
    boxes, points : torch.Tensor, keyword-only
        As in :func:`decode`.

    Returns
    -------
    torch.Tensor
        float32 probabilities on the CPU.
    """
    with torch.inference_mode():
        decoded = decode(model, size, image_embeddings=embeddings, boxes=boxes, points=points)
        return torch.sigmoid(decoded.logits[:, :, 0]).float().cpu()

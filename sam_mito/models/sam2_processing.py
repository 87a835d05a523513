"""SAM 2.1's image preprocessing without torchvision, and the processor configs stock transformers reads.

``Sam2ImageProcessor`` needs torchvision. :class:`TorchSam2ImageProcessor` does what it specifies
(resize to a square, bilinear and antialiased; rescale; normalise by mean and std) in plain torch,
and :class:`TorchSam2Processor` stands in for ``Sam2Processor`` (images only). Both save the
configs that ``Sam2Processor.from_pretrained`` reads, so a fine-tuned SAM 2.1 (or EdgeTAM, which
uses the same processor) folder loads in stock transformers. SAM 3's tracker preprocesses the same
way with other defaults (1008 px, mean and std 0.5): :class:`TorchSam3ImageProcessor` and
:class:`TorchSam3TrackerProcessor` save ``Sam3ImageProcessor`` / ``Sam3TrackerProcessor`` configs.
Which processor a model gets is decided in :mod:`sam_mito.models.families`.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from transformers.image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    IMAGENET_STANDARD_MEAN,
    IMAGENET_STANDARD_STD,
)

from sam_mito.errors import SamMitoError

#: PIL's BILINEAR, the resample Sam2ImageProcessor uses.
BILINEAR = 2


@lru_cache(maxsize=32)
def _fixed_point_weights(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Taps and int16 weights of the antialiased bilinear (triangle) filter from ``in_size`` to ``out_size``.

    As torch computes them for ``uint8`` images (``UpSampleKernel.cpp``, after PIL): float64
    weights per output pixel, normalised, then scaled by ``2**precision`` and rounded half away
    from zero, ``precision`` the largest at which the largest weight still fits 15 bits.

    Returns
    -------
    index, weights : torch.Tensor
        ``(out_size, K)`` input indices and int32 weights (padded with weight 0); cached, not to be
        modified.
    precision : int
    """
    scale = in_size / out_size
    support = scale if scale >= 1.0 else 1.0  # half the filter width, in input pixels
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    taps = []
    for i in range(out_size):
        center = scale * (i + 0.5)
        start = max(int(center - support + 0.5), 0)
        stop = min(int(center + support + 0.5), in_size)
        w = [max(0.0, 1.0 - abs((j - center + 0.5) * invscale)) for j in range(start, stop)]
        total = sum(w)
        taps.append((start, [v / total for v in w] if total != 0 else w))
    largest = max(v for _, w in taps for v in w)
    precision = 0
    while precision < 22 and int(0.5 + largest * (1 << (precision + 1))) < (1 << 15):
        precision += 1
    width = max(len(w) for _, w in taps)
    index = torch.zeros(out_size, width, dtype=torch.int64)
    weights = torch.zeros(out_size, width, dtype=torch.int32)
    for i, (start, w) in enumerate(taps):
        index[i, : len(w)] = torch.arange(start, start + len(w))
        fixed = [int(v * (1 << precision) + (0.5 if v >= 0 else -0.5)) for v in w]
        weights[i, : len(w)] = torch.tensor(fixed, dtype=torch.int32)
    return index, weights, precision


def _resize_last_axis(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """One pass of :func:`resize_uint8` along the last axis (int32 values 0..255 in and out; the sums
    stay below 2**31: weights sum to about 2**precision <= 2**15)."""
    index, weights, precision = _fixed_point_weights(pixels.shape[-1], size)
    total = torch.full((*pixels.shape[:-1], size), 1 << (precision - 1), dtype=torch.int32)
    for k in range(index.shape[1]):
        total += pixels[..., index[:, k]] * weights[:, k]
    return (total >> precision).clamp_(0, 255)


def resize_uint8(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``uint8`` images ``(..., H, W)`` to ``size`` x ``size`` exactly as torchvision does.

    Bilinear with antialiasing, ``align_corners=False``: torch's ``uint8`` kernel (which
    ``torchvision.transforms.v2.functional.resize`` and the stock SAM 2.1 / SAM 3 image processors
    run) resizes the width, rounds to ``uint8``, then resizes the height, each pass in fixed point.
    Returns int32 values 0..255.
    """
    pixels = pixels.to(torch.int32)
    if pixels.shape[-1] != size:
        pixels = _resize_last_axis(pixels, size)
    if pixels.shape[-2] != size:
        pixels = _resize_last_axis(pixels.transpose(-1, -2), size).transpose(-1, -2)
    return pixels


class TorchSam2ImageProcessor:
    """``Sam2ImageProcessor``'s preprocessing in plain torch (no torchvision): RGB ``uint8`` images are
    resized to ``size`` x ``size`` (bilinear, antialiased), rescaled by ``rescale_factor`` and
    normalised by mean and std.

    The resize is torchvision's (torch's) resize of ``uint8`` images, value for value
    (:func:`resize_uint8`): two separable passes, width first, each with the antialiased triangle
    filter's weights in fixed point and rounded back to ``uint8`` (checked against the stock
    processors on up- and down-sampled EM slices in the vision tests: no value differs).

    Its :meth:`to_dict` is a ``Sam2ImageProcessor`` config: ``save_pretrained`` writes
    ``preprocessor_config.json``, which ``Sam2Processor.from_pretrained`` reads.
    """

    model_input_names = ["pixel_values"]
    #: The stock image processor this one implements, and the ``image_processor_type`` values it reads.
    image_processor_type = "Sam2ImageProcessor"
    accepted_types = ("Sam2ImageProcessor", "Sam2ImageProcessorFast")
    default_mean, default_std = IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    #: Revision of this implementation, part of the embedding-cache key (the settings of
    #: :meth:`to_dict` are not all of it): 2 = :func:`resize_uint8` (1 was one float pass rounded
    #: half to even, up to one grey level off torchvision for about 15% of values).
    implementation = 2

    def __init__(
        self,
        *,
        size: int = 1024,
        mask_size: int = 256,
        image_mean: tuple[float, ...] | None = None,
        image_std: tuple[float, ...] | None = None,
        rescale_factor: float = 1 / 255,
    ) -> None:
        image_mean = self.default_mean if image_mean is None else image_mean
        image_std = self.default_std if image_std is None else image_std
        self.size, self.mask_size, self.rescale_factor = int(size), int(mask_size), float(rescale_factor)
        self.image_mean, self.image_std = [float(v) for v in image_mean], [float(v) for v in image_std]

    def __call__(self, images: list, return_tensors: str = "pt") -> dict[str, torch.Tensor]:
        """``{"pixel_values": (B, 3, size, size) float32}`` of ``(H, W, 3)`` ``uint8`` images."""
        if return_tensors != "pt":
            raise SamMitoError(f"return_tensors='{return_tensors}': only 'pt' is supported")
        return {"pixel_values": torch.cat([self.preprocess(image) for image in images])}

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """One ``(H, W, 3)`` image as a ``(1, 3, size, size)`` float32 encoder input."""
        pixels = torch.from_numpy(np.ascontiguousarray(image, dtype=np.uint8)).permute(2, 0, 1)[None]
        if bool((pixels == pixels[:, :1]).all()):  # gray repeated three times (EM): resize one channel
            pixels = resize_uint8(pixels[:, :1], self.size).float().expand(-1, 3, -1, -1)
        else:
            pixels = resize_uint8(pixels, self.size).float()
        # Rescale and normalise fused as transformers does: (x - mean / r) / (std / r).
        mean = torch.tensor(self.image_mean)[:, None, None] / self.rescale_factor
        std = torch.tensor(self.image_std)[:, None, None] / self.rescale_factor
        return (pixels - mean) / std

    def to_dict(self) -> dict:
        """The ``Sam2ImageProcessor`` configuration this preprocessing implements."""
        return {
            "do_convert_rgb": True,
            "do_normalize": True,
            "do_rescale": True,
            "do_resize": True,
            "image_mean": self.image_mean,
            "image_processor_type": self.image_processor_type,
            "image_std": self.image_std,
            "mask_size": {"height": self.mask_size, "width": self.mask_size},
            "resample": BILINEAR,
            "rescale_factor": self.rescale_factor,
            "size": {"height": self.size, "width": self.size},
        }

    def save_pretrained(self, folder: str | Path, **kwargs) -> list[str]:
        """Write ``preprocessor_config.json`` into ``folder`` (as the Trainer saves image processors)."""
        path = Path(folder) / "preprocessor_config.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return [str(path)]

    @classmethod
    def from_dict(cls, values: dict, *, source: str, size: int) -> TorchSam2ImageProcessor:
        """Read a ``Sam2ImageProcessor`` (``Sam3ImageProcessor``) config; settings this class does not
        implement raise."""
        kind = values.get("image_processor_type", cls.image_processor_type)
        expected = {
            "image_processor_type": kind in cls.accepted_types,
            "size": values.get("size", {"height": size, "width": size}) == {"height": size, "width": size},
            "resample": values.get("resample", BILINEAR) == BILINEAR,
            **{k: values.get(k, True) is True for k in ("do_resize", "do_rescale", "do_normalize")},
            "do_pad": not values.get("do_pad"),
        }
        wrong = [k for k, ok in expected.items() if not ok]
        if wrong:
            shown = {k: values.get(k) for k in wrong}
            raise SamMitoError(
                f"{source}: image processor settings {shown} are not supported; expected a "
                f"{cls.image_processor_type} that resizes to {size}x{size} (bilinear), rescales and normalises"
            )
        return cls(
            size=size,
            mask_size=values.get("mask_size", {}).get("height", size // 4),
            image_mean=values.get("image_mean", cls.default_mean),
            image_std=values.get("image_std", cls.default_std),
            rescale_factor=values.get("rescale_factor", 1 / 255),
        )


class TorchSam2Processor:
    """Stands in for ``Sam2Processor`` (images only); saves ``processor_config.json`` in its layout."""

    processor_class = "Sam2Processor"

    def __init__(self, image_processor: TorchSam2ImageProcessor) -> None:
        self.image_processor = image_processor

    def __call__(self, images: list, return_tensors: str = "pt") -> dict[str, torch.Tensor]:
        """Preprocess images, as ``Sam2Processor(images=...)`` does."""
        return self.image_processor(images, return_tensors=return_tensors)

    def save_pretrained(self, folder: str | Path, **kwargs) -> list[str]:
        """Write ``processor_config.json`` (the processor with its image processor nested)."""
        values = {
            "image_processor": self.image_processor.to_dict(),
            "point_pad_value": -10,
            "processor_class": self.processor_class,
            "target_size": self.image_processor.size,
        }
        path = Path(folder) / "processor_config.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
        return [str(path)]


class TorchSam3ImageProcessor(TorchSam2ImageProcessor):
    """``Sam3ImageProcessor``'s preprocessing (SAM 3's tracker): as SAM 2.1's, normalised by mean and
    std 0.5 (``IMAGENET_STANDARD_*``); saves a ``Sam3ImageProcessor`` config."""

    image_processor_type = "Sam3ImageProcessor"
    accepted_types = ("Sam3ImageProcessor", "Sam3ImageProcessorFast")
    default_mean, default_std = IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD


class TorchSam3TrackerProcessor(TorchSam2Processor):
    """Stands in for ``Sam3TrackerProcessor`` (images only); saves ``processor_config.json`` in its layout."""

    processor_class = "Sam3TrackerProcessor"

"""SAM 2.1's image preprocessing without torchvision, and the processor configs stock transformers reads.

``Sam2ImageProcessor`` needs torchvision. :class:`TorchSam2ImageProcessor` does what it specifies
(resize to a square, bilinear and antialiased; rescale; normalise by mean and std) in plain torch,
and :class:`TorchSam2Processor` stands in for ``Sam2Processor`` (images only). Both save the
configs that ``Sam2Processor.from_pretrained`` reads, so a fine-tuned SAM 2.1 folder loads in
stock transformers. Which processor a model gets is decided in :mod:`sam_mito.models.families`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from sam_mito.errors import SamMitoError

#: PIL's BILINEAR, the resample Sam2ImageProcessor uses.
BILINEAR = 2


class TorchSam2ImageProcessor:
    """``Sam2ImageProcessor``'s preprocessing in plain torch (no torchvision): RGB ``uint8`` images are
    resized to ``size`` x ``size`` (bilinear, antialiased, rounded back to ``uint8`` as torchvision's
    resize of ``uint8`` images does), rescaled by ``rescale_factor`` and normalised by mean and std.

    Its :meth:`to_dict` is a ``Sam2ImageProcessor`` config: ``save_pretrained`` writes
    ``preprocessor_config.json``, which ``Sam2Processor.from_pretrained`` reads.
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        *,
        size: int = 1024,
        mask_size: int = 256,
        image_mean: tuple[float, ...] = IMAGENET_DEFAULT_MEAN,
        image_std: tuple[float, ...] = IMAGENET_DEFAULT_STD,
        rescale_factor: float = 1 / 255,
    ) -> None:
        self.size, self.mask_size, self.rescale_factor = int(size), int(mask_size), float(rescale_factor)
        self.image_mean, self.image_std = [float(v) for v in image_mean], [float(v) for v in image_std]

    def __call__(self, images: list, return_tensors: str = "pt") -> dict[str, torch.Tensor]:
        """``{"pixel_values": (B, 3, size, size) float32}`` of ``(H, W, 3)`` ``uint8`` images."""
        if return_tensors != "pt":
            raise SamMitoError(f"return_tensors='{return_tensors}': only 'pt' is supported")
        return {"pixel_values": torch.cat([self.preprocess(image) for image in images])}

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """One ``(H, W, 3)`` image as a ``(1, 3, size, size)`` float32 encoder input."""
        pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
        if tuple(pixels.shape[-2:]) != (self.size, self.size):
            pixels = F.interpolate(
                pixels, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True
            )
            pixels = pixels.round_().clamp_(0, 255)
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
            "image_processor_type": "Sam2ImageProcessor",
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
        """Read a ``Sam2ImageProcessor`` config; settings this class does not implement raise."""
        kind = values.get("image_processor_type", "Sam2ImageProcessor")
        expected = {
            "image_processor_type": kind in ("Sam2ImageProcessor", "Sam2ImageProcessorFast"),
            "size": values.get("size", {"height": size, "width": size}) == {"height": size, "width": size},
            "resample": values.get("resample", BILINEAR) == BILINEAR,
            **{k: values.get(k, True) is True for k in ("do_resize", "do_rescale", "do_normalize")},
            "do_pad": not values.get("do_pad"),
        }
        wrong = [k for k, ok in expected.items() if not ok]
        if wrong:
            shown = {k: values.get(k) for k in wrong}
            raise SamMitoError(
                f"{source}: image processor settings {shown} are not supported; expected a SAM 2.1 "
                f"Sam2ImageProcessor that resizes to {size}x{size} (bilinear), rescales and normalises"
            )
        return cls(
            size=size,
            mask_size=values.get("mask_size", {}).get("height", size // 4),
            image_mean=values.get("image_mean", IMAGENET_DEFAULT_MEAN),
            image_std=values.get("image_std", IMAGENET_DEFAULT_STD),
            rescale_factor=values.get("rescale_factor", 1 / 255),
        )


class TorchSam2Processor:
    """Stands in for ``Sam2Processor`` (images only); saves ``processor_config.json`` in its layout."""

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
            "processor_class": "Sam2Processor",
            "target_size": self.image_processor.size,
        }
        path = Path(folder) / "processor_config.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
        return [str(path)]

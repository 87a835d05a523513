"""sam-mito: fine-tune Segment Anything's mask decoder to segment mitochondria in EM images."""

from .data import PatchConfig, build_dataset, load_patches, prepare_dataset
from .errors import SamMitoError
from .synthetic import SyntheticEM, synthetic_volume
from .volumes import load_pair

__version__ = "0.1.0"

__all__ = [
    "PatchConfig",
    "SamMitoError",
    "SyntheticEM",
    "build_dataset",
    "load_pair",
    "load_patches",
    "prepare_dataset",
    "synthetic_volume",
]

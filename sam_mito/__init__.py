"""sam-mito: fine-tune Segment Anything's mask decoder to segment mitochondria in EM images.

The public API is imported lazily, so ``sam-mito --help`` and ``import sam_mito`` stay fast;
type checkers and IDEs see the real names through the ``TYPE_CHECKING`` block.
"""

from importlib import import_module
from typing import TYPE_CHECKING

from sam_mito.version import __version__

#: Public name -> the module that defines it.
_EXPORTS = {
    "SamMitoConfig": "sam_mito.training.config",
    "SamMitoTrainer": "sam_mito.training.trainer",
    "train": "sam_mito.training.trainer",
    "PatchConfig": "sam_mito.data.patches",
    "build_dataset": "sam_mito.data.patches",
    "load_patches": "sam_mito.data.patches",
    "prepare_dataset": "sam_mito.data.patches",
    "compare": "sam_mito.evaluation.compare",
    "Segmenter": "sam_mito.inference.segmenter",
    "predict_stack": "sam_mito.inference.segmenter",
    "predict_volume": "sam_mito.inference.volume_prediction",
    "score_volumes": "sam_mito.evaluation.scoring",
    "open_volume": "sam_mito.volumes.reading",
    "load_pair": "sam_mito.volumes.reading",
    "SyntheticEM": "sam_mito.data.synthetic",
    "synthetic_volume": "sam_mito.data.synthetic",
    "SamMitoError": "sam_mito.errors",
}

if TYPE_CHECKING:
    from sam_mito.data.patches import PatchConfig, build_dataset, load_patches, prepare_dataset
    from sam_mito.data.synthetic import SyntheticEM, synthetic_volume
    from sam_mito.errors import SamMitoError
    from sam_mito.evaluation.compare import compare
    from sam_mito.evaluation.scoring import score_volumes
    from sam_mito.inference.segmenter import Segmenter, predict_stack
    from sam_mito.inference.volume_prediction import predict_volume
    from sam_mito.training.config import SamMitoConfig
    from sam_mito.training.trainer import SamMitoTrainer, train
    from sam_mito.volumes.reading import load_pair, open_volume

__all__ = [
    "PatchConfig",
    "SamMitoConfig",
    "SamMitoError",
    "SamMitoTrainer",
    "Segmenter",
    "SyntheticEM",
    "__version__",
    "build_dataset",
    "compare",
    "load_pair",
    "load_patches",
    "open_volume",
    "predict_stack",
    "predict_volume",
    "prepare_dataset",
    "score_volumes",
    "synthetic_volume",
    "train",
]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sam_mito' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

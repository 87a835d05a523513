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
    "parse_config": "sam_mito.training.config",
    "SamMitoTrainer": "sam_mito.training.trainer",
    "train": "sam_mito.training.trainer",
    "prepare_output_dir": "sam_mito.training.run_checks",
    "PatchConfig": "sam_mito.data.patches",
    "build_dataset": "sam_mito.data.patches",
    "load_patches": "sam_mito.data.patches",
    "prepare_dataset": "sam_mito.data.patches",
    "SyntheticEM": "sam_mito.data.synthetic",
    "synthetic_volume": "sam_mito.data.synthetic",
    "load_sam": "sam_mito.models.loading",
    "compare": "sam_mito.evaluation.compare",
    "Comparison": "sam_mito.evaluation.compare",
    "VolumeScores": "sam_mito.evaluation.scoring",
    "TrainingResult": "sam_mito.training.trainer",
    "score_volumes": "sam_mito.evaluation.scoring",
    "Segmenter": "sam_mito.inference.segmenter",
    "PostProcessing": "sam_mito.inference.postprocessing",
    "Segmentation": "sam_mito.inference.pipeline",
    "PredictionSummary": "sam_mito.inference.pipeline",
    "segment_volume": "sam_mito.inference.pipeline",
    "predict_volume": "sam_mito.inference.volume_prediction",
    "ModelCardInfo": "sam_mito.hub.cards",
    "push_dataset": "sam_mito.hub.uploads",
    "push_model": "sam_mito.hub.uploads",
    "Volume": "sam_mito.volumes.volume",
    "open_volume": "sam_mito.volumes.reading",
    "load_pair": "sam_mito.volumes.reading",
    "SamMitoError": "sam_mito.errors",
    "measure": "sam_mito.measurement.objects",
    "summarize": "sam_mito.measurement.summary",
    "write_measurements": "sam_mito.measurement.outputs",
}

if TYPE_CHECKING:
    from sam_mito.data.patches import PatchConfig, build_dataset, load_patches, prepare_dataset
    from sam_mito.data.synthetic import SyntheticEM, synthetic_volume
    from sam_mito.errors import SamMitoError
    from sam_mito.evaluation.compare import Comparison, compare
    from sam_mito.evaluation.scoring import VolumeScores, score_volumes
    from sam_mito.hub.cards import ModelCardInfo
    from sam_mito.hub.uploads import push_dataset, push_model
    from sam_mito.inference.pipeline import PredictionSummary, Segmentation, segment_volume
    from sam_mito.inference.postprocessing import PostProcessing
    from sam_mito.inference.segmenter import Segmenter
    from sam_mito.inference.volume_prediction import predict_volume
    from sam_mito.measurement.objects import measure
    from sam_mito.measurement.outputs import write_measurements
    from sam_mito.measurement.summary import summarize
    from sam_mito.models.loading import load_sam
    from sam_mito.training.config import SamMitoConfig, parse_config
    from sam_mito.training.run_checks import prepare_output_dir
    from sam_mito.training.trainer import SamMitoTrainer, TrainingResult, train
    from sam_mito.volumes.reading import load_pair, open_volume
    from sam_mito.volumes.volume import Volume

__all__ = [
    "Comparison",
    "ModelCardInfo",
    "PatchConfig",
    "PostProcessing",
    "PredictionSummary",
    "SamMitoConfig",
    "SamMitoError",
    "SamMitoTrainer",
    "Segmentation",
    "Segmenter",
    "SyntheticEM",
    "TrainingResult",
    "Volume",
    "VolumeScores",
    "__version__",
    "build_dataset",
    "compare",
    "load_pair",
    "load_patches",
    "load_sam",
    "measure",
    "open_volume",
    "parse_config",
    "predict_volume",
    "prepare_dataset",
    "prepare_output_dir",
    "push_dataset",
    "push_model",
    "score_volumes",
    "segment_volume",
    "summarize",
    "synthetic_volume",
    "train",
    "write_measurements",
]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sam_mito' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

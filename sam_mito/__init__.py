"""sam-mito: fine-tune Segment Anything's mask decoder to segment mitochondria in EM images.

The public API is imported lazily, so ``sam-mito --help`` and ``import sam_mito`` stay fast.
"""

from importlib import import_module

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "SamMitoConfig": "config",
    "SamMitoTrainer": "training",
    "train": "training",
    "PatchConfig": "data",
    "build_dataset": "data",
    "load_patches": "data",
    "prepare_dataset": "data",
    "compare": "evaluation",
    "Segmenter": "inference",
    "predict_stack": "inference",
    "predict_volume": "predicting",
    "score_volumes": "scoring",
    "open_volume": "volumes",
    "load_pair": "volumes",
    "SyntheticEM": "synthetic",
    "synthetic_volume": "synthetic",
    "SamMitoError": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sam_mito' has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

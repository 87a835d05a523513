"""Every setting's default and allowed values, in one module that imports nothing heavy.

The command line builds its parsers (and so answers ``--help``) from these constants without
importing numpy, torch, transformers or scipy; the modules that use a setting import its default
from here, so the CLI and the library cannot disagree.
"""

from __future__ import annotations

#: The base SAM that ``train`` fine-tunes unless told otherwise, and the packaged tiny base.
DEFAULT_MODEL = "facebook/sam-vit-base"
TINY_BASE = "sam-mito/tiny-base"

#: Points per side of the prompt-free point grid (the seed notebook's 10x10 grid).
GRID_SIZE = 10
#: Prompt modes each stage accepts: training needs boxes from the data, evaluation scores the
#: data's patches, prediction has no ground truth.
TRAIN_MODES = ("union", "instance", "tile")
EVAL_MODES = ("union", "instance", "tile", "grid")
PREDICT_MODES = ("tile", "grid", "boxes")

#: Encoder precisions a caller may ask for; ``auto`` resolves to one of :data:`CONCRETE_PRECISIONS`.
PRECISIONS = ("auto", "fp32", "bf16")
CONCRETE_PRECISIONS = ("fp32", "bf16")
#: Images per encoder pass. ViT-B on CPU: batch 1 peaked at 2.7 GiB RSS and ~12 s/image, batch 2 at
#: 4.5 GiB and ~14 s/image (BENCHMARKS.md), so one at a time is both leaner and faster there.
ENCODE_BATCH_SIZE = 1

#: Decoder outputs a training run penalises.
MASK_OUTPUTS = ("all", "single")
#: What a fine-tuned model's card passes to ``pipeline("mask-generation")`` (BENCHMARKS.md section 10).
MASK_GENERATION_SETTINGS = {"points_per_batch": 256, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}

#: Patching of ``prepare``: patch side and stride in pixels, split fractions.
PATCH_SIZE = 256
PATCH_STEP = 256
VALIDATION_FRACTION = 0.1
TEST_FRACTION = 0.1

#: Prediction's probability threshold.
THRESHOLD = 0.5
#: Default context margin: each 256-px tile is encoded within a 320-px window, so a 768x1024 slice
#: costs 12 encoder passes (overlap-blend tiles cost 20); it scored higher than overlap-blend both on
#: held-out EPFL slices (benchmarks/tiling.py) and on the demo's synthetic slice, which 64 did not.
DEFAULT_HALO = 32

#: How the slices of a z-window are weighed; the default window (slices) and weighting of
#: ``predict``, measured on the EPFL block (benchmarks/zcontext.py).
Z_WEIGHTINGS = ("gaussian", "mean")
DEFAULT_Z_WINDOW = 7
DEFAULT_Z_WEIGHTING = "mean"

#: Default ``min_size`` for stacks, in voxels (3D objects), and for single images, in pixels;
#: measured on the EPFL block (benchmarks/zcontext.py).
DEFAULT_MIN_SIZE = 15000
DEFAULT_MIN_SIZE_2D = 500
#: Stacks shallower than this many slices (the EPFL block's 21, on which DEFAULT_MIN_SIZE was
#: measured) default to DEFAULT_MIN_SIZE * depth / MIN_SIZE_DEPTH voxels (benchmarks/shortstacks.py).
MIN_SIZE_DEPTH = 21
#: Share of the mask voxels that continue into the next slice in a contiguous stack: 0.955 in the
#: ground truth of the 21 contiguous 5 nm EPFL slices (epfl_block); below it the default size limits
#: shrink with the slice spacing (sam_mito.inference.postprocessing.size_limits).
CONTIGUOUS_CONTINUITY = 0.955
#: Default ``min_area``: an object crossing every slice of a stack is also kept when its mean
#: cross-section has this many pixels (the single-image limit; benchmarks/shortstacks.py).
DEFAULT_MIN_AREA = DEFAULT_MIN_SIZE_2D
#: How ``--labels-out`` numbers instances: ``components`` (touching objects are one) or ``watershed``
#: (each component split at its narrowings; sam_mito.volumes.watershed), and the seeds' h in voxels.
INSTANCE_METHODS = ("components", "watershed")
DEFAULT_INSTANCES = "components"
DEFAULT_SEED_HEIGHT = 2.0
#: Default per-slice hole filling and opening radius (0: no opening).
DEFAULT_FILL_HOLES = True
DEFAULT_OPENING = 0

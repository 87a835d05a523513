"""Dice and IoU for binary mitochondria masks, as an `evaluate` module (load it with `sam_mito.evaluation.metrics.load_metric()`).

`evaluate` is optional: `pip install "sam-mito[metrics]"`.
"""

import datasets
import evaluate
import numpy as np

from sam_mito.evaluation.metrics import overlap_counts, scores_from_counts

_DESCRIPTION = """
Dice (Sørensen) and IoU (Jaccard) of binary segmentation masks. `dice` and `iou` are means over
images (an image where prediction and reference are both empty scores `empty_score`); `pooled_dice`
and `pooled_iou` count pixels over all images first, the EPFL mitochondria protocol's number.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: binary masks (lists of rows of 0/1), one per image.
    references: binary masks of the same shapes.
    empty_score: score of an image whose prediction and reference are both empty (default 1.0).
Returns:
    dice, iou, pooled_dice, pooled_iou (floats) and n_images (int).
"""

_CITATION = """
@article{lucchi2012supervoxel,
  title={Supervoxel-Based Segmentation of Mitochondria in EM Image Stacks With Learned Shape Features},
  author={Lucchi, Aur{\\'e}lien and Smith, Kevin and Achanta, Radhakrishna and Knott, Graham and Fua, Pascal},
  journal={IEEE Transactions on Medical Imaging}, year={2012}
}
"""


class MitoDiceIou(evaluate.Metric):
    def _info(self):
        mask = datasets.Sequence(datasets.Sequence(datasets.Value("uint8")))
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": mask, "references": mask}),
        )

    def _compute(self, predictions, references, empty_score=1.0):
        pairs = zip(predictions, references, strict=True)
        counts = [overlap_counts(np.array(p), np.array(r)) for p, r in pairs]
        intersection, pred_sum, ref_sum = (np.concatenate(c) for c in zip(*counts, strict=True))
        return scores_from_counts(intersection, pred_sum, ref_sum, empty_score=empty_score)

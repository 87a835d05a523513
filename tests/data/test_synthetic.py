"""The synthetic EM generator: deterministic, z-continuous, exact masks."""

import numpy as np

from sam_mito.data.synthetic import synthetic_volume


def test_same_seed_same_volume_other_seed_other_volume():
    a_img, a_msk = synthetic_volume((3, 128, 128), seed=5)
    b_img, b_msk = synthetic_volume((3, 128, 128), seed=5)
    c_img, _ = synthetic_volume((3, 128, 128), seed=6)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_msk, b_msk)
    assert not np.array_equal(a_img, c_img)


def test_shapes_dtypes_and_mask_values():
    images, masks = synthetic_volume((4, 96, 160), seed=1)
    assert images.shape == masks.shape == (4, 96, 160)
    assert images.dtype == masks.dtype == np.uint8
    assert set(np.unique(masks)) <= {0, 1}
    assert 0.005 < masks.mean() < 0.3


def test_mitochondria_persist_across_neighbouring_slices():
    _, masks = synthetic_volume((6, 256, 256), seed=2)
    for z in range(5):
        a, b = masks[z].astype(bool), masks[z + 1].astype(bool)
        overlap = (a & b).sum() / max((a | b).sum(), 1)
        assert overlap > 0.6


def test_mitochondria_are_darker_than_the_cytoplasm():
    images, masks = synthetic_volume((2, 256, 256), seed=4)
    assert images[masks == 1].mean() < images[masks == 0].mean() - 20

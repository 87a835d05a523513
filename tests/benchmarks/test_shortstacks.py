"""benchmarks/shortstacks.py: the rules it compares, and a quick run scoring every stack under every rule."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import shortstacks  # noqa: E402


def test_each_rule_keeps_what_it_promises_on_a_hand_made_two_slice_mask():
    objects = {
        "big": np.s_[:, 2:42, 2:42],  # 1600 pixels a slice, both slices: 3200 voxels
        "crossing": np.s_[:, 46:61, 2:42],  # 600 pixels a slice, both slices: 1200 voxels
        "one slice": np.s_[1, 2:32, 46:96],  # 1500 pixels, the last slice only
        "small": np.s_[0, 36:56, 46:66],  # 400 pixels, the first slice only
        "tiny": np.s_[:, 60:64, 80:90],  # 40 pixels a slice, both slices
    }
    mask = np.zeros((2, 64, 96), bool)
    for box in objects.values():
        mask[box] = True
    expected = {  # limits for 2 slices: default 1429, or 1000 crossing; 15000; 500 x 2; 500 a section
        "unfiltered": set(objects),
        "fixed 15000": set(),
        "default": {"big", "crossing", "one slice"},  # 2240 of 2640 voxels continue: limits x 0.30
        "no spacing scale": {"big", "crossing", "one slice"},
        "depth only": {"big", "one slice"},
        "crossing only": {"big", "crossing"},
        "500 per slice": {"big", "crossing", "one slice"},
        "cut by area": {"big", "crossing", "one slice"},
    }
    assert set(expected) == set(shortstacks.RULES)
    for rule, names in expected.items():
        kept = shortstacks.apply_rule(rule, mask)
        assert {name for name, box in objects.items() if kept[box].all()} == names, rule
        assert kept.sum() == sum(mask[objects[name]].sum() for name in names), rule


@pytest.mark.slow
def test_quick_run_scores_every_stack_under_every_rule(tmp_path):
    from sam_mito.inference.postprocessing import default_min_size

    result = shortstacks.measure(str(tmp_path), quick=True)
    assert [(row["stack"], row["depth"]) for row in result["rows"]] == [
        ("block", 2), ("block", 3), ("block", 5), ("block", 6), ("sample", 4)
    ]  # fmt: skip
    assert [row["starts"] for row in result["rows"]] == [5, 4, 2, 1, 1]
    for row in result["rows"]:
        assert row["default_min_size"] == default_min_size(row["depth"])
        scores = row["scores"]
        assert set(scores) == set(shortstacks.RULES)
        assert all(0 <= s["foreground_iou"] <= 1 for s in scores.values())
        assert (
            scores["fixed 15000"]["objects"]
            <= scores["default"]["objects"]
            <= scores["unfiltered"]["objects"]
        )
        assert row["worst"]["unfiltered"] == 0
    report = shortstacks.render(result)
    assert report.count("\n| synthetic ") == 2 * len(result["rows"])

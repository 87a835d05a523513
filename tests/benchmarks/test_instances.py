"""benchmarks/instances.py: a quick run labels one mask by every method and scores each."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import instances  # noqa: E402


@pytest.mark.slow
def test_quick_run_labels_and_scores_by_every_method(tmp_path):
    result = instances.measure(str(tmp_path), quick=True)
    for rows in (result["predicted"], result["truth"], result["grown"]):
        assert [(r["method"], r["seed_height"]) for r in rows] == instances.METHODS
        assert all(0 <= r["instance_f1"] <= 1 and 0 <= r["mean_segmentation_accuracy"] <= 1 for r in rows)
    components = result["truth"][0]
    assert components["objects"] == result["true_objects"] and components["instance_f1"] == 1.0
    report = instances.render(result)
    assert report.count("\n| watershed |") == 3 * (len(instances.METHODS) - 1)

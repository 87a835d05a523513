"""The offline demo end to end (few steps) and the base-vs-fine-tuned comparison."""

import json

from huggingface_hub import ModelCard

from sam_mito.cli import main
from sam_mito.evaluation import compare
from sam_mito.modeling import TINY_BASE


def test_identical_models_score_identically(dataset_dir, tmp_path):
    report = compare(TINY_BASE, TINY_BASE, dataset_dir, cache_dir=str(tmp_path / "cache"))
    base, tuned = report["results"]
    assert {k: base[k] for k in ("dice", "iou")} == {k: tuned[k] for k in ("dice", "iou")}
    assert f"{base['dice']:.4f}" in report["table"]


def test_demo_writes_dataset_model_card_and_scores(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "3"]) == 0
    printed = capsys.readouterr().out
    evaluation = json.loads((out / "model" / "evaluation.json").read_text())
    assert [r["model"] for r in evaluation["results"]] == ["base", "finetuned"]
    assert evaluation["table"] in printed
    card = ModelCard.load(out / "model" / "README.md")
    assert "Demonstration model" in card.text and "not** Meta's SAM" in card.text
    names = [m.metric_name for m in card.data.eval_results]
    assert names == ["Dice (union prompts)", "IoU (union prompts)"]
    assert (out / "dataset" / "README.md").exists() and (out / "model" / "model.safetensors").exists()

"""Base vs fine-tuned evaluation: same patches and prompts, every mode, report, figure, card, push."""

import json
import logging
from pathlib import Path
from unittest import mock

import datasets
import numpy as np
import pytest
from huggingface_hub import ModelCard
from PIL import Image

from sam_mito.cli.main import main
from sam_mito.data.patches import load_patches
from sam_mito.defaults import EVAL_MODES, TINY_BASE
from sam_mito.errors import SamMitoError
from sam_mito.evaluation.compare import choose_figure_rows, compare
from sam_mito.evaluation.figures import CAPTION, GAP, HEADER, PANEL, comparison_figure, figure_size
from sam_mito.training.trainer import train
from tests._training_config import tiny_training_config


@pytest.fixture(scope="module")
def finetuned_dir(tmp_path_factory, dataset_dir):
    """The packaged tiny base after a few decoder steps, saved by the training recipe."""
    out = tmp_path_factory.mktemp("finetuned") / "model"
    settings = dict(output_dir=str(out), max_steps=6, per_device_train_batch_size=4, learning_rate=3e-4)
    config = tiny_training_config(out.parent, TINY_BASE, dataset_dir, **settings)
    train(config)
    return out


def test_identical_models_score_identically_in_every_mode(dataset_dir, tmp_path):
    report = compare(TINY_BASE, TINY_BASE, dataset_dir, embedding_cache_dir=str(tmp_path / "cache"))
    rows = {(r["model"], r["mode"]): r for r in report["results"]}
    assert {mode for _, mode in rows} == set(EVAL_MODES)
    for mode in EVAL_MODES:
        base, tuned = rows["base", mode], rows["finetuned", mode]
        assert {k: base[k] for k in ("dice", "iou", "pooled_dice", "pooled_iou")} == {
            k: tuned[k] for k in ("dice", "iou", "pooled_dice", "pooled_iou")
        }
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1  # one encoder, encoded once


def test_report_json_table_figure_and_card_agree(dataset_dir, finetuned_dir, capsys):
    argv = ["evaluate", "--base", TINY_BASE, "--finetuned", str(finetuned_dir), "--dataset", str(dataset_dir)]
    assert main([*argv, "--figure-rows", "3"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((finetuned_dir / "comparison.json").read_text())
    assert report["table"] in printed
    assert (finetuned_dir / "evaluation.md").read_text().strip() == report["table"]
    table_rows = report["table"].splitlines()[2:]
    assert len(table_rows) == len(report["results"]) == 8  # 2 models x 4 prompt modes
    for line, result in zip(table_rows, report["results"], strict=True):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[:2] == [result["prompts"], result["model"]]
        assert [float(c) for c in cells[2:6]] == [
            round(result[k], 4) for k in ("dice", "iou", "pooled_dice", "pooled_iou")
        ]
        assert int(cells[6]) == result["n_images"] == len(load_patches(dataset_dir, "test"))
        assert result["uses_ground_truth"] == (result["mode"] in ("union", "instance"))
        assert ("from ground truth" in cells[0]) == result["uses_ground_truth"]
        assert ("prompt-free" in cells[0]) != result["uses_ground_truth"]

    with Image.open(finetuned_dir / "comparison.png") as figure:
        assert figure.size == figure_size(3, 4)

    card = ModelCard.load(finetuned_dir / "README.md")
    expected = {
        (
            f"{name} ({r['mode']} prompts" + (", from ground truth)" if r["uses_ground_truth"] else ")"),
            round(r[key], 4),
        )
        for r in report["results"]
        if r["model"] == "finetuned"
        for key, name in (("dice", "Dice"), ("iou", "IoU"), ("pooled_iou", "pooled IoU"))
    }
    assert {(m.metric_name, m.metric_value) for m in card.data.eval_results} == expected
    assert all(m.task_type == "image-segmentation" for m in card.data.eval_results)
    assert "comparison.png" in card.text and report["table"] in card.text


def test_push_uploads_model_with_metrics_and_figure(dataset_dir, finetuned_dir, tmp_path):
    argv = ["evaluate", "--base", TINY_BASE, "--finetuned", str(finetuned_dir), "--dataset", str(dataset_dir)]
    (finetuned_dir / "notes.txt").write_text("a stray file")
    with (
        mock.patch("huggingface_hub.HfApi.create_repo") as create,
        mock.patch("huggingface_hub.HfApi.create_commit") as commit,
    ):
        assert main([*argv, "--prompt-mode", "union", "tile", "--push-to-hub", "me/sam-mito-demo"]) == 0
    create.assert_called_once_with("me/sam-mito-demo", repo_type="model", exist_ok=True, private=None)
    sent = {op.path_in_repo: Path(op.path_or_fileobj) for op in commit.call_args.kwargs["operations"]}
    assert sorted(sent) == [  # exactly the allow-list: no training_args.bin, trainer_state.json, stray file
        "README.md",
        "all_results.json",
        "card_data.json",
        "comparison.json",
        "comparison.png",
        "config.json",
        "eval_results.json",
        "evaluation.md",
        "model.safetensors",
        "preprocessor_config.json",
        "train_results.json",
        "training_config.json",
    ]
    assert {"training_args.bin", "trainer_state.json", "notes.txt"} <= {
        p.name for p in finetuned_dir.iterdir()
    }
    for path in sent.values():
        assert str(dataset_dir.parent) not in path.read_bytes().decode("utf-8", "replace"), path
    report = json.loads(sent["comparison.json"].read_text())
    assert (report["dataset"], report["base"], report["finetuned"]) == (dataset_dir.name, TINY_BASE, "model")
    # The Trainer's validation metrics keep the Trainer's schema beside sam-mito's comparison.
    assert set(json.loads(sent["eval_results.json"].read_text())) >= {"eval_dice", "eval_iou", "eval_loss"}
    names = {m.metric_name for m in ModelCard.load(sent["README.md"]).data.eval_results}
    assert names == {
        f"{n} ({mode})"
        for n in ("Dice", "IoU", "pooled IoU")
        for mode in ("union prompts, from ground truth", "tile prompts")
    }


def test_different_encoders_are_encoded_twice_and_said_so(dataset_dir, tiny_model_dir, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="sam_mito"):
        report = compare(
            str(tiny_model_dir),
            TINY_BASE,
            dataset_dir,
            modes=("union",),
            embedding_cache_dir=str(tmp_path / "cache"),
        )
    assert "different image encoders" in caplog.text
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2
    assert [r["model"] for r in report["results"]] == ["base", "finetuned"]


def test_a_model_that_predicts_nothing_is_warned_about_from_python_and_the_cli(dataset_dir, tmp_path, capsys):
    from tests._blind_model import save_blind_model

    blind = str(save_blind_model(tmp_path / "blind"))
    report = compare(TINY_BASE, blind, dataset_dir, modes=("union",), embedding_cache_dir=str(tmp_path / "c"))
    (base, tuned) = report["results"]
    assert tuned["predicted_foreground"] == 0.0 and base["predicted_foreground"] > 0
    (warning,) = report.warnings
    assert warning.startswith(f"the finetuned model predicts no foreground on any of the {tuned['n_images']}")
    argv = ["evaluate", "--base", TINY_BASE, "--finetuned", blind, "--dataset", str(dataset_dir)]
    assert main([*argv, "--prompt-mode", "union", "--out", str(tmp_path / "report")]) == 0
    assert f"warning: {warning}" in capsys.readouterr().out.splitlines()


def test_a_model_that_predicts_something_gets_no_warning(dataset_dir, tmp_path):
    report = compare(
        TINY_BASE, TINY_BASE, dataset_dir, modes=("union",), embedding_cache_dir=str(tmp_path / "c")
    )
    assert report.warnings == [] and all(r["predicted_foreground"] > 0 for r in report["results"])


def test_figure_rows_are_crowded_scenes_then_the_hardest_patch():
    split = datasets.Dataset.from_dict(
        {
            "instance_ids": [[1, 2], [1, 2, 3], [], [1, 2, 3], [1], [1, 2]],
            "y": [0, 0, 0, 0, 256, 256],
            "x": [0, 0, 256, 256, 0, 0],
        }
    )
    dice = np.array([0.9, 0.8, 0.1, 0.7, 0.3, 0.6])
    # Most instances first, ties by row: 1, 3 (three each), 0, 5 (two), 4, 2. One per position:
    # 1 at (0, 0), 3 at (0, 256), 5 at (256, 0) (row 0 repeats row 1's scene). Then the lowest Dice
    # with foreground: row 2 scores 0.1 but is empty, so row 4 (0.3).
    assert choose_figure_rows(split, dice, count=4) == [1, 3, 5, 4]
    assert choose_figure_rows(split, dice, count=2) == [1, 4]
    assert choose_figure_rows(split, dice, count=1) == [1]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--split", "nope"], "no split 'nope'"),
        (["--finetuned", "/does/not/exist"], "cannot load SAM"),
        (["--push-to-hub", "me/x", "--out", "elsewhere"], "--push-to-hub needs"),
    ],
)
def test_bad_input_is_one_clear_error(dataset_dir, finetuned_dir, capsys, extra, message):
    argv = ["evaluate", "--base", TINY_BASE, "--finetuned", str(finetuned_dir), "--dataset", str(dataset_dir)]
    assert main([*argv, *extra]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error


def test_unknown_mode_from_python_is_an_error(dataset_dir):
    with pytest.raises(SamMitoError, match="prompt mode"):
        compare(TINY_BASE, TINY_BASE, dataset_dir, modes=("everything",))


def test_comparison_figure_is_a_deterministic_grid_of_tinted_panels():
    image = np.full((256, 256), 128, dtype=np.uint8)
    truth = np.zeros((256, 256), dtype=bool)
    truth[100:150, 60:120] = True
    arguments = dict(
        images=[image, image],
        labels=[truth, truth],
        predictions={"base": [truth, ~truth], "fine-tuned": [truth, truth]},
        boxes=[[[60, 100, 119, 149]], []],
        scores={"base": [1.0, 0.0], "fine-tuned": [1.0, 1.0]},
    )
    first, second = comparison_figure(**arguments), comparison_figure(**arguments)
    assert first.size == figure_size(2, 4)
    assert first.tobytes() == second.tobytes()
    pixels = np.asarray(first)
    truth_panel, base_panel = GAP + (PANEL + GAP), GAP + 2 * (PANEL + GAP)  # columns 2 and 3
    second_row = HEADER + PANEL + CAPTION + GAP
    # grey 128 outside any mask; inside, half grey and half the colour: truth green (40, 200, 70)
    assert tuple(pixels[HEADER + 20, truth_panel + 20]) == (128, 128, 128)
    assert tuple(pixels[HEADER + 125, truth_panel + 90]) == (84, 164, 99)
    # the base model's second prediction is everything but the truth, tinted orange (255, 140, 0)
    assert tuple(pixels[second_row + 20, base_panel + 20]) == (192, 134, 64)
    assert tuple(pixels[second_row + 125, base_panel + 90]) == (128, 128, 128)

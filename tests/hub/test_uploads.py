"""Hub uploads (mocked at the huggingface_hub / datasets boundary): datasets through push_to_hub and a
card, models as an allow-list, and no token or local path ever written or sent."""

import contextlib
import io
import json
import logging
import re
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import datasets
import numpy as np
import pytest
import tifffile
import torch
from huggingface_hub import DatasetCard

from sam_mito.cli.main import main
from sam_mito.data.patches import SPLITS, PatchConfig, prepare_dataset
from sam_mito.errors import SamMitoError
from sam_mito.hub.uploads import model_files, push_dataset, push_model
from sam_mito.training.config import SamMitoConfig
from sam_mito.training.trainer import train

TOKEN = "hf_" + "sEcReT" * 6  # what --hub_token receives in these tests


def _tiff_pair(folder):
    """A small real-data layout: 4 slices of 64x64, foreground in every 32x32 patch's corner."""
    images = np.random.default_rng(0).integers(0, 255, (4, 64, 64), dtype=np.uint8)
    masks = np.zeros((4, 64, 64), np.uint8)
    masks[:, 2:12, 2:12] = masks[:, 40:50, 40:50] = 255
    folder.mkdir()
    tifffile.imwrite(folder / "training.tif", images, photometric="minisblack")
    tifffile.imwrite(folder / "training_groundtruth.tif", masks, photometric="minisblack")
    return folder / "training.tif", folder / "training_groundtruth.tif"


def test_dataset_push_goes_through_push_to_hub_and_a_card_with_hub_metadata(tmp_path):
    images, masks = _tiff_pair(tmp_path / "epfl")
    config = PatchConfig(size=32, step=32, validation_fraction=0.25, test_fraction=0.25)
    with (
        mock.patch.object(datasets.DatasetDict, "push_to_hub", autospec=True) as push,
        mock.patch.object(DatasetCard, "push_to_hub", autospec=True) as push_card,
        mock.patch("huggingface_hub.HfApi.upload_folder") as upload_folder,
    ):
        prepared = prepare_dataset(tmp_path / "ds", images=images, masks=masks, config=config)
        push.assert_not_called()  # preparing never uploads
        push_dataset(tmp_path / "ds", "me/mito-patches")
    upload_folder.assert_not_called()
    pushed, repo_id = push.call_args.args
    assert repo_id == "me/mito-patches" and set(pushed) == set(SPLITS)
    assert all(pushed[s]["union_box"] == prepared[s]["union_box"] for s in SPLITS)  # the folder's own rows
    card, card_repo = push_card.call_args.args
    assert card_repo == "me/mito-patches" and push_card.call_args.kwargs["repo_type"] == "dataset"
    data = card.data.to_dict()
    counts = {split: len(prepared[split]) for split in SPLITS}
    # The files `DatasetDict.push_to_hub` writes, and the split sizes, size category and task ids.
    assert data["configs"] == [
        {"config_name": "default", "data_files": [{"split": s, "path": f"data/{s}-*"} for s in prepared]}
    ]
    assert {s["name"]: s["num_examples"] for s in data["dataset_info"]["splits"]} == counts
    assert sum(counts.values()) < 1000 and data["size_categories"] == ["n<1K"]
    assert data["task_categories"] == ["image-segmentation"]
    assert "semantic-segmentation" in data["task_ids"]
    assert data["license"] == "other" and data["license_name"]  # cut from the user's own volumes
    assert "`data/train-*`" in card.text and str(tmp_path) not in str(card)
    # The local folder keeps its exact, fingerprinted file names and the same metadata.
    local = DatasetCard.load(tmp_path / "ds" / "README.md").data.to_dict()
    paths = [f["path"] for f in local["configs"][0]["data_files"]]
    assert all(re.fullmatch(r"data/\w+-00000-of-00001-[0-9a-f]{16}\.parquet", p) for p in paths)
    assert sorted(
        p.relative_to(tmp_path / "ds").as_posix() for p in (tmp_path / "ds").rglob("*.parquet")
    ) == (sorted(paths))
    assert {k: local[k] for k in ("license", "license_name", "size_categories", "task_ids")} == {
        k: data[k] for k in ("license", "license_name", "size_categories", "task_ids")
    }


def test_model_upload_sends_the_allow_list_only(tmp_path):
    folder = tmp_path / "model"
    sent = [
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
    kept = ["training_args.bin", "trainer_state.json", "optimizer.pt", "notes.txt", ".DS_Store"]
    kept_dirs = ["checkpoint-5", "runs", "embedding_cache", ".cache"]
    for name in sent + kept:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(name)
    for name in kept_dirs:
        (folder / name).mkdir()
        (folder / name / "model.safetensors").write_text("nested")
    assert model_files(folder) == sorted(sent)
    with (
        mock.patch("huggingface_hub.HfApi.create_repo") as create,
        mock.patch("huggingface_hub.HfApi.create_commit") as commit,
    ):
        push_model(folder, "me/model", token="hf_not_a_real_token")
    create.assert_called_once_with("me/model", repo_type="model", exist_ok=True, private=None)
    operations = commit.call_args.kwargs["operations"]
    assert sorted(op.path_in_repo for op in operations) == sorted(sent)
    (folder / "model.safetensors").unlink()
    with pytest.raises(SamMitoError, match="model: no model.safetensors"):
        model_files(folder)


@pytest.fixture(scope="module")
def pushed_run(tmp_path_factory, tiny_model_dir, dataset_dir):
    """`sam-mito train ... --push_to_hub --hub_token TOKEN` saving a checkpoint every step, with the
    Hub mocked: the run's folder, the commits sent, and everything printed or logged (DEBUG)."""
    root = tmp_path_factory.mktemp("pushed")
    out = root / "run" / "model"
    argv = ["train", "--output_dir", out, "--model_name_or_path", tiny_model_dir, "--dataset", dataset_dir]
    argv += ["--embedding_cache_dir", root / "cache", "--per_device_train_batch_size", "2", "--seed", "0"]
    argv += ["--max_steps", "2", "--save_strategy", "steps", "--save_steps", "1", "--use_cpu"]
    argv += ["--report_to", "none", "--disable_tqdm", "true", "--push_to_hub", "--hub_model_id"]
    argv += ["me/sam-mito-test", "--hub_token", TOKEN]
    logs, printed = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(logs)
    loggers = [logging.getLogger(), logging.getLogger("transformers")]  # transformers does not propagate
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        with (
            mock.patch("huggingface_hub.HfApi.create_repo") as create,
            mock.patch("huggingface_hub.HfApi.create_commit") as commit,
            mock.patch("huggingface_hub.HfApi.upload_folder") as upload_folder,
            contextlib.redirect_stdout(printed),
            contextlib.redirect_stderr(printed),
        ):
            create.return_value = mock.Mock(repo_id="me/sam-mito-test")
            status = main([str(arg) for arg in argv])
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
    assert status == 0, printed.getvalue()
    upload_folder.assert_not_called()  # Trainer.push_to_hub's whole-folder upload is never used
    return SimpleNamespace(
        root=root, out=out, commits=commit.call_args_list, text=printed.getvalue() + logs.getvalue()
    )


def test_training_push_sends_the_model_allow_list_and_never_checkpoint_state(pushed_run):
    out, commits = pushed_run.out, pushed_run.commits
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert (out / "training_args.bin").exists() and (out / "checkpoint-1" / "optimizer.pt").exists()
    sent = [
        (call.kwargs["commit_message"], sorted(op.path_in_repo for op in call.kwargs["operations"]))
        for call in commits
    ]
    model = ["config.json", "model.safetensors", "preprocessor_config.json", "training_config.json"]
    # every_save: each checkpoint's model files, in the background; never optimizer/scheduler/RNG state.
    assert sent[:2] == [(f"Training in progress, step {step}", model) for step in (1, 2)]
    assert all(call.kwargs["run_as_future"] for call in commits[:2])
    metrics = ["train_results.json", "eval_results.json", "all_results.json"]
    assert sent[-1] == ("End of training", sorted([*model, "README.md", "card_data.json", *metrics]))
    final = {op.path_in_repo: Path(op.path_or_fileobj) for op in commits[-1].kwargs["operations"]}
    assert all(path.parent == out for path in final.values())
    for call in commits:
        for op in call.kwargs["operations"]:
            text = Path(op.path_or_fileobj).read_bytes().decode("utf-8", "replace")
            assert str(pushed_run.root) not in text, op.path_in_repo  # no local path reaches the Hub


def test_a_hub_token_is_never_written_or_logged(pushed_run, dataset_dir):
    out = pushed_run.out
    written = [path for path in pushed_run.root.rglob("*") if path.is_file()]
    assert {"training_args.bin", "trainer_state.json", "training_config.json"} <= {p.name for p in written}
    assert [p for p in written if TOKEN.encode() in p.read_bytes()] == []
    assert "uploading" in pushed_run.text and "Saving model checkpoint" in pushed_run.text  # logs were read
    assert TOKEN not in pushed_run.text
    arguments = torch.load(out / "training_args.bin", weights_only=False)  # our own file, just written
    assert arguments.hub_token is None and arguments.output_dir == str(out)
    settings = json.loads((out / "training_config.json").read_text())
    assert settings["hub_token"] == "<HUB_TOKEN>"
    public = (settings["output_dir"], settings["dataset"], settings["embedding_cache_dir"])
    assert public == ("model", dataset_dir.name, "cache")
    assert str(pushed_run.root) not in json.dumps(settings)
    assert str(pushed_run.root) not in (out / "README.md").read_text()


def test_uploading_checkpoints_with_their_optimizer_state_is_refused(tmp_path, dataset_dir):
    config = SamMitoConfig(
        output_dir=str(tmp_path / "out"),
        dataset=str(dataset_dir),
        push_to_hub=True,
        hub_model_id="me/x",
        hub_strategy="checkpoint",
        use_cpu=True,
        report_to="none",
    )
    with mock.patch("huggingface_hub.HfApi.create_repo") as create:
        with pytest.raises(SamMitoError, match="hub_strategy 'checkpoint' would upload optimizer"):
            train(config)
    create.assert_not_called()
    assert not (tmp_path / "out").exists()

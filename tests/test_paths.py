"""Hub ids versus local paths: card metadata is decided from the recorded name, not from the cwd."""

import pytest

from sam_mito.hub.cards import ModelCardInfo
from sam_mito.paths import is_hub_id, public_name


@pytest.mark.parametrize(
    ("name", "hub"),
    [
        ("facebook/sam-vit-base", True),
        ("me/epfl-patches", True),
        ("patches", False),  # a folder name
        ("./me/patches", False),
        ("../me/patches", False),
        ("/data/me", False),
        ("~/patches", False),
        ("a/b/c", False),
        ("me\\patches", False),
        ("me/", False),
        ("/me", False),
    ],
)
def test_a_hub_id_is_owner_slash_name(name, hub):
    assert is_hub_id(name) is hub


def test_a_hub_id_stays_one_whatever_folders_the_cwd_holds(tmp_path, monkeypatch):
    (tmp_path / "me" / "epfl-patches").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert is_hub_id("me/epfl-patches")


def test_a_name_the_loaders_read_from_a_local_folder_is_shown_as_the_folder_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert public_name("data/epfl") == "data/epfl"  # no such folder: the loaders go to the Hub
    (tmp_path / "data" / "epfl").mkdir(parents=True)
    assert public_name("data/epfl") == "epfl"  # loaded from this folder
    assert public_name(str(tmp_path / "data" / "epfl")) == "epfl"
    assert public_name("epfl") == "epfl"


def _card_info() -> ModelCardInfo:
    return ModelCardInfo(
        base_model="facebook/sam-vit-base",
        dataset="me/epfl-patches",
        train_split="train",
        prompt_mode="union",
        box_jitter=0,
        loss_weights={"Dice": 1.0},
        trainable_parameters=1,
        total_parameters=2,
        hyperparameters={},
        repo_or_path="me/model",
    )


def test_card_metadata_does_not_change_with_where_evaluate_runs(tmp_path, monkeypatch):
    elsewhere = _card_info().card("model").data.to_dict()
    assert elsewhere["base_model"] == "facebook/sam-vit-base"
    assert elsewhere["datasets"] == ["me/epfl-patches"]
    for folder in ("facebook/sam-vit-base", "me/epfl-patches"):  # same names as local folders here
        (tmp_path / folder).mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert _card_info().card("model").data.to_dict() == elsewhere

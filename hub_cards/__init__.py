"""Card templates (installed as ``sam_mito.hub_cards``): the model card and the dataset card."""

from importlib import resources


def card_template(name: str) -> str:
    """Text of the card template ``name`` (``model_card.md`` or ``dataset_card.md``)."""
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")

"""Local paths versus Hub ids, and local paths scrubbed from what is shared."""

from __future__ import annotations

import os
from pathlib import Path


def public_name(name_or_path: str) -> str:
    """A Hub id as it is; a local path as its folder name (cards never show local paths)."""
    return name_or_path if is_hub_id(name_or_path) else Path(name_or_path).name


def is_hub_id(name: str) -> bool:
    """Whether ``name`` looks like ``owner/repo`` and is not a local path."""
    return name.count("/") == 1 and not Path(name).exists() and not name.startswith((".", "/"))


def _is_local_path(value: str) -> bool:
    return (
        os.path.isabs(value)
        or value.startswith(("./", "../", "~"))
        or (("/" in value or os.sep in value) and Path(value).exists())
    )


def public_json(value):
    """JSON data with every string that is a local path replaced by its last component.

    A string is a local path when it is absolute, starts with ``./``, ``../`` or ``~``, or names
    an existing file or folder; Hub ids and other strings are kept. ``training_config.json`` goes
    through this, so no local absolute path reaches the Hub.

    Parameters
    ----------
    value : dict, list, str or scalar
        JSON-compatible data.

    Returns
    -------
    The same structure, lists for tuples, local paths as their folder or file name.
    """
    if isinstance(value, dict):
        return {key: public_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [public_json(item) for item in value]
    if isinstance(value, str) and _is_local_path(value):
        return Path(value).expanduser().name
    return value

"""Local paths versus Hub ids, and local paths scrubbed from what is shared."""

from __future__ import annotations

import os
import re
from pathlib import Path

#: ``owner/name`` with the characters the Hub allows in either part.
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


def public_name(name_or_path: str) -> str:
    """The name a card shows: a Hub id as it is; what the loaders read from disk as its folder name.

    Call it where the model or dataset is loaded: a name that is an existing local path is what
    the loaders read (they look for a folder first), so it is shown by its last component (cards
    never show local paths). The result is a Hub id or a name without ``/``, so :func:`is_hub_id`
    tells them apart later without looking at the disk (a card re-rendered elsewhere is the same).

    Parameters
    ----------
    name_or_path : str
        A Hub id or a local path, as the user gave it.

    Returns
    -------
    str
    """
    local = not is_hub_id(name_or_path) or Path(name_or_path).exists()
    return Path(name_or_path).expanduser().name if local else name_or_path


def is_hub_id(name: str) -> bool:
    """Whether ``name`` has the form of a Hub id, ``owner/name``; decided from the text alone.

    It does not depend on the current directory: code that loads a name checks for a local
    folder first, and :func:`public_name` records which it was.
    """
    return _HUB_ID.fullmatch(name) is not None


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

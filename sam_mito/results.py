"""The base of sam-mito's typed results: dataclasses whose fields are named as in the JSON files."""

from __future__ import annotations

from dataclasses import asdict, fields


class Result:
    """Mixin for result dataclasses: :meth:`to_dict` for JSON, and ``result["field"]`` reads a field.

    Item access keeps code written against the earlier dict results working; the set of fields is
    fixed whatever path produced the result (fields that do not apply are None).
    """

    def to_dict(self) -> dict:
        """The fields as plain JSON values, keyed as the JSON files are."""
        return asdict(self)

    def __getitem__(self, key: str):
        if key not in {f.name for f in fields(self)}:
            raise KeyError(key)
        return getattr(self, key)

"""Checksums of row blocks: what makes the embedding cache verified rather than trusted.

An array is split into blocks of whole rows, each hashed with XXH3 (64 bits, several GB/s), so a
changed byte, a zeroed row or a NaN written over an embedding is found when the cache is opened.
"""

from __future__ import annotations

import numpy as np
import xxhash

#: Checksum of each block of rows, recorded in the metadata and verified whenever a cache is opened.
CHECKSUM = "xxh3_64"
#: A checksummed block holds as many rows as fit in this many bytes (at least one row).
BLOCK_BYTES = 16 << 20


def block_checksums(array: np.ndarray, rows_per_block: int) -> list[str]:
    """The :data:`CHECKSUM` of each block of ``rows_per_block`` rows of a C-ordered array, as hex.

    Parameters
    ----------
    array : numpy.ndarray
        The cache array (a memory map is read block by block, never whole).
    rows_per_block : int
        Rows per block; the last block may be shorter.

    Returns
    -------
    list of str
        One hex digest per block, in row order.
    """
    return [
        xxhash.xxh3_64_hexdigest(np.ascontiguousarray(array[start : start + rows_per_block]))
        for start in range(0, len(array), rows_per_block)
    ]


def checksum_record(array: np.ndarray) -> dict:
    """Checksums of ``array`` in blocks of about :data:`BLOCK_BYTES`, as stored in a cache's metadata.

    Parameters
    ----------
    array : numpy.ndarray
        The finished cache array.

    Returns
    -------
    dict
        ``algorithm`` (:data:`CHECKSUM`), ``rows_per_block`` and the ``blocks`` digests.
    """
    rows_per_block = max(1, BLOCK_BYTES // max(1, array[:1].nbytes))
    return {
        "algorithm": CHECKSUM,
        "rows_per_block": rows_per_block,
        "blocks": block_checksums(array, rows_per_block),
    }


def corrupted_rows(array: np.ndarray, record: dict | None) -> list[tuple[int, int]]:
    """Row ranges ``[start, stop)`` of ``array`` whose bytes differ from a checksum ``record``.

    Parameters
    ----------
    array : numpy.ndarray
        The cache array.
    record : dict or None
        The metadata's ``checksums``: ``algorithm``, ``rows_per_block`` and the ``blocks`` digests.
        A missing or unknown record counts as every row corrupted.

    Returns
    -------
    list of tuple of int
        Empty when every block matches.
    """
    if not record or record.get("algorithm") != CHECKSUM:
        return [(0, len(array))]
    step = int(record["rows_per_block"])
    found = block_checksums(array, step)
    if len(found) != len(record["blocks"]):
        return [(0, len(array))]
    return [
        (block * step, min(len(array), (block + 1) * step))
        for block, (digest, recorded) in enumerate(zip(found, record["blocks"], strict=True))
        if digest != recorded
    ]

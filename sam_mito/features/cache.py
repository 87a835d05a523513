"""Frozen-encoder image embeddings: computed once, stored as memory-mapped fp16, keyed, shared.

Training, evaluation and inference all read embeddings through this module, so there is one cache
format, one key and one encode path. The key covers the vision encoder's weights and
configuration, the dataset split's image bytes, the processor's preprocessing settings and the
encode precision (``auto`` resolved to ``fp32`` or ``bf16`` first, see :mod:`sam_mito.features.precision`);
a cache whose key does not match is never used.

A cache is verified, not trusted: its metadata records an XXH3 checksum of every block of rows,
checked each time it is opened; a cache whose bytes changed (flipped bits, zeroed rows, NaN) is
rebuilt with a warning. Runs that share a cache folder never collide: a file lock per cache lets
one run build while the others wait and then reuse it, in-progress files carry a per-run name,
and one left behind by a killed run is removed by the next. Under ``accelerate launch`` the
processes of one run share the work; a folder that the processes of a multi-machine job do not
all see is refused with one error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import uuid
from pathlib import Path

import datasets
import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list, gather_object
from filelock import FileLock, Timeout
from tqdm.auto import tqdm
from transformers import SamModel, SamProcessor

from sam_mito.defaults import CONCRETE_PRECISIONS, ENCODE_BATCH_SIZE, PRECISIONS
from sam_mito.errors import SamMitoError
from sam_mito.features.checksums import CHECKSUM, checksum_record, corrupted_rows
from sam_mito.features.encoding import check_precision, encode, pixel_values
from sam_mito.features.precision import Resolution, bf16_acceptable, hardware_bf16, resolve_precision
from sam_mito.files import atomic_file
from sam_mito.models.families import embedding_shape
from sam_mito.models.loading import encoder_fingerprint

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: row-block checksums in the metadata


def default_cache_dir() -> Path:
    """``$SAM_MITO_CACHE`` or ``~/.cache/sam_mito``, plus ``/embeddings``."""
    return Path(os.environ.get("SAM_MITO_CACHE", Path.home() / ".cache" / "sam_mito")) / "embeddings"


def dataset_fingerprint(split: datasets.Dataset) -> str:
    """SHA-256 over the encoded image bytes of a dataset split, in order."""
    digest = hashlib.sha256()
    for item in split.cast_column("image", datasets.Image(decode=False))["image"]:
        digest.update(item["bytes"] if item["bytes"] is not None else Path(item["path"]).read_bytes())
    return digest.hexdigest()


def cache_key(model: SamModel, processor: SamProcessor, split: datasets.Dataset, precision: str) -> dict:
    """Everything an embedding depends on, as a JSON-able dict."""
    preprocessing = {
        k: v
        for k, v in processor.image_processor.to_dict().items()
        if not k.startswith("_") and "class" not in k
    }
    key = {
        "format": FORMAT_VERSION,
        "encoder": encoder_fingerprint(model),
        "dataset": dataset_fingerprint(split),
        "preprocessing": json.loads(json.dumps(preprocessing, sort_keys=True, default=str)),
        "precision": precision,
    }
    implementation = getattr(processor.image_processor, "implementation", None)
    if implementation is not None:  # sam-mito's own preprocessing (SAM 2.1's without torchvision)
        key["preprocessing_implementation"] = implementation
    return key


class EmbeddingCache:
    """Read-only view of a finished cache: ``cache[i]`` is the float32 embedding of row ``i``."""

    def __init__(self, array_path: Path) -> None:
        self.path = array_path
        self.array = np.load(array_path, mmap_mode="r", allow_pickle=False)

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.array[index], dtype=np.float32))

    @property
    def bytes_per_item(self) -> int:
        """Bytes one embedding occupies on disk."""
        return int(np.prod(self.array.shape[1:])) * self.array.dtype.itemsize

    @property
    def metadata(self) -> dict:
        """The JSON record beside the array.

        Holds ``key``, ``rows``, the ``requested`` and the resolved ``precision``,
        ``bf16_relative_error`` (None when ``auto`` did not measure it) and ``checksums``.
        """
        return json.loads(self.path.with_suffix(".json").read_text())


def _paths(cache_dir: Path, name: str, key: dict) -> tuple[Path, Path]:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    stem = cache_dir / f"{name}-{digest}"
    return stem.with_suffix(".npy"), stem.with_suffix(".json")


def _finished_metadata(
    array_path: Path, meta_path: Path, key: dict, rows: int, *, verify: bool = True
) -> dict | None:
    """The metadata of a complete cache of ``key`` with ``rows`` rows at these paths, else None.

    With ``verify``, every row block is also checked against its recorded checksum.
    """
    if not (array_path.exists() and meta_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        array = np.load(array_path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        logger.warning("embedding cache %s is unreadable (%s); not using it", array_path, err)
        return None
    if meta.get("key") != key or len(array) != rows or not meta.get("complete"):
        logger.warning(
            "embedding cache %s does not match this model/dataset/preprocessing; not using it", array_path
        )
        return None
    bad = corrupted_rows(array, meta.get("checksums")) if verify else []
    if bad:
        ranges = ", ".join(f"{start}-{stop - 1}" for start, stop in bad[:5]) + (
            " ..." if len(bad) > 5 else ""
        )
        logger.warning(
            "embedding cache %s: rows %s do not match their recorded %s checksums (changed on disk); "
            "rebuilding it",
            array_path,
            ranges,
            CHECKSUM,
        )
        return None
    return meta


def _recorded_auto(cache_dir: Path, name: str, key: dict, rows: int) -> Resolution | None:
    """What ``auto`` resolved to for a finished cache of ``key``, if that cache recorded the bf16 check.

    A bf16 cache counts only if its recorded error is acceptable and an fp32 cache only if it is not,
    so the answer is the one a fresh check would give, without encoding anything.
    """
    for precision in CONCRETE_PRECISIONS:
        candidate = {**key, "precision": precision}
        paths = _paths(cache_dir, name, candidate)
        meta = _finished_metadata(*paths, candidate, rows, verify=False) or {}
        error = meta.get("bf16_relative_error")
        if error is not None and bf16_acceptable(error) == (precision == "bf16"):
            return Resolution(precision, error, None)
    return None


def _wait_for(lock: FileLock, array_path: Path) -> None:
    """Return once no other run holds ``lock`` (taken and released at once)."""
    try:
        lock.acquire(timeout=0)
    except Timeout:
        logger.warning("another run is building embedding cache %s; waiting for it to finish", array_path)
        lock.acquire()
    lock.release()


def _decide(lock: FileLock, array_path: Path, meta_path: Path, key: dict, shape: tuple) -> dict:
    """Main process, holding ``lock``: use a verified finished cache, or start this run's partial file."""
    for stale in array_path.parent.glob(f"{array_path.stem}.*.partial.npy"):
        logger.warning("removing %s, left half-written by a run that stopped", stale)
        stale.unlink(missing_ok=True)
    if _finished_metadata(array_path, meta_path, key, shape[0]) is not None:
        lock.release()
        return {"action": "use"}
    meta_path.unlink(missing_ok=True)
    partial = array_path.with_name(f"{array_path.stem}.{uuid.uuid4().hex[:12]}.partial.npy")
    np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=shape)
    return {"action": "build", "partial": partial.name}


def _claim(lock: FileLock, state: PartialState, array_path: Path, meta_path: Path, key: dict, shape: tuple):
    """Agree across this run's processes to use the finished cache (None) or build it (the partial path).

    Another run building the same cache holds ``lock``: every process waits for it outside any
    collective call (a build can outlast the process group's timeout); then the main process takes
    the lock, verifies a finished cache or creates this run's partial file, and tells the others.
    It keeps the lock while this run builds. Every process must see the file it names, else the
    cache folder is not shared by the job's machines and every process raises the same error.

    If the main process fails there (a full disk, a bug), every process stops: the main process
    with a ``RuntimeError`` caused by the failure, the others with one naming it; only a
    :class:`SamMitoError` (bad input) stays one.
    """
    while True:
        _wait_for(lock, array_path)
        state.wait_for_everyone()  # all have seen the lock free before the main process takes it
        decision, failure = {"action": "retry"}, None
        if state.is_main_process:
            try:
                lock.acquire(timeout=0)
            except Timeout:  # another run took it first: wait again
                pass
            else:
                try:
                    decision = _decide(lock, array_path, meta_path, key, shape)
                except Exception as err:  # told to every process below, then raised with its cause
                    lock.release()
                    failure = err
                    decision = {
                        "action": "error",
                        "message": f"{type(err).__name__}: {err}",
                        "bad_input": isinstance(err, SamMitoError),
                    }
        (decision,) = broadcast_object_list([decision])
        if decision["action"] == "error":
            if failure is not None and decision["bad_input"]:
                raise failure
            message = f"embedding cache {array_path}: could not be claimed or created"
            if failure is not None:
                raise RuntimeError(message) from failure
            cause = f"{message} by the main process ({decision['message']})"
            raise SamMitoError(cause) if decision["bad_input"] else RuntimeError(cause)
        if decision["action"] != "retry":
            break
    building = decision["action"] == "build"
    target = array_path.with_name(decision["partial"]) if building else array_path
    seen = gather_object([(socket.gethostname(), target.exists())])
    blind = [f"{index} (host {host})" for index, (host, exists) in enumerate(seen) if not exists]
    if blind:
        if building and state.is_main_process:
            target.unlink(missing_ok=True)
            lock.release()
        raise SamMitoError(
            f"embedding_cache_dir {array_path.parent}: not shared by every process of this job; "
            f"process(es) {', '.join(blind)} cannot see {target.name}, which the main process "
            f"(host {seen[0][0]}) {'created' if building else 'found'} there. Multi-machine jobs need "
            "a cache folder on a file system every machine mounts (--embedding-cache-dir), "
            "or training without the cache (--embedding-cache false)"
        )
    return target if building else None


def build_cache(
    model: SamModel,
    processor: SamProcessor,
    split: datasets.Dataset,
    *,
    name: str,
    cache_dir: str | Path | None = None,
    precision: str = "auto",
    batch_size: int = ENCODE_BATCH_SIZE,
) -> EmbeddingCache:
    """Load the cache for ``split`` if a matching, intact one exists, else encode every image once and store it.

    ``precision="auto"`` is resolved on the split's first batch (see
    :func:`sam_mito.features.precision.resolve_precision`) before the key is made, so the key holds ``fp32``
    or ``bf16``; a finished cache that recorded the same check is reused without encoding. The
    metadata beside the array records the ``requested`` precision, the resolved ``precision``, the
    measured ``bf16_relative_error`` (None when not measured) and the ``checksums`` of its row
    blocks, which are verified whenever the cache is opened (a mismatch rebuilds it with a warning).

    A lock file beside the cache (``<name>-<key>.lock``) lets one run build it while other runs
    wait, then reuse it. Under ``accelerate launch`` every process encodes its own share of the
    rows into one memory-mapped file with a per-run name; the main process creates it, holds the
    lock and renames it into place once all are done. All processes must see the same
    ``cache_dir``: on machines that do not share it, every process raises :class:`SamMitoError`.

    Parameters
    ----------
    model, processor : SamModel, SamProcessor
        The SAM whose frozen vision encoder makes the embeddings.
    split : datasets.Dataset
        Rows with an ``image`` column.
    name : str, keyword-only
        File name prefix (the split's name).
    cache_dir : str or Path, optional, keyword-only
        Default :func:`default_cache_dir`.
    precision : str, keyword-only
        ``auto``, ``fp32`` or ``bf16``.
    batch_size : int, keyword-only
        Images per encoder pass.

    Returns
    -------
    EmbeddingCache
    """
    check_precision(precision, PRECISIONS)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    state = PartialState()
    key = cache_key(model, processor, split, precision)
    probe = list(range(min(batch_size, len(split))))
    resolution = None
    if precision == "auto" and hardware_bf16(next(model.parameters()).device):
        resolution = _recorded_auto(cache_dir, name, key, len(split))
    if resolution is None:
        resolution = resolve_precision(
            model, pixel_values(processor, split.select(probe)["image"]), precision
        )
    key["precision"] = resolution.precision
    array_path, meta_path = _paths(cache_dir, name, key)
    shape = (len(split), *embedding_shape(model.config))
    cache_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(array_path.with_suffix(".lock"))
    partial = _claim(lock, state, array_path, meta_path, key, shape)
    if partial is None:
        logger.info("using embedding cache %s (%s, checksums verified)", array_path, resolution.precision)
        return EmbeddingCache(array_path)
    try:
        array = np.load(partial, mmap_mode="r+", allow_pickle=False)
        rows = list(range(state.process_index, len(split), state.num_processes))
        progress = tqdm(
            total=len(rows), desc=f"encoding {name}", unit="img", disable=not state.is_local_main_process
        )
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            if chunk == probe and resolution.embeddings is not None:
                embeddings = resolution.embeddings  # encoded by the auto check already
            else:
                pixels = pixel_values(processor, split.select(chunk)["image"])
                embeddings = encode(model, pixels, precision=resolution.precision)
            array[chunk] = embeddings.cpu().numpy().astype(np.float16)
            progress.update(len(chunk))
        progress.close()
        array.flush()
        del array
        state.wait_for_everyone()
        if state.is_main_process:
            meta = {
                "key": key,
                "complete": True,
                "rows": len(split),
                "requested": precision,
                "precision": resolution.precision,
                "bf16_relative_error": resolution.bf16_relative_error,
                "checksums": checksum_record(np.load(partial, mmap_mode="r", allow_pickle=False)),
            }
            os.replace(partial, array_path)
            with atomic_file(meta_path) as partial_meta:
                partial_meta.write_text(json.dumps(meta, indent=1))
            logger.info("embedding cache written to %s", array_path)
    finally:
        if state.is_main_process:
            partial.unlink(missing_ok=True)
            lock.release()
    state.wait_for_everyone()
    return EmbeddingCache(array_path)

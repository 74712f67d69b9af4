"""Extraction: encode every clip of a dataset into a code store, resumably, in one process or several.

One process (`extract_codes`) writes straight into the store. Several processes (one per GPU, on one machine
or many) each encode a share of the clips into a shard of their own, a code store at
``STORE/shards/rank-R``, and one of them merges the shards into the store at the end:
    1. `start_extraction` (one process): create or check the store, merge shards an interrupted run left;
    2. `encode_shard` (every process): encode this rank's share of the clips the store lacks;
    3. `merge_shards` (one process, after all have finished): copy the shards into the store, delete them.
No two processes ever write to one LMDB environment, so the store may live on a shared network folder as long
as each shard is written from one machine. Killed at any moment and started again, with any number of
processes, an extraction ends with the records of an uninterrupted run.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate

from vqvid.data.codes.store import CodeStore, CodeStoreError, CodeStoreMeta
from vqvid.data.video import DataError, DataWarning
from vqvid.progress import Counter

SHARDS = "shards"  # the folder inside a store that holds the shards of a sharded extraction


class DescribedClips(Protocol):
    """A dataset of clips that can say where each clip came from."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Tensor:
        """Clip `index`: (3, T, H, W) float in [-1, 1]."""
        ...

    def describe(self, index: int) -> str:
        """Where clip `index` came from (file and frame range, or generator and seed)."""
        ...


class _PendingClips(Dataset):
    """The clips of `dataset` at `indices`, each with its index and description, for the extraction loader."""

    def __init__(self, dataset: DescribedClips, indices: list[int]) -> None:
        self.dataset = dataset
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[int, Tensor | None, str, str]:
        """(index, clip, description, "") — or (index, None, description, error) for a clip that cannot be
        read, so that one bad clip does not stop the loader."""
        index = self.indices[position]
        try:
            return index, self.dataset[index], self.dataset.describe(index), ""
        except DataError as error:
            return index, None, self.dataset.describe(index), str(error)


def _collate_readable(items: list[tuple[int, Tensor | None, str, str]]):
    """Batch the readable clips: (indices (B,), clips (B, 3, T, H, W) or None, descriptions, errors)."""
    readable = [item for item in items if item[1] is not None]
    errors = [error for *_, error in items if error]
    if not readable:
        return torch.empty(0, dtype=torch.int64), None, [], errors
    indices, clips, sources, _ = default_collate([item[:3] + ("",) for item in readable])
    return indices, clips, list(sources), errors


def extract_codes(
    encode: Callable[[Tensor], tuple[Tensor, Tensor]],
    dataset: DescribedClips,
    path: str | os.PathLike,
    meta: CodeStoreMeta,
    batch_size: int = 8,
    num_workers: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    codebooks: tuple[Tensor, Tensor] | None = None,
) -> int:
    """Encode every clip of `dataset` into the code store at `path`; returns how many records this call wrote.

    `encode` maps clips (B, 3, T, H, W) in [-1, 1] to integer codes (top (B, *meta.top_shape), bottom
    (B, *meta.bottom_shape)); it runs under `torch.inference_mode`, so pass a model in eval mode. Each batch
    is written in one transaction, and clips already in the store are skipped: a run that is killed at any
    moment and started again ends with exactly the records of an uninterrupted run. `codebooks` (the VQ-VAE's
    top and bottom codebooks, (K, D) each) are stored with the codes.
    """
    _check_batch_size(batch_size)
    start_extraction(path, meta, len(dataset), codebooks)
    with CodeStore.create_or_open(path, meta) as store:
        return _encode_into(store, encode, dataset, _pending(store, len(dataset)), batch_size, num_workers,
                            device, progress, already=len(store))


def start_extraction(path: str | os.PathLike, meta: CodeStoreMeta, num_clips: int,
                  codebooks: tuple[Tensor, Tensor] | None = None) -> int:
    """Create the store at `path` or check that it holds codes of the same VQ-VAE and data, store the
    `codebooks`, and merge any shards an interrupted sharded run left; returns how many clips it holds."""
    with CodeStore.create_or_open(path, meta) as store:
        if codebooks is not None:
            store.put_codebooks(*codebooks)
        _merge_shards_into(store)
        stray = [key for key in store.keys() if key >= num_clips]
        if stray:
            raise CodeStoreError(
                f"{store.path} holds codes of clip {stray[0]} but the dataset has only {num_clips} clips; "
                "it was extracted from other data"
            )
        return len(store)


def encode_shard(
    encode: Callable[[Tensor], tuple[Tensor, Tensor]],
    dataset: DescribedClips,
    path: str | os.PathLike,
    meta: CodeStoreMeta,
    rank: int,
    world_size: int,
    batch_size: int = 8,
    num_workers: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> int:
    """Encode rank `rank`'s share (every `world_size`-th) of the clips the store at `path` lacks into the shard
    ``path/shards/rank-R``; returns how many records it wrote. Run on every rank after `start_extraction` has
    finished, while nothing writes to the store."""
    _check_batch_size(batch_size)
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, {world_size}), got {rank}")
    with CodeStore.open(path) as store:
        mine = _pending(store, len(dataset))[rank::world_size]
    with CodeStore.create_or_open(Path(path) / SHARDS / f"rank-{rank:05d}", meta) as shard:
        done = set(shard.keys())
        return _encode_into(shard, encode, dataset, [index for index in mine if index not in done], batch_size,
                            num_workers, device, progress, already=0)


def merge_shards(path: str | os.PathLike) -> int:
    """Merge the shards of a sharded extraction into the store at `path` and delete them; returns how many
    records they added. Run once every rank's `encode_shard` has finished."""
    with CodeStore.create_or_open(path, _stored_meta(path)) as store:
        return _merge_shards_into(store)


def _stored_meta(path: str | os.PathLike) -> CodeStoreMeta:
    with CodeStore.open(path) as reader:  # let go of on return, so that the store can be opened for writing
        return reader.meta


def _merge_shards_into(store: CodeStore) -> int:
    folder = store.path / SHARDS
    added = 0
    for shard_path in sorted(folder.glob("rank-*")) if folder.is_dir() else []:
        if not (shard_path / "data.mdb").is_file():  # killed before its first write: nothing to merge
            shutil.rmtree(shard_path)
            continue
        with CodeStore.open(shard_path) as shard:
            added += store.merge_from(shard)
        shutil.rmtree(shard_path)  # only once every record is in the store; killed before, it merges again
    if folder.is_dir():
        folder.rmdir()
    return added


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")


def _pending(store: CodeStore, num_clips: int) -> list[int]:
    done = set(store.keys())
    return [index for index in range(num_clips) if index not in done]


def _encode_into(
    store: CodeStore,
    encode: Callable[[Tensor], tuple[Tensor, Tensor]],
    dataset: DescribedClips,
    pending: list[int],
    batch_size: int,
    num_workers: int,
    device: torch.device | str | None,
    progress: bool,
    already: int,
) -> int:
    """Encode the clips `pending` of `dataset` into `store`, one transaction per batch; returns how many.
    A clip that cannot be read (DataError) gets no record: one DataWarning names it, and one more at the end
    counts them (a later run tries again)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    loader = DataLoader(
        _PendingClips(dataset, pending),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        collate_fn=_collate_readable,
    )
    written, skipped = 0, []
    with Counter("extract codes", already + len(pending), "clips", initial=already, enabled=progress) as counter:
        for indices, clips, sources, errors in loader:
            for error in errors:
                warnings.warn(f"extract: skipping a clip that cannot be read: {error}", DataWarning, stacklevel=3)
            skipped += errors
            counter.update(len(errors))
            if clips is None:
                continue
            with torch.inference_mode():
                # (B, 3, T, H, W) -> (B, T/4, H/8, W/8), (B, T/2, H/4, W/4)
                top, bottom = encode(clips.to(device, non_blocking=True))
            store.append(top, bottom, list(sources), indices.tolist())
            written += len(indices)
            counter.update(len(indices))
    if skipped:
        warnings.warn(f"extract: {len(skipped)} of {len(pending)} clips could not be read and have no codes "
                      f"(first: {skipped[0]})", DataWarning, stacklevel=3)
    return written

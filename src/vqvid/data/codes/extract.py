"""Extraction: encode every clip of a dataset into a code store, resumably."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from vqvid.data.codes.store import CodeStore, CodeStoreError, CodeStoreMeta


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

    def __getitem__(self, position: int) -> tuple[int, Tensor, str]:
        index = self.indices[position]
        return index, self.dataset[index], self.dataset.describe(index)


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
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    with CodeStore.create_or_open(path, meta) as store:
        if codebooks is not None:
            store.put_codebooks(*codebooks)
        done = set(store.keys())
        stray = [key for key in done if key >= len(dataset)]
        if stray:
            raise CodeStoreError(
                f"{store.path} holds codes of clip {stray[0]} but the dataset has only {len(dataset)} clips; "
                "it was extracted from other data"
            )
        pending = [index for index in range(len(dataset)) if index not in done]
        loader = DataLoader(
            _PendingClips(dataset, pending),
            batch_size=batch_size,
            shuffle=False,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
        )
        written = 0
        with tqdm(
            total=len(dataset), initial=len(done), unit="clip", desc="extract codes", disable=not progress
        ) as bar:
            for indices, clips, sources in loader:
                with torch.inference_mode():
                    # (B, 3, T, H, W) -> (B, T/4, H/8, W/8), (B, T/2, H/4, W/4)
                    top, bottom = encode(clips.to(device, non_blocking=True))
                store.append(top, bottom, list(sources), indices.tolist())
                written += len(indices)
                bar.update(len(indices))
    return written

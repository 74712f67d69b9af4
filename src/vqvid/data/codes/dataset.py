"""`CodeDataset`: the codes of a store as a torch Dataset, for training the priors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset

from vqvid.data.codes.store import Codebooks, CodeStore, CodeStoreError, CodeStoreMeta


class CodeDataset(Dataset):
    """The codes of a store, for training a prior.

    level "top": item i is the top codes (T/4, H/8, W/8) int64. level "bottom": item i is (bottom codes
    (T/2, H/4, W/4), top codes (T/4, H/8, W/8)), both int64, the top codes being the bottom prior's condition.
    Each process opens the store on its first read, so DataLoader workers never share an LMDB environment
    across fork, and spawned workers receive only the path and the metadata.
    """

    def __init__(self, path: str | os.PathLike, level: Literal["top", "bottom"]) -> None:
        if level not in ("top", "bottom"):
            raise ValueError(f"CodeDataset level must be 'top' or 'bottom', got {level!r}")
        self.path = Path(path)
        self.level = level
        with CodeStore.open(self.path) as store:
            self._meta = store.meta
            self._length = len(store)
        self._store: CodeStore | None = None
        self._store_pid: int | None = None

    @property
    def meta(self) -> CodeStoreMeta:
        return self._meta

    def codebooks(self) -> Codebooks | None:
        """The codebooks of the VQ-VAE that made the codes, or None if the store lacks them."""
        return self._reader().codebooks()

    def check_compatible(self, fingerprint: str) -> None:
        """Refuse codes made by a VQ-VAE other than the one with `fingerprint`."""
        if fingerprint != self._meta.fingerprint:
            raise CodeStoreError(
                f"{self.path} holds codes of VQ-VAE {self._meta.fingerprint!r}, but the model expects codes "
                f"of VQ-VAE {fingerprint!r}; extract codes with that VQ-VAE first"
            )

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> Tensor | tuple[Tensor, Tensor]:
        record = self._reader().get(index)
        if self.level == "top":
            return record.top  # (T/4, H/8, W/8)
        return record.bottom, record.top  # (T/2, H/4, W/4), (T/4, H/8, W/8)

    def stacked(self) -> Tensor | tuple[Tensor, Tensor]:
        """Every item at once, as one batch: top codes (N, T/4, H/8, W/8), or for the bottom level the bottom
        codes (N, T/2, H/4, W/4) and their top codes. For held-out stores, which fit in memory."""
        items = [self[i] for i in range(len(self))]
        if self.level == "top":
            return torch.stack(items)
        return torch.stack([bottom for bottom, _ in items]), torch.stack([top for _, top in items])

    def _reader(self) -> CodeStore:
        # A store opened before a fork must not be used in the child, so each process opens its own.
        if self._store is None or self._store_pid != os.getpid():
            self._store = CodeStore.open(self.path)
            self._store_pid = os.getpid()
        return self._store

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_store"] = None
        state["_store_pid"] = None
        return state

"""Data loading for training: a resumable, rank-aware batch order and a Lightning data module over datasets.

Exact resume needs the data order to be a function of the step alone. `StepBatchSampler` shuffles each epoch
with `seed + epoch`, gives each DDP rank its own slice, and can start part-way into an epoch; `ResumableLoader`
tells Lightning (through `state_dict`) where training stands, so a run stopped after step K and resumed sees
exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset


class StepBatchSampler(Sampler[list[int]]):
    """Batches of indices for one epoch: shuffled by (seed, epoch), sharded by rank, last partial batch dropped.

    Every rank sees `len(self)` batches per epoch, so DDP ranks stay in step.
    """

    def __init__(
        self, size: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True
    ):
        if size < batch_size * world_size:
            raise ValueError(
                f"{size} training items cannot fill one batch of {batch_size} on each of {world_size} device(s);"
                " use more data or a smaller train.batch_size"
            )
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world_size, self.shuffle = rank, world_size, shuffle
        self.epoch = 0
        self.start_batch = 0  # batches of `epoch` already consumed (non-zero only when resuming)

    def __len__(self) -> int:
        return self.size // (self.batch_size * self.world_size)

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=generator)
        else:
            order = torch.arange(self.size)
        used = len(self) * self.batch_size * self.world_size
        mine = order[:used][self.rank :: self.world_size]
        for b in range(self.start_batch, len(self)):
            yield mine[b * self.batch_size : (b + 1) * self.batch_size].tolist()


class ResumableLoader(DataLoader):
    """A DataLoader whose position in the data is the trainer's step.

    `step()` returns the number of batches consumed so far (the trainer's global step, restored on resume);
    every new iteration starts at the epoch and batch that step falls in. `state_dict` / `load_state_dict` mark
    the loader as resumable for Lightning (which otherwise warns that a mid-epoch resume is unreliable); the step
    itself is restored with the rest of the trainer state.
    """

    def __init__(self, dataset: Dataset, batch_sampler: StepBatchSampler, step: Callable[[], int],
                 **kwargs: Any):
        super().__init__(dataset, batch_sampler=batch_sampler, **kwargs)
        self._step = step

    def position(self) -> tuple[int, int]:
        """(epoch, batches of that epoch already consumed)."""
        return divmod(int(self._step()), len(self.batch_sampler))

    def __iter__(self):
        sampler: StepBatchSampler = self.batch_sampler  # type: ignore[assignment]
        sampler.epoch, sampler.start_batch = self.position()
        return super().__iter__()

    def state_dict(self) -> dict[str, int]:
        epoch, batch = self.position()
        return {"epoch": epoch, "batch": batch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        pass  # the position follows from the restored global step


class TrainValData(L.LightningDataModule):
    """Train and validation datasets -> loaders. The train order is resumable and sharded across DDP ranks.

    `train` and `val` are map-style datasets; the loaders collate whatever they return.
    """

    def __init__(self, train: Dataset, val: Dataset, batch_size: int, num_workers: int = 0, seed: int = 0):
        super().__init__()
        self.train_set, self.val_set = train, val
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed

    def _loader_kwargs(self) -> dict[str, Any]:
        return {
            "num_workers": self.num_workers,
            "persistent_workers": self.num_workers > 0,
            "pin_memory": torch.cuda.is_available(),
        }

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        sampler = StepBatchSampler(
            len(self.train_set), self.batch_size, self.seed, trainer.global_rank, trainer.world_size
        )
        return ResumableLoader(self.train_set, sampler, lambda: trainer.global_step, **self._loader_kwargs())

    def val_dataloader(self) -> DataLoader:
        # Every rank sees the same fixed validation batches; Lightning averages the logged metrics across ranks.
        return DataLoader(self.val_set, batch_size=self.batch_size, shuffle=False, **self._loader_kwargs())


def hold_out(dataset: Dataset, fraction: float) -> tuple[Dataset, Dataset]:
    """Split off the last `fraction` of a dataset (at least one item) for validation.

    The tail is held out rather than a random subset: neighbouring clips of a video overlap in time, and a
    contiguous tail keeps most validation clips apart from the training clips.
    """
    n = len(dataset)
    n_val = max(1, round(n * fraction))
    if n_val >= n:
        raise ValueError(f"cannot hold out {n_val} of {n} items for validation; need more data")
    return Subset(dataset, range(n - n_val)), Subset(dataset, range(n - n_val, n))

"""Callbacks: reconstruction GIFs of fixed validation clips at every validation; a stop when too many clips
cannot be read."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch

from vqvid.data.sources import SkipUnreadable
from vqvid.data.video import DataError
from vqvid.viz import for_display, save_video, side_by_side, stack_rows


class ReconstructionGIFs(L.Callback):
    """Writes `gifs/step_XXXXXXX.gif` (input | reconstruction, one row per clip) after each validation.

    The same first `num_clips` validation clips every time, so GIFs of successive steps can be compared.
    On TensorBoard the middle frame of each panel is logged as an image too. It runs on rank 0 alone, so it
    reconstructs through `encode` and `decode_codes` in eval mode: a training-mode forward would update the
    codebooks on one rank and wait forever in the all-reduce the other ranks never join.
    """

    def __init__(self, folder: str | Path, num_clips: int = 2, fps: float = 10.0):
        self.folder, self.num_clips, self.fps = Path(folder), num_clips, fps

    def _clips(self, trainer: L.Trainer) -> torch.Tensor:
        dataset = trainer.datamodule.val_set
        n = min(self.num_clips, len(dataset))
        return torch.stack([dataset[i] for i in range(n)])  # (N, 3, T, H, W)

    @torch.no_grad()
    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.num_clips == 0 or not trainer.is_global_zero or trainer.sanity_checking:
            return
        clips = self._clips(trainer).to(module.device)  # (N, 3, T, H, W)
        model = module.model
        was_training = model.training
        model.eval()
        try:
            codes = model.encode(clips)
            reconstruction = model.decode_codes(codes.top, codes.bottom).float().clamp(-1, 1)
        finally:
            model.train(was_training)
        rows = [side_by_side([c.cpu(), r.cpu()]) for c, r in zip(clips, reconstruction, strict=True)]
        grid = for_display(stack_rows(rows), min_height=128 * len(rows))
        save_video(self.folder / f"step_{trainer.global_step:07d}.gif", grid, self.fps)
        experiment = getattr(trainer.logger, "experiment", None)
        if hasattr(experiment, "add_image"):
            middle = (grid[:, grid.shape[1] // 2] + 1) / 2  # (3, H, W) in [0, 1]
            experiment.add_image("val/reconstruction", middle, trainer.global_step)


class UnreadableClips(L.Callback):
    """Stops training with a DataError once more than `max_share` of the clips of one of `datasets` could not
    be read, and prints how many were skipped when training ends. The datasets count the failures themselves
    (see `SkipUnreadable`), in whichever process read the clip."""

    def __init__(self, datasets: list[SkipUnreadable], max_share: float):
        self.datasets, self.max_share = datasets, max_share

    def _check(self) -> None:
        for dataset in self.datasets:
            failed = len(dataset.failed)
            if failed > self.max_share * len(dataset):
                raise DataError(f"{dataset.report()}; that is more than train.max_unreadable = "
                                f"{self.max_share:g} of the clips, so training stops (raise the option to "
                                "train on the rest)")

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args) -> None:
        self._check()

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._check()

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            for dataset in self.datasets:
                if dataset.report():
                    print(dataset.report(), file=sys.stderr)

"""Lightning wrapper of the hierarchical VQ-VAE: loss, optimiser, validation metrics and codebook statistics.

The model itself is `vqvid.models.vqvae.VQVAE`, a plain nn.Module; this module only trains it. Loss is the
reconstruction MSE plus the commitment terms of both levels (β = 0.25); codebooks follow EMA updates inside the
quantisers, not the optimiser.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from vqvid import metrics
from vqvid.config import from_dict, to_dict
from vqvid.models.vqvae import VQVAE, VQVAEConfig, VQVAEOutput
from vqvid.training.config import TrainConfig
from vqvid.training.runner import adam_with_schedule

LEVELS = ("top", "bottom")


def training_loss(out: VQVAEOutput, video: torch.Tensor, config: VQVAEConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstruction MSE, training loss) of a VQ-VAE output on `video`: the reconstruction error, each clip
    decoded from the top alone (level dropout) counting `top_only_weight` of a full one, plus the commitment loss
    and `top_slowness` times the top latents' change over time."""
    per_clip = (out.reconstruction.float() - video.float()).pow(2).flatten(1).mean(1)  # (B,)
    weights = out.bottom_kept + (1 - out.bottom_kept) * config.top_only_weight  # (B,)
    loss = (weights * per_clip).mean() + out.commitment_loss + config.top_slowness * out.top_change
    return per_clip.mean(), loss


class VQVAEModule(L.LightningModule):
    """Trains a `VQVAE` on clips B×3×T×H×W in [-1, 1]."""

    def __init__(self, model: dict[str, Any], train: dict[str, Any], data: dict[str, Any] | None = None):
        super().__init__()
        # Plain dicts, so checkpoints load with torch.load(weights_only=True).
        self.save_hyperparameters()
        self.model_config = from_dict(VQVAEConfig, model, "model")
        self.train_config = from_dict(TrainConfig, train, "train")
        self.model = VQVAE(self.model_config)
        self.register_buffer("_val_counts", torch.zeros(2, self.model_config.num_codes), persistent=False)

    @classmethod
    def from_configs(cls, model: VQVAEConfig, train: TrainConfig, data: Any = None) -> VQVAEModule:
        return cls(to_dict(model), to_dict(train), to_dict(data) if data is not None else None)

    def forward(self, video: torch.Tensor):
        return self.model(video)

    def _step(self, video: torch.Tensor):
        out = self.model(video)
        return (out, *training_loss(out, video, self.model_config))

    def training_step(self, video: torch.Tensor, batch_idx: int) -> torch.Tensor:
        out, mse, loss = self._step(video)
        log = {"train/loss": loss, "train/mse": mse, "train/commitment": out.commitment_loss,
               "train/top_change": out.top_change}
        for level in LEVELS:
            q = getattr(out, level)
            log[f"train/perplexity_{level}"] = q.perplexity
            log[f"train/usage_{level}"] = q.usage
        self.log_dict(log, prog_bar=False)
        self.log("loss", loss, prog_bar=True, logger=False)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._check_codebooks_in_sync()  # before any validation forward
        self._val_counts.zero_()

    def validation_step(self, video: torch.Tensor, batch_idx: int) -> None:
        out, mse, loss = self._step(video)
        reconstruction = out.reconstruction.clamp(-1, 1)
        self.log_dict(
            {
                "val/loss": loss,
                "val/mse": mse,
                "val/top_change": out.top_change,
                "val/ssim": metrics.ssim(reconstruction, video),
            },
            sync_dist=True,
        )
        self.log("val/psnr", metrics.psnr(reconstruction, video), prog_bar=True, sync_dist=True)
        # What the top level carries alone (the bottom vectors zeroed, as level dropout trains it): the figure
        # `vqvid reconstruct --levels` reports as "top only", followed during training.
        top_only = self.model.decode_codes(out.top.codes, None).clamp(-1, 1)
        self.log("val/psnr_top_only", metrics.psnr(top_only, video), sync_dist=True)
        for i, level in enumerate(LEVELS):
            codes = getattr(out, level).codes
            self._val_counts[i] += torch.bincount(codes.flatten(), minlength=self.model_config.num_codes)

    def on_validation_epoch_end(self) -> None:
        counts = self.trainer.strategy.reduce(self._val_counts.clone(), reduce_op="sum")
        for i, level in enumerate(LEVELS):
            used = (counts[i] > 0).float().mean()
            probs = counts[i] / counts[i].sum().clamp(min=1)
            perplexity = torch.exp(-(probs * probs.clamp(min=1e-12).log()).sum())
            self.log(f"val/codebook_usage_{level}", used, rank_zero_only=True)
            self.log(f"val/perplexity_{level}", perplexity, rank_zero_only=True)

    def _check_codebooks_in_sync(self) -> None:
        """Under DDP every rank must hold the same codebooks (their EMA statistics are all-reduced; buffers are not
        broadcast, see `runner.CodebooksSyncedByAllReduce`); a rank that drifted would encode the same clip
        differently. Costs one all-gather of two numbers."""
        if self.trainer.world_size == 1:
            return
        weights = torch.arange(1, self.model_config.embed_dim + 1, device=self.device, dtype=torch.float64)
        checksum = torch.stack([
            (self.model.top_quantizer.codebook.double() @ weights).sum(),
            (self.model.bottom_quantizer.codebook.double() @ weights).sum(),
        ])
        gathered = self.all_gather(checksum)  # (world, 2)
        if not torch.equal(gathered, gathered[:1].expand_as(gathered)):
            raise RuntimeError(f"codebooks differ across DDP ranks: checksums {gathered.tolist()}")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["vqvid"] = {"kind": "vqvae", "format": 1}

    def configure_optimizers(self):
        return adam_with_schedule(self.model.parameters(), self.train_config)

"""Lightning wrapper of the context reader: cross-entropy against a frozen VQ-VAE's top codes.

The reader (`vqvid.models.reader`) reads the first C frames of each training clip and predicts the top codes
of the rest of it. Its targets are the top codes that the frozen VQ-VAE gives the whole clip, computed on the
fly, so it trains on video clips as the VQ-VAE did, and on no code store. The VQ-VAE is held outside the
module's parameters and state: it is neither trained nor saved in the reader's checkpoints, which remember its
fingerprint instead, and refuse to be exported with another.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from vqvid.config import from_dict
from vqvid.models.reader import ContextReader, ReaderConfig
from vqvid.models.vqvae import VQVAE
from vqvid.training.config import TrainConfig
from vqvid.training.runner import adam_with_schedule


class ReaderModule(L.LightningModule):
    """Trains a `ContextReader` on clips (B, 3, L, H, W) in [-1, 1]; `use_vqvae` gives it its targets."""

    def __init__(self, model: dict[str, Any], train: dict[str, Any], vqvae_fingerprint: str):
        super().__init__()
        self.save_hyperparameters()  # plain dicts and a string: loads with weights_only=True
        self.model_config = from_dict(ReaderConfig, model, "model")
        self.train_config = from_dict(TrainConfig, train, "train")
        self.model = ContextReader(self.model_config)
        self._vqvae: list[VQVAE] = []  # a list, so that the frozen VQ-VAE is no submodule: not trained, not saved

    def use_vqvae(self, vqvae: VQVAE) -> ReaderModule:
        """Take the top codes of `vqvae` (frozen, in eval mode: its EMA codebooks stay as they are) as targets."""
        self._vqvae[:] = [vqvae.eval().requires_grad_(False)]
        return self

    def on_fit_start(self) -> None:
        if not self._vqvae:
            raise RuntimeError("ReaderModule: no VQ-VAE to take targets from; call use_vqvae first")
        self._vqvae[0].to(self.device)

    def targets(self, video: torch.Tensor) -> torch.Tensor:
        """The top codes after the context (B, (L - C)/4, H/8, W/8) of the whole clips, in full precision."""
        with torch.no_grad(), torch.autocast(self.device.type, enabled=False):
            return self._vqvae[0].encode_top(video.float())[:, self.model_config.known :]

    def _nll(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        target = self.targets(video)
        logits = self.model(video[:, :, : self.model_config.context]).float()
        return F.cross_entropy(logits, target), (logits.argmax(1) == target).float().mean()

    def training_step(self, video: torch.Tensor, batch_idx: int) -> torch.Tensor:
        nll, accuracy = self._nll(video)
        bits = nll / math.log(2)
        self.log_dict({"train/nll_nats": nll, "train/bits_per_code": bits, "train/accuracy": accuracy})
        self.log("bits", bits, prog_bar=True, logger=False)
        return nll

    def validation_step(self, video: torch.Tensor, batch_idx: int) -> None:
        nll, accuracy = self._nll(video)
        self.log("val/bits_per_code", nll / math.log(2), prog_bar=True, sync_dist=True)
        self.log("val/accuracy", accuracy, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["vqvid"] = {"kind": "reader", "format": 1}

    def configure_optimizers(self):
        return adam_with_schedule(self.model.parameters(), self.train_config)

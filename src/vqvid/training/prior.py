"""Lightning wrapper of a PixelSNAIL prior over one level of codes: NLL loss, bits per code, accuracy.

The top prior models p(top); the bottom prior p(bottom | top). Both train on a code store written by
`vqvid extract`; the VQ-VAE is never loaded, so it cannot change while a prior trains. A prior remembers the
fingerprint of the VQ-VAE whose codes it learned, and refuses codes of another.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch

from vqvid.config import differences, from_dict, save_yaml, to_dict
from vqvid.data.video import DataWarning
from vqvid.models.pixelsnail import PixelSNAIL, PixelSNAILConfig
from vqvid.training.config import TrainConfig
from vqvid.training.runner import TrainedRun, adam_with_schedule


class PriorModule(L.LightningModule):
    """Trains a `PixelSNAIL` on codes (B,T,H,W) int64; for `level="bottom"` batches are (bottom, top)."""

    def __init__(self, model: dict[str, Any], train: dict[str, Any], level: str, vqvae_fingerprint: str):
        super().__init__()
        self.save_hyperparameters()  # plain dicts and strings: loads with weights_only=True
        self.model_config = from_dict(PixelSNAILConfig, model, "model")
        self.train_config = from_dict(TrainConfig, train, "train")
        self.level = level
        self.model = PixelSNAIL(self.model_config)

    def _split(self, batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.level == "bottom":
            codes, condition = batch
            return codes, condition
        return batch, None

    def _nll(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        codes, condition = self._split(batch)
        log_probs, most_likely = self.model.score(codes, condition)  # (B, T, H, W) each
        return -log_probs.mean(), (most_likely == codes).float().mean()  # nats per code, accuracy

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        nll, accuracy = self._nll(batch)
        bits = nll / math.log(2)
        self.log_dict({"train/nll_nats": nll, "train/bits_per_code": bits, "train/accuracy": accuracy})
        self.log("bits", bits, prog_bar=True, logger=False)
        return nll

    def validation_step(self, batch, batch_idx: int) -> None:
        nll, accuracy = self._nll(batch)
        self.log("val/bits_per_code", nll / math.log(2), prog_bar=True, sync_dist=True)
        self.log("val/accuracy", accuracy, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["vqvid"] = {"kind": "prior", "level": self.level, "format": 1}

    def configure_optimizers(self):
        return adam_with_schedule(self.model.parameters(), self.train_config)


def fit_to_store(model: PixelSNAILConfig, level: str, meta) -> PixelSNAILConfig:
    """The prior config with its grid (and, for the bottom prior, the condition's grid) taken from the store."""
    from dataclasses import replace

    if meta.num_codes != model.num_codes:
        model = replace(model, num_codes=meta.num_codes)
    if level == "top":
        return replace(model, shape=tuple(meta.top_shape), condition_num_codes=None, condition_shape=None)
    return replace(model, shape=tuple(meta.bottom_shape), condition_num_codes=meta.num_codes,
                   condition_shape=tuple(meta.top_shape))


def train_prior_run(run, level: str, codes: Path, val_codes: Path | None, out: Path, resume: Path | None,
                    progress: bool = True) -> TrainedRun:
    """Train the `level` prior of `run` (a presets.PriorRun) on a code store; returns the last checkpoint and
    the last validation's bits per code and accuracy."""
    from dataclasses import replace

    from vqvid.data.codes import CodeDataset, CodeStoreError
    from vqvid.persistence import read_checkpoint, read_config
    from vqvid.training.data import TrainValData, hold_out
    from vqvid.training.runner import fit

    dataset = CodeDataset(codes, level)
    meta = dataset.meta
    run = replace(run, model=fit_to_store(run.model, level, meta))
    if val_codes is not None:
        val_set = CodeDataset(val_codes, level)
        val_set.check_compatible(meta.fingerprint)
        train_set = dataset
    else:
        train_set, val_set = hold_out(dataset, run.train.val_fraction)
    if resume is not None:
        saved = read_checkpoint(resume, "prior", "--resume")["hyper_parameters"]
        trained_on = saved["vqvae_fingerprint"]
        if trained_on != meta.fingerprint:
            raise CodeStoreError(
                f"--resume {resume}: the prior was trained on codes of VQ-VAE {trained_on}, but {codes} holds "
                f"codes of VQ-VAE {meta.fingerprint}"
            )
        if saved["level"] != level:
            raise ValueError(f"--resume {resume}: a {saved['level']} prior, not a {level} prior")
        saved_model = read_config(PixelSNAILConfig, saved["model"], f"--resume {resume}: model")
        if saved_model != run.model:
            raise ValueError(f"--resume {resume}: a {level} prior of another model config than this run's "
                             + differences(saved_model, run.model, "model"))
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(run, out / "config.yaml")
    L.seed_everything(run.train.seed, verbose=False)
    module = PriorModule(to_dict(run.model), to_dict(run.train), level, meta.fingerprint)
    if resume is None and run.model.codebook_init:
        init_from_codebooks(module.model, dataset)
    data = TrainValData(train_set, val_set, run.train.batch_size, run.train.num_workers, run.train.seed)
    return fit(module, data, run.train, out, resume, progress=progress)


def init_from_codebooks(model: PixelSNAIL, dataset) -> None:
    """Start `model`'s code embeddings from the codebooks in a `CodeDataset`'s store; a store without them
    leaves the embeddings random, with a warning."""
    codebooks = dataset.codebooks()
    if codebooks is None:
        warnings.warn(f"{dataset.path} holds no codebooks (extract the codes again to store them); the prior's "
                      "code embeddings start at random", DataWarning, stacklevel=2)
        return
    own = codebooks.top if dataset.level == "top" else codebooks.bottom
    condition = torch.from_numpy(codebooks.top) if model.config.conditional else None
    model.init_code_embeddings(torch.from_numpy(own), condition)


@torch.no_grad()
def bits_per_code(model: PixelSNAIL, dataset, batch_size: int = 16) -> float:
    """Mean negative log2-likelihood per code of `model` on a `CodeDataset` (whole dataset, eval mode)."""
    per_frame = bits_per_frame(model, dataset, batch_size)
    return sum(per_frame) / len(per_frame)  # every latent frame holds as many codes


@torch.no_grad()
def bits_per_frame(model: PixelSNAIL, dataset, batch_size: int = 16) -> list[float]:
    """`bits_per_code` of each latent frame t of the grid: how well the prior predicts frame t from the frames
    before it (and, for the bottom prior, the top codes)."""
    from torch.utils.data import DataLoader

    model.eval()
    total_nats, count = torch.zeros(model.config.shape[0], dtype=torch.float64), 0
    for batch in DataLoader(dataset, batch_size=batch_size):
        codes, condition = batch if isinstance(batch, (list, tuple)) else (batch, None)
        log_probs, _ = model.score(codes, condition)  # (B, T, H, W)
        total_nats -= log_probs.double().sum((0, 2, 3)).cpu()
        count += codes[:, 0].numel()
    return (total_nats / count / math.log(2)).tolist()

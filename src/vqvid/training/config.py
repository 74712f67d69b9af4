"""How a run trains: optimisation, validation cadence, hardware. Shared by the VQ-VAE and the priors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class TrainConfig:
    batch_size: int = 8  # clips (or code grids) per step on each device
    lr: float = 1e-3  # Adam learning rate; 1e-3 is the thesis run's
    weight_decay: float = 0.0
    max_steps: int = 10_000  # optimiser steps; training is counted in steps, not epochs
    warmup_steps: int = 0  # linear learning-rate warm-up from 0 over this many steps
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: anneal to 0 at max_steps; short runs gain
    grad_clip: float | None = 1.0  # max gradient norm; None disables clipping
    val_every: int = 500  # steps between validations (and checkpoints)
    val_batches: int = 4  # batches per validation; enough for a stable PSNR/NLL without slowing training
    val_fraction: float = 0.1  # share of clips held out when the source has no validation split
    log_every: int = 10  # steps between logged training scalars
    num_workers: int = 2  # DataLoader worker processes per device
    seed: int = 0  # seeds weights, data order and augmentation: same seed, same run
    accelerator: str = "auto"  # Lightning accelerator: auto, cpu, gpu, ...
    devices: str = "auto"  # Lightning devices: "auto", "1", "4", "0,1"
    num_nodes: int = 1  # machines, each running `devices` processes (launched by torchrun or SLURM)
    strategy: str = "auto"  # Lightning strategy: auto, ddp, ...
    precision: str = "32-true"  # "bf16-mixed" on GPUs; EMA codebooks stay fp32 either way
    logger: Literal["tensorboard", "csv", "wandb"] = "tensorboard"
    gif_clips: int = 2  # validation clips written as reconstruction GIFs at each validation
    deterministic: bool = False  # torch deterministic algorithms: slower, needed for bit-exact repeats
    # Share of the training (or validation) clips that may turn out unreadable while a VQ-VAE trains on video;
    # each is skipped with a warning, and the run stops with an error once more than this share has failed.
    max_unreadable: float = 0.1

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_steps", "val_every", "val_batches", "log_every", "num_nodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"train.val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 <= self.max_unreadable <= 1.0:
            raise ValueError(f"train.max_unreadable must be in [0, 1], got {self.max_unreadable}")
        if self.lr <= 0:
            raise ValueError(f"train.lr must be > 0, got {self.lr}")

"""One way to run Lightning for every stage: run folder layout, loggers, checkpoints, resume.

A run folder holds:
    config.yaml                  the resolved config (preset <- file <- overrides)
    checkpoints/last.ckpt        newest checkpoint, replaced atomically at every validation
    checkpoints/step=N.ckpt      one per validation (every val_every steps, and the last step)
    logs/                        TensorBoard or CSV logs (wandb: its own folder)
    validation.json              every validation's figures by step (`ValidationHistory`)
    gifs/                        reconstruction GIFs (VQ-VAE runs)
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import NamedTuple, TextIO

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, ProgressBar, TQDMProgressBar

from vqvid.files import write_text
from vqvid.progress import on_terminal
from vqvid.training.config import TrainConfig


class CodebooksSyncedByAllReduce(Callback):
    """Stops DDP from broadcasting rank 0's buffers over every rank before each forward (its default).

    The EMA codebooks are buffers that every rank updates from all-reduced statistics (`EMAQuantizer`), which
    keeps them equal; broadcasting them on top would cost a copy of every codebook per step and, worse, hide a
    rank that drifted: the cross-rank codebook check would compare copies of rank 0's. DDP's initial
    broadcast, when it wraps the model, still starts every rank from rank 0's buffers.
    """

    def on_fit_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        from torch.nn.parallel import DistributedDataParallel

        wrapper = trainer.strategy.model
        if isinstance(wrapper, DistributedDataParallel):
            wrapper.forward_sync_buffers = False  # the name since torch 2.13
            wrapper.broadcast_buffers = False  # the name before


class StepSeed(Callback):
    """Seeds torch's generator from (seed, step, rank) before every training step.

    Dead-code restarts and dropout draw random numbers; so do DataLoader iterators when they start. Seeding per
    step makes every step's randomness independent of what ran before it, so a run stopped and resumed at any
    step continues exactly as an uninterrupted run (Lightning restores weights, optimiser and step, not RNGs).
    """

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch, batch_idx: int) -> None:
        step, rank = int(trainer.global_step), int(trainer.global_rank)
        torch.manual_seed((self.seed * 1_000_003 + step * 7_919 + rank) % 2**62)


class NonFiniteTraining(ValueError):
    """Training produced a non-finite loss or weights; the run stopped before saving them."""


VALIDATION_HISTORY = "validation.json"  # in the run folder: every validation's figures by step


class ValidationHistory(Callback):
    """Every validation's figures, as (step, {"val/...": value}) in step order, written to `path` (JSON) after
    each one: what tells a user that an earlier checkpoint was the better one (`TrainedRun.overfit_note`).

    A resumed run keeps the entries up to the step it resumes from and continues the file. Rank 0 writes it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.history: list[tuple[int, dict[str, float]]] | None = None  # read from `path` when the run starts

    def _start(self, trainer: L.Trainer) -> None:
        """The entries of earlier runs in this folder up to the step this one starts from (the resumed step)."""
        self.history = [entry for entry in read_validation_history(self.path) if entry[0] <= trainer.global_step]

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._start(trainer)

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if self.history is None:  # no training step ran: a run resumed at its last step, validated once more
            self._start(trainer)
        figures = {name: float(value) for name, value in trainer.callback_metrics.items() if name.startswith("val/")}
        self.history = [entry for entry in self.history if entry[0] != trainer.global_step]
        self.history.append((trainer.global_step, figures))
        if trainer.is_global_zero:
            entries = [{"step": step, **figures} for step, figures in self.history]
            write_text(self.path, json.dumps(entries, indent=1) + "\n")


def read_validation_history(path: str | Path) -> list[tuple[int, dict[str, float]]]:
    """The (step, figures) entries of a run's validation history file; none if it does not exist."""
    path = Path(path)
    if not path.exists():
        return []
    return [(int(entry.pop("step")), entry) for entry in json.loads(path.read_text())]


class StepLines(ProgressBar):
    """Training progress as whole lines, for a log: `step 400/800  bits 3.912  9.6 steps/s` every `every`
    steps and at the last, and each validation's figures, from the first process only. Lightning's bar redraws
    with `\\r`, which a log file keeps as one line per epoch."""

    def __init__(self, every: int, stream: TextIO | None = None) -> None:
        super().__init__()
        if every < 1:
            raise ValueError(f"StepLines: every must be >= 1, got {every}")
        self.every = every
        self.stream = sys.stderr if stream is None else stream
        self._enabled = True
        self._since: tuple[int, float] | None = None  # (step, time) of the last line

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _printing(self, trainer: L.Trainer) -> bool:
        return self._enabled and trainer.is_global_zero and not trainer.sanity_checking

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._since = (trainer.global_step, time.perf_counter())

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if not self._printing(trainer) or (step % self.every and step != trainer.max_steps):
            return
        parts = [f"step {step}/{trainer.max_steps}"]
        parts += [f"{name} {value:.4g}" for name, value in self.get_metrics(trainer, module).items()
                  if isinstance(value, (int, float)) and not name.startswith("val/")]
        now = time.perf_counter()
        if self._since is not None and step > self._since[0]:
            parts.append(f"{(step - self._since[0]) / max(now - self._since[1], 1e-9):.3g} steps/s")
        self._since = (step, now)
        print("  ".join(parts), file=self.stream, flush=True)

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not self._printing(trainer):
            return
        figures = [f"{name} {float(value):.4g}" for name, value in sorted(trainer.callback_metrics.items())
                   if name.startswith("val/")]
        if figures:
            print(f"validation at step {trainer.global_step}: " + "  ".join(figures), file=self.stream, flush=True)
        if self._since is not None:  # validation's time does not count as training speed
            self._since = (trainer.global_step, time.perf_counter())


class StopOnNonFinite(Callback):
    """Stops a run at the first step whose loss or updated weights are not finite (inf or NaN).

    It runs after the optimiser step and before ModelCheckpoint (Lightning runs checkpoint callbacks last), so
    no checkpoint ever holds non-finite weights: `last.ckpt` stays the last good one. The weights are the same
    on every rank (DDP all-reduces gradients), so every rank stops at the same step.
    """

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        loss = float(loss.detach()) if isinstance(loss, torch.Tensor) else float("nan")
        finite = bool(torch.stack([torch.isfinite(p).all() for p in module.parameters()]).all())  # one sync
        if finite and (math.isfinite(loss) or trainer.world_size > 1):
            return
        last = _last_path(trainer.default_root_dir)
        kept = f"{last} holds the last good weights" if last.exists() else "no checkpoint was saved yet"
        raise NonFiniteTraining(
            f"step {trainer.global_step}: the training loss is {loss:g}"
            f"{'' if finite else ' and the weights are no longer finite'}; stopped ({kept}). A lower train.lr, "
            "more train.warmup_steps or train.grad_clip usually keeps training finite"
        )


def adam_with_schedule(parameters, config: TrainConfig):
    """Adam at `config.lr`: linear warm-up over `config.warmup_steps`, then constant or cosine-annealed to 0 at
    `config.max_steps` (annealing is what lets a short run settle into a sharp optimum)."""
    parameters = list(parameters)
    # The fused kernel updates every tensor in one pass (CPU and CUDA): a few times faster than the loop over
    # tensors, which costs 3-4% of a `tiny` prior's step on a CPU.
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in parameters)
    optimizer = torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay, fused=fused or None)
    if config.warmup_steps == 0 and config.lr_schedule == "constant":
        return optimizer

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        if config.lr_schedule == "constant":
            return 1.0
        progress = (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def _devices(value: str) -> int | str | list[int]:
    if value.isdigit():
        return int(value)
    if "," in value:
        try:
            return [int(v) for v in value.split(",") if v]
        except ValueError:
            raise ValueError(f"--devices {value}: expected a count, a list such as 0,1, or auto") from None
    return value


def _logger(config: TrainConfig, out: Path):
    if config.logger == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(out, name="logs", version="")
    if config.logger == "wandb":
        from lightning.pytorch.loggers import WandbLogger  # needs the optional `wandb` extra

        return WandbLogger(save_dir=out, project="vqvid")
    from lightning.pytorch.loggers import TensorBoardLogger

    return TensorBoardLogger(out, name="logs", version="")


def line_every(config: TrainConfig) -> int:
    """How many steps apart `StepLines` prints: about twenty lines a run, on multiples of `log_every`."""
    every = max(1, config.log_every)
    return max(every, config.max_steps // 20 // every * every)


def build_trainer(config: TrainConfig, out: str | Path, callbacks: list[Callback] = (),
                  progress: bool = True) -> L.Trainer:
    """A Trainer that counts in steps, validates and checkpoints every `val_every` steps (`fit` validates the
    last step too)."""
    out = Path(out)
    checkpoints = ModelCheckpoint(
        dirpath=out / "checkpoints",
        filename="step={step}",
        auto_insert_metric_name=False,
        every_n_train_steps=config.val_every,
        save_top_k=-1,
        save_last=True,
        # A run folder copied or moved, then resumed, is still the same run: its last.ckpt and step=N.ckpt are
        # replaced, not joined by last-v1.ckpt (Lightning's counter would leave last.ckpt at the old step)
        enable_version_counter=False,
    )
    all_callbacks = [checkpoints, StepSeed(config.seed), CodebooksSyncedByAllReduce(), StopOnNonFinite(), *callbacks]
    if progress:
        # a bar on a terminal (Lightning's bar writes to stdout, our lines to stderr: either may be a log file);
        # in a log, whole lines about twenty times a run and at every validation
        terminal = on_terminal(sys.stdout) and on_terminal(sys.stderr)
        all_callbacks.append(TQDMProgressBar(refresh_rate=max(1, config.log_every)) if terminal
                             else StepLines(line_every(config)))
    if config.warmup_steps or config.lr_schedule != "constant":
        all_callbacks.append(LearningRateMonitor(logging_interval="step"))
    return L.Trainer(
        default_root_dir=out,
        max_steps=config.max_steps,
        max_epochs=-1,
        val_check_interval=config.val_every,
        check_val_every_n_epoch=None,
        limit_val_batches=config.val_batches,
        num_sanity_val_steps=0,
        log_every_n_steps=config.log_every,
        gradient_clip_val=config.grad_clip,
        accelerator=config.accelerator,
        devices=_devices(config.devices),
        num_nodes=config.num_nodes,
        strategy=config.strategy,
        precision=config.precision,
        logger=_logger(config, out),
        callbacks=all_callbacks,
        # The train loader shards and orders batches itself, so that a resumed run sees the same batches.
        use_distributed_sampler=False,
        deterministic=config.deterministic,
        enable_progress_bar=progress,
        enable_model_summary=progress,
    )


def check_hardware(config: TrainConfig) -> None:
    """Refuse, before anything is written, an accelerator, device list, strategy or precision that Lightning
    cannot set up on this machine (e.g. `--accelerator gpu` without a GPU)."""
    import logging

    from lightning.fabric.utilities.exceptions import MisconfigurationException

    quiet = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # the trial Trainer would print "GPU available: ..." a second time
    try:
        L.Trainer(accelerator=config.accelerator, devices=_devices(config.devices), strategy=config.strategy,
                  precision=config.precision, logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False)
    except (MisconfigurationException, ValueError, RuntimeError, TypeError, ImportError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if reason.startswith("Precision "):  # a value that is no precision at all, whatever the machine
            raise ValueError(f"--precision {config.precision}: not a Lightning precision ({reason})") from None
        raise ValueError(
            f"--accelerator {config.accelerator} --devices {config.devices} --strategy {config.strategy} "
            f"--precision {config.precision}: this machine cannot run that ({reason})"
        ) from None
    finally:
        quiet.setLevel(level)


class TrainedRun(NamedTuple):
    """What a training run leaves: its last checkpoint, and the figures of every validation of the run (resumed
    runs included) by step."""

    last: Path
    history: list[tuple[int, dict[str, float]]]  # (step, figures) of every validation, in step order

    @property
    def validation(self) -> dict[str, float]:
        """The figures of the last validation, e.g. {"val/bits_per_code": 3.5, "val/accuracy": 0.4}; none if the
        run never validated."""
        return self.history[-1][1] if self.history else {}

    def overfit_note(self, metric: str, lower_is_better: bool, margin: float) -> str | None:
        """A line for the user when an earlier validation of `metric` beat the last one by more than `margin`:
        which step was best, by how much, and the checkpoint that holds it (every validation's is kept).
        None when the last validation is the best, or within `margin` of it, or `metric` was never logged."""
        scored = [(step, figures[metric]) for step, figures in self.history if metric in figures]
        if len(scored) < 2:
            return None
        sign = 1 if lower_is_better else -1
        best_step, best = min(scored, key=lambda entry: sign * entry[1])
        last_step, last = scored[-1]
        if sign * (last - best) <= margin:
            return None
        checkpoint = self.last.parent / f"step={best_step}.ckpt"
        held = (f"{checkpoint} holds the weights of step {best_step}: use that one, or train" if checkpoint.exists()
                else "Train")
        return (f"{metric} was best at step {best_step} ({best:.4g}); at step {last_step} it is {last:.4g}: the "
                "model got worse on its validation clips, which usually means that it overfits its training "
                f"clips. {held} for fewer steps or on more clips")


def fit(module: L.LightningModule, data: L.LightningDataModule, config: TrainConfig, out: str | Path,
        resume: str | Path | None = None, callbacks: list[Callback] = (), progress: bool = True) -> TrainedRun:
    """Train `module` on `data`; `resume` is a checkpoint to continue from exactly (optimizer, step, data order)."""
    L.seed_everything(config.seed, workers=True, verbose=False)
    history = ValidationHistory(Path(out) / VALIDATION_HISTORY)
    trainer = build_trainer(config, out, [*callbacks, history], progress)
    # ddp_spawn, ddp_fork, ddp_notebook: Lightning's DDPStrategy keeps how it starts its processes in
    # `_start_method` ("popen" for ddp, which reruns this command); tests/training/test_ddp.py checks that it does
    spawned = getattr(trainer.strategy, "_start_method", "popen") != "popen"
    if spawned and config.max_steps % config.val_every:
        # The main process of such a strategy never learns the step the training processes reached
        warnings.warn(f"{out}: under --strategy {config.strategy}, which trains in spawned processes, a run whose "
                      f"max_steps ({config.max_steps}) is not a multiple of val_every ({config.val_every}) ends "
                      "without validating and checkpointing its last step: last.ckpt holds the last validated "
                      "one. Use --strategy ddp, or a max_steps that val_every divides", stacklevel=2)
    try:
        trainer.fit(module, datamodule=data, ckpt_path=str(resume) if resume else None, weights_only=True)
    except SystemExit:
        # Lightning ends a run stopped by Ctrl-C with `sys.exit(1)` once it has shut down; it is still the user's
        # interruption, which `vqvid` reports in one line with the status a shell expects (130)
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    if trainer.global_step == config.max_steps and config.max_steps % config.val_every and not trainer.interrupted:
        # A run whose length is not a multiple of `val_every` (a short trial run above all) still ends validated,
        # and checkpointed, so that last.ckpt holds the weights its last validation measured.
        trainer.validate(module, datamodule=data, verbose=False)
        step = {"step": torch.tensor(trainer.global_step)}
        trainer.save_checkpoint(trainer.checkpoint_callback.format_checkpoint_name(step))  # its step=N.ckpt
        trainer.save_checkpoint(_last_path(out))
    # From the file, which a strategy that trains in spawned processes leaves as well
    return TrainedRun(_last_path(out), read_validation_history(Path(out) / VALIDATION_HISTORY))


def _last_path(run: str | Path) -> Path:
    return Path(run) / "checkpoints" / "last.ckpt"  # ModelCheckpoint(save_last=True) in build_trainer


# What a run writes into its folder (module docstring; "wandb" is its logger's own folder)
RUN_ENTRIES = frozenset({"config.yaml", "checkpoints", "logs", VALIDATION_HISTORY, "gifs", "wandb"})


def saved_nothing(run: str | Path) -> bool:
    """Whether the folder `run` holds only what a run writes before its first checkpoint, and no checkpoint: a run
    that stopped (interrupted, or refused its data) before it saved any weights, so nothing is lost in starting it
    afresh there."""
    run = Path(run)
    entries = {path.name for path in run.iterdir()}
    return ("config.yaml" in entries and entries <= RUN_ENTRIES
            and not any((run / "checkpoints").glob("*.ckpt")))


def last_checkpoint(run: str | Path) -> Path | None:
    path = _last_path(run)
    return path if path.exists() else None

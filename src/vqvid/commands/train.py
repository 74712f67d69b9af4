"""`vqvid train vqvae|prior|reader`: train a stage with Lightning, from a preset, a YAML file and overrides.

    vqvid train vqvae --data SRC --preset tiny --out RUN [--config FILE] [key=value ...]
    vqvid train prior --level top|bottom --codes CODES --preset tiny --out RUN [key=value ...]
    vqvid train reader --vqvae CKPT --data SRC --preset tiny --out RUN [key=value ...]
    ... --resume                 continue RUN from RUN/checkpoints/last.ckpt, exactly
    ... --devices 2 --strategy ddp --precision bf16-mixed     passed through to Lightning
    ... --num-nodes 2 --devices 4 --strategy ddp              several machines (torchrun or SLURM; see README)

Every validation's figures are kept in RUN/validation.json; when an earlier validation was clearly better than
the last (a prior's bits per code, the VQ-VAE's PSNR), the run says which checkpoint holds it.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from vqvid.config import ConfigError, load_yaml, save_yaml

if TYPE_CHECKING:
    from vqvid.training.runner import TrainedRun

# The validation figure each stage is judged by, whether lower is better, and by how much a later validation may
# trail the best one before the run says so: a prior's bits per code, the VQ-VAE's PSNR (dB).
WATCHED = {"prior": ("val/bits_per_code", True, 0.05), "vqvae": ("val/psnr", False, 0.25),
           "reader": ("val/bits_per_code", True, 0.05)}
STAGES = {"vqvae": "VQ-VAE", "prior": "prior", "reader": "context reader"}  # as messages name them


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="tiny", help="named config from vqvid.presets (default: tiny)")
    parser.add_argument("--config", type=Path, help="YAML file whose fields replace the preset's")
    parser.add_argument("--out", type=Path, required=True, help="run folder (config, checkpoints, logs)")
    parser.add_argument("--resume", nargs="?", const="last", default=None, metavar="CKPT",
                        help="continue training: from CKPT, or from OUT/checkpoints/last.ckpt if no CKPT is given")
    parser.add_argument("--devices", help="Lightning devices, e.g. 1, 4, 0,1 (train.devices)")
    parser.add_argument("--num-nodes", type=int, help="machines, each with --devices devices (train.num_nodes)")
    parser.add_argument("--strategy", help="Lightning strategy, e.g. ddp (train.strategy)")
    parser.add_argument("--precision", help="Lightning precision, e.g. bf16-mixed (train.precision)")
    parser.add_argument("--accelerator", help="Lightning accelerator: cpu, gpu, auto (train.accelerator)")
    parser.add_argument("--max-steps", type=int, help="optimiser steps (train.max_steps)")
    parser.add_argument("--batch-size", type=int, help="per-device batch size (train.batch_size)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs and tests)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. model.channels=64 train.lr=3e-4")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqvid train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    stages = parser.add_subparsers(dest="stage", required=True)
    vqvae = stages.add_parser("vqvae", help="train the hierarchical VQ-VAE on video clips")
    vqvae.add_argument("--data", required=True, help="video file/folder, frame folders, prepared store or 'synthetic'")
    vqvae.add_argument("--val-data", help="validation source (default: the source's val split, or a held-out tail)")
    _common(vqvae)
    prior = stages.add_parser("prior", help="train a PixelSNAIL prior on extracted codes")
    prior.add_argument("--level", required=True, choices=["top", "bottom"])
    prior.add_argument("--codes", required=True, type=Path, help="code store written by `vqvid extract`")
    prior.add_argument("--val-codes", type=Path, help="validation code store (default: a held-out tail)")
    _common(prior)
    reader = stages.add_parser("reader", help="train a context reader: the top codes after a prediction's "
                               "context, read off its frames (vqvid.models.reader)")
    reader.add_argument("--vqvae", required=True, type=Path,
                        help="the VQ-VAE (checkpoint or model folder) whose top codes the reader predicts")
    reader.add_argument("--data", required=True, help="video file/folder, frame folders, prepared store or "
                        "'synthetic', cut into clips as the VQ-VAE was trained")
    reader.add_argument("--val-data", help="validation source (default: the source's val split, or a held-out tail)")
    _common(reader)
    return parser


def _cli_overrides(args: argparse.Namespace) -> list[str]:
    flags = {"devices": "train.devices", "num_nodes": "train.num_nodes", "strategy": "train.strategy",
             "precision": "train.precision", "accelerator": "train.accelerator", "max_steps": "train.max_steps",
             "batch_size": "train.batch_size"}
    # quoted, so that YAML keeps a device list like 0,1, a count like 2 or a precision like 32 as the string that
    # these fields expect
    quote = {"devices", "strategy", "precision", "accelerator"}
    return [f"{key}='{value}'" if name in quote else f"{key}={value}"
            for name, key in flags.items() if (value := getattr(args, name)) is not None]


def resolve_run(cls, preset, args: argparse.Namespace):
    """The run config (`cls`: VQVAERun or PriorRun) that `vqvid train` parsed to `args` trains: the preset, or a
    resumed run's own config, then --config, the overrides and the command's flags; refuses what the config
    refuses (`ConfigError`)."""
    from vqvid.config import resolve

    saved = args.out / "config.yaml"
    own = None  # a resumed run's own config
    if args.resume is not None and saved.exists():
        base = load_yaml(saved)
        from vqvid.config import from_dict

        try:
            own = from_dict(cls, base)
        except ConfigError:
            if (other := _stage_of(base)) not in (None, args.stage):
                raise ValueError(f"--out {args.out}: holds a {STAGES[other]} run, not a {STAGES[args.stage]} run; "
                                 f"continue it with `vqvid train {other} --resume`, or choose another --out") from None
            if args.config is None:
                raise
            # --config gives the whole run where its own config.yaml no longer reads (written by another version):
            # the checkpoint still refuses another model
            warnings.warn(f"--resume: {saved} does not read as this version's config; the run continues from "
                          f"--config {args.config}, unchecked against it", stacklevel=2)
    run = resolve(cls, preset if own is None or args.config is not None else own, args.config,
                  [*args.overrides, *_cli_overrides(args)])
    if own is not None:  # a resumed run continues as it was trained: only its length and hardware may change
        changed = [f"train.{name}={getattr(run.train, name)!r} (the run's: {getattr(own.train, name)!r})"
                   for name in FIXED_ON_RESUME if getattr(run.train, name) != getattr(own.train, name)]
        if getattr(run, "data", None) != getattr(own, "data", None):
            changed.append(f"data {run.data} (the run's: {own.data})")
        if changed:
            raise ValueError(f"--resume: {'; '.join(changed)}: a resumed run continues with the settings it was "
                             "trained with (its optimiser state, data order and schedule are theirs); drop the "
                             "change, or train a new run into another --out")
    return run


# What a resumed run may not change (its checkpoint's optimiser, schedule and data order follow them); its length
# (max_steps), validation, logging, workers and hardware may change (under DDP, other devices split the same data
# order among another number of processes)
FIXED_ON_RESUME = ("batch_size", "lr", "weight_decay", "warmup_steps", "lr_schedule", "grad_clip", "val_fraction",
                   "seed")


def _stage_of(config: dict) -> str | None:
    """The stage whose run config `config` (a run's config.yaml) is, if it is any stage's."""
    from vqvid.config import from_dict
    from vqvid.presets import PriorRun, ReaderRun, VQVAERun

    for stage, cls in (("vqvae", VQVAERun), ("prior", PriorRun), ("reader", ReaderRun)):
        try:
            from_dict(cls, config)
            return stage
        except ConfigError:
            continue
    return None


def _resume_path(args: argparse.Namespace, run, vqvae_fingerprint: str | None = None) -> Path | None:
    """The checkpoint to resume from, once it has been read as a vqvid checkpoint of this stage whose model
    is the run's (a VQ-VAE's or a context reader's: a prior's grid comes from its code store, checked there) and,
    given `vqvae_fingerprint`, that was trained on that VQ-VAE's codes: Lightning is only ever handed a file that
    passed `read_checkpoint`."""
    if args.resume is None:
        return None
    from vqvid.persistence import read_checkpoint, read_config
    from vqvid.training.runner import last_checkpoint, saved_nothing

    path = last_checkpoint(args.out) if args.resume == "last" else Path(args.resume)
    if path is None or not path.exists():
        never = " (the run stopped before its first checkpoint: train again without --resume)" \
            if args.resume == "last" and args.out.is_dir() and saved_nothing(args.out) else ""
        raise FileNotFoundError(f"--resume: no checkpoint at {path or args.out / 'checkpoints' / 'last.ckpt'}"
                                + never)
    checkpoint = read_checkpoint(path, args.stage, "--resume")
    step, max_steps = checkpoint.get("global_step"), run.train.max_steps
    given = f"--max-steps {max_steps}" if args.max_steps is not None else f"train.max_steps={max_steps}"
    if isinstance(step, int) and step > max_steps:
        raise ValueError(f"--resume {path}: the run is at step {step}, past {given}, so nothing would be trained; "
                         f"give --max-steps above {step} to train further")
    if step == max_steps and _first_process():
        print(f"note: --resume {path}: the run is at step {step}, which is {given}: nothing is trained, its last "
              f"step is validated again (give --max-steps above {step} to train further)")
    hparams = checkpoint["hyper_parameters"]
    if vqvae_fingerprint is not None and hparams["vqvae_fingerprint"] != vqvae_fingerprint:
        raise ValueError(f"--resume {path}: the {args.stage} was trained on top codes of VQ-VAE "
                         f"{hparams['vqvae_fingerprint']}, but --vqvae {args.vqvae} is VQ-VAE {vqvae_fingerprint}")
    if args.stage != "prior" and (model := read_config(type(run.model), hparams["model"],
                                                       f"--resume {path}: model")) != run.model:
        from vqvid.config import differences

        raise ValueError(f"--resume {path}: a {STAGES[args.stage]} of another model config than this run's "
                         + differences(model, run.model, "model"))
    return path


def _first_process() -> bool:
    """Whether this is the first (or only) process of a run: DDP launchers start this command once per process."""
    return all(os.environ.get(name, "0") == "0" for name in ("RANK", "LOCAL_RANK"))


def _check_run(args: argparse.Namespace, run, vqvae_fingerprint: str | None = None) -> Path | None:
    """Everything that can be refused before a file is written: the run folder, the checkpoint to resume from
    and the hardware. Returns the checkpoint to resume from, if any."""
    from vqvid.training.runner import check_hardware, saved_nothing

    out = args.out
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    # Only the first process judges the folder: DDP's other processes run this command again once it exists.
    if _first_process() and args.resume is None and out.is_dir() and any(out.iterdir()):
        if saved_nothing(out):
            print(f"note: --out {out} holds a run that stopped before its first checkpoint; this one starts afresh "
                  "there")
        else:
            holds = "holds a run" if (out / "config.yaml").exists() or (out / "checkpoints").exists() else \
                "is not empty"
            raise ValueError(f"--out {out}: {holds} already; continue it with --resume, or choose a new --out")
    resume = _resume_path(args, run, vqvae_fingerprint)
    check_hardware(run.train)
    return resume


def train_vqvae(args: argparse.Namespace) -> TrainedRun:
    from vqvid.presets import VQVAERun, get_preset
    from vqvid.training.callbacks import ReconstructionGIFs
    from vqvid.training.vqvae import VQVAEModule

    run = resolve_run(VQVAERun, get_preset(args.preset).vqvae, args)
    resume = _check_run(args, run)
    gifs = ReconstructionGIFs(args.out / "gifs", run.train.gif_clips, fps=run.data.fps or 10.0)
    return _fit_on_clips(args, run, run.data, resume, lambda: VQVAEModule.from_configs(run.model, run.train, run.data),
                         [gifs])


def _fit_on_clips(args: argparse.Namespace, run, spec, resume: Path | None, module_of, callbacks=()) -> TrainedRun:
    """Train the module that `module_of()` makes, once the run's seed is set, on clips of --data (and --val-data)
    cut as `spec` says, unreadable ones skipped up to `train.max_unreadable`; the run's config.yaml is written
    first. A stage that trains on video (the VQ-VAE, the context reader) ends here."""
    import lightning as L

    from vqvid.data.sources import SkipUnreadable
    from vqvid.training.callbacks import UnreadableClips
    from vqvid.training.data import TrainValData
    from vqvid.training.runner import fit

    train_set, val_set = _clip_sets(args.data, args.val_data, spec, run.train.val_fraction)
    train_set, val_set = SkipUnreadable(train_set, "training"), SkipUnreadable(val_set, "validation")
    args.out.mkdir(parents=True, exist_ok=True)
    save_yaml(run, args.out / "config.yaml")
    L.seed_everything(run.train.seed, verbose=False)
    module = module_of()
    data = TrainValData(train_set, val_set, run.train.batch_size, run.train.num_workers, run.train.seed)
    unreadable = UnreadableClips([train_set, val_set], run.train.max_unreadable)
    return fit(module, data, run.train, args.out, resume, [*callbacks, unreadable], progress=not args.no_progress)


def _clip_sets(source: str, val_source: str | None, spec, val_fraction: float):
    """Train and validation clips of `spec` (a ClipSpec): the sources' train/val splits where they have them,
    else the whole of `--val-data`, else a held-out tail (`val_fraction`) of the source."""
    from vqvid.data import DataError, open_clips
    from vqvid.training.data import hold_out

    def split_or_none(src: str, split: str):
        try:
            return open_clips(src, spec, split=split)
        except DataError:  # no such split (a real problem with the data resurfaces below, whole)
            return None

    train = split_or_none(source, "train")
    if val_source is not None:
        val = split_or_none(val_source, "val")
        return (train or open_clips(source, spec)), (val or open_clips(val_source, spec))
    val = split_or_none(source, "val") if train is not None else None
    if train is not None and val is not None:
        return train, val
    return hold_out(open_clips(source, spec), val_fraction)


def train_prior(args: argparse.Namespace) -> TrainedRun:
    from vqvid.presets import PriorRun, get_preset
    from vqvid.training.prior import train_prior_run

    run = resolve_run(PriorRun, get_preset(args.preset).prior(args.level), args)
    return train_prior_run(run, args.level, args.codes, args.val_codes, args.out, _check_run(args, run),
                           progress=not args.no_progress)


def train_reader(args: argparse.Namespace) -> TrainedRun:
    """A context reader trained on clips of --data, cut as the VQ-VAE's were, its targets the VQ-VAE's top codes
    of each whole clip."""
    from dataclasses import replace

    from vqvid.config import to_dict
    from vqvid.persistence import load_vqvae
    from vqvid.presets import ReaderRun, get_preset
    from vqvid.training.reader import ReaderModule

    run = resolve_run(ReaderRun, get_preset(args.preset).reader, args)
    vqvae = load_vqvae(args.vqvae)
    spec = vqvae.clip_spec()
    try:  # the clips and codes are the VQ-VAE's
        run = replace(run, model=replace(run.model, num_codes=vqvae.config.num_codes, frames=spec.frames))
    except ValueError as error:
        raise ValueError(f"--vqvae {args.vqvae}: its {spec.frames}-frame clips do not fit the reader's "
                         f"model.context={run.model.context} ({error})") from None
    resume = _check_run(args, run, vqvae.fingerprint)
    return _fit_on_clips(args, run, spec, resume, lambda: ReaderModule(to_dict(run.model), to_dict(run.train),
                                                                       vqvae.fingerprint).use_vqvae(vqvae.model))


TRAINERS = {"vqvae": train_vqvae, "prior": train_prior, "reader": train_reader}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """`vqvid train`'s arguments, with key=value overrides taken wherever they stand: after an option as well
    as before it (argparse alone takes only the first run of them)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if stray := [arg for arg in extra if arg.startswith("-") or "=" not in arg]:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    args.overrides = [*args.overrides, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = TRAINERS[args.stage](args)
    except (ConfigError, ValueError, FileNotFoundError) as error:
        print(f"vqvid train {args.stage}: {error}", file=sys.stderr)
        return 2
    if not _first_process():  # each DDP process ends here; the first one speaks for the run
        return 0
    print(f"done: last checkpoint {result.last}")
    if result.validation:
        print("last validation: " + ", ".join(f"{name} {value:.4g}" for name, value in
                                              sorted(result.validation.items())))
    metric, lower_is_better, margin = WATCHED[args.stage]
    if note := result.overfit_note(metric, lower_is_better, margin):
        print(f"note: {note}")
    return 0

"""`vqvid extract`: encode every clip of a source into a code store, for training the priors.

    vqvid extract --vqvae CKPT_OR_MODEL_DIR --data SRC --out CODES [--split train] [--batch-size 16]
    torchrun --nproc-per-node 4 -m vqvid extract ...      # 4 processes (one per GPU) write one store

Batched, on the GPU when there is one (`--device`), with a progress bar. Killed and run again, it resumes:
clips already in the store are skipped, and the store ends with exactly the records of an uninterrupted run.
Started by `torchrun` (or any launcher that sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT),
each process encodes a share of the clips on its own device (cuda:LOCAL_RANK when there are GPUs) into a shard,
and rank 0 merges the shards into the one store (see `vqvid.data.codes.extract`); the number of processes may
change between a killed run and its resumption.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple

# Ranks wait for each other at the end of their shares, which the clip-by-clip split keeps within a few batches of
# each other; the limit is only there so that a rank that died takes the others down instead of hanging them.
_WAIT = timedelta(hours=2)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqvid extract", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vqvae", required=True, type=Path, help="VQ-VAE checkpoint (.ckpt) or model folder")
    parser.add_argument("--data", required=True, help="the source: as for `vqvid train vqvae --data`")
    parser.add_argument("--split", help="split of the source (train, val, test) if it has splits")
    parser.add_argument("--out", required=True, type=Path, help="code store folder (created or resumed)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers decoding clips")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu; under torchrun "
                                         "cuda:LOCAL_RANK)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


class Launch(NamedTuple):
    """Where this process stands among the processes a launcher started (one process: rank 0 of 1)."""

    rank: int
    world_size: int
    local_rank: int  # index of this process on its machine: the GPU it uses


def launch_from_environment(environ: dict[str, str] | None = None) -> Launch:
    """The process's rank, the number of processes and its local rank, from the variables torchrun sets."""
    environ = os.environ if environ is None else environ
    values = {}
    for name, default in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")):
        text = environ.get(name, default)
        if not text.isdigit():
            raise ValueError(f"environment variable {name} must be a non-negative integer, got {text!r}")
        values[name] = int(text)
    launch = Launch(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"])
    if not 0 <= launch.rank < max(1, launch.world_size):
        raise ValueError(f"environment variable RANK={launch.rank} must lie in [0, WORLD_SIZE={launch.world_size})")
    return launch


def _device(requested: str | None, local_rank: int):
    import torch

    device = torch.device(requested or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)  # one GPU per process of a machine
    return device


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        launch = launch_from_environment()
    except ValueError as error:
        print(f"vqvid extract: {error}", file=sys.stderr)
        return 2
    if launch.world_size <= 1:
        return _run(args, Launch(0, 1, 0), lambda value: [value])
    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=_WAIT)  # gloo: the ranks exchange only a few Python objects

    def gather(value):
        values = [None] * launch.world_size
        dist.all_gather_object(values, value)
        return values

    try:
        return _run(args, launch, gather)
    finally:
        dist.destroy_process_group()


def _run(args: argparse.Namespace, launch: Launch, gather: Callable[[object], list]) -> int:
    """Extract as rank `launch.rank`; `gather(value)` returns every rank's value (a collective on all ranks)."""
    from vqvid.commands import options
    from vqvid.data import DataError, open_clips
    from vqvid.data.codes import (
        CodeStoreError,
        CodeStoreMeta,
        encode_shard,
        extract_codes,
        merge_shards,
        start_extraction,
    )
    from vqvid.persistence import load_vqvae

    errors = (ValueError, FileNotFoundError, DataError, CodeStoreError)
    lead = launch.rank == 0

    def agree(error: str | None) -> str | None:
        """The first rank's error, if any rank had one: every rank then stops together."""
        return next((e for e in gather(error) if e is not None), None)

    def fail(error: str) -> int:
        if lead:
            print(f"vqvid extract: {error}", file=sys.stderr)
        return 2

    error = None
    try:
        if args.device is not None:
            options.device(args.device)
        options.at_least(args.batch_size, 1, "--batch-size")
        options.at_least(args.num_workers, 0, "--num-workers")
        device = _device(args.device, launch.local_rank)
        loaded = load_vqvae(args.vqvae)
        spec = loaded.clip_spec()
        dataset = open_clips(args.data, spec, split=args.split)
        grid = loaded.model.grid_shapes(spec.frames, spec.size, spec.size)
        meta = CodeStoreMeta(
            fingerprint=loaded.fingerprint, top_shape=grid.top, bottom_shape=grid.bottom,
            num_codes=loaded.config.num_codes, source=f"{args.data}" + (f" [{args.split}]" if args.split else ""),
        )
        model = loaded.model.to(device)
        codebooks = (model.top_quantizer.codebook, model.bottom_quantizer.codebook)
        common = dict(batch_size=args.batch_size, num_workers=args.num_workers, device=device,
                      progress=lead and not args.no_progress)
    except (*errors, RuntimeError) as caught:  # RuntimeError: e.g. a device that does not exist
        error = str(caught)
    if error := agree(error):
        return fail(error)

    if launch.world_size == 1:
        try:
            written = extract_codes(model.encode, dataset, args.out, meta, codebooks=codebooks, **common)
        except errors as caught:
            return fail(str(caught))
    else:
        if lead:
            try:
                start_extraction(args.out, meta, len(dataset), codebooks)
            except errors as caught:
                error = str(caught)
        if error := agree(error):
            return fail(error)
        try:
            mine = encode_shard(model.encode, dataset, args.out, meta, launch.rank, launch.world_size, **common)
        except errors as caught:
            mine, error = 0, str(caught)
        results = gather((mine, error))  # also waits for every rank to finish its share
        written = sum(count for count, _ in results)
        error = next((e for _, e in results if e is not None), None)
        if lead:
            try:
                merge_shards(args.out)  # what every rank finished is kept, even if one failed
            except errors as caught:
                error = error or str(caught)
        if error:
            return fail(error)
    if lead:
        print(f"{args.out}: {len(dataset)} clips ({written} new), top {grid.top}, bottom {grid.bottom}, "
              f"VQ-VAE {loaded.fingerprint}" + (f", {launch.world_size} processes" if launch.world_size > 1 else ""))
    return 0

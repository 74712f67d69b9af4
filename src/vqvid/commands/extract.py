"""`vqvid extract`: encode every clip of a source into a code store, for training the priors.

    vqvid extract --vqvae CKPT_OR_MODEL_DIR --data SRC --out CODES [--split train] [--batch-size 16]

Batched, on the GPU when there is one (`--device`), with a progress bar. Killed and run again, it resumes:
clips already in the store are skipped, and the store ends with exactly the records of an uninterrupted run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqvid extract", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vqvae", required=True, type=Path, help="VQ-VAE checkpoint (.ckpt) or model folder")
    parser.add_argument("--data", required=True, help="the source: as for `vqvid train vqvae --data`")
    parser.add_argument("--split", help="split of the source (train, val, test) if it has splits")
    parser.add_argument("--out", required=True, type=Path, help="code store folder (created or resumed)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers decoding clips")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from vqvid.checkpoints import load_vqvae
    from vqvid.data import DataError, open_clips
    from vqvid.data.codes import CodeStoreError, CodeStoreMeta, extract_codes

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        loaded = load_vqvae(args.vqvae)
        spec = loaded.clip_spec()
        dataset = open_clips(args.data, spec, split=args.split)
        grid = loaded.model.grid_shapes(spec.frames, spec.size, spec.size)
        meta = CodeStoreMeta(
            fingerprint=loaded.fingerprint, top_shape=grid.top, bottom_shape=grid.bottom,
            num_codes=loaded.config.num_codes, source=f"{args.data}" + (f" [{args.split}]" if args.split else ""),
        )
        model = loaded.model.to(device)
        written = extract_codes(model.encode, dataset, args.out, meta, batch_size=args.batch_size,
                                num_workers=args.num_workers, device=device, progress=not args.no_progress,
                                codebooks=(model.top_quantizer.codebook, model.bottom_quantizer.codebook))
    except (ValueError, FileNotFoundError, DataError, CodeStoreError) as error:
        print(f"vqvid extract: {error}", file=sys.stderr)
        return 2
    print(f"{args.out}: {len(dataset)} clips ({written} new), top {grid.top}, bottom {grid.bottom}, "
          f"VQ-VAE {loaded.fingerprint}")
    return 0

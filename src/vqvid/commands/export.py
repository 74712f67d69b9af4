"""`vqvid export`: one model folder (safetensors + JSON, no pickle) from the training checkpoints.

    vqvid export --vqvae VQVAE.ckpt [--top TOP.ckpt --bottom BOTTOM.ckpt] [--reader READER.ckpt] --out MODEL_DIR
                 [--force]

Later stages load it with `--model MODEL_DIR`. Priors or a context reader trained on codes of another VQ-VAE
are refused. With a context reader (`vqvid train reader`), `vqvid predict` takes the top codes after the context
from it instead of from the top prior.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqvid export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vqvae", required=True, type=Path, help="VQ-VAE checkpoint (.ckpt) or model folder")
    parser.add_argument("--top", type=Path, help="top prior checkpoint")
    parser.add_argument("--bottom", type=Path, help="bottom prior checkpoint")
    parser.add_argument("--reader", type=Path, help="context reader checkpoint (`vqvid train reader`)")
    parser.add_argument("--out", required=True, type=Path,
                        help="model folder to write: absent, empty, or a model folder (which is replaced)")
    parser.add_argument("--force", action="store_true",
                        help="replace --out even if it is not a model folder (everything in it is lost)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from vqvid.persistence import export_model, load_model_folder

    try:
        out = export_model(args.vqvae, args.out, args.top, args.bottom, force=args.force, reader=args.reader)
        folder = load_model_folder(out)
    except (ValueError, FileNotFoundError) as error:
        print(f"vqvid export: {error}", file=sys.stderr)
        return 2
    parts = ["vqvae"] + [part for part in ("top", "bottom", "reader") if getattr(folder, part) is not None]
    print(f"wrote {out}: {', '.join(parts)}; fingerprint {folder.fingerprint}")
    return 0

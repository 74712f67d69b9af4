"""`vqvid info`: what a .vqv file holds and what it costs, from its header alone (no model needed).

    vqvid info clip.vqv

Prints the model fingerprint, the coding mode, the video's geometry and timing, and the rates (bits per
pixel, kbit/s, bits per code) of the whole file. The file is fully validated first (CRCs included).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqvid info", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, help="the .vqv file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from vqvid.codec.container import describe, read_vqv

    try:
        header = read_vqv(args.input).header
        size = os.path.getsize(args.input)
    except (ValueError, OSError) as error:
        print(f"vqvid info: {error}", file=sys.stderr)
        return 2
    print(describe(header, size))
    return 0

"""`vqvid info`: what a .vqv file holds and what it costs, from its header alone (no model needed).

    vqvid info clip.vqv

Prints the format version, the model fingerprint, the software and CPU that wrote the file, the coding mode,
the levels it holds (top and bottom, or top only: written with `--levels top` or cut after its top layer) with
the bytes of each, the video's geometry and timing, and the rates (bits per pixel, kbit/s, bits per code) of the
whole file. The file is fully validated first (CRCs included).
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
        file = read_vqv(args.input)
        size = os.path.getsize(args.input)
    except (ValueError, OSError) as error:
        print(f"vqvid info: {error}", file=sys.stderr)
        return 2
    print(describe(file, size))
    return 0

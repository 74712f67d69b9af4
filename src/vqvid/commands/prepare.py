"""`vqvid prepare SRC --out STORE`: decode a video source once into a store of fixed-size clips.

Training then reads the store (pass it as `--data`) instead of decoding video at every epoch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vqvid.commands import options
from vqvid.data import ClipSpec, ClipStore, DataError, prepare_store
from vqvid.data.store import STORE_DATA


def build_parser() -> argparse.ArgumentParser:
    defaults = ClipSpec()
    parser = argparse.ArgumentParser(prog="vqvid prepare", description=__doc__.splitlines()[0])
    parser.add_argument("source", metavar="SRC",
                        help="a video file, a folder of videos or of numbered frame images, or synthetic[:N]")
    parser.add_argument("--out", required=True, type=Path, metavar="STORE",
                        help="folder to write the store in")
    parser.add_argument("--frames", type=int, default=defaults.frames, help="frames per clip (%(default)s)")
    parser.add_argument("--stride", type=int, default=defaults.stride,
                        help="frames between clip starts (%(default)s)")
    parser.add_argument("--size", type=int, default=defaults.size,
                        help="clip side: shorter side resized to it, then centre-cropped (%(default)s)")
    parser.add_argument("--fps", type=float, default=defaults.fps,
                        help="resample to this frame rate (default: keep every frame)")
    parser.add_argument("--source-fps", type=float, default=defaults.source_fps,
                        help="frame rate of frame-image folders, which carry none (%(default)s)")
    parser.add_argument("--split", default=None, help="train, val or test, for sources split in such folders")
    parser.add_argument("--workers", type=int, default=0, help="decoding processes (default: this one only)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        options.frame_rate(args.fps)
        options.frame_rate(args.source_fps, "--source-fps")
        for option in ("--frames", "--stride", "--size"):
            options.at_least(getattr(args, option.removeprefix("--")), 1, option)
        spec = ClipSpec(frames=args.frames, stride=args.stride, size=args.size, fps=args.fps,
                        source_fps=args.source_fps)
        if args.workers < 0:
            raise ValueError(f"--workers must be 0 or more, got {args.workers}")
        out = prepare_store(args.source, args.out, spec, split=args.split, progress=not args.quiet,
                            workers=args.workers)
    except (DataError, ValueError) as error:
        print(f"vqvid prepare: {error}", file=sys.stderr)
        return 2
    store = ClipStore(out)
    megabytes = (out / STORE_DATA).stat().st_size / 1e6
    split = f" ({args.split})" if args.split else ""
    print(f"prepared {len(store)} clips of {spec.frames}×{spec.size}×{spec.size} from {args.source}{split} "
          f"into {out} ({megabytes:.1f} MB)")
    return 0

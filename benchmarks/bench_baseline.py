"""Rate–distortion of x264 and x265 on moving-shapes clips: the classical curve vqvid is compared against.

For each synthetic clip (16×256×256 by default, the thesis's clip size) runs both codecs over the default
CRFs, then averages each (codec, CRF) point over the clips: bytes, bits per pixel, kbit/s, PSNR, SSIM. Also
reports what the container costs (file bytes minus packet bytes), the seconds to encode and decode a clip,
and the PSNR of lossless x264 (CRF 0), the ceiling that 4:2:0 chroma alone sets. Prints tables and writes
benchmarks/results/baseline.json (and baseline.png with --plot).

    python benchmarks/bench_baseline.py [--clips 3] [--size 256] [--frames 16] [--fps 10] [--plot]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import av
import numpy as np

from vqvid.codec.baseline import (
    CODECS,
    DEFAULT_CRFS,
    RDPoint,
    encode_decode,
    format_rd_table,
    plot_rd,
    rd_point,
)
from vqvid.data import MovingShapes, to_uint8_frames

RESULTS = Path(__file__).parent / "results" / "baseline.json"


def mean_point(points: list[RDPoint]) -> RDPoint:
    """The average of one (method, setting) over clips of one size."""
    return RDPoint(
        method=points[0].method,
        setting=points[0].setting,
        bits_per_pixel=float(np.mean([p.bits_per_pixel for p in points])),
        kbps=float(np.mean([p.kbps for p in points])),
        psnr=float(np.mean([p.psnr for p in points])),
        ssim=float(np.mean([p.ssim for p in points])),
        bytes=round(np.mean([p.bytes for p in points])),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=3, help="synthetic clips to average over (%(default)s)")
    parser.add_argument("--size", type=int, default=256, help="clip side in pixels (%(default)s)")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip (%(default)s)")
    parser.add_argument("--fps", type=float, default=10.0, help="frame rate for kbit/s (%(default)s)")
    parser.add_argument("--preset", default="medium", help="x264/x265 preset (%(default)s)")
    parser.add_argument("--plot", action="store_true", help="also write results/baseline.png")
    args = parser.parse_args()

    clips = MovingShapes(args.clips, frames=args.frames, size=args.size, seed=7)
    per_setting: dict[tuple[str, int], list[RDPoint]] = {}
    overhead: dict[str, list[int]] = {codec: [] for codec in CODECS}
    seconds: dict[str, list[float]] = {codec: [] for codec in CODECS}
    ceiling = []
    for index in range(len(clips)):
        frames = to_uint8_frames(clips[index])  # (T, H, W, 3) uint8
        for codec in CODECS:
            for crf in DEFAULT_CRFS:
                start = time.perf_counter()
                result = encode_decode(frames, codec, crf, args.fps, args.preset)
                seconds[codec].append(time.perf_counter() - start)
                overhead[codec].append(result.bytes - result.stream_bytes)
                method = f"{codec.removeprefix('lib')} {args.preset}"
                point = rd_point(method, f"crf={crf}", frames, result.decoded, result.bytes, args.fps)
                per_setting.setdefault((codec, crf), []).append(point)
        lossless = encode_decode(frames, "libx264", 0, args.fps, args.preset)
        ceiling.append(rd_point("x264", "crf=0", frames, lossless.decoded, lossless.bytes, args.fps).psnr)

    points = [mean_point(group) for group in per_setting.values()]
    clip = f"{args.frames}×{args.size}×{args.size}"
    print(f"mean over {args.clips} moving-shapes clips of {clip} at {args.fps:g} fps\n")
    print(format_rd_table(points))
    codec_rows = [
        {"codec": codec, "container_bytes": round(float(np.mean(overhead[codec]))),
         "encode_decode_s": round(float(np.mean(seconds[codec])), 3)}
        for codec in CODECS
    ]
    print(f"\n{'codec':<8} {'container bytes':>15} {'enc+dec s/clip':>15}")
    for row in codec_rows:
        print(f"{row['codec']:<8} {row['container_bytes']:>15} {row['encode_decode_s']:>15.3f}")
    print(f"\n4:2:0 ceiling (lossless x264, CRF 0): {np.mean(ceiling):.2f} dB PSNR")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "av": av.__version__}
    setup = {"clips": args.clips, "clip": clip, "fps": args.fps, "preset": args.preset,
             "source": "MovingShapes"}
    RESULTS.write_text(json.dumps({
        "machine": machine,
        "setup": setup,
        "points": [p._asdict() for p in points],
        "codecs": codec_rows,
        "psnr_ceiling_420_db": round(float(np.mean(ceiling)), 2),
    }, indent=1, ensure_ascii=False))
    print(f"\nwrote {RESULTS}")
    if args.plot:
        print(f"wrote {plot_rd(points, RESULTS.with_suffix('.png'))}")


if __name__ == "__main__":
    main()

"""`vqvid rd`: rate–distortion of vqvid against x264 and x265, on the same frames.

    vqvid rd --model MODEL_DIR INPUT... [-o rd.png] [--json rd.json] [--crf 18 28 38 51] [--max-clips 4]

Every input is cut into clips of the model's size and length; all methods code exactly those frames (8-bit
RGB at the model's resolution) and are measured the same way: bits per pixel and kbit/s (at each input's frame
rate, or --fps) from real file sizes (containers included), PSNR and SSIM per frame. Every input is opened and
read before any is measured. Rows:
- `vqvid`: the `.vqv` file entropy-coded under the priors, at two points of one file: "priors" decodes both
  levels from the whole file, "priors, top only" decodes the coarse video from its top layer alone (the file
  cut after its top chunks, what `vqvid decompress --levels top` reads);
- `vqvid 9-bit`: the same codes in a fixed-width `.vqv` file (what the codes cost without the priors), at the
  same two points ("fixed", "fixed, top only");
- `x264 medium` / `x265 medium`: MP4 files at each CRF.
Several inputs are pooled: bytes and pixels summed, PSNR and SSIM averaged over frames.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from vqvid.commands import options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqvid rd", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="video files, frame folders or other sources")
    parser.add_argument("--model", required=True, type=Path, help="model folder from `vqvid export`")
    parser.add_argument("-o", "--output", type=Path, default=Path("rd.png"), help="PNG plot (default rd.png)")
    parser.add_argument("--json", type=Path, help="also write every point to this JSON file")
    parser.add_argument("--crf", type=int, nargs="+", default=[18, 23, 28, 33, 38, 43, 51],
                        help="the classical codecs' constant rate factors, 0 (best) to 51 (default: %(default)s)")
    parser.add_argument("--codecs", nargs="+", default=["libx264", "libx265"], choices=("libx264", "libx265"),
                        help="the classical codecs to compare with (default: both)")
    parser.add_argument("--max-clips", type=int, default=4, help="clips per input (default 4)")
    parser.add_argument("--fps", type=float,
                        help="frame rate for kbit/s, the same for every input (default: each input's: "
                             f"{options.INPUT_FPS_HELP})")
    return parser


def _pool(points):
    """Pool per-input points of one (method, setting): bytes summed, quality weighted by frames."""
    from vqvid.codec.baseline import RDPoint

    groups = defaultdict(list)
    for point, frames, pixels, seconds in points:
        groups[(point.method, point.setting)].append((point, frames, pixels, seconds))
    pooled = []
    for (method, setting), members in groups.items():
        total_bytes = sum(p.bytes for p, *_ in members)
        frames = sum(f for _, f, _, _ in members)
        pooled.append(RDPoint(
            method=method, setting=setting,
            bits_per_pixel=8 * total_bytes / sum(px for *_, px, _ in members),
            kbps=8 * total_bytes / 1000 / sum(s for *_, s in members),
            psnr=sum(p.psnr * f for p, f, _, _ in members) / frames,
            ssim=sum(p.ssim * f for p, f, _, _ in members) / frames,
            bytes=total_bytes,
        ))
    return pooled


def measure(folder, frames_video, fps: float, crfs, codecs) -> list:
    """All points for one video 3×N×H×W in [-1, 1]: vqvid (priors) and vqvid 9-bit, each from the whole file
    and from its top layer alone, and the classical sweep."""
    import math

    from vqvid.codec.baseline import rd_point, rd_sweep
    from vqvid.codec.packing import packed_size
    from vqvid.codec.video import compress, decompress
    from vqvid.data import to_uint8_frames

    original = to_uint8_frames(frames_video)  # (N, H, W, 3): the reference every method is measured against
    coded = compress(folder, frames_video, fps)
    header = coded.header
    top_layer = coded.data[:coded.top_layer_size]  # the file cut after its top chunks: a file of its own
    decoded = {"": to_uint8_frames(decompress(folder, coded.data).video),
               ", top only": to_uint8_frames(decompress(folder, top_layer).video)}
    # Fixed width: the same container, each layer's chunks at ceil(log2 K) bits a code.
    container = coded.size - sum(map(len, coded.chunks))
    fixed_top = header.num_clips * packed_size(math.prod(header.top_shape), header.num_codes)
    sizes = {("priors", ""): coded.size, ("priors", ", top only"): coded.top_layer_size,
             ("fixed", ""): coded.fixed_width_size, ("fixed", ", top only"): container + fixed_top}
    points = []
    for setting, method in (("priors", "vqvid"), ("fixed", "vqvid 9-bit")):
        if setting == "priors" and header.mode != "prior":
            continue
        for part, frames in decoded.items():
            points.append(rd_point(method, setting + part, original, frames, sizes[setting, part], fps))
    points += rd_sweep(original, fps, codecs=codecs, crfs=crfs)
    return points


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from vqvid.codec.baseline import format_rd_table, plot_rd
    from vqvid.data import DataError, open_clips
    from vqvid.data.inputs import clips_fps
    from vqvid.data.sources import read_clips
    from vqvid.geometry import clip_geometry
    from vqvid.persistence import load_model_folder

    try:
        options.at_least(args.max_clips, 1, "--max-clips")
        options.frame_rate(args.fps)
        from vqvid.codec.baseline import MAX_CRF

        for crf in args.crf:
            if not 0 <= crf <= MAX_CRF:
                raise ValueError(f"--crf {crf}: expected a constant rate factor from 0 to {MAX_CRF}")
        for option, values in (("--crf", args.crf), ("--codecs", args.codecs)):
            repeated = next((value for value in values if values.count(value) > 1), None)
            if repeated is not None:  # a typo, most likely; measured twice, it would count twice when pooled
                raise ValueError(f"{option} {' '.join(map(str, values))}: {repeated} is given more than once; "
                                 "expected each at most once")
        options.output_files([*args.inputs, args.model], ("-o", args.output, (".png",)), ("--json", args.json, None))
        folder = load_model_folder(args.model)
        clip_geometry(folder)  # refuses a folder whose priors do not fit its clip size
        spec = folder.vqvae.clip_spec(whole_clips=True)
        videos = []  # every input is read before any is measured, so that a bad one is refused before the work
        for source in args.inputs:
            dataset = open_clips(source, spec)
            clips = read_clips(dataset, args.max_clips, f"rd {source}")
            video = torch.cat(clips, dim=1)  # (3, N, H, W): the clips one after another
            videos.append((source, video, args.fps or float(clips_fps(dataset))))
        measured = []
        for source, video, fps in videos:
            n, h, w = video.shape[1:]
            for point in measure(folder, video, fps, args.crf, args.codecs):
                measured.append((point, n, n * h * w, n / fps))
            print(f"{source}: {n} frames of {h}×{w} at {fps:.4g} fps measured", flush=True)
    except (ValueError, FileNotFoundError, DataError) as error:
        print(f"vqvid rd: {error}", file=sys.stderr)
        return 2
    points = _pool(measured)
    print(format_rd_table(points))
    from vqvid.files import atomic_path

    with atomic_path(args.output) as partial:
        plot_rd(points, partial)
    print(f"wrote {args.output}")
    if args.json:
        from vqvid.files import write_text

        write_text(args.json, json.dumps([p._asdict() for p in points], indent=2, default=_plain))
    return 0


def _plain(value):
    return value.item() if isinstance(value, np.generic) else str(value)

"""`vqvid compress`: a video into a .vqv file, its codes entropy-coded under the priors of a model folder.

    vqvid compress --model MODEL_DIR INPUT -o clip.vqv [--levels top|both] [--fixed] [--verify] [--max-frames N]
                   [--fps F] [--coding-batch B]

INPUT is one video file or one folder of numbered frame images, read whole (resampled to the model's frame
rate if it was trained on one; resized and centre-cropped to its size), or a prepared store or
'synthetic[:N]', whose clips are coded one after another. The video is cut into clips of the model's clip
length, the last one padded; `vqvid decompress` gives back the VQ-VAE's decoding of the file's codes, what
`vqvid reconstruct` shows (reconstruct encodes clips in batches, which can assign the rare near-tie code
differently).
Without priors in the folder, or with --fixed, codes are packed at ceil(log2 K) bits each. The file holds
every clip's top codes before any bottom codes: `vqvid decompress --levels top` decodes the coarse video from the
top layer alone, and `--levels top` here writes only that layer (a file a fraction of the size).

Prints the frames, the file size, bits per pixel, kbit/s, and the size against the same codes at fixed width.
The priors always run on the CPU, on one thread, through --coding-batch clips at a time (default 32, fewer
for priors too large to hold 32 clips' caches in 2 GiB; never more than the video's clips), so that the file
decodes exactly (see `vqvid.codec.coding`): the file records the coding batch, and `vqvid decompress` codes as
many clips at a time. A larger batch codes faster at small prior widths and costs more memory on both sides.
--device moves only the VQ-VAE, which encodes one clip at a time under the same settings, so the file does not
depend on --batch-size (clips per --verify pass) or the machine's threads.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

from vqvid.commands import options
from vqvid.progress import Counter

# The header records a float frame rate as a ratio whose denominator is at most 10^6 (`vqvid.codec.container`):
# below 1/10^6 it would round to 0.
MIN_FPS = 1e-6


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqvid compress", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="video file, frame folder, prepared store or 'synthetic[:N]'")
    parser.add_argument("--model", required=True, type=Path, help="model folder (`vqvid export`)")
    parser.add_argument("-o", "--output", required=True, type=Path, help="the .vqv file to write")
    parser.add_argument("--levels", choices=("both", "top"), default="both",
                        help="code both levels (default) or the top codes alone: the coarse video, fewer bits")
    parser.add_argument("--fixed", action="store_true",
                        help="pack codes at fixed width even if the folder has priors")
    parser.add_argument("--verify", action="store_true",
                        help="report how often the priors' full forward pass gives the coded PMFs")
    parser.add_argument("--max-frames", type=int, help="compress at most this many frames of INPUT")
    parser.add_argument("--fps", type=float,
                        help="frame rate to record (default: the model's, else the source's, else 10)")
    parser.add_argument("--batch-size", type=int, default=4,
                        help="clips per --verify pass (default 4); the file does not depend on it")
    parser.add_argument("--coding-batch", type=int, metavar="B",
                        help="clips the priors code at once, 1 to 64 (default 32, fewer for large priors); the "
                             "file records it and decoding codes as many at once")
    parser.add_argument("--device", default="cpu", help="torch device of the VQ-VAE (default cpu)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _check_options(args: argparse.Namespace) -> None:
    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError(f"--max-frames {args.max_frames}: expected at least 1")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size {args.batch_size}: expected at least 1")
    if args.coding_batch is not None:
        from vqvid.codec.coding import check_coding_batch

        check_coding_batch(args.coding_batch, "--coding-batch")
    options.frame_rate(args.fps)
    if args.fps is not None and args.fps < MIN_FPS:
        raise ValueError(f"--fps {args.fps}: expected a frame rate of at least {MIN_FPS:g}, the least that a .vqv "
                         "header records")
    options.device(args.device)
    options.output_files([args.input, args.model], ("-o", args.output, None), ("--json", args.json, None))
    from vqvid.data.video import VIDEO_SUFFIXES

    if args.output.suffix.lower() in {*VIDEO_SUFFIXES, *options.OUTPUT_VIDEO_SUFFIXES}:
        raise ValueError(f"-o {args.output}: compress writes a .vqv file, not a video; name it .vqv "
                         "(`vqvid decompress` makes the video)")


def progress_printer(enabled: bool, label: str = "coding") -> Callable[[int, int], None] | None:
    """A `progress` callback for the codec that counts `LABEL: i/n chunks` on stderr (`vqvid.progress`), or
    None."""
    if not enabled:
        return None
    counter: Counter | None = None

    def report(done: int, total: int) -> None:
        nonlocal counter
        if counter is None:
            counter = Counter(label, total, "chunks")
        counter.update(done - counter.done)
        if done == total:
            counter.close()

    return report


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from vqvid.codec.entropy import PRECISION
    from vqvid.codec.packing import bits_per_code
    from vqvid.codec.video import compress, missing_priors
    from vqvid.data.inputs import open_video
    from vqvid.geometry import clip_geometry
    from vqvid.persistence import load_model_folder

    try:
        _check_options(args)
        folder = load_model_folder(args.model)
        geometry = clip_geometry(folder)
        video = open_video(args.input, folder.vqvae.data, geometry, args.max_frames)
        folder.vqvae.model.to(args.device)
        mode = "fixed" if args.fixed else None
        compressed = compress(folder, video.pieces, args.fps or video.fps, mode=mode, levels=args.levels,
                              verify=args.verify, batch_size=args.batch_size, coding_batch=args.coding_batch,
                              progress=progress_printer(not args.no_progress))
        with options.output_error("-o", args.output):
            compressed.write(args.output)
    except (ValueError, OSError) as error:
        print(f"vqvid compress: {error}", file=sys.stderr)
        return 2

    header = compressed.header
    width = bits_per_code(header.num_codes)
    top_codes = math.prod(geometry.top_shape)
    codes = header.num_clips * (geometry.positions if header.levels == "both" else top_codes)
    fps = float(header.fps)
    figures = {
        "frames": header.frame_count, "clips": header.num_clips, "mode": header.mode, "levels": header.levels,
        "coding_batch": header.coding_batch,
        "fps": fps, "top_layer_bytes": compressed.top_layer_size,
        "bytes": compressed.size, "bits_per_pixel": compressed.bits_per_pixel,
        "kbit_per_second": compressed.kbit_per_second, "bits_per_code": 8 * compressed.size / codes,
        "fixed_width_bytes": compressed.fixed_width_size, "fixed_width_bits_per_code": width,
        "model_bits": {"top": compressed.top_bits, "bottom": compressed.bottom_bits},
    }
    print(f"wrote {args.output}: {header.frame_count} frames of {header.width}×{header.height} at "
          f"{fps:.4g} fps in {header.num_clips} clip(s) of {header.clip_frames}, mode {header.mode}"
          + (f" ({header.coding_batch} clip(s) at a time)" if header.mode == "prior" else "") + ", "
          + ("top and bottom codes" if header.levels == "both" else "top codes only"))
    missing = missing_priors(folder, header.levels)
    if header.mode == "fixed" and missing:
        print(f"fixed width because {args.model} has no {' and no '.join(missing)} prior (`vqvid export --top "
              "... --bottom ...` adds them); the priors code both levels or, with --levels top, the top alone")
    print(f"{compressed.size} bytes: {compressed.bits_per_pixel:.4g} bits/pixel, "
          f"{compressed.kbit_per_second:.2f} kbit/s, {figures['bits_per_code']:.3f} bits/code")
    print(f"fixed-width {width}-bit codes: {compressed.fixed_width_size} bytes; this file is "
          f"{100 * compressed.size / compressed.fixed_width_size:.1f}% of that")
    if header.levels == "both":
        print(f"top layer: {compressed.top_layer_size} bytes with the header "
              f"({100 * compressed.top_layer_size / compressed.size:.1f}% of the file), what `vqvid decompress "
              "--levels top` reads for the coarse video")
    if header.mode == "prior":
        model_bytes = (compressed.top_bits + compressed.bottom_bits) / 8
        extra = compressed.size - model_bytes
        # Below the NLL only when the priors find some codes less likely than the coder's floor of one count in
        # 2^PRECISION, which caps what any code costs (`vqvid.codec.entropy`): priors that do not fit the video.
        overhead = (f"the file adds {extra:.0f}" if extra >= 0 else
                    f"the file is {-extra:.0f} bytes smaller, since the coder caps a code's cost at {PRECISION} "
                    "bits: the priors find some of these codes less likely than that")
        print(f"the priors' NLL of these codes: {model_bytes:.0f} bytes (top {compressed.top_bits / 8:.0f}, "
              f"bottom {compressed.bottom_bits / 8:.0f}); {overhead}")
    if compressed.verification is not None:
        check = compressed.verification
        figures["verified_fraction"] = check.fraction
        print(f"verified: the full forward pass gives the coded PMF at {check.matching}/{check.positions} "
              f"positions ({100 * check.fraction:.2f}%)")
    if args.json:
        from vqvid.files import write_text

        try:
            with options.output_error("--json", args.json):
                write_text(args.json, json.dumps(figures, indent=2))
        except OSError as error:
            print(f"vqvid compress: {error}", file=sys.stderr)
            return 2
    return 0

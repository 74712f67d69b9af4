"""`vqvid decompress`: a .vqv file back into a video.

    vqvid decompress clip.vqv --model MODEL_DIR -o out.mp4|out.gif [--levels top|both]

The model folder must be the one that wrote the file (its fingerprint is in the header). The frames are the
VQ-VAE's decoding of the file's codes, what `vqvid reconstruct` shows for the same video, written at the frame
rate the file records. A damaged, truncated or foreign file, or one whose decoded codes fail their checksums
(a decoder whose priors compute other probabilities than the writer's), is refused with a message naming the
chunk, and no output.

--levels top decodes the top codes alone, the coarse video (the bottom codes zeroed, as `vqvid reconstruct
--levels` shows it), reading only the file's top layer: a file cut short anywhere in its bottom layer (a copy
or download stopped there) still decodes to the coarse video. Without --levels the file's own levels are decoded: both,
or the top codes of a file written with `vqvid compress --levels top` or cut after its top layer (`vqvid info`
says which).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqvid decompress", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, help="the .vqv file")
    parser.add_argument("--model", required=True, type=Path, help="the model folder that wrote it")
    parser.add_argument("-o", "--output", required=True, type=Path, help="out.mp4, out.mkv or out.gif")
    parser.add_argument("--levels", choices=("both", "top"),
                        help="decode both levels, or the top codes alone (default: what the file holds)")
    parser.add_argument("--batch-size", type=int, default=4, help="clips per VQ-VAE decoder pass (default 4)")
    parser.add_argument("--device", default="cpu", help="torch device of the VQ-VAE (default cpu)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from vqvid.codec.container import TopLayerWholeError
    from vqvid.codec.video import TopCodesOnlyError, decompress
    from vqvid.commands import options
    from vqvid.commands.compress import progress_printer
    from vqvid.persistence import load_model_folder
    from vqvid.viz import save_video

    try:
        options.output_files([args.input, args.model], ("-o", args.output, options.OUTPUT_VIDEO_SUFFIXES))
        if args.batch_size < 1:
            raise ValueError(f"--batch-size {args.batch_size}: expected at least 1")
        options.device(args.device)
        folder = load_model_folder(args.model)
        folder.vqvae.model.to(args.device)
        decompressed = decompress(folder, args.input, levels=args.levels, batch_size=args.batch_size,
                                  progress=progress_printer(not args.no_progress, "decoding"))
        with options.output_error("-o", args.output):
            save_video(args.output, decompressed.video, float(decompressed.header.fps))
    except (ValueError, OSError) as error:
        message = str(error)
        if isinstance(error, TopCodesOnlyError):
            message += "; decode it with --levels top"
        elif isinstance(error, TopLayerWholeError) and args.levels != "top":
            message += "; decode its coarse video with --levels top"
        print(f"vqvid decompress: {message}", file=sys.stderr)
        return 2
    header = decompressed.header
    print(f"wrote {args.output}: {header.frame_count} frames of {header.width}×{header.height} at "
          f"{float(header.fps):.4g} fps from {args.input} ({header.num_clips} clip(s), mode {header.mode}, "
          + ("both levels)" if decompressed.levels == "both" else "top codes only: the coarse video)"))
    return 0


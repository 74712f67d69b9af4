"""`vqvid predict`: future frames from context frames, sampled from the priors of a model folder.

    vqvid predict --model MODEL_DIR INPUT --context 8 --frames 16 -o out.gif [--samples N] [--temperature T]
                  [--top-k K] [--seed S] [--method incremental|naive] [--json FILE]

The first --context frames of each clip of INPUT are encoded on their own; the codes after them are sampled,
top level first, then the bottom level given the top, and both are decoded. --frames counts the context too;
beyond the model's clip length the sampling window slides along (e.g. --context 8 --frames 64).
--context 0 samples unconditionally.

Panels, left to right: original | generated top with original bottom | fully generated (one per sample);
one row per clip. Prints code positions sampled per second and, for every generated frame the input covers,
PSNR against the truth next to the baseline of repeating the last context frame.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from einops import rearrange, repeat


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqvid predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="video file, frame folder, prepared store or 'synthetic'")
    parser.add_argument("--model", required=True, type=Path,
                        help="model folder with both priors (`vqvid export`)")
    parser.add_argument("-o", "--output", required=True, type=Path, help="out.gif or out.mp4")
    parser.add_argument("--context", type=int, default=8, help="frames given, a multiple of 4 (default 8)")
    parser.add_argument("--frames", type=int, default=16,
                        help="frames to output, context included (default 16)")
    parser.add_argument("--samples", type=int, default=1,
                        help="predictions per clip, one panel each (default 1)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="below 1 sharpens each code's distribution (default 1)")
    parser.add_argument("--top-k", type=int, help="draw each code from its K most likely values only")
    parser.add_argument("--seed", type=int, default=0, help="seed of every draw (default 0)")
    parser.add_argument("--method", choices=("incremental", "naive"), default="incremental",
                        help="incremental: cached sampling; naive: a full forward pass per code (reference)")
    parser.add_argument("--clips", type=int, default=1, help="predict this many clips of INPUT (default 1)")
    parser.add_argument("--fps", type=float,
                        help="frame rate of the output (default: the clips' fps, else 10)")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from vqvid.data import ClipSpec
    from vqvid.data.inputs import open_prediction_input
    from vqvid.data.sources import read_clips
    from vqvid.persistence import load_model_folder
    from vqvid.sampling.predict import check_request, padding_cost, predict
    from vqvid.viz import for_display, save_video, side_by_side, stack_rows

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        if args.clips < 1:
            raise ValueError(f"--clips {args.clips}: expected at least 1")
        from vqvid.commands import options

        options.device(device)
        options.frame_rate(args.fps)
        options.output_file(args.output, "-o", options.OUTPUT_VIDEO_SUFFIXES)
        folder = load_model_folder(args.model)
        geometry = check_request(folder, args.context, args.frames, args.samples)
        data = folder.vqvae.data
        rates = {k: data[k] for k in ("fps", "source_fps") if data.get(k) is not None}
        spec = ClipSpec(frames=args.frames, stride=args.frames, size=geometry.height, **rates)
        dataset, spec = open_prediction_input(args.input, spec, geometry.clip_frames)
        clips = torch.stack(read_clips(dataset, args.clips, "predict"))  # (B, 3, T, H, W)
        for part in (folder.vqvae, folder.top, folder.bottom):
            part.model.to(device)
        prediction = predict(folder, clips, args.context, args.frames, samples=args.samples,
                             temperature=args.temperature, top_k=args.top_k, seed=args.seed,
                             method=args.method, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as error:
        print(f"vqvid predict: {error}", file=sys.stderr)
        return 2

    video, generated_top = prediction.video.cpu(), prediction.generated_top
    generated_top = generated_top.cpu() if generated_top is not None else None
    rows = []
    for i, clip in enumerate(clips):
        panels = [clip] + ([generated_top[i, 0]] if generated_top is not None else []) + list(video[i])
        rows.append(side_by_side(panels))
    save_video(args.output, for_display(stack_rows(rows)), args.fps or spec.fps or 10.0)
    b, _, t, h, w = clips.shape
    print(f"wrote {args.output}: {b} clip(s), {args.context} context + {args.frames - args.context} "
          f"generated frames of {h}×{w}; panels: original | generated top with original bottom | "
          f"{args.samples} fully generated")
    print(f"sampled {prediction.positions:,} code positions in {prediction.seconds:.1f} s: "
          f"{prediction.positions_per_second:,.0f} positions/s ({args.method})")

    figures = {"context": args.context, "frames": args.frames, "samples": args.samples, "clips": b,
               "method": args.method, "positions": prediction.positions, "seconds": prediction.seconds,
               "positions_per_second": prediction.positions_per_second}
    figures["psnr_per_frame"] = _psnr_table(clips, video, generated_top, args.context)
    if args.context and t >= geometry.clip_frames:
        cost = padding_cost(folder.vqvae.model, clips[:, :, : geometry.clip_frames].to(device), args.context)
        figures["padding_cost"] = cost._asdict()
        print(f"context frames reconstructed from codes of the context alone: {cost.padded_psnr:.2f} dB, "
              f"from codes of the whole clip: {cost.whole_clip_psnr:.2f} dB "
              f"({100 * cost.top_changed:.1f}% of top, {100 * cost.bottom_changed:.1f}% of bottom context "
              "codes differ)")
    _print_table(figures["psnr_per_frame"])
    if args.json:
        from vqvid.files import write_text

        write_text(args.json, json.dumps(figures, indent=2))
    return 0


def _psnr_table(clips: torch.Tensor, video: torch.Tensor, generated_top: torch.Tensor | None,
                context: int) -> dict[str, list[float]]:
    """Per-frame PSNR (dB, mean over clips and samples) of each generated frame the input covers:
    clips (B, 3, T, H, W), video and generated_top (B, S, 3, F, H, W)."""
    from vqvid.metrics import psnr_per_frame

    samples = video.shape[1]
    end = min(clips.shape[2], video.shape[3])
    truth = repeat(clips[:, :, context:end], "b c t h w -> (b s) c t h w", s=samples)
    flat = lambda v: rearrange(v[:, :, :, context:end], "b s c t h w -> (b s) c t h w")
    table = {"frame": list(range(context, end)), "generated": psnr_per_frame(flat(video), truth).tolist()}
    if generated_top is not None:  # covers the same frames: clips and frames are both multiples of 4 long
        table["generated_top"] = psnr_per_frame(flat(generated_top), truth).tolist()
    if context:
        last = repeat(clips[:, :, context - 1], "b c h w -> b c t h w", t=end - context)
        table["copy_last"] = psnr_per_frame(last, clips[:, :, context:end]).tolist()
    return table


def _print_table(table: dict[str, list[float]]) -> None:
    names = {"generated": "generated", "generated_top": "gen. top + orig. bottom",
             "copy_last": "copy last frame"}
    columns = [name for name in names if name in table]
    widths = [max(len(names[c]), 7) for c in columns]
    row = lambda first, cells: first + "  ".join(f"{cell:>{width}}" for cell, width in zip(cells, widths,
                                                                                             strict=True))
    print("PSNR (dB) per frame against the truth:")
    print(row("frame  ", [names[c] for c in columns]))
    for i, frame in enumerate(table["frame"]):
        print(row(f"{frame:5d}  ", [f"{table[c][i]:.2f}" for c in columns]))
    print(row(" mean  ", [f"{sum(table[c]) / len(table[c]):.2f}" for c in columns]))

"""`vqvid reconstruct`: encode a video to codes and decode it again; write the panels side by side.

    vqvid reconstruct --vqvae CKPT_OR_MODEL_DIR INPUT -o out.gif        input | reconstruction
    vqvid reconstruct --vqvae CKPT INPUT -o out.mp4 --levels             input | top only | bottom only

INPUT is cut into consecutive clips of the model's clip length; the panels play them one after another.
Prints PSNR and SSIM of the reconstruction and the size of the codes against raw 8-bit RGB.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NamedTuple

import torch


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqvid reconstruct", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="video file, frame folder, prepared store or 'synthetic'")
    parser.add_argument("--vqvae", required=True, type=Path, help="VQ-VAE checkpoint (.ckpt) or model folder")
    parser.add_argument("-o", "--output", required=True, type=Path, help="out.gif or out.mp4")
    parser.add_argument("--levels", action="store_true", help="panels input | top only | bottom only")
    parser.add_argument("--max-clips", type=int, default=8, help="reconstruct at most this many clips (default 8)")
    parser.add_argument("--fps", type=float, help="frame rate of the output (default: the clips' fps, else 10)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return parser


class Reconstructed(NamedTuple):
    videos: torch.Tensor  # (N, 3, T, H, W) in [-1, 1], decoded from both levels
    panels: list[list[torch.Tensor]]  # per clip, the 3×T×H×W videos shown side by side
    codes_used: dict[str, int]  # distinct codes seen per level


def reconstruct(model, clips: torch.Tensor, levels: bool, batch_size: int, device: str) -> Reconstructed:
    """Encode and decode clips (N,3,T,H,W) in [-1,1] in batches.

    Panels are input | reconstruction, or with `levels` input | top only | bottom only (the other level zeroed).
    """
    clean = lambda video: video.float().clamp(-1, 1).cpu()
    full, panels, used = [], [], {"top": set(), "bottom": set()}
    with torch.no_grad():
        for batch in clips.split(batch_size):
            codes = model.encode(batch.to(device))
            used["top"].update(codes.top.unique().tolist())
            used["bottom"].update(codes.bottom.unique().tolist())
            outputs = [clean(model.decode_codes(codes.top, codes.bottom))]
            full.append(outputs[0])
            if levels:
                outputs = [clean(model.decode_codes(codes.top, None)), clean(model.decode_codes(None, codes.bottom))]
            panels += [[batch[i].cpu()] + [o[i] for o in outputs] for i in range(batch.shape[0])]
    return Reconstructed(torch.cat(full), panels, {level: len(codes) for level, codes in used.items()})


def _check_options(args: argparse.Namespace) -> None:
    from vqvid.commands import options

    options.at_least(args.max_clips, 1, "--max-clips")
    options.at_least(args.batch_size, 1, "--batch-size")
    options.frame_rate(args.fps)
    options.device(args.device)
    options.output_file(args.output, "-o", options.OUTPUT_VIDEO_SUFFIXES)
    if args.json is not None:
        options.output_file(args.json, "--json")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from vqvid import metrics
    from vqvid.data import DataError, open_clips
    from vqvid.data.sources import read_clips
    from vqvid.persistence import load_vqvae
    from vqvid.viz import for_display, save_video, side_by_side

    try:
        _check_options(args)
        loaded = load_vqvae(args.vqvae)
        spec = loaded.clip_spec(whole_clips=True)
        dataset = open_clips(args.input, spec)
        clips = torch.stack(read_clips(dataset, args.max_clips, "reconstruct"))  # (N, 3, T, H, W)
    except (ValueError, FileNotFoundError, DataError) as error:
        print(f"vqvid reconstruct: {error}", file=sys.stderr)
        return 2
    model = loaded.model.to(args.device)
    n = len(clips)
    full, panels, used = reconstruct(model, clips, args.levels, args.batch_size, args.device)
    _, _, t, h, w = clips.shape
    top_shape, bottom_shape = model.grid_shapes(t, h, w)
    psnr, ssim = metrics.psnr(full, clips), metrics.ssim(full, clips)
    size = metrics.code_size(t, h, w, top_shape, bottom_shape, loaded.config.num_codes)
    video = torch.cat([side_by_side(p) for p in panels], dim=1)  # clips one after another in time
    fps = args.fps or spec.fps or 10.0
    save_video(args.output, for_display(video), fps)
    print(f"wrote {args.output} ({n} clip(s) of {t}×{h}×{w}; panels: "
          f"{'input | top only | bottom only' if args.levels else 'input | reconstruction'})")
    print(f"PSNR {psnr:.2f} dB   SSIM {ssim:.4f}")
    usage = {level: count / loaded.config.num_codes for level, count in used.items()}
    print(f"per clip: {size}")
    print(f"codes used: top {used['top']}/{loaded.config.num_codes}, bottom {used['bottom']}/{loaded.config.num_codes}")
    if args.json:
        from vqvid.files import write_text

        write_text(args.json, json.dumps({
            "psnr": psnr, "ssim": ssim, "clips": n, "code_bits": size.code_bits,
            "raw_bits": size.raw_bits, "reduction": size.reduction,
            "codebook_usage": usage}, indent=2))
    return 0

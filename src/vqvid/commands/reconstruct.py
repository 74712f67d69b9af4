"""`vqvid reconstruct`: encode a video to codes and decode it again; write the panels side by side.

    vqvid reconstruct --vqvae CKPT_OR_MODEL_DIR INPUT -o out.gif        input | reconstruction
    vqvid reconstruct --vqvae CKPT INPUT -o out.mp4 --levels             input | top only | bottom only

INPUT is cut into consecutive clips of the model's clip length; the panels play them one after another.
Prints PSNR and SSIM of the reconstruction and the size of the codes against raw 8-bit RGB. With --levels also
prints (and --json writes) what each level carries: PSNR decoded from both levels, from the top codes alone,
from the bottom codes alone, and from each clip's bottom codes with another clip's top codes (top swap: its
cost in dB is near 0 when the top level carries nothing), next to each clip's mean colour; and the share of top
codes that differ from the code in their place one latent frame before (how much the top level changes over time,
which its prior must predict).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NamedTuple

import torch

from vqvid.commands import options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqvid reconstruct", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="video file, frame folder, prepared store or 'synthetic'")
    parser.add_argument("--vqvae", required=True, type=Path, help="VQ-VAE checkpoint (.ckpt) or model folder")
    parser.add_argument("-o", "--output", required=True, type=Path, help="out.gif or out.mp4")
    parser.add_argument("--levels", action="store_true", help="panels input | top only | bottom only")
    parser.add_argument("--max-clips", type=int, default=8, help="reconstruct at most this many clips (default 8)")
    parser.add_argument("--fps", type=float,
                        help=f"frame rate of the output (default: the input's: {options.INPUT_FPS_HELP})")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return parser


class Reconstructed(NamedTuple):
    videos: torch.Tensor  # (N, 3, T, H, W) in [-1, 1], decoded from both levels
    panels: list[list[torch.Tensor]]  # per clip, the 3×T×H×W videos shown side by side
    codes_used: dict[str, int]  # distinct codes seen per level
    levels: LevelFigures | None  # with `levels` only


class LevelFigures(NamedTuple):
    """What each code level carries, as PSNR (dB) over N clips against their input."""

    both: float  # decoded from both levels: the reconstruction
    top_only: float  # top codes with zeros for the bottom vectors
    bottom_only: float  # bottom codes with zeros for the top vectors
    # each clip's own bottom codes with the top codes of the clip N/2 further on (cyclically: neighbouring clips
    # often come from one video); None for N = 1
    top_swap: float | None
    mean_colour: float  # each clip replaced by its mean colour: what carrying no structure scores
    # share of top codes unlike the code in their place one latent frame before; None for one latent frame
    top_changed: float | None

    @property
    def top_swap_cost(self) -> float | None:
        """dB lost by swapping the top codes: near 0 when the top level carries nothing."""
        return None if self.top_swap is None else self.both - self.top_swap


def reconstruct(model, clips: torch.Tensor, levels: bool, batch_size: int, device: str) -> Reconstructed:
    """Encode and decode clips (N,3,T,H,W) in [-1,1] in batches.

    Panels are input | reconstruction, or with `levels` input | top only | bottom only (the other level zeroed),
    and `levels` also measures `LevelFigures`.
    """
    from vqvid import metrics

    def decode(top: torch.Tensor | None, bottom: torch.Tensor | None) -> torch.Tensor:
        """(N, 3, T, H, W) in [-1, 1] on the CPU, decoded in batches; None zeroes a level."""
        n = len(top if top is not None else bottom)
        part = lambda codes, i: None if codes is None else codes[i : i + batch_size]
        return torch.cat([model.decode_codes(part(top, i), part(bottom, i)).float().clamp(-1, 1).cpu()
                          for i in range(0, n, batch_size)])

    with torch.no_grad():
        codes = [model.encode(batch.to(device)) for batch in clips.split(batch_size)]
        top = torch.cat([c.top for c in codes])  # (N, T/4, H/8, W/8)
        bottom = torch.cat([c.bottom for c in codes])  # (N, T/2, H/4, W/4)
        full = decode(top, bottom)
        outputs, figures = [full], None
        if levels:
            top_only = decode(top, None)
            bottom_only = decode(None, bottom)
            outputs = [top_only, bottom_only]
            swap = decode(top.roll(-(len(clips) // 2), 0), bottom) if len(clips) > 1 else None
            mean_colour = clips.float().mean(dim=(2, 3, 4), keepdim=True).expand_as(clips)
            figures = LevelFigures(
                both=metrics.psnr(full, clips), top_only=metrics.psnr(top_only, clips),
                bottom_only=metrics.psnr(bottom_only, clips),
                top_swap=metrics.psnr(swap, clips) if swap is not None else None,
                mean_colour=metrics.psnr(mean_colour, clips),
                top_changed=(top[:, 1:] != top[:, :-1]).float().mean().item() if top.shape[1] > 1 else None)
    panels = [[clips[i].cpu()] + [o[i] for o in outputs] for i in range(len(clips))]
    used = {"top": len(top.unique()), "bottom": len(bottom.unique())}
    return Reconstructed(full, panels, used, figures)


def _check_options(args: argparse.Namespace) -> None:
    options.at_least(args.max_clips, 1, "--max-clips")
    options.at_least(args.batch_size, 1, "--batch-size")
    options.frame_rate(args.fps)
    options.device(args.device)
    options.output_files([args.input, args.vqvae], ("-o", args.output, options.OUTPUT_VIDEO_SUFFIXES),
                         ("--json", args.json, None))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from vqvid import metrics
    from vqvid.data import DataError, open_clips
    from vqvid.data.inputs import clips_fps
    from vqvid.data.sources import read_clips
    from vqvid.persistence import load_vqvae
    from vqvid.viz import for_display, save_video, side_by_side

    try:
        _check_options(args)
        loaded = load_vqvae(args.vqvae)
        spec = loaded.clip_spec(whole_clips=True)
        dataset = open_clips(args.input, spec)
        clips = torch.stack(read_clips(dataset, args.max_clips, "reconstruct"))  # (N, 3, T, H, W)
        fps = args.fps or float(clips_fps(dataset))
    except (ValueError, FileNotFoundError, DataError) as error:
        print(f"vqvid reconstruct: {error}", file=sys.stderr)
        return 2
    model = loaded.model.to(args.device)
    n = len(clips)
    full, panels, used, levels = reconstruct(model, clips, args.levels, args.batch_size, args.device)
    _, _, t, h, w = clips.shape
    top_shape, bottom_shape = model.grid_shapes(t, h, w)
    psnr, ssim = metrics.psnr(full, clips), metrics.ssim(full, clips)
    size = metrics.code_size(t, h, w, top_shape, bottom_shape, loaded.config.num_codes)
    video = torch.cat([side_by_side(p) for p in panels], dim=1)  # clips one after another in time
    save_video(args.output, for_display(video), fps)
    print(f"wrote {args.output} at {fps:.4g} fps ({n} clip(s) of {t}×{h}×{w}; panels: "
          f"{'input | top only | bottom only' if args.levels else 'input | reconstruction'})")
    print(f"PSNR {psnr:.2f} dB   SSIM {ssim:.4f}")
    usage = {level: count / loaded.config.num_codes for level, count in used.items()}
    print(f"per clip: {size}")
    print(f"codes used: top {used['top']}/{loaded.config.num_codes}, bottom {used['bottom']}/{loaded.config.num_codes}")
    figures = {"psnr": psnr, "ssim": ssim, "clips": n, "code_bits": size.code_bits, "raw_bits": size.raw_bits,
               "reduction": size.reduction, "codebook_usage": usage}
    if levels is not None:
        figures["levels"] = {**levels._asdict(), "top_swap_cost": levels.top_swap_cost}
        swap = ("n/a (one clip)" if levels.top_swap is None else
                f"{levels.top_swap:.2f} dB (costs {levels.top_swap_cost:.2f} dB)")
        print(f"levels, PSNR: both {levels.both:.2f} dB   top only {levels.top_only:.2f} dB   bottom only "
              f"{levels.bottom_only:.2f} dB   another clip's top codes {swap}   mean colour "
              f"{levels.mean_colour:.2f} dB")
        if levels.top_changed is not None:
            print(f"top codes changed from one latent frame to the next: {100 * levels.top_changed:.1f}%")
    if args.json:
        from vqvid.files import write_text

        write_text(args.json, json.dumps(figures, indent=2))
    return 0

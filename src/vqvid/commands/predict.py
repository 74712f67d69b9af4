"""`vqvid predict`: future frames from context frames, sampled from the priors of a model folder.

    vqvid predict --model MODEL_DIR INPUT --context 8 --frames 16 -o out.gif [--samples N]
                  [--decoding mean|sample] [--anchor warp|last|none] [--warp-radius PIXELS] [--temperature T]
                  [--bottom-temperature T] [--reader-temperature T] [--top-k K] [--seed S]
                  [--method fused|incremental|naive] [--json FILE] [--save-samples FILE.pt] [--no-reader]

The first --context frames of each clip of INPUT are encoded on their own; the codes after them are sampled,
top level first, then the bottom level given the top, and both are decoded. The top codes come from the model
folder's context reader where it has one that reads --context frames (`vqvid train reader`; it reads the
context's frames, and keeps more of the shapes than the top prior does: docs/prediction.md), by default its
most likely codes (--reader-temperature 0) read once (--reader-passes 2 reads again for the later latent frames),
else, or with --no-reader, from the top prior. --frames counts the context too; beyond the model's clip length
the sampling window slides along (e.g. --context 8 --frames 64). --context 0 samples unconditionally.

The prediction (--decoding mean, the default) is the pixel mean of --samples decoded samples (8): of all
predictions made from those samples, the one with the least expected squared error under the model, where one
sample is a plausible future that a PSNR measure punishes for every detail placed differently
(docs/prediction.md). --decoding sample shows the samples themselves.

--anchor last (the default) anchors every generated frame on the last context frame: where its decoding has not
changed since that frame, it is that frame plus the change the decoded codes show, so the detail that the codes
lose of whatever does not move comes from the input instead of being lost. --anchor warp shows every generated
frame as the last context frame moved the way the decoded samples move (searched up to --warp-radius pixels a
frame); it scores higher, but as much with barely trained priors as with trained ones (docs/prediction.md).
Either way the context frames shown are the input's. --anchor none shows every frame as the codes decode it.

Panels, left to right: original | generated top with original bottom | the mean of the samples and the first
four samples (--decoding mean), or every sample (--decoding sample); one row per clip. Prints code positions
sampled per second and, for every generated frame the input covers, PSNR and SSIM against the truth of: the
mean of the samples, single samples, the best of the N samples per clip (an oracle, the usual figure of
stochastic video prediction), the sampled top with the true bottom codes, repeating the last context frame,
and (when anchored) the mean of the samples as the codes alone decode them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
from einops import rearrange, repeat

from vqvid.commands import options
from vqvid.sampling.predict import ANCHOR_TOLERANCE, ANCHORS, DEFAULT_ANCHOR, WARP_RADIUS

# The default decoding: the pixel mean of 8 decoded samples at temperature 0.5, the best of the decodings
# measured on the demo's held-out clips (docs/prediction.md has the table).
DEFAULT_SAMPLES = 8
DEFAULT_TEMPERATURE = 0.5
# The context reader's most likely codes, read once: on the demo's 8 held-out clips they keep 53% of the shapes in
# place and 75% as themselves (22.32 dB), drawn at 0.5 49% and 72% (22.70 dB); on 16, 48% and 76% (21.41 dB)
# against 47% and 72% (21.74 dB), copy-last keeping 41% and 77% (docs/prediction.md, "The context reader in
# vqvid"). The samples then differ in their bottom codes only.
DEFAULT_READER_TEMPERATURE = 0.0
# One reading: reading twice kept 2 points more of the shapes as themselves in the demo at VQ-VAE seed 0 (77%
# against 75%; 16 clips 78% against 76%) but 2 fewer at seeds 1 and 2 (74% against 76%, 65% against 67%), for
# 0.03-0.12 dB less and a latent frame's bottom codes drawn twice (docs/prediction.md, "Reading twice").
DEFAULT_READER_PASSES = 1
DECODINGS = ("mean", "sample")
SAMPLE_PANELS = 4  # samples shown next to the mean


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
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                        help=f"samples per clip (default {DEFAULT_SAMPLES})")
    parser.add_argument("--decoding", choices=DECODINGS, default="mean",
                        help="what the output shows as the prediction: 'mean', the pixel mean of the decoded "
                             "samples (default), or 'sample', each sample on its own")
    parser.add_argument("--anchor", choices=ANCHORS, default=DEFAULT_ANCHOR,
                        help="'last': where the decoding has not changed since the last context frame, a "
                             "generated frame is that frame plus the decoded change (default); 'warp': each "
                             "generated frame is the last context frame moved as the decoding moves; 'none': the "
                             "frames as the codes decode them")
    parser.add_argument("--warp-radius", type=int, default=WARP_RADIUS, metavar="PIXELS",
                        help="--anchor warp: the largest motion per frame searched, in pixels each way; the "
                             f"search costs (2 × PIXELS + 1)² comparisons a frame (default {WARP_RADIUS})")
    parser.add_argument("--anchor-tolerance", type=float, default=ANCHOR_TOLERANCE, metavar="CHANGE",
                        help="--anchor last: how much a pixel's decoding (mean over RGB, on [-1, 1]) may change "
                             "before the anchor lets go of it; inf anchors every pixel (default "
                             f"{ANCHOR_TOLERANCE:g})")
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE,
                        help=f"below 1 sharpens each code's distribution (default {DEFAULT_TEMPERATURE:g})")
    parser.add_argument("--bottom-temperature", type=float,
                        help="temperature of the bottom prior alone (default: --temperature); lower keeps "
                             "single samples' detail closer to the most likely one")
    parser.add_argument("--reader-temperature", type=float, default=DEFAULT_READER_TEMPERATURE,
                        help="temperature of the context reader alone, where the model folder has one; 0 takes "
                             f"its most likely codes (default {DEFAULT_READER_TEMPERATURE:g})")
    parser.add_argument("--reader-passes", type=int, choices=(1, 2), default=DEFAULT_READER_PASSES,
                        help="2: the context reader reads again for each later latent frame of a window, from the "
                             "frames just before it, the bottom codes drawn again after it; 1: it reads once "
                             f"(default {DEFAULT_READER_PASSES})")
    parser.add_argument("--top-k", type=int, help="draw each code from its K most likely values only")
    parser.add_argument("--seed", type=int, default=0, help="seed of every draw (default 0)")
    parser.add_argument("--method", choices=("fused", "incremental", "naive"), default="fused",
                        help="fused: cached sampling with each position's layers fused (default); incremental: "
                             "the same caches through the prior's modules; naive: a full forward pass per code "
                             "(reference)")
    parser.add_argument("--clips", type=int, default=1,
                        help="predict this many clips of INPUT, or all it holds if fewer (default 1)")
    parser.add_argument("--fps", type=float,
                        help=f"frame rate of the output (default: the input's: {options.INPUT_FPS_HELP})")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--save-samples", type=Path, metavar="FILE.pt",
                        help="also write the clips (B, 3, T, H, W), the samples as shown (B, S, 3, T', H, W), "
                             "the sampled tops decoded with the true bottom codes (or None) and, when anchored, "
                             "the samples as the codes alone decode them (else None), unbounded float32 on the "
                             "scale of [-1, 1], to this torch file (torch.load), for measures of your own")
    parser.add_argument("--no-reader", action="store_true",
                        help="sample the top codes from the top prior even where the model folder has a context "
                             "reader")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from vqvid.data import ClipSpec
    from vqvid.data.inputs import clips_fps, open_prediction_input
    from vqvid.data.sources import read_clips
    from vqvid.models.vqvae import TIME_FACTOR
    from vqvid.persistence import load_model_folder
    from vqvid.sampling.predict import check_request, padding_cost, predict
    from vqvid.viz import for_display, save_video, side_by_side, stack_rows

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        if args.clips < 1:
            raise ValueError(f"--clips {args.clips}: expected at least 1")
        if args.samples < 1:
            raise ValueError(f"--samples {args.samples}: expected at least 1")
        if args.top_k is not None and args.top_k < 1:
            raise ValueError(f"--top-k {args.top_k}: expected at least 1 (1: the most likely code)")
        for option, value in (("--temperature", args.temperature), ("--bottom-temperature", args.bottom_temperature)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{option} {value}: expected a positive number")
        if not (math.isfinite(args.reader_temperature) and args.reader_temperature >= 0):
            raise ValueError(f"--reader-temperature {args.reader_temperature}: expected 0 (the most likely codes) "
                             "or a positive number")
        if not args.anchor_tolerance > 0:  # inf is welcome: no gate
            raise ValueError(f"--anchor-tolerance {args.anchor_tolerance}: expected a positive number or inf")
        if args.warp_radius < 0:
            raise ValueError(f"--warp-radius {args.warp_radius}: expected 0 or more pixels")
        options.device(device)
        options.frame_rate(args.fps)
        options.output_files([args.input, args.model], ("-o", args.output, options.OUTPUT_VIDEO_SUFFIXES),
                             ("--save-samples", args.save_samples, (".pt",)), ("--json", args.json, None))
        folder = load_model_folder(args.model)
        geometry = check_request(folder, args.context, args.frames, args.samples, named=lambda name: f"--{name} ")
        num_codes = folder.vqvae.config.num_codes
        if args.top_k is not None and args.top_k > num_codes:
            raise ValueError(f"--top-k {args.top_k}: the model has {num_codes} codes per level; expected at most "
                             "that")
        data = folder.vqvae.data
        rates = {k: data[k] for k in ("fps", "source_fps") if data.get(k) is not None}
        spec = ClipSpec(frames=args.frames, stride=args.frames, size=geometry.height, **rates)
        dataset, spec = open_prediction_input(args.input, spec, geometry.clip_frames, TIME_FACTOR)
        clips = torch.stack(read_clips(dataset, args.clips, "predict"))  # (B, 3, T, H, W)
        if len(dataset) < args.clips:
            print(f"{args.input}: holds {len(dataset)} clip(s) of {spec.frames} frames, fewer than --clips "
                  f"{args.clips}; predicting {len(clips)}")
        fps = args.fps or float(clips_fps(dataset))
        for part in (folder.vqvae, folder.top, folder.bottom, folder.reader):
            if part is not None:
                part.model.to(device)
        prediction = predict(folder, clips, args.context, args.frames, samples=args.samples,
                             temperature=args.temperature, top_k=args.top_k, seed=args.seed,
                             method=args.method, progress=not args.no_progress,
                             bottom_temperature=args.bottom_temperature, anchor=args.anchor,
                             anchor_tolerance=args.anchor_tolerance, warp_radius=args.warp_radius,
                             reader=False if args.no_reader else None, reader_temperature=args.reader_temperature,
                             reader_passes=args.reader_passes)
    except (ValueError, FileNotFoundError) as error:
        print(f"vqvid predict: {error}", file=sys.stderr)
        return 2

    video, generated_top = prediction.video.cpu(), prediction.generated_top
    generated_top = generated_top.cpu() if generated_top is not None else None
    decoded = prediction.decoded.cpu() if prediction.anchored else None
    rows = []
    for i, clip in enumerate(clips):
        panels = [clip] + ([generated_top[i, 0]] if generated_top is not None else [])
        if args.decoding == "mean":
            panels += [video[i].clamp(-1, 1).mean(0), *video[i, :SAMPLE_PANELS]]
        else:
            panels += list(video[i])
        rows.append(side_by_side(panels))
    save_video(args.output, for_display(stack_rows(rows)), fps)
    b, _, t, h, w = clips.shape
    shown = (f"mean of {args.samples} samples | {min(args.samples, SAMPLE_PANELS)} of the samples"
             if args.decoding == "mean" else f"{args.samples} samples")
    print(f"wrote {args.output} at {fps:.4g} fps: {b} clip(s), {args.context} context + "
          f"{args.frames - args.context} generated frames of {h}×{w}; panels: original | generated top with "
          f"original bottom | {shown}")
    print(f"sampled {prediction.positions:,} code positions in {prediction.seconds:.1f} s: "
          f"{prediction.positions_per_second:,.0f} positions/s ({args.method}); top codes after the context "
          f"from the {_windows_from(prediction.top_from)}")

    figures = {"context": args.context, "frames": args.frames, "samples": args.samples, "clips": b,
               "method": args.method, "temperature": args.temperature, "top_k": args.top_k,
               "anchor": prediction.anchor, "warp_radius": args.warp_radius,
               # null: the known error added to every pixel (--anchor-tolerance inf)
               "anchor_tolerance": None if math.isinf(args.anchor_tolerance) else args.anchor_tolerance,
               "bottom_temperature": args.bottom_temperature if args.bottom_temperature is not None
               else args.temperature,
               # where the top codes after the context come from the context reader (top_codes_from)
               "reader_temperature": args.reader_temperature, "reader_passes": args.reader_passes,
               # the table that holds the figures of what the output shows as the prediction
               "decoding": {"mean": "mean_of_n", "sample": "generated"}[args.decoding],
               "positions": prediction.positions, "seconds": prediction.seconds,
               "positions_per_second": prediction.positions_per_second,
               "top_codes_from": list(prediction.top_from)}
    figures.update(quality_tables(clips, video, generated_top, args.context, decoded))
    if args.context and t >= geometry.clip_frames:
        cost = padding_cost(folder.vqvae.model, clips[:, :, : geometry.clip_frames].to(device), args.context)
        figures["padding_cost"] = cost._asdict()
        print(f"context frames reconstructed from codes of the context alone: {cost.padded_psnr:.2f} dB, "
              f"from codes of the whole clip: {cost.whole_clip_psnr:.2f} dB "
              f"({100 * cost.top_changed:.1f}% of top, {100 * cost.bottom_changed:.1f}% of bottom context "
              "codes differ)")
    _print_table(figures["psnr_per_frame"], "PSNR (dB)")
    _print_table(figures["ssim_per_frame"], "SSIM")
    if args.json:
        from vqvid.files import write_text

        write_text(args.json, json.dumps(figures, indent=2))
    if args.save_samples is not None:
        from vqvid.files import atomic_path

        with atomic_path(args.save_samples) as partial:
            torch.save({"clips": clips, "samples": video, "generated_top": generated_top, "decoded": decoded,
                        "context": args.context}, partial)
    return 0


def _windows_from(top_from: tuple[str, ...]) -> str:
    """'context reader', 'top prior', or per window when they differ."""
    if len(set(top_from)) == 1:
        return "context reader" if top_from[0] == "reader" else top_from[0]
    return "windows' " + ", ".join(top_from)


def readings(clips: torch.Tensor, video: torch.Tensor, generated_top: torch.Tensor | None,
             context: int, decoded: torch.Tensor | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Every way of reading the S samples, as (prediction, truth) pairs over the generated frames the input
    covers: clips (B, 3, T, H, W), video, generated_top and decoded (B, S, 3, F, H, W). Single samples
    ("generated", "generated_top") come as B*S rows, clip-major; the others as B rows.

    - generated: each sample on its own;
    - best_of_n: per clip the sample with the highest mean PSNR over these frames (an oracle that knows the
      truth: the standard figure of stochastic video prediction, e.g. SVG, Denton & Fergus 2018, and SAVP,
      Lee et al. 2018);
    - mean_of_n: per clip the pixel mean of its S samples (as shown: anchored when `video` is);
    - generated_top: the sampled top codes decoded with the input's own bottom codes;
    - copy_last: the last context frame repeated (needs context > 0);
    - mean_of_n_decoded: when `decoded` (the samples as the codes alone decode them, where `video` is anchored
      on the context) is given, per clip the pixel mean of those.
    """
    from vqvid.metrics import psnr_per_frame

    b, samples = video.shape[:2]
    end = min(clips.shape[2], video.shape[3])
    truth = clips[:, :, context:end]  # (B, 3, F', H, W)
    each = lambda v: rearrange(v[:, :, :, context:end], "b s c t h w -> (b s) c t h w")
    truth_each = repeat(truth, "b c t h w -> (b s) c t h w", s=samples)
    # per clip and sample, mean PSNR over the generated frames: picks the best-of-N sample
    per_sample = torch.stack([psnr_per_frame(each(video)[i : i + 1], truth_each[i : i + 1]).mean()
                              for i in range(b * samples)]).view(b, samples)
    best = video[torch.arange(b), per_sample.argmax(1)]  # (B, 3, F, H, W)
    candidates = {
        "generated": (each(video), truth_each),
        "best_of_n": (best[:, :, context:end], truth),
        "mean_of_n": (video.clamp(-1, 1).mean(1)[:, :, context:end], truth),
    }
    if generated_top is not None:  # covers the same frames: clips and frames are both multiples of 4 long
        candidates["generated_top"] = (each(generated_top), truth_each)
    if context:
        candidates["copy_last"] = (repeat(clips[:, :, context - 1], "b c h w -> b c t h w", t=end - context), truth)
    if decoded is not None:
        candidates["mean_of_n_decoded"] = (decoded.clamp(-1, 1).mean(1)[:, :, context:end], truth)
    return candidates


def quality_tables(clips: torch.Tensor, video: torch.Tensor, generated_top: torch.Tensor | None,
                   context: int, decoded: torch.Tensor | None = None) -> dict[str, dict[str, list[float]]]:
    """Per-frame PSNR (dB) and SSIM of each generated frame the input covers, for every reading of the samples
    (`readings`), averaged over clips (and samples)."""
    from vqvid.metrics import psnr_per_frame, ssim_per_frame

    candidates = readings(clips, video, generated_top, context, decoded)
    frames = list(range(context, context + candidates["mean_of_n"][1].shape[2]))
    return {
        "psnr_per_frame": {"frame": frames, **{name: psnr_per_frame(v, t).tolist()
                                               for name, (v, t) in candidates.items()}},
        "ssim_per_frame": {"frame": frames, **{name: ssim_per_frame(v, t).tolist()
                                               for name, (v, t) in candidates.items()}},
    }


def _print_table(table: dict[str, list[float]], measure: str) -> None:
    names = {"generated": "sampled", "best_of_n": "best of N", "mean_of_n": "mean of N",
             "generated_top": "gen. top + orig. bottom", "copy_last": "copy last frame",
             "mean_of_n_decoded": "mean, codes alone"}
    columns = [name for name in names if name in table]
    widths = [max(len(names[c]), 7) for c in columns]
    row = lambda first, cells: first + "  ".join(f"{cell:>{width}}" for cell, width in zip(cells, widths,
                                                                                             strict=True))
    digits = 2 if measure.startswith("PSNR") else 4
    print(f"{measure} per frame against the truth:")
    print(row("frame  ", [names[c] for c in columns]))
    for i, frame in enumerate(table["frame"]):
        print(row(f"{frame:5d}  ", [f"{table[c][i]:.{digits}f}" for c in columns]))
    print(row(" mean  ", [f"{sum(table[c]) / len(table[c]):.{digits}f}" for c in columns]))

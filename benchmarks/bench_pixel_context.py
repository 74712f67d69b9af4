"""What the context's frames tell of the next top codes: a probe for a top predictor that reads the video.

The demo's top prior continues the context's top codes barely nearer the truth than repeating their last latent
frame where the shapes are, even after ten times its training (docs/prediction.md, "Where the shapes are"). It
reads only top codes, each 8×8 pixels of 4 frames, in which a shape's place and speed are blurred. This probe
trains a network that reads the context's frames themselves instead: frames 0-7 of a clip, three strided 3D
convolutions down to the top grid, six residual 3×3 convolutions, and a softmax over the codes of latent frames 2
and 3 (frames 8-15) at every position, all at once. It trains on fresh clips of the demo's generator at every
step (another seed than the demo's sets, so it can neither see the held-out clips nor overfit), its targets the
demo VQ-VAE's top codes of the whole clips; with `--clips N` it trains on the first N clips of vqvid's
synthetic training split instead (`synthetic:N`, e.g. the demo priors' 2,048), as a user's store of clips would
be, over and over. On bench_prediction's held-out clips (`--videos` videos of the
demo's held-out generator, two clips each) it then measures:

- code space: the mean squared codebook distance of its most likely codes to the whole clip's, where the
  generator's shapes are and elsewhere (as `bench_prediction.py --levels`), against repeating the context's last
  latent frame and against the top prior's samples (`vqvid predict`'s);
- through the bottom prior: its most likely top codes after the context's own, the demo's bottom prior sampling
  `--samples` bottoms given them after the context's own bottom codes (T = 0.5), decoded and anchored on frame 7
  as `vqvid predict` does; PSNR and the shapes kept, in place and as themselves (`shape_scores(..., stray=1)`),
  against the priors' own prediction and copy-last.

A probe, not part of vqvid, for the demo's 16×64×64 geometry only: one top future per clip (the argmax), or
with `--temperature T` one per sample, each position drawn on its own from the reader's softmax at T (no
position sees what another drew: what a reader that does not sample autoregressively gives).

    python benchmarks/bench_pixel_context.py [--demo demo_out] [--steps 3000] [--batch 16] [--channels 96]
           [--clips N] [--seed 0] [--temperature T] [--videos 8] [--samples 8] [--threads 2] [--tag TAG]

Needs a finished `make demo` (its `model`); without one it says so and writes nothing. Prints a table and writes
benchmarks/results/pixel_context.json (pixel_context_TAG.json with `--tag`).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path
from statistics import mean

import torch
import torch.nn.functional as F
from bench_prediction import CONTEXT, FRAMES, _shape_cells, prediction_scores, sample_bottom_given
from einops import rearrange, repeat
from results_file import write_results
from torch import Tensor, nn

from vqvid.commands.demo import write_held_out_videos
from vqvid.commands.predict import DEFAULT_TEMPERATURE
from vqvid.data import ClipSpec
from vqvid.data.inputs import open_prediction_input
from vqvid.data.sources import SYNTHETIC_SEEDS, read_clips
from vqvid.data.synthetic import MovingShapes
from vqvid.metrics import codebook_distance
from vqvid.models.reader import ContextReader, ReaderConfig
from vqvid.models.vqvae import TIME_FACTOR
from vqvid.persistence import load_model_folder
from vqvid.sampling.predict import anchor_on_context, predict

ROOT = Path(__file__).resolve().parent.parent
SIZE = 64
TRAIN_SEED = 4242  # not one of vqvid's synthetic splits (0-2) nor the demo's held-out videos (90 000)
PREDICTED = (FRAMES - CONTEXT) // TIME_FACTOR  # latent frames of top codes after the context


def _train(vqvae: nn.Module, steps: int, batch: int, config: ReaderConfig, held_out: Tensor, held_out_top: Tensor,
           clips: int | None, seed: int, lr: float = 1e-3) -> tuple[ContextReader, list[dict]]:
    """The reader after `steps` steps of `batch` clips, fresh ones or drawn from the first `clips` of the
    synthetic training split (AdamW at `lr`, a twentieth of the steps warming up, then a cosine to zero), and
    its held-out bits per code every 500 steps. `seed` sets its initial weights and the clips drawn."""
    torch.manual_seed(seed)
    clips = (MovingShapes(10**7, frames=FRAMES, size=SIZE, seed=TRAIN_SEED) if clips is None else
             MovingShapes(clips, frames=FRAMES, size=SIZE, seed=SYNTHETIC_SEEDS["train"]))
    reader = ContextReader(config)
    optimiser = torch.optim.AdamW(reader.parameters(), lr, weight_decay=0.01)
    warmup = max(1, steps // 20)  # then a cosine down to zero
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: min((step + 1) / warmup, 0.5 * (
        1 + math.cos(math.pi * min(1.0, max(0, step + 1 - warmup) / max(1, steps - warmup))))))
    draw, curve, start = torch.Generator().manual_seed(seed + 1), [], time.perf_counter()
    for step in range(1, steps + 1):
        video = torch.stack([clips[i] for i in torch.randint(0, len(clips), (batch,), generator=draw).tolist()])
        with torch.no_grad():
            target = vqvae.encode(video).top[:, -PREDICTED:]
        loss = F.cross_entropy(reader(video[:, :, :CONTEXT]), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 500 == 0 or step == steps:
            with torch.no_grad():
                bits = F.cross_entropy(reader(held_out[:, :, :CONTEXT]), held_out_top).item() / math.log(2)
            curve.append({"steps": step, "seconds": round(time.perf_counter() - start, 1),
                          "train_bits": loss.item() / math.log(2), "held_out_bits": bits})
            print(f"  {step} steps ({curve[-1]['seconds']:.0f} s): training {curve[-1]['train_bits']:.2f} bits per "
                  f"code, held-out {bits:.2f}", flush=True)
    return reader.eval(), curve


def scores(clips: Tensor, video: Tensor) -> dict:
    """PSNR and shapes kept over frames 8-15 of `video` (B, S, 3, F, H, W), anchored on frame 7."""
    anchored = anchor_on_context(video, clips, CONTEXT)
    psnr, place, itself = prediction_scores(clips, anchored)  # itself: as themselves, the demo report's stray
    return {"psnr_mean_of_n": psnr["mean_of_n"], "psnr_single": psnr["generated"],
            "kept_mean_of_n": mean(place["mean_of_n"]["kept"]), "kept_single": mean(place["generated"]["kept"]),
            "kept_as_itself_mean_of_n": mean(itself["mean_of_n"]["kept"]),
            "copy_last": {"psnr": psnr["copy_last"], "kept": mean(place["copy_last"]["kept"]),
                          "kept_as_itself": mean(itself["copy_last"]["kept"])}}


def print_scores(rows: dict[str, dict], labels: tuple[tuple[str, str], ...], copy: dict) -> None:
    """A table of `scores` rows (`labels`: (key, label) in order) and of copy-last (`copy`, a row's "copy_last")."""
    print(f"\n{'frames 8-15, anchored on frame 7':48s} {'PSNR mean of N':>14s} {'single':>7s} "
          f"{'kept, mean of N':>16s} {'single':>7s} {'as itself':>10s}")
    for name, label in labels:
        r = rows[name]
        print(f"{label:48s} {r['psnr_mean_of_n']:14.2f} {r['psnr_single']:7.2f} {100 * r['kept_mean_of_n']:15.0f}% "
              f"{100 * r['kept_single']:6.0f}% {100 * r['kept_as_itself_mean_of_n']:9.0f}%")
    print(f"{'copy last frame':48s} {copy['psnr']:14.2f} {'':7s} {100 * copy['kept']:15.0f}% {'':7s} "
          f"{100 * copy['kept_as_itself']:9.0f}%")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, default=ROOT / "demo_out", help="a finished `vqvid demo` folder")
    parser.add_argument("--steps", type=int, default=3000, help="training steps of the reader")
    parser.add_argument("--batch", type=int, default=16, help="clips per step")
    parser.add_argument("--channels", type=int, default=96, help="the reader's width")
    parser.add_argument("--frame-kernel", type=int, default=3, help="frames each of the reader's first two "
                        "convolutions sees (1 or 3)")
    parser.add_argument("--stem", default="conv", help="how the reader comes down to the top grid: conv or patch")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--clips", type=int, help="train on the first N clips of the synthetic training split, "
                        "over and over, instead of fresh clips at every step")
    parser.add_argument("--seed", type=int, default=0, help="the reader's initial weights and clips drawn")
    parser.add_argument("--temperature", type=float, help="draw the reader's top codes at this temperature, "
                        "each position on its own, instead of taking its most likely codes")
    parser.add_argument("--videos", type=int, default=8, help="held-out videos (two clips each)")
    parser.add_argument("--samples", type=int, default=8, help="bottom samples per clip")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tag", help="suffix _TAG to the results JSON's name")
    args = parser.parse_args()
    if args.clips is not None and args.clips < 1:
        raise SystemExit(f"bench_pixel_context: --clips {args.clips}: expected a positive number of clips")
    if not (args.demo / "model").exists():
        print(f"bench_pixel_context: needs a finished `make demo` in {args.demo} (missing model); skipped")
        return 0
    torch.set_num_threads(args.threads)
    folder = load_model_folder(args.demo / "model")
    vqvae = folder.vqvae.model.eval()
    if vqvae.top_quantizer.embed.shape[0] != 512 or folder.vqvae.clip_spec().size != SIZE:
        raise SystemExit("bench_pixel_context: made for the `tiny` demo's geometry (16×64×64, 512 codes)")
    with tempfile.TemporaryDirectory() as tmp:
        write_held_out_videos(Path(tmp), args.videos)
        dataset, _ = open_prediction_input(tmp, ClipSpec(frames=FRAMES, stride=FRAMES, size=SIZE), FRAMES)
        clips = torch.stack(read_clips(dataset, len(dataset), "bench_pixel_context"))  # (B, 3, FRAMES, H, W)
    with torch.no_grad():
        true_top = vqvae.encode(clips).top  # (B, T', H', W') of the whole clips
    known = CONTEXT // TIME_FACTOR
    config = ReaderConfig(num_codes=vqvae.top_quantizer.embed.shape[0], context=CONTEXT, frames=FRAMES,
                          channels=args.channels, frame_kernel=args.frame_kernel, stem=args.stem)
    reader, curve = _train(vqvae, args.steps, args.batch, config, clips, true_top[:, known:], args.clips,
                           args.seed, args.lr)
    with torch.no_grad():
        prediction = predict(folder, clips, CONTEXT, FRAMES, samples=args.samples, temperature=DEFAULT_TEMPERATURE,
                             seed=0, progress=False, anchor="none", reader=False)  # the priors', not a reader
        logits = reader(clips[:, :, :CONTEXT])  # (B, K, PREDICTED, H', W')
        read_top = logits.argmax(1)  # (B, PREDICTED, H', W')
        top = rearrange(prediction.codes.top, "b s ... -> (b s) ...").clone()  # the context's own, then sampled
        if args.temperature is None:
            top[:, known:] = repeat(read_top, "b ... -> (b s) ...", s=args.samples)
        else:  # every position of every sample drawn on its own
            probabilities = rearrange(repeat(logits / args.temperature, "b ... -> (b s) ...", s=args.samples),
                                      "n k t h w -> (n t h w) k").softmax(-1)
            drawn = torch.multinomial(probabilities, 1, generator=torch.Generator().manual_seed(0))
            top[:, known:] = drawn.view(top[:, known:].shape)
        bottom = sample_bottom_given(folder, prediction, top, DEFAULT_TEMPERATURE)
        decoded = torch.cat([vqvae.decode_codes(t, b) for t, b in zip(top.split(8), bottom.split(8), strict=True)])
        decoded = rearrange(decoded, "(b s) ... -> b s ...", s=args.samples)
    cells = _shape_cells(clips, tuple(true_top.shape[2:]))  # (B, PREDICTED, H', W')
    truth, each = true_top[:, known:], lambda codes: repeat(codes, "b ... -> (b s) ...", s=args.samples)
    produced = {  # each with the truth and the shapes' cells it is measured against
        "repeat": (prediction.codes.top[:, 0, known - 1 : known].expand(-1, PREDICTED, -1, -1), truth, cells),
        "prior_samples": (rearrange(prediction.codes.top[:, :, known:], "b s ... -> (b s) ..."), each(truth),
                          each(cells)),
        "reader": (read_top, truth, cells)}
    if args.temperature is not None:
        produced["reader_drawn"] = (top[:, known:], each(truth), each(cells))
    distance = lambda codes, truth, where: codebook_distance(codes, truth, vqvae.top_quantizer.embed, where).tolist()
    code_rows = {name: {"shapes": distance(codes, truth, where), "elsewhere": distance(codes, truth, ~where)}
                 for name, (codes, truth, where) in produced.items()}
    rows = {"reader_top_bottom_prior": scores(clips, decoded), "priors": scores(clips, prediction.video)}
    labels = {"repeat": "the context's last latent frame repeated", "prior_samples": "the top prior's samples",
              "reader": f"the reader's most likely codes ({args.steps} steps)",
              "reader_drawn": f"the reader's codes drawn at T = {args.temperature}"}
    print(f"\n{len(clips)} held-out clips; top codes of latent frames 2 / 3, codebook distance to the whole clip's")
    print(f"{'produced by':48s} {'where the shapes are':>22s} {'elsewhere':>16s}")
    for name, label in labels.items():
        if name not in code_rows:
            continue
        r = code_rows[name]
        print(f"{label:48s} {r['shapes'][0]:10.3f} / {r['shapes'][1]:.3f} {r['elsewhere'][0]:8.3f} / "
              f"{r['elsewhere'][1]:.3f}")
    print_scores(rows, (("reader_top_bottom_prior", "reader's top codes, bottom prior's samples"),
                        ("priors", "the priors' prediction (--no-reader)")), rows["priors"]["copy_last"])
    write_results("pixel_context" if args.tag is None else f"pixel_context_{args.tag}", args.threads,
                  model=str(args.demo / "model"), held_out_clips=len(clips), samples=args.samples,
                  reader={"steps": args.steps, "batch": args.batch, "channels": args.channels,
                          "frame_kernel": args.frame_kernel, "stem": args.stem, "lr": args.lr,
                          "training_clips": args.clips or "fresh at every step",
                          "training_seed": TRAIN_SEED if args.clips is None else SYNTHETIC_SEEDS["train"],
                          "seed": args.seed, "temperature": args.temperature, "curve": curve},
                  top_codes_distance=code_rows, rows=rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

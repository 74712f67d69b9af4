"""Whether the context reader keeps more shapes in the last frames when it reads twice: a probe.

`vqvid predict` asks the reader once for the top codes of latent frames 2 and 3 (frames 8-15) from frames 0-7;
its codes for latent frame 3 lie much further from the truth than for latent frame 2 (docs/prediction.md), and the
shapes fade most in frames 13-15. This probe reads a second time: frames 8-11 of each sample decoded from the
first pass's codes, frames 4-11 given to the same reader, its most likely codes for the first latent frame after
them replacing latent frame 3, and the bottom prior's samples drawn again given the new top codes (as
`bench_prediction.sample_bottom_given` draws them, T = 0.5). The control row draws the bottom codes again in the
same way given the first pass's top codes, so that the two rows differ in latent frame 3 alone. It is what a
rollout's next window does, with a slide of one latent frame instead of two. On the demo's model folder (its reader
included) and `--videos` held-out videos of the demo's generator (two clips each), it prints PSNR and the shapes
kept, in place and as themselves, of one pass (the default), the control, two passes and copy-last, every reading
anchored on frame 7.

    python benchmarks/bench_reader_passes.py [--demo demo_out] [--videos 4] [--samples 8] [--threads 2] [--tag TAG]

Needs a finished `make demo` (its model folder with a reader); without one it says so and writes nothing. Writes
benchmarks/results/reader_passes.json (reader_passes_TAG.json with `--tag`).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from bench_pixel_context import print_scores, scores
from bench_prediction import CONTEXT, FRAMES, sample_bottom_given
from einops import rearrange, repeat
from results_file import write_results

from vqvid.commands.demo import write_held_out_videos
from vqvid.commands.predict import DEFAULT_TEMPERATURE
from vqvid.data import ClipSpec
from vqvid.data.inputs import open_prediction_input
from vqvid.data.sources import read_clips
from vqvid.models.vqvae import TIME_FACTOR
from vqvid.persistence import load_model_folder
from vqvid.sampling.predict import predict

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, default=ROOT / "demo_out", help="a finished `vqvid demo` folder")
    parser.add_argument("--videos", type=int, default=4, help="held-out videos (two clips each)")
    parser.add_argument("--samples", type=int, default=8, help="samples per clip")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tag", help="suffix _TAG to the results JSON's name")
    args = parser.parse_args()
    folder_path = args.demo / "model"
    if not folder_path.exists():
        print(f"bench_reader_passes: needs a finished `make demo` in {args.demo} (missing model); skipped")
        return 0
    torch.set_num_threads(args.threads)
    folder = load_model_folder(folder_path)
    if folder.reader is None or (folder.reader.config.context, folder.reader.config.frames) != (CONTEXT, FRAMES):
        raise SystemExit(f"bench_reader_passes: {folder_path} has no context reader of {CONTEXT} frames in "
                         f"{FRAMES}")
    vqvae, reader, samples = folder.vqvae.model, folder.reader.model, args.samples
    with tempfile.TemporaryDirectory() as tmp:
        write_held_out_videos(Path(tmp), args.videos)
        dataset, _ = open_prediction_input(tmp, ClipSpec(frames=FRAMES, stride=FRAMES, size=64), FRAMES)
        clips = torch.stack(read_clips(dataset, len(dataset), "bench_reader_passes"))  # (B, 3, FRAMES, H, W)
    decode = lambda top, bottom: torch.cat([vqvae.decode_codes(t, b) for t, b in zip(top.split(8), bottom.split(8),
                                                                                      strict=True)])
    per_clip = lambda video: rearrange(video, "(b s) ... -> b s ...", s=samples)
    with torch.no_grad():
        prediction = predict(folder, clips, CONTEXT, FRAMES, samples=samples, temperature=DEFAULT_TEMPERATURE,
                             reader_temperature=0, seed=0, progress=False, anchor="none")
        top = rearrange(prediction.codes.top, "b s ... -> (b s) ...")
        once = decode(top, rearrange(prediction.codes.bottom, "b s ... -> (b s) ..."))
        known = CONTEXT // TIME_FACTOR  # the second pass reads frames 4-11 and predicts latent frame 3
        read = torch.cat([repeat(clips[:, :, CONTEXT - TIME_FACTOR : CONTEXT], "b ... -> (b s) ...", s=samples),
                          once[:, :, CONTEXT : CONTEXT + TIME_FACTOR].clamp(-1, 1)], dim=2)
        twice_top = top.clone()
        twice_top[:, known + 1] = reader(read).argmax(1)[:, 0]
        twice = decode(twice_top, sample_bottom_given(folder, prediction, twice_top, DEFAULT_TEMPERATURE))
        redrawn = decode(top, sample_bottom_given(folder, prediction, top, DEFAULT_TEMPERATURE))
    rows = {"one_pass": scores(clips, per_clip(once)), "one_pass_bottom_redrawn": scores(clips, per_clip(redrawn)),
            "two_passes": scores(clips, per_clip(twice))}
    changed = (twice_top[:, known + 1] != top[:, known + 1]).float().mean().item()
    print(f"\n{len(clips)} held-out clips, {samples} samples each; latent frame 3's top codes changed by the second "
          f"pass: {100 * changed:.0f}%")
    print_scores(rows, (("one_pass", "reader once (vqvid predict)"),
                        ("one_pass_bottom_redrawn", "reader once, bottom drawn again"),
                        ("two_passes", "reader twice")), rows["one_pass"]["copy_last"])
    write_results("reader_passes" if args.tag is None else f"reader_passes_{args.tag}", args.threads,
                  model=str(folder_path), held_out_clips=len(clips), samples=samples, latent_3_changed=changed,
                  rows=rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

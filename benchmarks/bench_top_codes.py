"""What the top prior knows of the next latent frame, in code space: is it more than repeating the last one?

Prediction from frames 0-7 must produce the top codes of latent frames 2 (frames 8-11) and 3 (frames 12-15) from
those of latent frames 0 and 1. On the held-out codes of a finished `vqvid demo` this measures, for both
predicted latent frames, how far each way of producing them lies from the true codes: the mean squared distance
between the codebook vectors of the produced and the true code at each position (0 when equal; synonymous codes
lie near each other), and the share of positions with exactly the true code.

- repeat: latent frame 1 repeated (the code-space counterpart of copy-last-frame); the line to beat.
- the top prior free-running from the true latent frames 0-1: its most likely code at each position in raster
  order (top-k 1), and samples at the prediction's default temperature. This is what prediction does, but from
  the stored codes of latent frames 0-1, which the VQ-VAE encoded from whole clips as the priors were trained;
  `vqvid predict` encodes the context alone, which changes about a fifth of them.
- the top prior teacher-forced: its most likely code at each position given the *true* codes before it,
  including the earlier positions of the same latent frame. Prediction never has those; the gap to the
  free-running rows is what the prior reads off the frame it is predicting rather than off the past.
- a next-frame network: latent frame t from the true frames t-2 and t-1 only (6 residual 3×3 convolutions of
  `--channels` on the two frames' codebook vectors, a softmax over the codes), trained on the demo's training
  codes for `--steps` steps of `--batch` (frames 2 and 3 of random clips), its held-out distance every 500
  steps; latent frame 3 from its own prediction of frame 2. A model made only to continue the past, to tell
  whether the codes allow more than repetition at all.
- another held-out clip's latent frame (chance).

    python benchmarks/bench_top_codes.py [--demo demo_out] [--model DIR] [--train-codes STORE] [--steps 3000]
           [--batch 32] [--channels 96] [--threads 2] [--tag TAG]

Needs a finished `make demo` (`--demo`, its `codes` and `model`); without one it says so and writes nothing.
Prints a table and writes benchmarks/results/top_codes.json (top_codes_TAG.json with `--tag`).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from results_file import write_results
from torch import Tensor, nn

from vqvid.commands.predict import DEFAULT_TEMPERATURE
from vqvid.data.codes import CodeDataset
from vqvid.metrics import code_agreement
from vqvid.persistence import load_model_folder
from vqvid.sampling.predict import continuation_scores

ROOT = Path(__file__).resolve().parent.parent
PREDICTED = (2, 3)  # the latent frames that frames 8-15 are coded in


def _top_codes(path: Path) -> tuple[Tensor, Tensor]:
    """All top codes of a code store (N, T, H, W) int64, and its top codebook (K, D)."""
    dataset = CodeDataset(path, "top")
    codebooks = dataset.codebooks()
    if codebooks is None:
        raise SystemExit(f"bench_top_codes: {path} holds no codebooks; extract the codes again")
    return dataset.stacked(), torch.from_numpy(codebooks.top).float()


class NextFrame(nn.Module):
    """Logits (B, K, H, W) of a latent frame's codes from the codebook vectors of the two frames before it."""

    def __init__(self, codebook: Tensor, channels: int, layers: int = 6):
        super().__init__()
        self.embedding = nn.Embedding.from_pretrained(codebook.clone(), freeze=False)
        self.stem = nn.Conv2d(2 * codebook.shape[1], channels, 3, padding=1)
        self.body = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(layers))
        self.out = nn.Conv2d(channels, codebook.shape[0], 1)

    def forward(self, before: Tensor, last: Tensor) -> Tensor:  # (B, H, W) int64 each
        hidden = self.stem(torch.cat([self.embedding(before), self.embedding(last)], -1).permute(0, 3, 1, 2))
        for conv in self.body:
            hidden = hidden + conv(F.gelu(hidden))
        return self.out(F.gelu(hidden))

    @torch.no_grad()
    def rollout(self, codes: Tensor) -> Tensor:
        """Latent frames 2 and 3 from the true frames 0-1, frame 3 from the predicted frame 2: (N, 2, H, W)."""
        second = self(codes[:, 0], codes[:, 1]).argmax(1)
        return torch.stack([second, self(codes[:, 1], second).argmax(1)], 1)


def _next_frame_curve(train: Tensor, held_out: Tensor, codebook: Tensor, steps: int, batch: int,
                      channels: int) -> list[dict]:
    torch.manual_seed(0)
    network = NextFrame(codebook, channels)
    optimiser = torch.optim.Adam(network.parameters(), lr=2e-3)
    truth, curve, start = held_out[:, list(PREDICTED)], [], time.perf_counter()
    for step in range(1, steps + 1):
        clips = train[torch.randint(0, len(train), (batch,))]
        frame = torch.randint(2, train.shape[1], (batch,))
        rows = torch.arange(batch)
        logits = network(clips[rows, frame - 2], clips[rows, frame - 1])
        loss = F.cross_entropy(logits, clips[rows, frame])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 500 == 0 or step == steps:
            with torch.no_grad():
                bits = F.cross_entropy(network(held_out[:, 0], held_out[:, 1]), held_out[:, 2]).item() / math.log(2)
            point = {"steps": step, "seconds": time.perf_counter() - start, "train_bits": loss.item() / math.log(2),
                     "held_out_bits": bits, **code_agreement(network.rollout(held_out), truth, codebook)}
            curve.append(point)
            print(f"  next-frame network, {step} steps ({point['seconds']:.0f} s): training {point['train_bits']:.2f}"
                  f" bits, held-out {bits:.2f} bits, distance {point['distance'][0]:.4f} / {point['distance'][1]:.4f}")
    return curve


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, default=ROOT / "demo_out", help="a finished `vqvid demo` folder")
    parser.add_argument("--model", type=Path, help="a model folder of the demo's VQ-VAE (default: the demo's)")
    parser.add_argument("--train-codes", type=Path,
                        help="next-frame network: train on this code store of the demo's VQ-VAE instead of the "
                             "demo's training codes (e.g. more clips: `vqvid extract --data synthetic:16384`)")
    parser.add_argument("--steps", type=int, default=3000, help="next-frame network: training steps (0: none)")
    parser.add_argument("--batch", type=int, default=32, help="next-frame network: latent frames per step")
    parser.add_argument("--channels", type=int, default=96, help="next-frame network: width")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tag", help="suffix _TAG to the results JSON's name")
    args = parser.parse_args()
    model = args.model or args.demo / "model"
    train_codes = args.train_codes or args.demo / "codes" / "train"
    needed = [train_codes, args.demo / "codes" / "val", model]
    if missing := [str(p) for p in needed if not p.exists()]:
        print(f"bench_top_codes: needs a finished `make demo` in {args.demo} (missing {', '.join(missing)}); skipped")
        return 0
    torch.set_num_threads(args.threads)
    train, codebook = _top_codes(train_codes)
    held_out, held_out_codebook = _top_codes(args.demo / "codes" / "val")
    if not torch.equal(codebook, held_out_codebook):
        raise SystemExit(f"bench_top_codes: {train_codes} holds codes of another VQ-VAE than {args.demo}")
    folder = load_model_folder(model)
    stored = CodeDataset(args.demo / "codes" / "val", "top").meta.fingerprint
    if folder.vqvae.fingerprint != stored or folder.top is None:
        raise SystemExit(f"bench_top_codes: --model {model}: needs a top prior and the VQ-VAE that made the "
                         f"demo's codes ({stored}), got VQ-VAE {folder.vqvae.fingerprint}"
                         + ("" if folder.top else " and no top prior"))
    prior = folder.top.model
    greedy = continuation_scores(prior, held_out, codebook, PREDICTED[0], top_k=1)
    sampled = continuation_scores(prior, held_out, codebook, PREDICTED[0], temperature=DEFAULT_TEMPERATURE,
                                  generator=torch.Generator().manual_seed(0))
    rows = {"repeat": sampled["repeat"], "prior_greedy": greedy["sampled"], "prior_sampled": sampled["sampled"],
            "prior_teacher_forced": sampled["teacher_forced"], "another_clip": sampled["another_clip"]}
    curve = _next_frame_curve(train, held_out, codebook, args.steps, args.batch, args.channels) if args.steps else []
    labels = {"repeat": "latent frame 1 repeated (the line to beat)",
              "prior_greedy": "top prior, free-running, most likely codes",
              "prior_sampled": f"top prior, free-running, sampled at T = {DEFAULT_TEMPERATURE}",
              "prior_teacher_forced": "top prior, teacher-forced (reads the frame itself)",
              "another_clip": "another held-out clip's frame (chance)"}
    print(f"\n{len(held_out)} held-out clips; codebook distance (share of codes equal) of latent frames 2 and 3")
    print(f"{'produced by':52s} {'frame 2':>15s} {'frame 3':>15s}")
    table = [(labels[name], rows[name]) for name in labels]
    table += [(f"next-frame network, {p['steps']} steps", p) for p in curve]
    for label, r in table:
        cells = [f"{r['distance'][i]:.4f} ({100 * r['equal'][i]:2.0f}%)" for i in range(2)]
        print(f"{label:52s} {cells[0]:>15s} {cells[1]:>15s}")
    write_results("top_codes" if args.tag is None else f"top_codes_{args.tag}", args.threads, model=str(model),
                  held_out_clips=len(held_out), training_codes=str(train_codes), training_clips=len(train),
                  rows=rows, next_frame=curve,
                  network={"steps": args.steps, "batch": args.batch, "channels": args.channels})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Speed and rate of the .vqv codec at the `tiny` preset (16×64×64 clips, top 4×8×8, bottom 8×16×16, K = 512).

Speed of the priors' coding, in code positions per second, encoding (`compress_codes`) and decoding
(`decompress_codes`), all in one run:
- "format 2 path": the coding loop of format version 2, reproduced here: one clip at a time, a PMF quantised and
  a symbol range-coded per call. Its chunks are checked to be the bytes that format 3 writes at coding batch 1
  (the same stepper);
- coding batch B = 1, 8, 16, 32: B clips through one stepper (`vqvid.codec.coding.encode_group`), one
  group of B clips each (B = 1: 2 clips), so the figure is what every full group runs at: `compress_codes` /
  `decompress_codes`, format 4 (`FusedStepper`);
- "format 3 stepper": the largest coding batch again, coded and decoded with format 3's `IncrementalStepper`
  (`encode_group` / `decode_group` at version 3), the reference for format 4's fused stepper.
Each case runs --repeats times (default 2) and keeps its fastest run: on a shared machine the slower runs are
the ones other work interrupted.
The priors run on one thread, as the codec always runs them; the VQ-VAE's parts (encoding video to codes one
clip at a time, decoding codes to video) are timed for the default coding batch. Random weights: speed does
not depend on training.

Rate: bits written (the chunks' payloads; the whole file adds its header) against the information content
sum -log2 p of the same codes under the same priors' float log-probabilities, which a perfect coder would
spend. Two sets of codes: those of the synthetic video under random-weight priors (nearly uniform: about
log2 512 = 9 bits a code), and codes sampled from priors whose output layer is scaled up, so that they are
confident as trained priors are and the coder's overheads (PMF quantisation, the end of each stream) weigh
more.

    python benchmarks/bench_codec.py [--batches 1 8 16 32] [--repeats 2] [--seed 0]

Prints the tables and writes benchmarks/results/codec.json. Run it on a quiet machine: `flock` on a shared one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import TypeVar

import torch
from results_file import write_results

from vqvid.codec.coding import (
    CodingPriors,
    _groups,
    coding_priors,
    coding_vqvae,
    decode_grid,
    decode_group,
    default_coding_batch,
    encode_clip,
    encode_group,
    pinned_computation,
)
from vqvid.codec.entropy import SequentialDecoder, SequentialEncoder, quantize_pmf
from vqvid.codec.video import Compressed, compress_codes, decode_video, decompress_codes
from vqvid.data import MovingShapes
from vqvid.models.pixelsnail import PixelSNAIL
from vqvid.models.vqvae import VQVAE, Codes
from vqvid.persistence import LoadedPrior, LoadedVQVAE, ModelFolder
from vqvid.presets import get_preset
from vqvid.sampling import sample
from vqvid.sampling.steppers import IncrementalStepper

SHARPEN = 20.0  # scale of the sharpened priors' output weights: about 2 bits a code instead of 9
RATE_CLIPS = 2  # clips of the rate measurements
T = TypeVar("T")


def timed(run: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


def fastest(run: Callable[[], T], repeats: int) -> tuple[T, float]:
    """The result of `run` and its fastest time of `repeats` runs."""
    runs = [timed(run) for _ in range(repeats)]
    return runs[0][0], min(seconds for _, seconds in runs)


def folder_of(vqvae: VQVAE, top: PixelSNAIL, bottom: PixelSNAIL, frames: int, size: int, name: str) -> ModelFolder:
    """A model folder of models in memory, never saved (their fingerprints are placeholders)."""
    return ModelFolder(LoadedVQVAE(vqvae, vqvae.config, "vqvae", {"frames": frames, "size": size}),
                       LoadedPrior(top, top.config, "top", "top", "vqvae"),
                       LoadedPrior(bottom, bottom.config, "bottom", "bottom", "vqvae"), name)


def tiny_folder(seed: int) -> ModelFolder:
    """The `tiny` preset's VQ-VAE and priors with random weights, in eval mode."""
    torch.manual_seed(seed)
    preset = get_preset("tiny")
    vqvae = VQVAE(preset.vqvae.model).eval()
    top, bottom = PixelSNAIL(preset.top.model).eval(), PixelSNAIL(preset.bottom.model).eval()
    return folder_of(vqvae, top, bottom, preset.vqvae.data.frames, preset.vqvae.data.size, "bench-tiny")


def _encode(vqvae: VQVAE, video: torch.Tensor) -> Codes:
    """As `compress` encodes: one clip at a time, under the coding path's pinned settings."""
    vqvae = coding_vqvae(vqvae)
    codes = [encode_clip(vqvae, clip) for clip in video]
    return Codes(torch.cat([c.top for c in codes]), torch.cat([c.bottom for c in codes]))


# --- the coding loop of format version 2, the reference ---------------------------------------------------------


def format2_encode(prior: PixelSNAIL, codes: torch.Tensor, condition: torch.Tensor | None) -> bytes:
    """One clip's codes (t, h, w) of one level as format version 2 coded them: a stepper of batch 1, each
    position's PMF quantised and its code range-coded as it comes."""
    encoder = SequentialEncoder()
    symbols = codes.reshape(-1)
    with pinned_computation():
        stepper = IncrementalStepper(prior, 1, condition=condition)
        for position, symbol in enumerate(symbols.tolist()):
            encoder.encode(symbol, quantize_pmf(stepper.step_log_probs())[0])
            stepper.feed(symbols[position:position + 1])
    return encoder.finish()


def format2_decode(prior: PixelSNAIL, data: bytes, condition: torch.Tensor | None) -> torch.Tensor:
    """Inverse of `format2_encode`: codes (1, t, h, w), through the codec's own one-clip loop."""
    with pinned_computation():
        return decode_grid(prior, SequentialDecoder(data), condition).clone()


def format3_chunks(priors: CodingPriors, codes: Codes, batch: int) -> list[bytes]:
    """The chunks of the clips of `codes` as format 3 coded them, in groups of `batch` clips."""
    groups = _groups(codes.top.shape[0], batch)
    tops = [c.data for g in groups for c in encode_group(priors.top, codes.top[g], None, batch, version=3)]
    return tops + [c.data for g in groups
                   for c in encode_group(priors.bottom, codes.bottom[g], codes.top[g], batch, version=3)]


def format3_row(priors: CodingPriors, codes: Codes, batch: int, repeats: int) -> dict:
    """Times format 3's stepper coding and decoding the clips of `codes` in coding batches of `batch`."""
    clips = codes.top.shape[0]
    groups = _groups(clips, batch)
    chunks, encode_s = fastest(lambda: format3_chunks(priors, codes, batch), repeats)

    def decode() -> None:
        for g in groups:
            top = decode_group(priors.top, chunks[g], None, batch, version=3).codes
            bottom = decode_group(priors.bottom, chunks[clips + g.start:clips + g.stop], top, batch, version=3)
            assert torch.equal(top, codes.top[g]) and torch.equal(bottom.codes, codes.bottom[g])

    _, decode_s = fastest(decode, repeats)
    return _speed_row(f"batch {batch}, format 3", batch, codes, encode_s, decode_s)


def format2_row(priors: CodingPriors, codes: Codes, repeats: int) -> dict:
    """Times the format 2 loop over the clips of `codes`, both levels, and checks its chunks against those
    that format 3 writes at coding batch 1."""
    clips = codes.top.shape[0]

    def encode() -> list[bytes]:
        tops = [format2_encode(priors.top, codes.top[i], None) for i in range(clips)]
        return tops + [format2_encode(priors.bottom, codes.bottom[i], codes.top[i:i + 1]) for i in range(clips)]

    chunks, encode_s = fastest(encode, repeats)
    if chunks != format3_chunks(priors, codes, 1):
        raise AssertionError("the format 2 loop and format 3 at coding batch 1 wrote different chunks")

    def decode() -> None:
        for i in range(clips):
            top = format2_decode(priors.top, chunks[i], None)
            bottom = format2_decode(priors.bottom, chunks[clips + i], top)
            assert torch.equal(top[0], codes.top[i]) and torch.equal(bottom[0], codes.bottom[i])

    _, decode_s = fastest(decode, repeats)
    return _speed_row("format 2 path", None, codes, encode_s, decode_s)


def _speed_row(case: str, batch: int | None, codes: Codes, encode_s: float, decode_s: float) -> dict:
    positions = codes.top.numel() + codes.bottom.numel()
    return {"case": case, "coding_batch": batch, "clips": codes.top.shape[0], "positions": positions,
            "encode_s": encode_s, "decode_s": decode_s, "encode_positions_per_s": positions / encode_s,
            "decode_positions_per_s": positions / decode_s}


def batch_row(folder: ModelFolder, codes: Codes, batch: int, repeats: int) -> tuple[dict, Compressed]:
    """Times `compress_codes` and `decompress_codes` of the clips of `codes` in coding batches of `batch`."""
    frames = codes.top.shape[0] * 16
    compressed, encode_s = fastest(lambda: compress_codes(folder, codes, frames, fps=10, coding_batch=batch),
                                   repeats)
    assert compressed.header.coding_batch == batch
    decoded, decode_s = fastest(lambda: decompress_codes(folder, compressed.data), repeats)
    assert torch.equal(decoded.codes.top, codes.top) and torch.equal(decoded.codes.bottom, codes.bottom)
    return _speed_row(f"batch {batch}, format 4", batch, codes, encode_s, decode_s), compressed


def frames_row(folder: ModelFolder, video: torch.Tensor, batch: int) -> dict:
    """compress / decompress of a video in frames per second at coding batch `batch`, VQ-VAE included."""
    frames = video.shape[0] * video.shape[2]
    vqvae = folder.vqvae.model
    codes, encode_s = timed(lambda: _encode(vqvae, video))
    compressed, code_s = timed(lambda: compress_codes(folder, codes, frames, fps=10, coding_batch=batch))
    decoded, decode_codes_s = timed(lambda: decompress_codes(folder, compressed.data))
    _, decode_video_s = timed(lambda: decode_video(vqvae, decoded.codes, frames))
    return {"clips": video.shape[0], "frames": frames, "coding_batch": batch,
            "compress_frames_per_s": frames / (encode_s + code_s),
            "compress_prior_share": code_s / (encode_s + code_s),
            "decompress_frames_per_s": frames / (decode_codes_s + decode_video_s),
            "decompress_prior_share": decode_codes_s / (decode_codes_s + decode_video_s),
            "seconds": {"vqvae_encode": encode_s, "prior_encode": code_s, "prior_decode": decode_codes_s,
                        "vqvae_decode": decode_video_s}}


def rate_row(name: str, compressed: Compressed) -> dict:
    information = compressed.top_bits + compressed.bottom_bits
    payload = 8 * sum(map(len, compressed.chunks))
    positions = compressed.codes.top.numel() + compressed.codes.bottom.numel()
    return {"codes": name, "coding_batch": compressed.header.coding_batch, "positions": positions,
            "information_bits": information, "payload_bits": payload, "file_bits": 8 * compressed.size,
            "bits_per_code": payload / positions, "excess": payload / information - 1}


def sharpened_codes(folder: ModelFolder, clips: int, seed: int) -> tuple[ModelFolder, Codes]:
    with torch.no_grad():
        for prior in (folder.top.model, folder.bottom.model):
            prior.head[-1].weight.mul_(SHARPEN)
    generator = torch.Generator().manual_seed(seed)
    top = sample(folder.top.model, clips, generator=generator)
    return folder, Codes(top, sample(folder.bottom.model, clips, condition=top, generator=generator))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 16, 32],
                        help="coding batches to time (default 1 8 16 32)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per case; the fastest counts (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    folder = tiny_folder(args.seed)
    priors = coding_priors(folder.top.model, folder.bottom.model)
    default = default_coding_batch(priors)
    most = max([*args.batches, RATE_CLIPS, default])
    video = torch.stack([MovingShapes(most, frames=16, size=64, seed=args.seed)[i] for i in range(most)])
    codes = _encode(folder.vqvae.model, video)
    clips = lambda n: Codes(codes.top[:n], codes.bottom[:n])  # noqa: E731

    speed, compressed = [], {}
    for batch in args.batches:
        print(f"timing coding batch {batch} ...", flush=True)
        row, compressed[batch] = batch_row(folder, clips(max(batch, RATE_CLIPS)), batch, args.repeats)
        speed.append(row)
    print(f"timing format 3's stepper at coding batch {max(args.batches)} ...", flush=True)
    speed.append(format3_row(priors, clips(max(args.batches)), max(args.batches), args.repeats))
    print("timing the format 2 path ...", flush=True)
    speed.insert(0, format2_row(priors, clips(RATE_CLIPS), args.repeats))
    print(f"timing compress / decompress at coding batch {default} ...", flush=True)
    frames = frames_row(folder, video[:default], default)

    rates = [rate_row("synthetic video, random priors", compress_codes(folder, clips(RATE_CLIPS), 16 * RATE_CLIPS,
                                                                       fps=10))]
    print("sampling codes from sharpened priors ...", flush=True)
    sharp, sharp_codes = sharpened_codes(folder, RATE_CLIPS, args.seed)
    sharp_compressed = compress_codes(sharp, sharp_codes, 16 * RATE_CLIPS, fps=10, verify=True)
    assert torch.equal(decompress_codes(sharp, sharp_compressed.data).codes.bottom, sharp_codes.bottom)
    rates.append(rate_row("sampled, sharpened priors", sharp_compressed))
    verified = sharp_compressed.verification.fraction

    old = speed[0]
    print(f"\ntiny preset, random weights, clips of 16×64×64 (2,304 code positions each), torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs, priors on 1 thread, fastest of {args.repeats} run(s)")
    print(f"{'case':<20}{'clips':>6}{'positions':>11}{'encode pos/s':>14}{'decode pos/s':>14}{'encode ×':>10}"
          f"{'decode ×':>10}")
    for row in speed:
        print(f"{row['case']:<20}{row['clips']:>6}{row['positions']:>11}{row['encode_positions_per_s']:>14.0f}"
              f"{row['decode_positions_per_s']:>14.0f}"
              f"{row['encode_positions_per_s'] / old['encode_positions_per_s']:>10.2f}"
              f"{row['decode_positions_per_s'] / old['decode_positions_per_s']:>10.2f}")
    print(f"\nwhole compress / decompress of {frames['clips']} clips at coding batch {default} (the default), "
          f"VQ-VAE on {torch.get_num_threads()} threads")
    print(f"{'':<12}{'frames/s':>10}{'in priors':>11}")
    print(f"{'compress':<12}{frames['compress_frames_per_s']:>10.2f}{frames['compress_prior_share']:>10.1%}")
    print(f"{'decompress':<12}{frames['decompress_frames_per_s']:>10.2f}{frames['decompress_prior_share']:>10.1%}")
    print(f"\n{'codes':<32}{'-log2 p (bits)':>15}{'written':>10}{'excess':>9}{'bits/code':>11}{'file':>9}")
    for row in rates:
        print(f"{row['codes']:<32}{row['information_bits']:>15.0f}{row['payload_bits']:>10}"
              f"{row['excess']:>9.2%}{row['bits_per_code']:>11.3f}{row['file_bits']:>9}")
    print(f"verification (sharpened priors): the full forward pass gives the coded PMF at {verified:.2%} of "
          "positions")
    command = "python benchmarks/bench_codec.py " + " ".join(sys.argv[1:])
    write_results("codec", torch.get_num_threads(), command=command.strip(), repeats=args.repeats,
                  cpus=os.cpu_count(), load_average=os.getloadavg(),
                  default_coding_batch=default, speed=speed, frames=frames, rate=rates, verified_fraction=verified)


if __name__ == "__main__":
    main()

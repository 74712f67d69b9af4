"""Speed and rate of the .vqv codec at the `tiny` preset (16×64×64 clips, top 4×8×8, bottom 8×16×16, K = 512).

Speed: `compress` and `decompress` of a synthetic video, in frames per second, split into the VQ-VAE's part
(encoding video to codes one clip at a time on one thread, as `compress` does; decoding codes to video, batched,
all threads) and the priors' part (coding codes position by position through `IncrementalStepper`, one thread,
batch 1, as the codec always runs them).
Random weights: speed does not depend on training.

Rate: bits written (the chunks' payloads; the whole file adds its header) against the information content
sum -log2 p of the same codes under the same priors' float log-probabilities, which a perfect coder would
spend. Two sets of codes: those of the synthetic video under random-weight priors (nearly uniform: about
log2 512 = 9 bits a code), and codes sampled from priors whose output layer is scaled up, so that they are
confident as trained priors are and the coder's overheads (PMF quantisation, the end of each stream) weigh
more.

    python benchmarks/bench_codec.py [--clips 2] [--seed 0]

Prints a table and writes benchmarks/results/codec.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

from vqvid.codec.coding import coding_vqvae, encode_clip
from vqvid.codec.video import Compressed, compress_codes, decode_video, decompress_codes
from vqvid.data import MovingShapes
from vqvid.models.pixelsnail import PixelSNAIL
from vqvid.models.vqvae import VQVAE, Codes
from vqvid.persistence import LoadedPrior, LoadedVQVAE, ModelFolder
from vqvid.presets import get_preset
from vqvid.sampling import sample

RESULTS = Path(__file__).resolve().parent / "results" / "codec.json"
SHARPEN = 20.0  # scale of the sharpened priors' output weights: about 2 bits a code instead of 9
T = TypeVar("T")


def timed(run: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


def tiny_folder(seed: int) -> ModelFolder:
    """The `tiny` preset's VQ-VAE and priors with random weights, in eval mode."""
    torch.manual_seed(seed)
    preset = get_preset("tiny")
    vqvae = VQVAE(preset.vqvae.model).eval()
    data = {"frames": preset.vqvae.data.frames, "size": preset.vqvae.data.size}
    top, bottom = PixelSNAIL(preset.top.model).eval(), PixelSNAIL(preset.bottom.model).eval()
    return ModelFolder(LoadedVQVAE(vqvae, vqvae.config, "vqvae", data),
                       LoadedPrior(top, top.config, "top", "top", "vqvae"),
                       LoadedPrior(bottom, bottom.config, "bottom", "bottom", "vqvae"), "bench-tiny")


def speed(folder: ModelFolder, clips: int, seed: int) -> tuple[dict, Compressed]:
    video = torch.stack([MovingShapes(clips, frames=16, size=64, seed=seed)[i] for i in range(clips)])
    frames = clips * video.shape[2]
    vqvae = folder.vqvae.model
    codes, encode_s = timed(lambda: _encode(vqvae, video))
    compressed, code_s = timed(lambda: compress_codes(folder, codes, frames, fps=10))
    decoded, decode_codes_s = timed(lambda: decompress_codes(folder, compressed.data))
    assert torch.equal(decoded.codes.top, codes.top) and torch.equal(decoded.codes.bottom, codes.bottom)
    _, decode_video_s = timed(lambda: decode_video(vqvae, decoded.codes, frames))
    positions = codes.top.numel() + codes.bottom.numel()
    row = {
        "clips": clips, "frames": frames, "positions": positions,
        "compress_frames_per_s": frames / (encode_s + code_s),
        "compress_prior_share": code_s / (encode_s + code_s),
        "decompress_frames_per_s": frames / (decode_codes_s + decode_video_s),
        "decompress_prior_share": decode_codes_s / (decode_codes_s + decode_video_s),
        "encode_positions_per_s": positions / code_s, "decode_positions_per_s": positions / decode_codes_s,
        "seconds": {"vqvae_encode": encode_s, "prior_encode": code_s, "prior_decode": decode_codes_s,
                    "vqvae_decode": decode_video_s},
    }
    return row, compressed


def _encode(vqvae: VQVAE, video: torch.Tensor) -> Codes:
    """As `compress` encodes: one clip at a time, under the coding path's pinned settings."""
    vqvae = coding_vqvae(vqvae)
    codes = [encode_clip(vqvae, clip) for clip in video]
    return Codes(torch.cat([c.top for c in codes]), torch.cat([c.bottom for c in codes]))


def rate_row(name: str, compressed: Compressed) -> dict:
    information = compressed.top_bits + compressed.bottom_bits
    payload = 8 * sum(map(len, compressed.chunks))
    positions = compressed.codes.top.numel() + compressed.codes.bottom.numel()
    return {"codes": name, "positions": positions, "information_bits": information, "payload_bits": payload,
            "file_bits": 8 * compressed.size, "bits_per_code": payload / positions,
            "excess": payload / information - 1}


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
    parser.add_argument("--clips", type=int, default=2, help="clips of 16 frames per measurement (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    folder = tiny_folder(args.seed)
    print("timing compress / decompress ...", flush=True)
    timing, compressed = speed(folder, args.clips, args.seed)
    rates = [rate_row("synthetic video, random priors", compressed)]
    print("sampling codes from sharpened priors ...", flush=True)
    sharp, codes = sharpened_codes(folder, args.clips, args.seed)
    sharp_compressed = compress_codes(sharp, codes, 16 * args.clips, fps=10, verify=True)
    assert torch.equal(decompress_codes(sharp, sharp_compressed.data).codes.bottom, codes.bottom)
    rates.append(rate_row("sampled, sharpened priors", sharp_compressed))
    verified = sharp_compressed.verification.fraction

    print(f"\ntiny preset, {timing['clips']} clips of 16×64×64 ({timing['positions']} code positions), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads for the VQ-VAE, 1 for the priors")
    print(f"{'':<12}{'frames/s':>10}{'in priors':>11}{'positions/s':>13}")
    print(f"{'compress':<12}{timing['compress_frames_per_s']:>10.2f}{timing['compress_prior_share']:>10.1%}"
          f"{timing['encode_positions_per_s']:>13.0f}")
    print(f"{'decompress':<12}{timing['decompress_frames_per_s']:>10.2f}"
          f"{timing['decompress_prior_share']:>10.1%}{timing['decode_positions_per_s']:>13.0f}")
    print(f"\n{'codes':<32}{'-log2 p (bits)':>15}{'written':>10}{'excess':>9}{'bits/code':>11}{'file':>9}")
    for row in rates:
        print(f"{row['codes']:<32}{row['information_bits']:>15.0f}{row['payload_bits']:>10}"
              f"{row['excess']:>9.2%}{row['bits_per_code']:>11.3f}{row['file_bits']:>9}")
    print(f"verification (sharpened priors): the full forward pass gives the coded PMF at {verified:.2%} of "
          "positions")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    environment = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                   "machine": platform.machine(), "python": platform.python_version(),
                   "load_average": os.getloadavg()}
    RESULTS.write_text(json.dumps({"environment": environment, "speed": timing, "rate": rates,
                                   "verified_fraction": verified}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

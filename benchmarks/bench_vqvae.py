"""Speed and memory of the hierarchical 3D VQ-VAE on CPU, against the original thesis's design, in one run.

For each case: a training step (forward + backward + Adam step) in seconds, `encode` and `decode_codes` in
frames/s, and peak memory. Each case runs in a fresh process, so its peak is its own: the maximum resident set
size (`resource.getrusage(...).ru_maxrss`) of that process, which includes the interpreter and torch itself
(reported separately as `baseline_rss_mib`, measured after import, before building the model).

The cases at the `thesis` clip size (16×256×256, batch 1) are timed against `reference`, the original thesis's
VQ-VAE (`ReferenceVQVAE` below: rosinality's VQ-VAE-2 in 3D, 1×3×3 residual convolutions of width 128, one
strided convolution per 2× resampling): the `thesis` preset as it is, and the block designs it was chosen from
(`model.block`, `model.res_channels`, `model.resample_frames`). The `tiny` cases time the same designs at the
`tiny` preset's widths, the ones whose held-out PSNR the README compares.

    python benchmarks/bench_vqvae.py [--threads N] [--cases NAME ...]

Prints a table and writes benchmarks/results/vqvae.json; with --cases, only those cases run and replace their
entries in an existing results file.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import torch
from results_file import write_results
from torch import Tensor, nn

from vqvid.models.quantize import EMAQuantizer
from vqvid.models.vqvae import VQVAE
from vqvid.presets import get_preset

RESULTS = Path(__file__).resolve().parent / "results" / "vqvae.json"

# --- The reference: the original thesis's VQ-VAE, written from its description -----------------------------


class _ReferenceResBlock(nn.Module):
    """ReLU, 1×3×3 convolution (space only) to `hidden`, ReLU, 1×1×1 back: rosinality's ResBlock in 3D."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.ReLU(), nn.Conv3d(channels, hidden, (1, 3, 3), padding=(0, 1, 1)),
                                  nn.ReLU(inplace=True), nn.Conv3d(hidden, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x)  # (B, C, T, H, W)


class ReferenceVQVAE(nn.Module):
    """rosinality/vq-vae-2-pytorch's two-level VQ-VAE with 3D convolutions, as the original thesis ran it.

    Every 2× down- or up-sampling is one strided 4×4×4 convolution (the bottom encoder's second one strides
    space only, so the bottom grid is T/2 × H/4 × W/4 and the top grid T/4 × H/8 × W/8, as in vqvid); residual
    blocks convolve 1×3×3 at width `res_channels` (128 in the original run); ReLU throughout; the top decoder
    conditions the bottom quantiser; EMA quantisers without restarts. At 128 channels, 2 residual blocks and
    embedding width 32 it has 3.98 M parameters.
    """

    def __init__(self, channels: int = 128, res_channels: int = 128, n_res_blocks: int = 2, embed_dim: int = 32,
                 num_codes: int = 512) -> None:
        super().__init__()
        c, d = channels, embed_dim

        def res_stack() -> list[nn.Module]:
            return [*(_ReferenceResBlock(c, res_channels) for _ in range(n_res_blocks)), nn.ReLU(inplace=True)]

        relu = partial(nn.ReLU, inplace=True)
        self.encoder_bottom = nn.Sequential(
            nn.Conv3d(3, c // 2, 4, stride=2, padding=1), relu(),
            nn.Conv3d(c // 2, c, (3, 4, 4), stride=(1, 2, 2), padding=1), relu(),
            nn.Conv3d(c, c, 3, padding=1), *res_stack())  # (B, C, T/2, H/4, W/4)
        self.encoder_top = nn.Sequential(
            nn.Conv3d(c, c // 2, 4, stride=2, padding=1), relu(),
            nn.Conv3d(c // 2, c, 3, padding=1), *res_stack())  # (B, C, T/4, H/8, W/8)
        self.quantize_conv_top = nn.Conv3d(c, d, 1)
        self.quantize_top = EMAQuantizer(d, num_codes, restart_threshold=0.0)
        self.decoder_top = nn.Sequential(
            nn.Conv3d(d, c, 3, padding=1), *res_stack(), nn.ConvTranspose3d(c, d, 4, stride=2, padding=1))
        self.quantize_conv_bottom = nn.Conv3d(c + d, d, 1)
        self.quantize_bottom = EMAQuantizer(d, num_codes, restart_threshold=0.0)
        self.upsample_top = nn.ConvTranspose3d(d, d, 4, stride=2, padding=1)
        self.decoder = nn.Sequential(
            nn.Conv3d(2 * d, c, 3, padding=1), *res_stack(),
            nn.ConvTranspose3d(c, c // 2, (3, 4, 4), stride=(1, 2, 2), padding=1), relu(),
            nn.ConvTranspose3d(c // 2, 3, 4, stride=2, padding=1))  # (B, 3, T, H, W)

    def forward(self, video: Tensor) -> tuple[Tensor, Tensor]:
        """(reconstruction (B, 3, T, H, W), commitment loss) of `video` (B, 3, T, H, W) in [-1, 1]."""
        bottom_features = self.encoder_bottom(video)
        top = self.quantize_top(self.quantize_conv_top(self.encoder_top(bottom_features)))
        top_decoded = self.decoder_top(top.quantized)  # (B, D, T/2, H/4, W/4)
        bottom = self.quantize_bottom(self.quantize_conv_bottom(torch.cat([bottom_features, top_decoded], 1)))
        joined = torch.cat([self.upsample_top(top.quantized), bottom.quantized], 1)  # (B, 2D, T/2, H/4, W/4)
        return self.decoder(joined), top.commitment_loss + bottom.commitment_loss



@dataclass(frozen=True)
class Case:
    name: str
    model: str  # "reference" (`ReferenceVQVAE`) or "vqvid"
    preset: str  # vqvid: the preset whose VQ-VAE config is the starting point; reference: its widths
    frames: int
    size: int  # height = width
    batch: int
    repeats: int  # timed repetitions after one warm-up
    design: dict = field(default_factory=dict)  # vqvid: VQVAEConfig fields replaced in the preset's config


def _design(block: str, res_channels: int, resample_frames: int) -> dict:
    return {"block": block, "res_channels": res_channels, "resample_frames": resample_frames}


THESIS = dict(frames=16, size=256, batch=1, repeats=2)  # one clip per step is what fits a CPU run
TINY = dict(frames=16, size=64, batch=8, repeats=5)  # the demo's batch
CASES = [
    Case("reference", "reference", "thesis", **THESIS),
    Case("thesis", "vqvid", "thesis", **THESIS),  # the preset as it stands
    # The designs the `thesis` preset was chosen from; the first is the preset's design before the choice.
    Case("thesis-3d-r32-f3", "vqvid", "thesis", **THESIS, design=_design("3d", 32, 3)),
    Case("thesis-3d-r32-f1", "vqvid", "thesis", **THESIS, design=_design("3d", 32, 1)),
    Case("thesis-spatial-r32-f1", "vqvid", "thesis", **THESIS, design=_design("spatial", 32, 1)),
    Case("thesis-factorised-r32-f1", "vqvid", "thesis", **THESIS, design=_design("factorised", 32, 1)),
    Case("thesis-factorised-r64-f1", "vqvid", "thesis", **THESIS, design=_design("factorised", 64, 1)),
    Case("thesis-factorised-r128-f1", "vqvid", "thesis", **THESIS, design=_design("factorised", 128, 1)),
    Case("thesis-factorised-r32-f3", "vqvid", "thesis", **THESIS, design=_design("factorised", 32, 3)),
    Case("thesis-factorised-r64-f3", "vqvid", "thesis", **THESIS, design=_design("factorised", 64, 3)),
    # The `tiny` preset (32 channels, residual width 16) and the designs whose held-out PSNR the README compares.
    Case("tiny", "vqvid", "tiny", **TINY),
    Case("tiny-spatial-r16-f3", "vqvid", "tiny", **TINY, design=_design("spatial", 16, 3)),
    Case("tiny-3d-r16-f1", "vqvid", "tiny", **TINY, design=_design("3d", 16, 1)),
    Case("tiny-spatial-r16-f1", "vqvid", "tiny", **TINY, design=_design("spatial", 16, 1)),
    Case("tiny-factorised-r16-f1", "vqvid", "tiny", **TINY, design=_design("factorised", 16, 1)),
    Case("tiny-factorised-r16-f3", "vqvid", "tiny", **TINY, design=_design("factorised", 16, 3)),
]


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: first calls pick convolution algorithms and allocate
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build(case: Case) -> tuple[nn.Module, dict]:
    """The case's model (seeded) and a description of its design."""
    config = get_preset(case.preset).vqvae.model
    torch.manual_seed(0)
    if case.model == "reference":
        # The original run's widths: its residual width equals the channels (128).
        model = ReferenceVQVAE(config.channels, config.channels, config.n_res_blocks, config.embed_dim,
                               config.num_codes)
        return model, {"block": "spatial (reference)", "res_channels": config.channels, "resample_frames": 3,
                       "activation": "relu", "channels": config.channels}
    config = replace(config, **case.design)
    return VQVAE(config), {"block": config.block, "res_channels": config.res_channels,
                           "resample_frames": config.resample_frames, "activation": config.activation,
                           "channels": config.channels}


def run_case(case: Case, threads: int) -> dict:
    torch.set_num_threads(threads)
    baseline = _rss_mib()
    model, design = build(case)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    video = torch.rand(case.batch, 3, case.frames, case.size, case.size) * 2 - 1  # (B, 3, T, H, W)

    def train_step() -> None:
        reconstruction, commitment_loss = model.train()(video)[:2]  # VQVAEOutput or the reference's pair
        loss = (reconstruction - video).pow(2).mean() + commitment_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    train_s = _median_seconds(train_step, case.repeats)
    encode_s = decode_s = None
    if case.model == "vqvid":
        model.eval()
        with torch.inference_mode():
            codes = model.encode(video)
            encode_s = _median_seconds(lambda: model.encode(video), case.repeats)
            decode_s = _median_seconds(lambda: model.decode_codes(codes.top, codes.bottom), case.repeats)
    frames = case.batch * case.frames
    return {
        **asdict(case),
        **design,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_step_s": train_s,
        "train_clips_per_s": case.batch / train_s,
        "encode_frames_per_s": frames / encode_s if encode_s else None,
        "decode_frames_per_s": frames / decode_s if decode_s else None,
        "peak_rss_mib": _rss_mib(),
        "baseline_rss_mib": baseline,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--cases", nargs="+", choices=[case.name for case in CASES], help="run only these")
    args = parser.parse_args()

    threads = args.threads or torch.get_num_threads()
    results = []
    if args.cases and RESULTS.exists():
        results = [r for r in json.loads(RESULTS.read_text())["cases"] if r["name"] not in args.cases]
    for case in CASES:
        if args.cases and case.name not in args.cases:
            continue
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            results.append(pool.submit(run_case, case, threads).result())
        print(f"{case.name}: {results[-1]['train_step_s']:.2f} s/step", flush=True)
    order = [case.name for case in CASES]
    results.sort(key=lambda r: order.index(r["name"]))
    reference = next((r["train_step_s"] for r in results if r["name"] == "reference"), None)

    header = (
        f"{'case':<26} {'block':>10} {'res':>4} {'f':>2} {'clip':>10} {'batch':>5} {'params':>10} "
        f"{'s/step':>7} {'/ ref':>6} {'encode fr/s':>11} {'decode fr/s':>11} {'peak RSS MiB':>12}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        clip = f"{r['frames']}×{r['size']}×{r['size']}"
        ratio = f"{r['train_step_s'] / reference:.2f}" if reference and r["preset"] == "thesis" else "-"
        encode = "-" if r["encode_frames_per_s"] is None else f"{r['encode_frames_per_s']:.1f}"
        decode = "-" if r["decode_frames_per_s"] is None else f"{r['decode_frames_per_s']:.1f}"
        block = "reference" if r["model"] == "reference" else r["block"]
        print(f"{r['name']:<26} {block:>10} {r['res_channels']:>4} {r['resample_frames']:>2} {clip:>10} "
              f"{r['batch']:>5} {r['parameters']:>10,} {r['train_step_s']:>7.2f} {ratio:>6} {encode:>11} "
              f"{decode:>11} {r['peak_rss_mib']:>12.0f}")
    print(f"res: residual width; f: frames of the space-only resampling convolutions; / ref: step time over "
          f"the reference's. Peak RSS: ru_maxrss of a fresh process per case; torch alone took "
          f"{results[0]['baseline_rss_mib']:.0f} MiB. threads={threads}, torch {torch.__version__}")

    write_results("vqvae", threads, cases=results)


if __name__ == "__main__":
    main()

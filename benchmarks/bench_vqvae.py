"""Speed and memory of the hierarchical 3D VQ-VAE on CPU.

For each case: a training step (forward + backward + Adam step) in clips/s, `encode` and `decode_codes` in
frames/s, and peak memory. Each case runs in a fresh process, so its peak is its own: the maximum resident set
size (`resource.getrusage(...).ru_maxrss`) of that process, which includes the interpreter and torch itself
(reported separately as `baseline_rss_mib`, measured after import, before building the model).

    python benchmarks/bench_vqvae.py [--threads N]

Prints a table and writes benchmarks/results/vqvae.json.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from multiprocessing import get_context

import torch
from results_file import write_results
from torch import Tensor, nn

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
        from vqvid.models.quantize import EMAQuantizer

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
    frames: int
    size: int  # height = width
    batch: int
    channels: int
    res_channels: int
    n_res_blocks: int
    embed_dim: int
    repeats: int  # timed repetitions after one warm-up


CASES = [
    # The tiny shape with the tiny-preset settings (and a narrower variant), at the demo's batch size.
    Case("tiny", 16, 64, 8, channels=64, res_channels=32, n_res_blocks=1, embed_dim=32, repeats=5),
    Case("tiny-narrow", 16, 64, 8, channels=32, res_channels=16, n_res_blocks=1, embed_dim=16, repeats=5),
    # The thesis configuration at the thesis clip size; one clip per step is what fits a CPU run.
    Case("thesis", 16, 256, 1, channels=128, res_channels=32, n_res_blocks=2, embed_dim=32, repeats=2),
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


def run_case(case: Case, threads: int) -> dict:
    import torch

    from vqvid.models.vqvae import VQVAE, VQVAEConfig

    torch.set_num_threads(threads)
    baseline = _rss_mib()
    torch.manual_seed(0)
    config = VQVAEConfig(
        channels=case.channels,
        res_channels=case.res_channels,
        n_res_blocks=case.n_res_blocks,
        embed_dim=case.embed_dim,
        num_codes=512,
    )
    model = VQVAE(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    video = torch.rand(case.batch, 3, case.frames, case.size, case.size) * 2 - 1  # (B, 3, T, H, W)

    def train_step() -> None:
        out = model.train()(video)
        loss = (out.reconstruction - video).pow(2).mean() + out.commitment_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    train_s = _median_seconds(train_step, case.repeats)
    model.eval()
    with torch.inference_mode():
        codes = model.encode(video)
        encode_s = _median_seconds(lambda: model.encode(video), case.repeats)
        decode_s = _median_seconds(lambda: model.decode_codes(codes.top, codes.bottom), case.repeats)
    frames = case.batch * case.frames
    return {
        **asdict(case),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_step_s": train_s,
        "train_clips_per_s": case.batch / train_s,
        "encode_frames_per_s": frames / encode_s,
        "decode_frames_per_s": frames / decode_s,
        "peak_rss_mib": _rss_mib(),
        "baseline_rss_mib": baseline,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    import torch

    threads = args.threads or torch.get_num_threads()
    results = []
    for case in CASES:
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            results.append(pool.submit(run_case, case, threads).result())

    header = (
        f"{'case':<12} {'clip':>10} {'batch':>5} {'params':>9} {'train s/step':>12} {'train clips/s':>13} "
        f"{'encode fr/s':>11} {'decode fr/s':>11} {'peak RSS MiB':>12}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        clip = f"{r['frames']}×{r['size']}×{r['size']}"
        print(f"{r['name']:<12} {clip:>10} {r['batch']:>5} {r['parameters']:>9,} {r['train_step_s']:>12.2f} "
              f"{r['train_clips_per_s']:>13.2f} {r['encode_frames_per_s']:>11.1f} "
              f"{r['decode_frames_per_s']:>11.1f} {r['peak_rss_mib']:>12.0f}")
    print(f"peak RSS: ru_maxrss of a fresh process per case; torch alone took "
          f"{results[0]['baseline_rss_mib']:.0f} MiB. threads={threads}, torch {torch.__version__}")

    write_results("vqvae", threads, cases=results)


if __name__ == "__main__":
    main()

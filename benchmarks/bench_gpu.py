"""The `thesis` shapes on one CUDA GPU: VQ-VAE and prior training steps, sampling and coding speed.

Run through `benchmarks/gpu.sh` (which bounds the whole run to 10 minutes). Measured, each on the GPU unless the
library runs it elsewhere:

- `vqvae`: one training step (forward, loss, backward, Adam) of the `thesis` preset's VQ-VAE on 16×256×256
  clips under bf16 autocast, at batch 1 and at the preset's batch size, against float32, and the original thesis
  design (`bench_vqvae.ReferenceVQVAE`) in bf16;
- `priors`: one training step (forward, cross-entropy, backward, Adam) of the `thesis` top prior with attention
  through `scaled_dot_product_attention` and through the explicit masked score matrix
  (`reference_causal_attention`), and of the bottom prior without attention (the preset) and with SDPA
  attention, all in bf16 autocast;
- `sampling`: positions per second of `vqvid.sampling.sample` (incremental steppers) with the `thesis` top
  prior over its whole grid, and with the bottom prior over the last positions of its grid;
- `coding`: positions per second of `vqvid.codec.video.compress_codes` and `decompress_codes` at the `tiny`
  preset (as `bench_codec.py` measures them), wherever the codec runs its priors (`coding_device` in the
  results says where that was).

Random weights: speed does not depend on training. Step times are medians over a few steps after a warm-up
step, with the device synchronised around each; peak memory is `torch.cuda.max_memory_allocated` per case.

    benchmarks/gpu.sh                       # on a CUDA machine: writes benchmarks/results/gpu.json
    benchmarks/gpu.sh --dry-run --out F     # anywhere, in seconds: tiny shapes on the CPU, the same code paths

The dry run exists to keep this script working where no GPU is at hand (a test runs it); its figures mean
nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from vqvid.models.pixelsnail import CausalSelfAttention, PixelSNAIL, PixelSNAILConfig, reference_causal_attention
from vqvid.models.vqvae import VQVAE, VQVAEConfig
from vqvid.presets import get_preset

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmarks, imported where used

RESULTS = Path(__file__).resolve().parent / "results" / "gpu.json"


@dataclass(frozen=True)
class Sizes:
    """What one run measures: the `thesis` shapes on a GPU, or tiny ones for the dry run."""

    frames: int  # VQ-VAE clip length
    size: int  # VQ-VAE clip height = width
    vqvae_batches: tuple[int, ...]  # batch sizes of the VQ-VAE step
    repeats: int  # timed steps after one warm-up step
    sample_batch: int  # sequences sampled together
    bottom_sample_positions: int  # positions sampled at the end of the bottom grid
    coding_clips: int  # `tiny` clips (16×64×64) compressed and decompressed


GPU = Sizes(frames=16, size=256, vqvae_batches=(1, 8), repeats=5, sample_batch=8, bottom_sample_positions=2048,
            coding_clips=2)
DRY = Sizes(frames=8, size=16, vqvae_batches=(1,), repeats=1, sample_batch=2, bottom_sample_positions=8,
            coding_clips=1)


def _shrunk_vqvae(config: VQVAEConfig) -> VQVAEConfig:
    return replace(config, channels=8, res_channels=4, embed_dim=4, num_codes=16)


def _shrunk_prior(config: PixelSNAILConfig) -> PixelSNAILConfig:
    """The same kind of prior (attention, condition) at a width and grid the CPU runs in a blink."""
    shape = (2, 4, 4) if config.conditional else (1, 2, 2)
    changes = dict(shape=shape, channels=8, n_blocks=1, key_channels=4, value_channels=8, num_codes=16,
                   embed_dim=4)
    if config.conditional:
        changes.update(condition_shape=(1, 2, 2), condition_num_codes=16, condition_channels=8, n_cond_res_blocks=1)
    return replace(config, **changes)


class Timer:
    """Median seconds of a callable on one device, synchronising around every call."""

    def __init__(self, device: torch.device, repeats: int) -> None:
        self.device, self.repeats = device, repeats

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def reset_peak(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_mib(self) -> float | None:
        return torch.cuda.max_memory_allocated(self.device) / 2**20 if self.device.type == "cuda" else None

    def seconds(self, fn: Callable[[], object], warmup: bool | None = None) -> float:
        """Median over `repeats` calls, after an untimed one unless `warmup` is False (default: on a GPU)."""
        if self.device.type == "cuda" if warmup is None else warmup:
            fn()
        times = []
        for _ in range(self.repeats):
            self.sync()
            start = time.perf_counter()
            fn()
            self.sync()
            times.append(time.perf_counter() - start)
        return statistics.median(times)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def vqvae_cases(device: torch.device, sizes: Sizes, dry: bool) -> list[dict]:
    """Training steps of the `thesis` VQ-VAE (bf16 and float32) and of the original design (bf16)."""
    from bench_vqvae import ReferenceVQVAE

    config = get_preset("thesis").vqvae.model
    if dry:
        config = _shrunk_vqvae(config)
    timer = Timer(device, sizes.repeats)
    rows = []
    for batch in sizes.vqvae_batches:
        for name, dtype in (("thesis", torch.bfloat16), ("thesis", None), ("reference", torch.bfloat16)):
            if dtype is None and batch != sizes.vqvae_batches[-1]:
                continue  # float32 once, at the largest batch: the comparison bf16 is there for
            torch.manual_seed(0)
            if name == "thesis":
                model = VQVAE(config)
            else:
                model = ReferenceVQVAE(config.channels, config.channels, config.n_res_blocks, config.embed_dim,
                                       config.num_codes)
            model = model.to(device).train()
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            video = torch.rand(batch, 3, sizes.frames, sizes.size, sizes.size, device=device) * 2 - 1

            def step(model=model, optimizer=optimizer, video=video, dtype=dtype) -> None:
                with _autocast(device, dtype):
                    out = model(video)
                    reconstruction, commitment = out[0], out[1]  # VQVAEOutput or the reference's pair
                    loss = (reconstruction.float() - video).pow(2).mean() + commitment
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

            timer.reset_peak()
            seconds = timer.seconds(step)
            rows.append({"model": name, "precision": "bf16-autocast" if dtype else "float32", "batch": batch,
                         "clip": [sizes.frames, sizes.size, sizes.size],
                         "parameters": sum(p.numel() for p in model.parameters()), "step_s": seconds,
                         "clips_per_s": batch / seconds, "peak_mib": timer.peak_mib()})
            del model, optimizer, video
    return rows


def _prior_inputs(config: PixelSNAILConfig, batch: int, device: torch.device
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    codes = torch.randint(0, config.num_codes, (batch, *config.shape), device=device)
    condition = None
    if config.conditional:
        condition = torch.randint(0, config.condition_num_codes, (batch, *config.condition_shape), device=device)
    return codes, condition


def prior_cases(device: torch.device, sizes: Sizes, dry: bool) -> list[dict]:
    """Training steps of both `thesis` priors in bf16 autocast, attention by SDPA against the explicit matrix."""
    preset = get_preset("thesis")
    cases = [("top", True, "sdpa"), ("top", True, "matrix"), ("bottom", False, "none"), ("bottom", True, "sdpa")]
    timer = Timer(device, sizes.repeats)
    rows = []
    for level, attention, implementation in cases:
        run = preset.prior(level)
        config = replace(run.model, attention=attention)
        batch = run.train.batch_size
        if dry:
            config, batch = _shrunk_prior(config), 2
        torch.manual_seed(0)
        prior = PixelSNAIL(config).to(device).train()
        if implementation == "matrix":
            for module in prior.modules():
                if isinstance(module, CausalSelfAttention):
                    module.causal_attention = reference_causal_attention
        optimizer = torch.optim.Adam(prior.parameters(), lr=3e-4)
        codes, condition = _prior_inputs(config, batch, device)

        def step(prior=prior, optimizer=optimizer, codes=codes, condition=condition) -> None:
            with _autocast(device, torch.bfloat16):
                loss = F.cross_entropy(prior(codes, condition).float(), codes)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        timer.reset_peak()
        try:
            seconds = timer.seconds(step)
        except torch.OutOfMemoryError:
            rows.append({"level": level, "attention": implementation, "batch": batch, "error": "out of memory"})
            continue
        finally:
            optimizer.zero_grad(set_to_none=True)
        rows.append({"level": level, "attention": implementation, "precision": "bf16-autocast", "batch": batch,
                     "grid": list(config.shape), "channels": config.channels,
                     "parameters": sum(p.numel() for p in prior.parameters()), "step_s": seconds,
                     "codes_per_s": batch * math.prod(config.shape) / seconds, "peak_mib": timer.peak_mib()})
        del prior, optimizer
    return rows


def sampling_cases(device: torch.device, sizes: Sizes, dry: bool) -> list[dict]:
    """Positions per second of `vqvid.sampling.sample` with the `thesis` priors (float32, as it samples)."""
    from vqvid.sampling import sample

    preset = get_preset("thesis")
    timer = Timer(device, repeats=1)
    rows = []
    for level in ("top", "bottom"):
        config = preset.prior(level).model
        if dry:
            config = _shrunk_prior(config)
        torch.manual_seed(0)
        prior = PixelSNAIL(config).to(device).eval()
        codes, condition = _prior_inputs(config, sizes.sample_batch, device)
        total = math.prod(config.shape)
        # The top grid whole; the bottom grid's last positions, after the rest as context (one cache-filling
        # pass, then a step per position: what predicting the last frames costs).
        start = 0 if level == "top" else max(0, total - sizes.bottom_sample_positions)
        generator = torch.Generator(device).manual_seed(0)

        def run(prior=prior, codes=codes, condition=condition, start=start, generator=generator) -> None:
            sample(prior, codes.clone() if start else codes.shape[0], condition=condition, start=start,
                   generator=generator)

        seconds = timer.seconds(run, warmup=False)  # a warm-up here would double the longest case
        positions = total - start
        rows.append({"level": level, "batch": sizes.sample_batch, "grid": list(config.shape),
                     "channels": config.channels, "positions": positions, "seconds": seconds,
                     "positions_per_s": positions / seconds,
                     "sequence_positions_per_s": sizes.sample_batch * positions / seconds})
        del prior
    return rows


def coding_case(device: torch.device, sizes: Sizes, dry: bool) -> dict:
    """`compress_codes` / `decompress_codes` of the `tiny` preset's codes, as `bench_codec.py` runs them."""
    from bench_codec import folder_of

    from vqvid.codec.video import compress_codes, decompress_codes
    from vqvid.models.vqvae import Codes

    preset = get_preset("tiny")
    vqvae_config, top_config, bottom_config = preset.vqvae.model, preset.top.model, preset.bottom.model
    frames, size = preset.vqvae.data.frames, preset.vqvae.data.size
    if dry:
        vqvae_config, top_config, bottom_config = (_shrunk_vqvae(vqvae_config), _shrunk_prior(top_config),
                                                   _shrunk_prior(bottom_config))
        frames, size = 4 * top_config.shape[0], 8 * top_config.shape[1]
    torch.manual_seed(0)
    vqvae = VQVAE(vqvae_config).to(device).eval()
    top, bottom = PixelSNAIL(top_config).to(device).eval(), PixelSNAIL(bottom_config).to(device).eval()
    folder = folder_of(vqvae, top, bottom, frames, size, "bench-gpu")
    clips = sizes.coding_clips
    codes = Codes(torch.randint(0, vqvae_config.num_codes, (clips, *top_config.shape)),
                  torch.randint(0, vqvae_config.num_codes, (clips, *bottom_config.shape)))
    start = time.perf_counter()
    compressed = compress_codes(folder, codes, clips * frames, fps=10)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    decoded = decompress_codes(folder, compressed.data)
    decode_s = time.perf_counter() - start
    if not (torch.equal(decoded.codes.top, codes.top) and torch.equal(decoded.codes.bottom, codes.bottom)):
        raise RuntimeError("coding: decompress_codes did not return the codes compress_codes coded")
    positions = codes.top.numel() + codes.bottom.numel()
    return {"preset": "tiny", "clips": clips, "positions": positions, "bytes": compressed.size,
            "models_on": str(device), "coding_device": _coding_device(folder),
            "encode_s": encode_s, "decode_s": decode_s,
            "encode_positions_per_s": positions / encode_s, "decode_positions_per_s": positions / decode_s}


def _coding_device(folder) -> str:
    """Where the codec runs the priors (the CPU, whatever device the folder's models are on)."""
    from vqvid.codec.coding import coding_priors

    return str(next(coding_priors(folder.top.model, folder.bottom.model).top.parameters()).device)


def environment(device: torch.device) -> dict:
    found = {"torch": torch.__version__, "cuda": torch.version.cuda, "machine": platform.machine(),
             "python": platform.python_version(), "cpus": os.cpu_count(), "device": str(device)}
    if device.type == "cuda":
        found["gpu"] = torch.cuda.get_device_name(device)
        found["gpu_memory_mib"] = torch.cuda.get_device_properties(device).total_memory / 2**20
    return found


def _print_tables(results: dict) -> None:
    print(f"\n{'VQ-VAE step':<12} {'precision':>14} {'batch':>5} {'params':>10} {'s/step':>8} {'clips/s':>8} "
          f"{'peak MiB':>9}")
    for r in results["vqvae"]:
        peak = "-" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
        print(f"{r['model']:<12} {r['precision']:>14} {r['batch']:>5} {r['parameters']:>10,} {r['step_s']:>8.3f} "
              f"{r['clips_per_s']:>8.2f} {peak:>9}")
    print(f"\n{'prior step':<8} {'attention':>9} {'batch':>5} {'grid':>8} {'s/step':>8} {'codes/s':>10} "
          f"{'peak MiB':>9}")
    for r in results["priors"]:
        if "error" in r:
            print(f"{r['level']:<8} {r['attention']:>9} {r['batch']:>5} {r['error']}")
            continue
        peak = "-" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
        print(f"{r['level']:<8} {r['attention']:>9} {r['batch']:>5} {'×'.join(map(str, r['grid'])):>8} "
              f"{r['step_s']:>8.3f} {r['codes_per_s']:>10.0f} {peak:>9}")
    print(f"\n{'sampling':<8} {'batch':>5} {'positions':>9} {'positions/s':>12} {'× batch':>10}")
    for r in results["sampling"]:
        print(f"{r['level']:<8} {r['batch']:>5} {r['positions']:>9} {r['positions_per_s']:>12.1f} "
              f"{r['sequence_positions_per_s']:>10.1f}")
    c = results["coding"]
    print(f"\ncoding ({c['preset']}, {c['clips']} clips, {c['positions']} positions, priors on "
          f"{c['coding_device']}): compress {c['encode_positions_per_s']:.0f} positions/s, decompress "
          f"{c['decode_positions_per_s']:.0f} positions/s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU, in seconds")
    parser.add_argument("--out", type=Path, default=None, help=f"results file (default {RESULTS}; the dry run "
                        "writes nothing unless given one)")
    parser.add_argument("--device", default="cuda", help="torch device of a real run (default cuda)")
    args = parser.parse_args(argv)
    if args.dry_run:
        device, sizes = torch.device("cpu"), DRY
    else:
        device, sizes = torch.device(args.device), GPU
        if device.type != "cuda" or not torch.cuda.is_available():
            print(f"bench_gpu: --device {args.device}: needs a CUDA device, and torch {torch.__version__} sees "
                  f"none; run with --dry-run to check the script on the CPU", file=sys.stderr)
            return 2
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest algorithms
        torch.backends.cuda.matmul.allow_tf32 = True  # what bf16 training runs with; the float32 row too
        torch.backends.cudnn.allow_tf32 = True
    results: dict = {"environment": environment(device), "dry_run": args.dry_run}
    for name, measure in (("vqvae", vqvae_cases), ("priors", prior_cases), ("sampling", sampling_cases),
                          ("coding", coding_case)):
        start = time.perf_counter()
        results[name] = measure(device, sizes, args.dry_run)
        print(f"{name}: {time.perf_counter() - start:.1f} s", flush=True)
    _print_tables(results)
    out = args.out if args.out is not None else (None if args.dry_run else RESULTS)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

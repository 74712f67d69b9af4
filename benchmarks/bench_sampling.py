"""Naive, incremental and fused sampling of the PixelSNAIL priors on CPU, in the same run.

`naive` runs a full forward pass for every position; `incremental` (`IncrementalStepper`) reads per-layer
caches (Ramachandran et al. 2017), so each position costs what it changes; `fused` (`FusedStepper`, what
`vqvid.sampling.sample` uses) keeps those caches and fuses each position's layers into a few matrix products on
preallocated row buffers. Each case samples a batch of B sequences at once (all methods) with `draw`, as
`sample` does; time per position is the wall time of one step for the whole batch, positions per second count
every sequence of the batch.

The naive method costs the same at every position (a full pass over the grid), so it is timed on its first few
positions and extrapolated to the grid. The cached methods are timed over the whole grid, including the forward
pass that fills their caches; their per-position time is that total divided by the number of positions.

    python benchmarks/bench_sampling.py [--threads N] [--batch B] [--cases NAME ...]

Prints a table and writes benchmarks/results/sampling.json; entries of other batch sizes, and with --cases of
other cases, are kept from an existing results file.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from results_file import write_results

from vqvid.models.pixelsnail import PixelSNAIL, PixelSNAILConfig
from vqvid.presets import get_preset
from vqvid.sampling import FusedStepper, IncrementalStepper, NaiveStepper, draw

RESULTS = Path(__file__).resolve().parent / "results" / "sampling.json"


@dataclass(frozen=True)
class Case:
    name: str
    preset: str  # widths from this preset's prior of `level`
    level: str
    shape: tuple[int, int, int]  # the grid sampled (the bottom prior's condition is half of it)
    naive_positions: int  # positions the naive method is timed on


CASES = [
    Case("top-tiny", "tiny", "top", (4, 32, 32), naive_positions=8),
    Case("bottom-tiny", "tiny", "bottom", (8, 64, 64), naive_positions=3),
    Case("top-thesis", "thesis", "top", (4, 32, 32), naive_positions=2),
]


def prior_config(case: Case) -> PixelSNAILConfig:
    config = get_preset(case.preset).prior(case.level).model
    if config.conditional:
        return replace(config, shape=case.shape, condition_shape=tuple(s // 2 for s in case.shape))
    return replace(config, shape=case.shape)


def inputs(config: PixelSNAILConfig, batch: int) -> torch.Tensor | None:
    if not config.conditional:
        return None
    return torch.randint(0, config.condition_num_codes, (batch, *config.condition_shape))


@torch.inference_mode()  # as `vqvid.sampling.sample` runs its steps
def time_naive(prior: PixelSNAIL, batch: int, positions: int) -> float:
    """Seconds per position, over the first `positions` positions."""
    stepper = NaiveStepper(prior, batch, condition=inputs(prior.config, batch))
    start = time.perf_counter()
    for _ in range(positions):
        stepper.feed(draw(stepper.step_log_probs()))
    return (time.perf_counter() - start) / positions


@torch.inference_mode()
def time_cached(stepper_class: type[IncrementalStepper], prior: PixelSNAIL, batch: int) -> tuple[float, float]:
    """Seconds of the cache-filling pass, and seconds per position over the whole grid, that pass included."""
    condition = inputs(prior.config, batch)
    start = time.perf_counter()
    stepper = stepper_class(prior, batch, condition=condition)
    fill = time.perf_counter() - start
    for _ in range(math.prod(prior.config.shape)):
        stepper.feed(draw(stepper.step_log_probs()))
    return fill, (time.perf_counter() - start) / math.prod(prior.config.shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--batch", type=int, default=4, help="sequences sampled together (default 4)")
    parser.add_argument("--cases", nargs="+", choices=[case.name for case in CASES], help="run only these")
    args = parser.parse_args()
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)

    results = []
    if RESULTS.exists():  # keep the entries this run does not replace
        results = [r for r in json.loads(RESULTS.read_text())["cases"]
                   if r["batch"] != args.batch or (args.cases and r["name"] not in args.cases)]
    for case in CASES:
        if args.cases and case.name not in args.cases:
            continue
        torch.manual_seed(0)
        config = prior_config(case)
        prior = PixelSNAIL(config).eval()
        n_positions = math.prod(config.shape)
        naive_s = time_naive(prior, args.batch, case.naive_positions)
        fill_s, incremental_s = time_cached(IncrementalStepper, prior, args.batch)
        fused_fill_s, fused_s = time_cached(FusedStepper, prior, args.batch)
        results.append({
            **asdict(case),
            "channels": config.channels,
            "n_blocks": config.n_blocks,
            "attention": config.attention,
            "batch": args.batch,
            "positions": n_positions,
            "naive_s_per_position": naive_s,
            "naive_s_total_extrapolated": naive_s * n_positions,
            "incremental_fill_s": fill_s,
            "incremental_s_per_position": incremental_s,
            "incremental_s_total": incremental_s * n_positions,
            "speedup": naive_s / incremental_s,
            "fused_fill_s": fused_fill_s,
            "fused_s_per_position": fused_s,
            "fused_s_total": fused_s * n_positions,
            "incremental_positions_per_s": args.batch / incremental_s,
            "fused_positions_per_s": args.batch / fused_s,
            "fused_speedup_over_incremental": incremental_s / fused_s,
        })
        print(f"done: {case.name}", flush=True)

    order = [case.name for case in CASES]
    results.sort(key=lambda r: (-r["batch"], order.index(r["name"])))
    header = (f"{'case':<12} {'grid':>8} {'width':>5} {'attn':>5} {'batch':>5} {'naive ms/pos':>12} "
              f"{'(timed on)':>10} {'incr ms/pos':>11} {'fused ms/pos':>12} {'incr pos/s':>10} "
              f"{'fused pos/s':>11} {'fused/incr':>10} {'fused/naive':>11}")
    print(header)
    print("-" * len(header))
    for r in results:
        if "fused_s_per_position" not in r:
            continue  # an entry from before the fused stepper
        grid = "×".join(map(str, r["shape"]))
        print(f"{r['name']:<12} {grid:>8} {r['channels']:>5} {'yes' if r['attention'] else 'no':>5} "
              f"{r['batch']:>5} {1e3 * r['naive_s_per_position']:>12.1f} {r['naive_positions']:>6} pos "
              f"{1e3 * r['incremental_s_per_position']:>11.2f} {1e3 * r['fused_s_per_position']:>12.2f} "
              f"{r['incremental_positions_per_s']:>10.0f} {r['fused_positions_per_s']:>11.0f} "
              f"{r['fused_speedup_over_incremental']:>9.2f}× "
              f"{r['naive_s_per_position'] / r['fused_s_per_position']:>10.0f}×")
    print(f"naive per-position times are extrapolated from the positions timed; incremental and fused are "
          f"measured over the whole grid, cache-filling pass included; positions/s count all B sequences. "
          f"threads={threads}, torch {torch.__version__}")

    write_results("sampling", threads, cases=results)


if __name__ == "__main__":
    main()

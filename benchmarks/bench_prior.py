"""Training-step cost of the PixelSNAIL priors on CPU, at the thesis's grids and widths.

For each case: one training step (forward + cross-entropy + backward) in seconds, and its peak memory. The
top prior runs twice in the same invocation: with attention through `scaled_dot_product_attention` (as
trained) and with the same weights' attention computed from an explicit masked (THW × THW) score matrix
(`reference_causal_attention`). The bottom prior runs at 8×64×64 with and without attention, the choice the
`thesis` preset makes.

Each case runs in a fresh process, so its peak is its own: `step_peak_mib` is the growth of the maximum
resident set size (`ru_maxrss`) over its steps, from the resident size once model and inputs are built.

    python benchmarks/bench_prior.py [--threads N] [--cases NAME ...]

Prints a table and writes benchmarks/results/prior.json; with --cases, only those cases run and replace their
entries in an existing results file.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

from results_file import write_results

RESULTS = Path(__file__).resolve().parent / "results" / "prior.json"


@dataclass(frozen=True)
class Case:
    name: str
    level: str  # which prior of the `thesis` preset
    attention: bool
    reference_attention: bool  # explicit masked matrix instead of scaled_dot_product_attention
    batch: int
    warmup: bool  # one untimed step first; skipped where a step takes minutes


CASES = [
    Case("top", "top", attention=True, reference_attention=False, batch=1, warmup=True),
    Case("top-reference-attn", "top", attention=True, reference_attention=True, batch=1, warmup=True),
    Case("bottom", "bottom", attention=False, reference_attention=False, batch=1, warmup=False),
    Case("bottom+attention", "bottom", attention=True, reference_attention=False, batch=1, warmup=False),
]


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def run_case(case: Case, threads: int) -> dict:
    from dataclasses import replace

    import torch
    import torch.nn.functional as F

    from vqvid.models.pixelsnail import CausalSelfAttention, PixelSNAIL, reference_causal_attention
    from vqvid.presets import get_preset

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = replace(get_preset("thesis").prior(case.level).model, attention=case.attention)
    prior = PixelSNAIL(config).train()
    if case.reference_attention:
        for module in prior.modules():
            if isinstance(module, CausalSelfAttention):
                module.causal_attention = reference_causal_attention
    codes = torch.randint(0, config.num_codes, (case.batch, *config.shape))
    condition = (torch.randint(0, config.condition_num_codes, (case.batch, *config.condition_shape))
                 if config.conditional else None)

    def step() -> None:
        loss = F.cross_entropy(prior(codes, condition), codes)
        loss.backward()
        prior.zero_grad(set_to_none=True)

    before = _rss_mib()
    if case.warmup:
        step()
    start = time.perf_counter()
    step()
    seconds = time.perf_counter() - start
    return {
        **asdict(case),
        "shape": list(config.shape),
        "channels": config.channels,
        "n_blocks": config.n_blocks,
        "parameters": sum(p.numel() for p in prior.parameters()),
        "step_s": seconds,
        "codes_per_s": case.batch * codes[0].numel() / seconds,
        "rss_model_built_mib": before,
        "step_peak_mib": _max_rss_mib() - before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--cases", nargs="+", choices=[case.name for case in CASES], help="run only these")
    args = parser.parse_args()
    import torch

    threads = args.threads or torch.get_num_threads()
    results, failures = [], {}
    if args.cases and RESULTS.exists():
        previous = json.loads(RESULTS.read_text())
        results = [r for r in previous["cases"] if r["name"] not in args.cases]
        failures = {k: v for k, v in previous["failures"].items() if k not in args.cases}
    for case in CASES:
        if args.cases and case.name not in args.cases:
            continue
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            try:
                results.append(pool.submit(run_case, case, threads).result())
            except BrokenProcessPool:  # killed from outside, most likely for memory
                failures[case.name] = "the process died (out of memory?)"
        print(f"{case.name}: {failures.get(case.name, 'done')}", flush=True)

    order = [case.name for case in CASES]
    results.sort(key=lambda r: order.index(r["name"]))
    header = (f"{'case':<20} {'grid':>8} {'width':>5} {'blocks':>6} {'attention':>9} {'batch':>5} "
              f"{'params':>10} {'step s':>8} {'codes/s':>8} {'step peak MiB':>13}")
    print(header)
    print("-" * len(header))
    for r in results:
        grid = "×".join(map(str, r["shape"]))
        attention = ("matrix" if r["reference_attention"] else "sdpa") if r["attention"] else "none"
        print(f"{r['name']:<20} {grid:>8} {r['channels']:>5} {r['n_blocks']:>6} {attention:>9} "
              f"{r['batch']:>5} {r['parameters']:>10,} {r['step_s']:>8.1f} {r['codes_per_s']:>8.0f} "
              f"{r['step_peak_mib']:>13.0f}")
    warmed = ", ".join(r["name"] for r in results if r["warmup"])
    for name, reason in failures.items():
        print(f"{name:<20} failed: {reason}")
    print(f"one forward + backward step; an untimed step first for: {warmed}. "
          f"threads={threads}, torch {torch.__version__}")

    write_results("prior", threads, cases=results, failures=failures)


if __name__ == "__main__":
    main()

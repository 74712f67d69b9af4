"""How prediction scales with prior training: a learning curve on the demo's held-out clips.

Trains the `tiny` top and bottom priors once each on the codes of a finished `vqvid demo` (its VQ-VAE, its
training and validation code stores), saving checkpoints at every budget, and at each budget measures:
- both priors' bits per code on the held-out validation codes;
- frames 8-15 of the demo's held-out videos predicted from frames 0-7 (`vqvid predict`, N samples per clip at
  its default temperature): mean PSNR and SSIM of the default decoding (the pixel mean of the N decoded samples), of
  single samples, and of the best of the N samples per clip; copy-last-frame as the line to beat.

The budgets are checkpoints of one run per prior whose learning rate anneals (cosine) to 0 at the largest
budget, so the smaller budgets are not what a run of that length would reach (it would anneal sooner): read
them as a lower bound.

    python benchmarks/bench_prediction.py [--demo demo_out] [--budgets 200 400 800 1600 3200] [--samples 8]
    python benchmarks/bench_prediction.py --replot   # redraw the plot from benchmarks/results/prediction.json

Needs a finished `make demo` (`--demo`); without one it says so and writes nothing. Writes
benchmarks/results/prediction.json and docs/prediction_curve.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from results_file import write_results

ROOT = Path(__file__).resolve().parent.parent
PLOT = ROOT / "docs" / "prediction_curve.png"
DECODINGS = {"mean_of_n": "default: mean of N samples", "best_of_n": "best of N samples",
             "generated": "single sample", "copy_last": "copy last frame"}


def _run(command: str, argv: list[str]) -> None:
    import importlib

    code = importlib.import_module(f"vqvid.commands.{command}").main(argv)
    if code:
        raise SystemExit(f"bench_prediction: `vqvid {command}` failed with exit code {code}")


def _train(level: str, demo: Path, out: Path, budgets: list[int]) -> float:
    """One `tiny` prior run to the largest budget, a checkpoint every smallest budget; returns seconds."""
    step = min(budgets)
    if any(b % step for b in budgets):
        raise SystemExit(f"--budgets must be multiples of the smallest, got {budgets}")
    start = time.perf_counter()
    _run("train", ["prior", "--level", level, "--codes", str(demo / "codes" / "train"), "--val-codes",
                   str(demo / "codes" / "val"), "--preset", "tiny", "--out", str(out), "--max-steps",
                   str(max(budgets)), f"train.val_every={step}", "--no-progress"])
    return time.perf_counter() - start


def _measure(demo: Path, runs: dict[str, Path], budget: int, samples: int, work: Path) -> dict:
    from vqvid.data.codes import CodeDataset
    from vqvid.persistence import load_prior
    from vqvid.training.prior import bits_per_code

    checkpoints = {level: runs[level] / "checkpoints" / f"step={budget}.ckpt" for level in runs}
    bits = {level: bits_per_code(load_prior(path, level).model, CodeDataset(demo / "codes" / "val", level))
            for level, path in checkpoints.items()}
    model = work / f"model_{budget}"
    _run("export", ["--vqvae", str(demo / "vqvae" / "checkpoints" / "last.ckpt"), "--top",
                    str(checkpoints["top"]), "--bottom", str(checkpoints["bottom"]), "--out", str(model)])
    figures = work / f"predict_{budget}.json"
    _run("predict", ["--model", str(model), str(demo / "data"), "--context", "8", "--frames", "16",
                     "--samples", str(samples), "--clips", "4", "-o", str(work / f"predict_{budget}.gif"),
                     "--json", str(figures), "--seed", "0", "--no-progress", "--device", "cpu"])
    result = json.loads(figures.read_text())
    mean = lambda values: sum(values) / len(values)
    return {
        "steps": budget, "bits_per_code": bits,
        "mean_psnr": {k: mean(result["psnr_per_frame"][k]) for k in DECODINGS},
        "mean_ssim": {k: mean(result["ssim_per_frame"][k]) for k in DECODINGS},
    }


def _plot(points: list[dict], note: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [p["steps"] for p in points]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in DECODINGS.items():
        style = "k--" if key == "copy_last" else "o-"
        left.plot(steps, [p["mean_psnr"][key] for p in points], style, label=label)
    left.set(xscale="log", xlabel="prior training steps (each prior)", ylabel="PSNR of frames 8-15 (dB)",
             title="prediction, held-out clips")
    left.legend(fontsize=8)
    for level in ("top", "bottom"):
        right.plot(steps, [p["bits_per_code"][level] for p in points], "o-", label=f"{level} prior")
    right.set(xscale="log", xlabel="prior training steps (each prior)", ylabel="bits per code (held out)",
              title="priors")
    right.legend(fontsize=8)
    for axes in (left, right):
        axes.set_xticks(steps, [str(s) for s in steps])
        axes.minorticks_off()
    figure.suptitle(note, fontsize=9)
    figure.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(PLOT, dpi=100)
    print(f"wrote {PLOT}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, default=ROOT / "demo_out", help="a finished `vqvid demo` folder")
    parser.add_argument("--budgets", type=int, nargs="+", default=[200, 400, 800, 1600, 3200],
                        help="prior training steps at which to measure (multiples of the smallest)")
    parser.add_argument("--samples", type=int, default=8, help="samples per clip (default 8)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--replot", action="store_true", help="only redraw the plot from the results JSON")
    args = parser.parse_args()
    if args.replot:
        saved = json.loads((ROOT / "benchmarks" / "results" / "prediction.json").read_text())
        _plot(saved["points"], saved["note"])
        return 0
    needed = [args.demo / p for p in ("vqvae/checkpoints/last.ckpt", "codes/train", "codes/val", "data")]
    if missing := [str(p) for p in needed if not p.exists()]:
        print(f"bench_prediction: needs a finished `make demo` in {args.demo} (missing {', '.join(missing)}); "
              "skipped")
        return 0
    torch.set_num_threads(args.threads)
    budgets = sorted(args.budgets)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        runs = {level: work / f"prior_{level}" for level in ("top", "bottom")}
        seconds = {level: round(_train(level, args.demo, runs[level], budgets), 1) for level in runs}
        points = []
        for budget in budgets:
            points.append(_measure(args.demo, runs, budget, args.samples, work))
            p = points[-1]
            print(f"{budget:6d} steps: bits/code top {p['bits_per_code']['top']:.3f} bottom "
                  f"{p['bits_per_code']['bottom']:.3f}; PSNR " + ", ".join(
                      f"{DECODINGS[k]} {v:.2f}" for k, v in p["mean_psnr"].items()), flush=True)
    note = (f"tiny priors on the demo's codes, {args.samples} samples per clip, 4 held-out clips; one run per prior "
            f"annealed at {budgets[-1]} steps")
    write_results("prediction", args.threads, budgets=budgets, samples=args.samples,
                  training_seconds=seconds, points=points, note=note)
    _plot(points, note)
    return 0


if __name__ == "__main__":
    sys.exit(main())

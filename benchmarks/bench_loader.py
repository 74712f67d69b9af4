"""Clip loading throughput: decoding a folder of MP4 files on the fly versus reading a prepared store.

Writes a few synthetic 256×256 H.264 videos, then for clips of 16×64×64 and 16×256×256 times shuffled epochs
of a DataLoader (batch 4) over each source, with 0 and 2 worker processes. Workers are started and warmed up
by one epoch before timing, so the figures are steady-state throughput. Prints a table and writes
benchmarks/results/loader.json.

    python benchmarks/bench_loader.py [--videos 4] [--frames 48]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import av
import torch
from torch.utils.data import DataLoader, Dataset

from vqvid.data import ClipSpec, open_clips, prepare_store, write_synthetic_videos

RESULTS = Path(__file__).parent / "results" / "loader.json"


def clips_per_second(dataset: Dataset, workers: int, min_seconds: float = 1.0) -> float:
    """Steady-state clips/s of shuffled epochs, repeated until `min_seconds` have passed."""
    loader = DataLoader(dataset, batch_size=4, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0)
    for _ in loader:  # start the workers, open files, fill page caches
        pass
    clips, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_seconds:
        for batch in loader:
            clips += len(batch)
    return clips / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4, help="number of MP4 files (%(default)s)")
    parser.add_argument("--frames", type=int, default=48, help="frames per video (%(default)s)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the comparison is about loading, not about intra-op threads

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        videos = Path(scratch) / "videos"
        write_synthetic_videos(videos, args.videos, frames=args.frames, size=256, fps=10)
        for size in (64, 256):
            spec = ClipSpec(frames=16, stride=8, size=size)
            start = time.perf_counter()
            store_path = prepare_store(videos, Path(scratch) / f"store{size}", spec, progress=False)
            prepare_seconds = time.perf_counter() - start
            sources = {"mp4 folder": open_clips(videos, spec), "prepared store": open_clips(store_path, spec)}
            for source, dataset in sources.items():
                for workers in (0, 2):
                    rows.append({
                        "source": source,
                        "clip": f"16×{size}×{size}",
                        "clips": len(dataset),
                        "workers": workers,
                        "clips_per_s": round(clips_per_second(dataset, workers), 1),
                        "prepare_s": round(prepare_seconds, 2) if source == "prepared store" else None,
                    })

    header = f"{'source':<15} {'clip':<12} {'workers':>7} {'clips/s':>9} {'prepare s':>10}"
    print(header)
    print("-" * len(header))
    for row in rows:
        prepare = "" if row["prepare_s"] is None else f"{row['prepare_s']:.2f}"
        print(f"{row['source']:<15} {row['clip']:<12} {row['workers']:>7} {row['clips_per_s']:>9.1f} "
              f"{prepare:>10}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
               "av": av.__version__}
    setup = {"videos": args.videos, "frames_per_video": args.frames, "video_size": "256×256 H.264",
             "batch_size": 4}
    RESULTS.write_text(json.dumps({"machine": machine, "setup": setup, "results": rows}, indent=1,
                                  ensure_ascii=False))
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()

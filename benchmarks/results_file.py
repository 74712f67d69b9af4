"""Where every benchmark writes its figures: `benchmarks/results/<name>.json`, with the environment they ran in."""

from __future__ import annotations

import json
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def write_results(name: str, threads: int, **figures) -> Path:
    """Write `figures` (JSON-able) to results/<name>.json under an "environment" entry; returns the path."""
    import torch  # here, so that importing this module costs nothing in benchmark worker processes

    environment = {"torch": torch.__version__, "threads": threads, "machine": platform.machine(),
                   "processor": platform.processor(), "python": platform.python_version()}
    path = RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"environment": environment, **figures}, indent=2) + "\n")
    print(f"wrote {path}")
    return path

"""`benchmarks/gpu.sh` stays runnable where no GPU is: its dry run goes through every measurement on the CPU."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.sh"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120)


def test_the_dry_run_measures_every_case_and_writes_them(tmp_path):
    out = tmp_path / "gpu.json"
    done = _run("--dry-run", "--out", str(out))
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert results["dry_run"] is True and results["environment"]["device"] == "cpu"

    vqvae = {(r["model"], r["precision"]) for r in results["vqvae"]}
    assert vqvae == {("thesis", "bf16-autocast"), ("thesis", "float32"), ("reference", "bf16-autocast")}
    priors = {(r["level"], r["attention"]) for r in results["priors"]}
    assert priors == {("top", "sdpa"), ("top", "matrix"), ("bottom", "none"), ("bottom", "sdpa")}
    assert [r["level"] for r in results["sampling"]] == ["top", "bottom"]
    timed = [*results["vqvae"], *results["priors"]]
    assert all(math.isfinite(r["step_s"]) and r["step_s"] > 0 for r in timed)
    assert all(r["positions"] > 0 and r["positions_per_s"] > 0 for r in results["sampling"])

    coding = results["coding"]
    assert coding["positions"] > 0 and coding["bytes"] > 0  # it round-tripped, or the script would have failed
    assert coding["encode_positions_per_s"] > 0 and coding["decode_positions_per_s"] > 0
    assert "VQ-VAE step" in done.stdout and f"wrote {out}" in done.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the real run would start")
def test_a_real_run_without_a_gpu_is_refused_in_one_line():
    done = _run()
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "--dry-run" in done.stderr, done.stderr

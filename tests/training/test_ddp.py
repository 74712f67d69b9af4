"""Two-process CPU DDP (gloo) through the real command, as a user launches it."""

import csv
import subprocess
import sys

import torch

from vqvid.checkpoints import load_vqvae


def test_ddp_on_two_cpu_processes_keeps_codebooks_identical(tmp_path):
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "vqvid", "train", "vqvae", "--data", "synthetic:24", "--preset", "tiny",
        "--out", str(out), "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--max-steps", "4",
        "--batch-size", "2", "--no-progress", "train.val_every=2", "train.val_batches=1", "train.num_workers=0",
        "train.logger=csv", "train.gif_clips=0", "model.channels=8", "model.res_channels=4", "model.embed_dim=4",
        "data.size=32",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    # each validation all-gathers codebook checksums and fails the run if the ranks differ
    assert result.returncode == 0, result.stderr[-3000:]
    # validation (and with it the cross-rank codebook check) ran twice
    rows = list(csv.DictReader((out / "logs" / "metrics.csv").open()))
    assert len([row for row in rows if row.get("val/codebook_usage_top")]) == 2
    assert load_vqvae(out / "checkpoints" / "last.ckpt").model.encode(torch.zeros(1, 3, 16, 32, 32)).top.shape \
        == (1, 4, 4, 4)

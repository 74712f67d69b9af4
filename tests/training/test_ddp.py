"""Two-process CPU DDP (gloo) through the real command, as a user launches it."""

import csv
import subprocess
import sys

import torch

from vqvid.persistence import load_vqvae

TRAIN = [
    "train", "vqvae", "--data", "synthetic:24", "--preset", "tiny", "--accelerator", "cpu", "--devices", "2",
    "--strategy", "ddp", "--max-steps", "4", "--batch-size", "2", "--no-progress", "train.val_every=2",
    "train.val_batches=1", "train.num_workers=0", "train.logger=csv", "train.gif_clips=0", "model.channels=8",
    "model.res_channels=4", "model.embed_dim=4", "data.size=32",
]


def test_ddp_on_two_cpu_processes_keeps_codebooks_identical(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "vqvid", *TRAIN, "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    # each validation all-gathers codebook checksums and fails the run if the ranks differ
    assert result.returncode == 0, result.stderr[-3000:]
    # validation (and with it the cross-rank codebook check) ran twice
    rows = list(csv.DictReader((out / "logs" / "metrics.csv").open()))
    assert len([row for row in rows if row.get("val/codebook_usage_top")]) == 2
    assert load_vqvae(out / "checkpoints" / "last.ckpt").model.encode(torch.zeros(1, 3, 16, 32, 32)).top.shape \
        == (1, 4, 4, 4)


def test_a_context_reader_trains_on_two_cpu_processes_against_the_frozen_vqvae(tmp_path):
    from tests.tiny import tiny_checkpoints
    from vqvid.persistence import load_reader, read_checkpoint

    vqvae = tiny_checkpoints(tmp_path)["vqvae"]
    out = tmp_path / "run"
    command = [sys.executable, "-m", "vqvid", "train", "reader", "--vqvae", str(vqvae), "--data", "synthetic:24",
               "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--max-steps", "4", "--batch-size",
               "2", "--no-progress", "train.val_every=2", "train.val_batches=1", "train.num_workers=0",
               "train.logger=csv", "model.context=4", "model.channels=8", "model.layers=1", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader((out / "logs" / "metrics.csv").open()))
    assert len([row for row in rows if row.get("val/bits_per_code")]) == 2
    assert read_checkpoint(out / "checkpoints" / "last.ckpt", "reader")["global_step"] == 4
    assert load_reader(out / "checkpoints" / "last.ckpt").model(torch.zeros(1, 3, 4, 16, 16)).shape == (1, 16, 1, 2, 2)


# vqvid with the quantiser's all-reduce taken out: each rank updates its codebooks from its own batches alone.
# Lightning starts the second rank by running this same script again.
WITHOUT_ALL_REDUCE = """
import sys

import vqvid.models.quantize

vqvid.models.quantize._distributed = lambda: False

from vqvid.cli import main

sys.exit(main(sys.argv[1:]))
"""


def test_the_codebook_check_catches_ranks_that_drift_apart(tmp_path):
    # Only the quantiser's all-reduce keeps the ranks' codebooks equal: without it they drift, and the check
    # at the first validation, before any validation forward, stops the run.
    script = tmp_path / "vqvid_without_all_reduce.py"
    script.write_text(WITHOUT_ALL_REDUCE)
    command = [sys.executable, str(script), *TRAIN, "--out", str(tmp_path / "run")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert result.returncode != 0
    assert "codebooks differ across DDP ranks" in result.stderr, result.stderr[-3000:]


def test_ddp_does_not_broadcast_rank_0s_buffers_before_each_forward():
    import socket
    from types import SimpleNamespace

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from vqvid.models.quantize import EMAQuantizer
    from vqvid.training.runner import CodebooksSyncedByAllReduce

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        wrapper = DistributedDataParallel(torch.nn.Sequential(torch.nn.Conv3d(3, 4, 1), EMAQuantizer(4, 8)))
        assert wrapper.will_sync_module_buffers()  # DDP's default: rank 0's codebooks over all, every forward
        trainer = SimpleNamespace(strategy=SimpleNamespace(model=wrapper))
        CodebooksSyncedByAllReduce().on_fit_start(trainer, None)
        assert not wrapper.will_sync_module_buffers()
    finally:
        dist.destroy_process_group()


def test_num_nodes_reaches_lightning(tmp_path):
    from vqvid.commands import train
    from vqvid.presets import VQVAERun, get_preset
    from vqvid.training.runner import build_trainer

    args = train.build_parser().parse_args(
        ["vqvae", "--data", "synthetic", "--out", str(tmp_path / "run"), "--num-nodes", "3", "--devices", "1",
         "--accelerator", "cpu", "--strategy", "ddp"])
    run = train.resolve_run(VQVAERun, get_preset("tiny").vqvae, args)
    assert run.train.num_nodes == 3
    trainer = build_trainer(run.train, tmp_path / "run", progress=False)
    assert trainer.num_nodes == 3 and trainer.world_size == 3
    assert train.main(["vqvae", "--data", "synthetic", "--out", str(tmp_path / "bad"), "--num-nodes", "0"]) == 2


def test_a_spawned_strategy_that_cannot_validate_the_last_step_says_so_before_training(tmp_path, monkeypatch):
    import warnings
    from dataclasses import replace

    import lightning as L
    import pytest

    from vqvid.training.config import TrainConfig
    from vqvid.training.runner import fit

    trained = []
    monkeypatch.setattr(L.Trainer, "fit", lambda *args, **kwargs: trained.append(True))  # the warning comes first
    config = lambda **changes: TrainConfig(accelerator="cpu", devices="1", max_steps=3, val_every=2, **changes)
    with pytest.warns(UserWarning, match="--strategy ddp_spawn, which trains in spawned processes.*max_steps .3. "
                                         "is not a multiple of val_every .2."):
        fit(None, None, config(strategy="ddp_spawn"), tmp_path / "spawn", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(None, None, config(strategy="ddp"), tmp_path / "ddp", progress=False)
        fit(None, None, replace(config(strategy="ddp_spawn"), max_steps=4), tmp_path / "spawn4", progress=False)
    assert len(trained) == 3

"""The EMA codebook under torch.distributed: two gloo processes on CPU, each fed different data."""

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from einops import rearrange

from vqvid.models.quantize import EMAQuantizer

WORLD_SIZE = 2
DIM, NUM_CODES, STEPS = 4, 16, 5
# Without restarts the run must equal one process fed both ranks' batches; with a threshold this high most
# codes are restarted at every step, which tests that restarts leave the ranks in agreement.
THRESHOLDS = {"plain": 0.0, "restart": 6.0}


def _quantizer(restart_threshold: float) -> EMAQuantizer:
    torch.manual_seed(0)  # the same initial codebook everywhere, as DDP's initial broadcast would give
    return EMAQuantizer(DIM, NUM_CODES, decay=0.8, restart_threshold=restart_threshold).train()


def _batches() -> list[list[torch.Tensor]]:
    """STEPS × WORLD_SIZE batches (B, C, T, H, W); rank r's data is centred on 3 * r, so ranks differ."""
    generator = torch.Generator().manual_seed(1)
    return [
        [torch.randn(2, DIM, 2, 2, 4, generator=generator) + 3.0 * rank for rank in range(WORLD_SIZE)]
        for _ in range(STEPS)
    ]


def _worker(rank: int, port: int, batches: list[list[torch.Tensor]], out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE)
    try:
        states = {}
        for name, threshold in THRESHOLDS.items():
            quantizer = _quantizer(threshold)
            for step in batches:
                quantizer(step[rank])
            states[name] = quantizer.state_dict()
        torch.save(states, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="needs the gloo backend")
def test_ranks_agree_and_match_one_process_fed_all_data(tmp_path):
    batches = _batches()
    mp.spawn(_worker, args=(_free_port(), batches, str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD_SIZE)]

    for name in THRESHOLDS:
        for key, value in ranks[0][name].items():
            assert torch.equal(value, ranks[1][name][key]), f"{name}: ranks disagree on {key}"

    reference = _quantizer(THRESHOLDS["plain"])
    for step in batches:
        reference(torch.cat(step))
    for key, value in reference.state_dict().items():
        assert torch.allclose(ranks[0]["plain"][key], value, rtol=1e-5, atol=1e-5), key

    # Codes restarted at the last step were copied from rank 0's batch, broadcast to every rank.
    last = rearrange(batches[-1][0], "b c t h w -> (b t h w) c")
    codebook = ranks[0]["restart"]["embed"]
    restarted = [code for code in codebook if any(torch.equal(code, v) for v in last)]
    assert restarted

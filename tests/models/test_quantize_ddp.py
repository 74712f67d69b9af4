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
        states, statistics = {}, []
        for name, threshold in THRESHOLDS.items():
            quantizer = _quantizer(threshold)
            for step in batches:
                out = quantizer(step[rank])
                if name == "plain":
                    statistics.append(torch.stack([out.perplexity, out.usage]))
            states[name] = quantizer.state_dict()
        torch.save({"states": states, "statistics": torch.stack(statistics)}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> tuple[list[list[torch.Tensor]], list[dict]]:
    """The batches, and what each of the two ranks saved after training on them."""
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("needs the gloo backend")
    folder = tmp_path_factory.mktemp("ranks")
    batches = _batches()
    mp.spawn(_worker, args=(_free_port(), batches, str(folder)), nprocs=WORLD_SIZE, join=True)
    return batches, [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(WORLD_SIZE)]


def test_ranks_agree_and_match_one_process_fed_all_data(two_ranks):
    batches, saved = two_ranks
    ranks = [rank["states"] for rank in saved]

    for name in THRESHOLDS:
        for key, value in ranks[0][name].items():
            assert torch.equal(value, ranks[1][name][key]), f"{name}: ranks disagree on {key}"

    reference = _quantizer(THRESHOLDS["plain"])
    statistics = []
    for step in batches:
        out = reference(torch.cat(step))
        statistics.append(torch.stack([out.perplexity, out.usage]))
    for key, value in reference.state_dict().items():
        assert torch.allclose(ranks[0]["plain"][key], value, rtol=1e-5, atol=1e-5), key
    # Codebook usage and perplexity describe all ranks' batches, as one process fed them all would report.
    for rank in saved:
        assert torch.allclose(rank["statistics"], torch.stack(statistics), rtol=1e-5), rank["statistics"]


def test_restarts_draw_from_every_ranks_encoder_outputs(two_ranks):
    batches, saved = two_ranks
    codebook = saved[0]["states"]["restart"]["embed"]
    # Codes restarted at the last step are copies of encoder outputs of that step; with most codes restarted,
    # both ranks' outputs are among them (rank 1's data lies around 3, rank 0's around 0).
    sources = []
    for code in codebook:
        for rank in range(WORLD_SIZE):
            last = rearrange(batches[-1][rank], "b c t h w -> (b t h w) c")
            if any(torch.equal(code, vector) for vector in last):
                sources.append(rank)
    assert set(sources) == {0, 1}, sources

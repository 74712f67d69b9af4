import pytest
import torch
from einops import rearrange

from vqvid.models import quantize
from vqvid.models.quantize import EMAQuantizer


def _set_codebook(quantizer: EMAQuantizer, codebook: list[list[float]]) -> None:
    """Codebook `codebook`, each code counted as one vector equal to itself (the initial statistics)."""
    embed = torch.tensor(codebook)
    quantizer.embed.copy_(embed)
    quantizer.embed_sum.copy_(embed)
    quantizer.cluster_size.fill_(1.0)


def _grid(vectors: list[list[float]]) -> torch.Tensor:
    """Vectors (N, C) as a (1, C, 1, 1, N) grid."""
    return rearrange(torch.tensor(vectors), "n c -> 1 c 1 1 n")


def test_nearest_code_matches_brute_force():
    torch.manual_seed(0)
    quantizer = EMAQuantizer(dim=8, num_codes=64).eval()
    x = torch.randn(2, 8, 3, 4, 5)
    out = quantizer(x)

    flat = rearrange(x, "b c t h w -> (b t h w) c")
    distances = ((flat[:, None, :] - quantizer.codebook[None, :, :]) ** 2).sum(-1)  # (N, K), one by one
    codes = out.codes.flatten()
    assert out.codes.shape == (2, 3, 4, 5) and out.codes.dtype == torch.int64
    # The expanded distance used by the module may round differently from the brute force, so ties within
    # rounding are accepted; anything else must be the exact argmin.
    chosen = distances.gather(1, codes[:, None]).squeeze(1)
    assert torch.all(chosen <= distances.min(1).values + 1e-5)
    assert (codes == distances.argmin(1)).float().mean() > 0.99
    expected = rearrange(quantizer.codebook[codes], "(b t h w) c -> b c t h w", b=2, t=3, h=4, w=5)
    assert torch.equal(out.quantized, expected)
    assert torch.equal(quantizer.embed_codes(out.codes), expected)
    assert torch.equal(quantizer.nearest_codes(x), out.codes)


def test_nearest_code_search_by_blocks_of_rows_matches_brute_force_across_block_edges():
    torch.manual_seed(0)
    quantizer = EMAQuantizer(dim=4, num_codes=512).eval()
    rows = quantize._DISTANCE_BLOCK // 512  # rows per block on a CPU
    x = torch.randn(1, 4, 1, 1, 2 * rows + 3)  # two full blocks and a short third
    codes = quantizer.nearest_codes(x).flatten()
    flat = rearrange(x, "b c t h w -> (b t h w) c").double()
    distances = torch.cdist(flat, quantizer.codebook.double())  # (N, K) float64
    chosen = distances.gather(1, codes[:, None]).squeeze(1)
    assert torch.all(chosen <= distances.min(1).values + 1e-5)  # ties within float32 rounding only
    assert (codes == distances.argmin(1)).float().mean() > 0.999
    for edge in (rows - 1, rows, 2 * rows, 2 * rows + 2):  # each block wrote its own rows, none left unset
        assert codes[edge] == distances[edge].argmin()


def test_eval_mode_leaves_codebook_alone():
    torch.manual_seed(0)
    quantizer = EMAQuantizer(dim=4, num_codes=16).eval()
    before = {name: buffer.clone() for name, buffer in quantizer.named_buffers()}
    quantizer(torch.randn(2, 4, 2, 3, 3))
    for name, buffer in quantizer.named_buffers():
        assert torch.equal(buffer, before[name]), name


def test_gradient_is_straight_through_plus_commitment():
    torch.manual_seed(0)
    beta = 0.25
    quantizer = EMAQuantizer(dim=4, num_codes=8, beta=beta).eval()
    x = torch.randn(2, 4, 2, 3, 3, requires_grad=True)
    weights = torch.randn(2, 4, 2, 3, 3)
    out = quantizer(x)
    ((out.quantized * weights).sum() + out.commitment_loss).backward()

    e = quantizer.embed_codes(out.codes)
    # d/dx of beta * mean((x - sg(e))²) is 2 * beta * (x - e) / numel; the quantised path passes `weights` on.
    expected = weights + 2 * beta * (x.detach() - e) / x.numel()
    assert torch.allclose(x.grad, expected, atol=1e-6)
    assert torch.allclose(out.commitment_loss, beta * ((x.detach() - e) ** 2).mean())


def test_one_ema_update_matches_hand_computation():
    quantizer = EMAQuantizer(dim=2, num_codes=3, decay=0.5, beta=0.25, eps=0.5, restart_threshold=0.0).train()
    _set_codebook(quantizer, [[0, 0], [4, 0], [0, 4]])
    # (1,0) and (0,1) are nearest to code 0, (3,0) and (5,0) to code 1, code 2 wins nothing.
    out = quantizer(_grid([[1, 0], [0, 1], [3, 0], [5, 0]]))

    assert out.codes.flatten().tolist() == [0, 0, 1, 1]
    # Quantised with the codebook as it was before the update.
    assert torch.equal(out.quantized, _grid([[0, 0], [0, 0], [4, 0], [4, 0]]))
    # Every coordinate is off by 1 in exactly one of the two channels: mean (x - e)² = 4 / 8; times beta.
    assert out.commitment_loss.item() == pytest.approx(0.125)
    assert out.perplexity.item() == pytest.approx(2.0)  # two codes used half the time each
    assert out.usage.item() == pytest.approx(2 / 3)
    # Eq. 6: N = 0.5 * [1, 1, 1] + 0.5 * [2, 2, 0]
    assert torch.allclose(quantizer.cluster_size, torch.tensor([1.5, 1.5, 0.5]))
    # Eq. 7: m = 0.5 * [(0,0), (4,0), (0,4)] + 0.5 * [(1,0)+(0,1), (3,0)+(5,0), (0,0)]
    assert torch.allclose(quantizer.embed_sum, torch.tensor([[0.5, 0.5], [6.0, 0.0], [0.0, 2.0]]))
    # Laplace smoothing: n = 3.5, N' = (N + 0.5) / (3.5 + 3 * 0.5) * 3.5 = [1.4, 1.4, 0.7]; Eq. 8: e = m / N'.
    expected = torch.tensor([[5 / 14, 5 / 14], [30 / 7, 0.0], [0.0, 20 / 7]])
    assert torch.allclose(quantizer.codebook, expected)


def test_dead_code_restarts_on_an_encoder_output():
    torch.manual_seed(0)
    quantizer = EMAQuantizer(dim=2, num_codes=3, decay=0.5, eps=0.0, restart_threshold=0.75).train()
    _set_codebook(quantizer, [[0, 0], [4, 0], [100, 100]])
    vectors = [[1, 0], [0, 1], [3, 0], [5, 0]]
    quantizer(_grid(vectors))

    # Code 2 won nothing: its count 0.5 * 1 fell below 0.75, so it now sits on one of the batch's vectors.
    restarted = quantizer.codebook[2]
    assert any(torch.equal(restarted, torch.tensor(v, dtype=torch.float32)) for v in vectors)
    assert quantizer.cluster_size[2].item() == pytest.approx(0.75)
    assert torch.allclose(quantizer.embed_sum[2], 0.75 * restarted)
    # Codes 0 and 1 (count 1.5) are plain EMA updates, m / N.
    assert torch.allclose(quantizer.codebook[:2], torch.tensor([[1 / 3, 1 / 3], [4.0, 0.0]]))
    # The restarted code now wins the vector it was copied from.
    assert quantizer.eval()(_grid(vectors)).usage.item() == pytest.approx(1.0)


@pytest.mark.parametrize("restart_threshold, survives", [(1.0, True), (0.0, False)])
def test_restarts_keep_the_codebook_from_collapsing(restart_threshold, survives):
    torch.manual_seed(0)
    quantizer = EMAQuantizer(dim=4, num_codes=16, restart_threshold=restart_threshold).train()
    # All codes but one far from the data: without restarts only that one is ever used.
    _set_codebook(quantizer, [[0.0] * 4] + [[50.0] * 4] * 15)
    for _ in range(20):
        quantizer(torch.randn(4, 4, 2, 4, 4))
    used = quantizer.eval()(torch.randn(4, 4, 2, 4, 4)).usage.item()
    if survives:
        assert used > 0.5
    else:
        assert used == pytest.approx(1 / 16)


def test_statistics_stay_float32_under_bf16_autocast():
    torch.manual_seed(0)
    reference = EMAQuantizer(dim=8, num_codes=512, restart_threshold=0.0).train()
    quantizer = EMAQuantizer(dim=8, num_codes=512, restart_threshold=0.0).train()
    quantizer.load_state_dict(reference.state_dict())
    x = torch.randn(2, 8, 4, 8, 8).bfloat16()

    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = quantizer(x)
    expected = reference(x.float())

    for name, buffer in quantizer.named_buffers():
        assert buffer.dtype == torch.float32, name
    # Distances in bf16 would pick other codes for some of these 512 vectors among 512 codes.
    assert torch.equal(out.codes, expected.codes)
    assert out.quantized.dtype == torch.float32
    assert torch.allclose(quantizer.cluster_size, reference.cluster_size)
    assert torch.allclose(quantizer.codebook, reference.codebook, atol=1e-6)


def test_bad_input_is_rejected():
    quantizer = EMAQuantizer(dim=4, num_codes=8)
    with pytest.raises(ValueError, match=r"\(B, 4, T, H, W\)"):
        quantizer(torch.randn(1, 3, 2, 2, 2))
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        quantizer.embed_codes(torch.full((1, 2, 2, 2), 8))
    with pytest.raises(ValueError, match="integer"):
        quantizer.embed_codes(torch.zeros(1, 2, 2, 2))
    with pytest.raises(ValueError, match="decay"):
        EMAQuantizer(dim=4, num_codes=8, decay=1.0)


def _matmul_precision() -> str:
    """The float32 matrix-product precision in force: per backend where torch has the per-backend setting."""
    backends = [getattr(getattr(torch.backends, name, None), "matmul", None) for name in ("cuda", "mkldnn")]
    per_backend = [backend.fp32_precision for backend in backends if hasattr(backend, "fp32_precision")]
    return ",".join(per_backend) if per_backend else torch.get_float32_matmul_precision()


class _MatmulPrecisionSpy(torch.overrides.TorchFunctionMode):
    """Records the matmul precision in force at every matrix product run inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.mm, torch.Tensor.mm,
                    torch.addmm, torch.cdist):
            self.seen.append(_matmul_precision())
        return func(*args, **(kwargs or {}))


@pytest.fixture
def tf32_enabled():
    """A user's `torch.set_float32_matmul_precision("high")` (TF32 on CUDA, reduced precision in oneDNN);
    yields (the user's setting, the full-precision setting) as `_matmul_precision` reads them."""
    torch.set_float32_matmul_precision("highest")
    full = _matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        yield _matmul_precision(), full
    finally:
        torch.set_float32_matmul_precision("highest")


def test_nearest_code_search_runs_in_full_float32_when_the_user_enables_tf32(tf32_enabled):
    users, full = tf32_enabled
    assert users != full
    torch.manual_seed(0)
    quantizer = EMAQuantizer(dim=8, num_codes=64, restart_threshold=0.0)  # no restarts: no duplicate codes
    initial = quantizer.codebook.double()
    x = torch.randn(2, 8, 2, 3, 3)
    spy = _MatmulPrecisionSpy()
    with spy:
        codes = quantizer.nearest_codes(x)
        eval_codes = quantizer.eval()(x).codes
        quantizer.train()(x)  # updates the codebook
    assert len(spy.seen) == 3 and set(spy.seen) == {full}, spy.seen
    assert _matmul_precision() == users  # the user's setting is back

    flat = rearrange(x, "b c t h w -> (b t h w) c").double()
    assert torch.equal(codes.flatten(), torch.cdist(flat, initial).argmin(1))  # float64 brute force
    assert torch.equal(eval_codes, codes)
    assert torch.equal(quantizer.nearest_codes(x).flatten(), torch.cdist(flat, quantizer.codebook.double()).argmin(1))


def test_the_users_matmul_precision_is_restored_when_the_search_fails(tf32_enabled):
    users, _ = tf32_enabled
    quantizer = EMAQuantizer(dim=4, num_codes=8)
    with pytest.raises(RuntimeError):
        quantizer._nearest(torch.randn(3, 5))  # wrong width: the product itself fails
    assert _matmul_precision() == users

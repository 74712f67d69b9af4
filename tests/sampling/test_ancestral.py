"""Ancestral sampling: naive, incremental and fused agree; temperature and top_k reshape the distribution."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from tests.models.test_pixelsnail import randomise_copy_head
from vqvid.models.pixelsnail import PixelSNAIL, PixelSNAILConfig
from vqvid.sampling import draw, sample

pytestmark = pytest.mark.usefixtures("one_thread")


TOP = PixelSNAILConfig(num_codes=8, shape=(2, 3, 4), channels=16, n_blocks=2, n_res_blocks=1, kernel_size=3,
                       attention=True, n_heads=2, key_channels=8, value_channels=8, dropout=0.0, embed_dim=8)
BOTTOM = replace(TOP, shape=(2, 4, 4), condition_num_codes=6, condition_shape=(1, 2, 2), condition_channels=8,
                 n_cond_res_blocks=1)


def prior_of(config: PixelSNAILConfig, seed: int = 0) -> PixelSNAIL:
    torch.manual_seed(seed)
    return PixelSNAIL(config).eval()


# the last: the presets' bottom prior (a top prior has no conditioning to normalise)
@pytest.mark.parametrize(("tied_head", "copy_head", "condition_norm"),
                         [(False, False, False), (True, False, False), (True, True, False), (True, False, True)])
@pytest.mark.parametrize("start", [0, 9])
@pytest.mark.parametrize("level", ["top", "bottom"])
def test_naive_incremental_and_fused_sampling_give_the_same_codes(level, start, tied_head, copy_head,
                                                                 condition_norm, draw_margins):
    config = (replace(TOP, tied_head=tied_head, copy_head=copy_head) if level == "top"
              else replace(BOTTOM, tied_head=tied_head, copy_head=copy_head, condition_norm=condition_norm))
    prior = prior_of(config)
    if copy_head:
        randomise_copy_head(prior)
    context = torch.randint(0, config.num_codes, (3, *config.shape))
    condition = (torch.randint(0, config.condition_num_codes, (3, *config.condition_shape))
                 if config.conditional else None)
    codes = {
        method: sample(prior, context, condition=condition, start=start, method=method,
                       generator=torch.Generator().manual_seed(7))
        for method in ("naive", "incremental", "fused")
    }
    # Every draw lies farther from a cumulative boundary than the paths' log-probabilities may differ (1e-5,
    # what test_fused_and_unfused_steppers_agree_at_every_step allows), so their rounding cannot tip one.
    assert len(draw_margins) == 3 * (math.prod(config.shape) - start)
    assert min(margin.min().item() for margin in draw_margins) > 2e-5
    assert torch.equal(codes["naive"], codes["incremental"])
    assert torch.equal(codes["naive"], codes["fused"])
    assert torch.equal(codes["naive"].flatten(1)[:, :start], context.flatten(1)[:, :start])


def test_top_k_1_is_greedy_decoding():
    prior = prior_of(TOP)
    greedy = torch.zeros(2, *TOP.shape, dtype=torch.int64)
    with torch.no_grad():
        for position in range(math.prod(TOP.shape)):
            greedy.view(2, -1)[:, position] = prior.log_probs(greedy).flatten(2)[:, :, position].argmax(1)
    assert torch.equal(sample(prior, 2, top_k=1, generator=torch.Generator().manual_seed(0)), greedy)


def test_samples_follow_the_priors_joint_distribution():
    # On a 2-position grid the joint p(c0, c1) = p(c0) p(c1 | c0) is small enough to compute exactly.
    config = replace(TOP, num_codes=3, shape=(1, 1, 2))
    prior = prior_of(config, seed=3)
    pairs = torch.cartesian_prod(torch.arange(3), torch.arange(3))  # (9, 2)
    with torch.no_grad():
        log_probs = prior.log_probs(pairs.reshape(9, 1, 1, 2)).reshape(9, 3, 2)
    joint = (log_probs[torch.arange(9), pairs[:, 0], 0] + log_probs[torch.arange(9), pairs[:, 1], 1]).exp()
    n = 20_000
    codes = sample(prior, n, generator=torch.Generator().manual_seed(0)).reshape(n, 2)
    frequencies = torch.bincount(codes[:, 0] * 3 + codes[:, 1], minlength=9).float() / n
    # 4.5 standard errors: a correct sampler fails this about once in 10^5 runs.
    tolerance = 4.5 * (joint * (1 - joint) / n).sqrt()
    assert torch.all((frequencies - joint).abs() < tolerance), (frequencies, joint)


@pytest.mark.parametrize(("temperature", "top_k"),
                         [(1.0, None), (0.5, None), (2.0, None), (1.0, 3), (0.7, 2)])
def test_draw_follows_the_tempered_and_truncated_distribution(temperature, top_k):
    log_probs = torch.log_softmax(torch.tensor([1.5, 0.2, -0.3, 0.9, -2.0]), dim=0)
    expected = (log_probs / temperature).exp()
    if top_k is not None:
        expected[expected.argsort(descending=True)[top_k:]] = 0
    expected = expected / expected.sum()
    n = 40_000
    codes = draw(log_probs.expand(n, -1), temperature=temperature, top_k=top_k,
                 generator=torch.Generator().manual_seed(1))
    frequencies = torch.bincount(codes, minlength=5).float() / n
    tolerance = 4.5 * (expected * (1 - expected) / n).sqrt() + 1e-9
    assert torch.all((frequencies - expected).abs() <= tolerance), (frequencies, expected)


def test_draw_with_top_k_1_is_argmax():
    log_probs = torch.log_softmax(torch.randn(500, 16, generator=torch.Generator().manual_seed(2)), dim=1)
    assert torch.equal(draw(log_probs, top_k=1), log_probs.argmax(1))


def test_top_k_keeps_exactly_k_codes_when_values_tie():
    # Codes 1, 2, 4 and 5 tie at the 2nd largest value: exactly 2 codes may be drawn, ties broken towards the
    # lower code, and the kept codes are equally likely.
    log_probs = torch.log_softmax(torch.tensor([0.0, 2.0, 1.0, 1.0, -1.0, 1.0]), dim=0)
    n = 4_000
    codes = draw(log_probs.expand(n, -1), top_k=2, generator=torch.Generator().manual_seed(3))
    assert set(codes.tolist()) == {1, 2}
    flat = torch.zeros(n, 7)  # all seven codes tie
    drawn = draw(flat, top_k=3, generator=torch.Generator().manual_seed(4))
    assert set(drawn.tolist()) == {0, 1, 2}
    frequencies = torch.bincount(drawn, minlength=3).float() / n
    assert torch.all((frequencies - 1 / 3).abs() < 4.5 * (2 / 9 / n) ** 0.5), frequencies


def test_draw_never_returns_a_masked_code_when_the_cumulative_sum_falls_short(monkeypatch):
    # Rows whose probabilities, rounded and summed in float32, fall short of the largest uniform number
    # torch.rand can return (1 - 2^-24). Such a uniform lies beyond every cumulative probability; the draw must
    # still be a code of non-zero probability, not the last code, which is masked here.
    k = 341
    logits = torch.randn(400, k, generator=torch.Generator().manual_seed(0)) * 3
    largest_uniform = 1 - 2.0**-24
    short = logits.softmax(dim=1).cumsum(dim=1)[:, -1] < largest_uniform
    assert short.any()  # the adversarial case is present (on any CPU, several rows of 400 fall short)
    rows = logits[short]
    masked_last = torch.cat([rows, torch.full((len(rows), 1), -torch.inf)], dim=1)  # (R, k + 1)
    cut_by_top_k = torch.cat([rows, rows.min(dim=1, keepdim=True).values - 1], dim=1)  # (R, k + 1)
    monkeypatch.setattr(torch, "rand", lambda *shape, generator=None, device=None:
                        torch.full(shape, largest_uniform, device=device))
    for log_probs, top_k in ((masked_last, None), (cut_by_top_k, k)):
        codes = draw(log_probs, top_k=top_k)
        assert (codes < k).all(), "drew the masked code"
        # the largest uniform draws the last code of non-zero probability
        assert torch.equal(codes, torch.full_like(codes, k - 1))


def test_sample_rejects_bad_options():
    prior = prior_of(TOP)
    cases = [
        ({"method": "fast"}, "method"),
        ({"temperature": 0.0}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_k": 9}, "top_k"),
        ({"start": 2}, "pass codes"),
    ]
    for options, message in cases:
        with pytest.raises(ValueError, match=message):
            sample(prior, 2, **options)
    with pytest.raises(ValueError, match="batch size"):
        sample(prior, 0)

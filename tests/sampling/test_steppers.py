"""Steppers: the incremental ones (cached, and cached with fused layers) give, at every step, what a full
forward pass gives; context is kept."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from tests.models.test_pixelsnail import randomise_copy_head
from vqvid.models.pixelsnail import PixelSNAIL, PixelSNAILConfig
from vqvid.sampling import FusedStepper, IncrementalStepper, NaiveStepper, draw

pytestmark = pytest.mark.usefixtures("one_thread")


# H != W, so that a mixed-up axis shows.
TOP = PixelSNAILConfig(num_codes=8, shape=(3, 4, 5), channels=16, n_blocks=2, n_res_blocks=1, kernel_size=3,
                       attention=True, n_heads=2, key_channels=8, value_channels=8, dropout=0.0, embed_dim=8)
BOTTOM = replace(TOP, shape=(4, 4, 6), condition_num_codes=6, condition_shape=(2, 2, 3), condition_channels=8,
                 n_cond_res_blocks=1)
CONFIGS = {
    "top": TOP,
    "top-no-attention": replace(TOP, attention=False),
    "top-kernel-5-two-layers": replace(TOP, kernel_size=5, n_res_blocks=2),
    "bottom": BOTTOM,
    "bottom-no-attention": replace(BOTTOM, attention=False),
    "top-tied-head": replace(TOP, tied_head=True),
    "bottom-tied-head": replace(BOTTOM, tied_head=True),
    "top-copy-head": replace(TOP, tied_head=True, copy_head=True),
    "bottom-copy-head": replace(BOTTOM, copy_head=True),
    "bottom-condition-norm": replace(BOTTOM, tied_head=True, condition_norm=True),  # the presets' bottom prior
}
CACHED = {"incremental": IncrementalStepper, "fused": FusedStepper}


def make(name: str, batch: int = 2, seed: int = 0):
    """A prior in eval mode, random codes and, for the bottom prior, a random condition."""
    torch.manual_seed(seed)
    config = CONFIGS[name]
    prior = PixelSNAIL(config).eval()
    if config.copy_head:
        randomise_copy_head(prior)
    codes = torch.randint(0, config.num_codes, (batch, *config.shape))
    condition = (torch.randint(0, config.condition_num_codes, (batch, *config.condition_shape))
                 if config.conditional else None)
    return prior, codes, condition


@pytest.mark.parametrize("stepper_class", list(CACHED.values()), ids=list(CACHED))
@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("start", [0, 27], ids=["no-context", "context"])  # 27: mid-row of frame 1
def test_incremental_log_probs_equal_a_full_forward_pass_at_every_step(name, start, stepper_class):
    prior, codes, condition = make(name)
    stepper = stepper_class(prior, codes, condition=condition, start=start)
    generator = torch.Generator().manual_seed(0)
    for position in range(start, math.prod(prior.config.shape)):
        assert stepper.position == position
        log_probs = stepper.step_log_probs()  # (B, K)
        with torch.no_grad():
            reference = prior.log_probs(stepper.codes, condition).flatten(2)[:, :, position]
        torch.testing.assert_close(log_probs, reference, atol=1e-4, rtol=0, msg=f"position {position}")
        stepper.feed(draw(log_probs, generator=generator))
    assert torch.equal(stepper.codes.flatten(1)[:, :start], codes.flatten(1)[:, :start])
    # Every later position is sampled, not copied from `codes`.
    assert not torch.equal(stepper.codes.flatten(1)[:, start:], codes.flatten(1)[:, start:])


@pytest.mark.parametrize("name", ["top", "bottom"])
def test_naive_stepper_follows_the_full_forward_pass(name):
    prior, codes, condition = make(name)
    stepper = NaiveStepper(prior, codes, condition=condition, start=5)
    with torch.no_grad():
        expected = prior.log_probs(codes, condition).flatten(2)[:, :, 5]
    torch.testing.assert_close(stepper.step_log_probs(), expected)
    stepper.feed(codes[:, 0, 1, 0])
    assert stepper.position == 6


@pytest.mark.parametrize("stepper_class", list(CACHED.values()), ids=list(CACHED))
@pytest.mark.parametrize("name", ["top", "bottom"])
def test_encoding_and_decoding_see_bit_identical_distributions(name, stepper_class):
    # An encoder feeds the true codes; a decoder, started from nothing, feeds back the codes it decodes.
    prior, codes, condition = make(name)
    encoder = stepper_class(prior, codes, condition=condition)
    decoder = stepper_class(prior, codes.shape[0], condition=condition)
    for position in range(math.prod(prior.config.shape)):
        assert torch.equal(encoder.step_log_probs(), decoder.step_log_probs()), f"position {position}"
        true_codes = codes.flatten(1)[:, position]
        encoder.feed(true_codes)
        decoder.feed(true_codes.clone())
    assert torch.equal(decoder.codes, codes)


@pytest.mark.parametrize("stepper_class", list(CACHED.values()), ids=list(CACHED))
def test_feeding_without_asking_for_log_probs_is_teacher_forcing(stepper_class):
    prior, codes, _ = make("top")
    stepper = stepper_class(prior, codes.shape[0])
    for position in range(20):
        stepper.feed(codes.flatten(1)[:, position])
    prefilled = stepper_class(prior, codes, start=20)
    torch.testing.assert_close(stepper.step_log_probs(), prefilled.step_log_probs(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("stepper_class", list(CACHED.values()), ids=list(CACHED))
def test_steppers_reject_bad_use(stepper_class):
    prior, codes, condition = make("bottom")
    stepper = stepper_class(prior, codes, condition=condition)
    with pytest.raises(ValueError, match=r"feed: expected codes of shape \(2,\)"):
        stepper.feed(codes[:1, 0, 0, 0])
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        stepper.feed(torch.tensor([0, 8]))
    with pytest.raises(ValueError, match="int64"):
        stepper.feed(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="needs top codes"):
        stepper_class(prior, codes)
    with pytest.raises(ValueError, match="start"):
        stepper_class(prior, codes, condition=condition, start=math.prod(prior.config.shape) + 1)
    with pytest.raises(ValueError, match="pass codes, not a batch size"):
        NaiveStepper(prior, 2, condition=condition, start=3)
    prior.train()
    with pytest.raises(ValueError, match=r"prior\.eval\(\)"):
        NaiveStepper(prior, codes, condition=condition)


def test_stepping_past_the_last_position_fails():
    prior, codes, _ = make("top")
    last = math.prod(prior.config.shape)
    for stepper in (IncrementalStepper(prior, codes, start=last), FusedStepper(prior, codes, start=last),
                    NaiveStepper(prior, codes, start=last)):
        with pytest.raises(ValueError, match="every position"):
            stepper.step_log_probs()

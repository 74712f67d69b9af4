"""The fused stepper's pieces against the unfused computation: row convolutions as window products, and whole
runs against `IncrementalStepper`, including several rows, frames and batches."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tests.sampling.test_steppers import CONFIGS, make
from vqvid.models.pixelsnail import CausalConv3d
from vqvid.sampling import FusedStepper, IncrementalStepper, draw
from vqvid.sampling.fused import row_weight, row_windows

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("kernel_size", [3, 5])
def test_a_row_convolution_is_a_product_with_windows_of_a_row_buffer(kernel_size, strict):
    torch.manual_seed(0)
    conv = CausalConv3d(6, 7, axis=2, kernel_size=kernel_size, strict=strict)
    row = torch.randn(3, 6, 1, 1, 9)  # (B, C_in, 1, 1, W)
    with torch.no_grad():
        expected = conv(row)[:, :, 0, 0].transpose(1, 2)  # (B, W, C_out)
        # The row laid out (B, column, channel) after taps - 1 (strict: taps) zero columns.
        taps = conv.taps
        buffer = F.pad(row[:, :, 0, 0].transpose(1, 2), (0, 0, taps - 1 + strict, 0))  # (B, pad + W, C_in)
        windows = row_windows(buffer, taps)[:9]
        fused = torch.stack([window @ row_weight(conv) + conv.conv.bias for window in windows], dim=1)
    torch.testing.assert_close(fused, expected, atol=1e-5, rtol=0)
    # Windows are views: they see later writes to the buffer.
    buffer.zero_()
    assert not windows[0].any()


def test_row_weight_refuses_a_convolution_along_another_axis():
    with pytest.raises(ValueError, match="axis 1"):
        row_weight(CausalConv3d(4, 4, axis=1, kernel_size=3))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fused_and_unfused_steppers_agree_at_every_step(name):
    # Batch 3 and a grid of several rows and frames: per-row terms, row buffers and attention slots change.
    prior, codes, condition = make(name, batch=3)
    unfused = IncrementalStepper(prior, codes, condition=condition, start=7)
    fused = FusedStepper(prior, codes, condition=condition, start=7)
    generator = torch.Generator().manual_seed(1)
    for position in range(7, math.prod(prior.config.shape)):
        expected = unfused.step_log_probs()
        torch.testing.assert_close(fused.step_log_probs(), expected, atol=1e-5, rtol=0,
                                   msg=f"position {position}")
        drawn = draw(expected, generator=generator)
        unfused.feed(drawn)
        fused.feed(drawn)
    assert torch.equal(fused.codes, unfused.codes)


def test_sampling_with_the_fused_stepper_keeps_the_context_and_matches_the_full_pass():
    prior, codes, condition = make("bottom")
    stepper = FusedStepper(prior, codes, condition=condition, start=30)
    for _ in range(30, math.prod(prior.config.shape)):
        log_probs = stepper.step_log_probs()
        stepper.feed(log_probs.argmax(dim=1))
    with torch.no_grad():
        full = prior.log_probs(stepper.codes, condition).flatten(2)  # (B, K, N)
    # Greedy decoding: every code after the context is a most likely code of the full pass at its position, up
    # to the 1e-5 by which the fused and full computations may differ (two codes that close may go either way).
    chosen = full.gather(1, stepper.codes.flatten(1)[:, None]).squeeze(1)  # (B, N)
    assert (full.amax(dim=1) - chosen)[:, 30:].max() <= 1e-5
    assert torch.equal(stepper.codes.flatten(1)[:, :30], codes.flatten(1)[:, :30])

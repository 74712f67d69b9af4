"""Ancestral sampling from a PixelSNAIL prior: one position at a time, each drawn given all before it."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vqvid.models.pixelsnail import PixelSNAIL
from vqvid.progress import Counter
from vqvid.sampling.fused import FusedStepper
from vqvid.sampling.steppers import IncrementalStepper, NaiveStepper

STEPPERS = {"fused": FusedStepper, "incremental": IncrementalStepper, "naive": NaiveStepper}


def draw(log_probs: Tensor, *, temperature: float = 1.0, top_k: int | None = None,
         generator: torch.Generator | None = None) -> Tensor:
    """One code (B,) int64 per row of log_probs (B, K), from the distribution sharpened by `temperature` and
    cut to its `top_k` most likely codes; top_k=1 is argmax.

    Draws by inverting the cumulative distribution at one uniform number per row, so two nearly equal
    distributions (e.g. the incremental and the naive computation of one step) give the same code for the same
    generator state.
    """
    logits = log_probs / temperature if temperature != 1.0 else log_probs  # x / 1 is x: skip the op
    if top_k is not None:
        # Keep exactly top_k codes. Masking everything below the k-th largest value would keep every code tied
        # with it; a stable sort breaks such ties towards the lower code instead.
        kept = logits.sort(dim=-1, descending=True, stable=True).indices[:, :top_k]  # (B, k)
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, kept, True)  # (B, K)
        logits = logits.masked_fill(~keep, float("-inf"))
    probs = logits.softmax(dim=-1)  # (B, K)
    possible = probs > 0  # (B, K); masked codes (and codes whose probability underflows) are never drawn
    cumulative = probs.cumsum(dim=-1)  # (B, K)
    device = generator.device if generator is not None else log_probs.device
    uniform = torch.rand(log_probs.shape[0], 1, generator=generator, device=device).to(log_probs)
    # The first possible code whose cumulative probability exceeds the uniform. Rounding may leave the total
    # below 1 and the uniform above it: the draw then falls on the last possible code, never on a masked one.
    above = (cumulative > uniform) & possible  # (B, K)
    first_above = above.int().argmax(dim=-1)  # (B,) argmax returns the first of equal maxima
    last_possible = log_probs.shape[-1] - 1 - possible.flip(-1).int().argmax(dim=-1)  # (B,)
    return torch.where(above.any(dim=-1), first_above, last_possible)


def sample(prior: PixelSNAIL, n_or_codes: int | Tensor, *, condition: Tensor | None = None, start: int = 0,
           temperature: float = 1.0, top_k: int | None = None, generator: torch.Generator | None = None,
           method: str = "fused", progress: bool = False) -> Tensor:
    """Codes (B, T, H, W) int64 drawn from `prior` in raster order.

    n_or_codes: a batch size B, or codes (B, T, H, W) whose positions before the flat index `start` are kept
    as context (e.g. the codes of the first frames) and the rest sampled. condition: top codes
    (B, T', H', W') for the bottom prior. method: "fused" (cached, Ramachandran et al. 2017, each position's
    layers fused: `FusedStepper`), "incremental" (the same caches through the prior's modules) or "naive" (a
    full forward pass per position, the reference); with the same generator state all give the same codes,
    unless a uniform draw falls within float rounding of a cumulative probability. The prior must be in eval
    mode.
    """
    if method not in STEPPERS:
        raise ValueError(f"method: expected one of {sorted(STEPPERS)}, got {method!r}")
    if not temperature > 0:
        raise ValueError(f"temperature: expected a positive number, got {temperature}")
    num_codes = prior.config.num_codes
    if top_k is not None and not 1 <= top_k <= num_codes:
        raise ValueError(f"top_k: expected None or an integer in [1, {num_codes}], got {top_k}")
    stepper = STEPPERS[method](prior, n_or_codes, condition=condition, start=start)
    positions = range(start, math.prod(prior.config.shape))
    # Inference mode, not just no_grad: autograd's per-op bookkeeping is about a quarter of a step's time.
    with torch.inference_mode(), Counter(f"sampling ({method})", len(positions), "codes", enabled=progress) as counter:
        for _ in positions:
            log_probs = stepper.step_log_probs()  # (B, K)
            stepper.feed(draw(log_probs, temperature=temperature, top_k=top_k, generator=generator))
            counter.update()
    return stepper.codes

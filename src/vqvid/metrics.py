"""Honest numbers: PSNR and SSIM of video, and the size of codes against raw pixels.

Video tensors are B×3×T×H×W in [-1, 1]. Quality is measured on 8-bit-equivalent [0, 1] pixels after clamping,
per frame, averaged over frames and clips (how video codecs are usually compared).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure


def _frames01(video: torch.Tensor) -> torch.Tensor:
    # (B, 3, T, H, W) in [-1, 1] -> (B*T, 3, H, W) in [0, 1]
    return rearrange((video.float().clamp(-1, 1) + 1) / 2, "b c t h w -> (b t) c h w")


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """Mean per-frame PSNR in dB of two B×3×T×H×W videos in [-1, 1]."""
    values = peak_signal_noise_ratio(
        _frames01(prediction), _frames01(target), data_range=1.0, reduction="none", dim=(1, 2, 3)
    )
    return values.mean().item()


def psnr_per_frame(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(T,) PSNR in dB of each frame index, averaged over the batch."""
    b = prediction.shape[0]
    values = peak_signal_noise_ratio(
        _frames01(prediction), _frames01(target), data_range=1.0, reduction="none", dim=(1, 2, 3)
    )
    return rearrange(values, "(b t) -> b t", b=b).mean(0)


def ssim(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """Mean per-frame SSIM (Gaussian window 11, σ 1.5) of two B×3×T×H×W videos in [-1, 1]."""
    value = structural_similarity_index_measure(_frames01(prediction), _frames01(target), data_range=1.0)
    return float(value)


def ssim_per_frame(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(T,) SSIM (as `ssim`) of each frame index, averaged over the batch."""
    b = prediction.shape[0]
    values = structural_similarity_index_measure(_frames01(prediction), _frames01(target), data_range=1.0,
                                                 reduction="none")
    return rearrange(values, "(b t) -> b t", b=b).mean(0)


@dataclass(frozen=True)
class CodeSize:
    """Bits needed for a clip's codes at fixed width, against the clip's raw 8-bit RGB pixels."""

    code_bits: int
    raw_bits: int

    @property
    def reduction(self) -> float:
        """Fraction of raw bits saved, e.g. 0.987 for a 98.7% reduction."""
        return 1.0 - self.code_bits / self.raw_bits

    def __str__(self) -> str:
        return (
            f"codes {self.code_bits:,} bits vs raw 8-bit RGB {self.raw_bits:,} bits "
            f"({100 * self.reduction:.1f}% reduction)"
        )


def code_size(frames: int, height: int, width: int, top_shape: tuple[int, ...], bottom_shape: tuple[int, ...],
              num_codes: int) -> CodeSize:
    """Fixed-width size of one clip's codes: ceil(log2 K) bits per code, both levels."""
    bits_per_code = math.ceil(math.log2(num_codes))
    n_codes = math.prod(top_shape) + math.prod(bottom_shape)
    return CodeSize(code_bits=n_codes * bits_per_code, raw_bits=frames * height * width * 3 * 8)

"""Honest numbers: PSNR and SSIM of video, and the size of codes against raw pixels.

Video tensors are B×3×T×H×W in [-1, 1]. Quality is measured on 8-bit-equivalent [0, 1] pixels after clamping,
per frame, averaged over frames and clips (how video codecs are usually compared).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

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


class KnownShape(Protocol):
    """A shape whose truth is known (`vqvid.data.synthetic.Shape`): `visible` (T, H, W) its coverage in [0, 1]
    where nothing hides it, `without` (3, T, H, W) the scene in [-1, 1] with the shape left out."""

    visible: torch.Tensor
    without: torch.Tensor


@dataclass(frozen=True)
class ShapeScores:
    """Whether a prediction keeps the shapes of a scene, per frame (lists of T):

    - `psnr`: PSNR (dB) inside each shape's true outline, averaged over the shapes;
    - `kept`: the share of shapes whose outline holds pixels nearer the shape than the scene without it, i.e.
      the shape is still there, in about its place and colours, rather than dissolved into what lies behind it;
    - `shapes`: how many shapes count in the frame (NaN in the other two lists where none does).
    """

    psnr: list[float]
    kept: list[float]
    shapes: list[int]


def shape_scores(prediction: torch.Tensor, truth: torch.Tensor, shapes: Sequence[Sequence[KnownShape]],
                 min_pixels: int = 16, min_contrast: float = 0.01) -> ShapeScores:
    """Score `prediction` (B, 3, T, H, W) against `truth` inside the shapes of each clip (`shapes[b]`, their
    tensors covering the same T frames). A shape counts in a frame where at least `min_pixels` pixels are mostly
    its own (visible > 0.5) and it stands out from what lies behind it: a mean squared difference of at least
    `min_contrast` (on [0, 1] pixels) between the truth and the scene without it, inside its outline."""
    if prediction.shape != truth.shape or len(shapes) != prediction.shape[0]:
        raise ValueError(f"shape_scores: prediction {tuple(prediction.shape)}, truth {tuple(truth.shape)} and "
                         f"{len(shapes)} clips' shapes must agree")
    squared = lambda a, b, mask: ((a - b) / 2).square().mul(mask).sum((0, 2, 3))  # (T,) on [0, 1] pixels
    errors, kept, counted = [], [], []
    for clip, target, clip_shapes in zip(prediction.float().clamp(-1, 1), truth.float(), shapes, strict=True):
        for shape in clip_shapes:
            mask = (shape.visible > 0.5).float()[None]  # (1, T, H, W)
            pixels = 3 * mask.sum((0, 2, 3))
            to_truth = squared(clip, target, mask) / pixels.clamp(min=1)
            to_without = squared(clip, shape.without.float(), mask) / pixels.clamp(min=1)
            contrast = squared(target, shape.without.float(), mask) / pixels.clamp(min=1)
            counted.append((pixels >= 3 * min_pixels) & (contrast >= min_contrast))
            errors.append(to_truth)
            kept.append(to_truth < to_without)
    counted, errors, kept = (torch.stack(v) for v in (counted, errors, kept))  # (shapes, T)
    n = counted.sum(0)
    db = -10 * torch.log10(errors.clamp(min=1e-10))
    mean = lambda v: torch.where(n > 0, (v * counted).sum(0) / n.clamp(min=1), torch.nan).tolist()
    return ShapeScores(psnr=mean(db), kept=mean(kept.float()), shapes=n.tolist())

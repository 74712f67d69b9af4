"""Honest numbers: PSNR and SSIM of video, and the size of codes against raw pixels.

Video tensors are B×3×T×H×W in [-1, 1]. Quality is measured on 8-bit-equivalent [0, 1] pixels after clamping,
per frame, averaged over frames and clips (how video codecs are usually compared); a frame that equals its
reference counts as PSNR_CAP = 100 dB, as in x264's reports, rather than as an infinity that would swallow the
mean.
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


# A frame equal to its reference has no finite PSNR; it counts as this many dB, as x264 reports such frames, so
# that a mean over frames (a lossless black frame of a real video, say) stays a number
PSNR_CAP = 100.0


def _psnr_of_frames(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B*T,) PSNR in dB of each frame, at most PSNR_CAP."""
    values = peak_signal_noise_ratio(
        _frames01(prediction), _frames01(target), data_range=1.0, reduction="none", dim=(1, 2, 3)
    )
    return values.clamp(max=PSNR_CAP)


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """Mean per-frame PSNR in dB of two B×3×T×H×W videos in [-1, 1]; a frame equal to its reference counts as
    PSNR_CAP dB."""
    return _psnr_of_frames(prediction, target).mean().item()


def psnr_per_frame(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(T,) PSNR in dB of each frame index, averaged over the batch (each frame at most PSNR_CAP)."""
    return rearrange(_psnr_of_frames(prediction, target), "(b t) -> b t", b=prediction.shape[0]).mean(0)


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


def codebook_distance(produced: torch.Tensor, truth: torch.Tensor, codebook: torch.Tensor,
                      where: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared distance between the codebook vectors of produced and true codes (N, T, H, W) int64, per
    latent frame: (T,). `codebook` (K, D); 0 where the codes are equal, small between near-synonymous codes.
    `where` (N, T, H, W) bool keeps the mean to those positions (NaN in a latent frame that has none)."""
    if produced.shape != truth.shape or produced.ndim != 4:
        raise ValueError(f"produced {tuple(produced.shape)} and truth {tuple(truth.shape)}: expected codes of one "
                         "shape (N, T, H, W)")
    squared = (codebook.float()[produced] - codebook.float()[truth]).pow(2).sum(-1)  # (N, T, H, W)
    if where is None:
        return squared.mean((0, 2, 3))
    if where.shape != produced.shape:
        raise ValueError(f"where {tuple(where.shape)}: expected the codes' shape {tuple(produced.shape)}")
    return (squared * where).sum((0, 2, 3)) / where.sum((0, 2, 3))


def code_agreement(produced: torch.Tensor, truth: torch.Tensor, codebook: torch.Tensor) -> dict[str, list[float]]:
    """How near produced codes (N, T, H, W) come to the true ones, per latent frame: "distance", the
    `codebook_distance`, and "equal", the share of positions holding exactly the true code."""
    return {"distance": codebook_distance(produced, truth, codebook).tolist(),
            "equal": (produced == truth).float().mean((0, 2, 3)).tolist()}


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
      the shape is still there, in about its place and colours, rather than dissolved into what lies behind it
      (with `stray`, anywhere within that many pixels a frame of its place);
    - `shapes`: how many shapes count in the frame (NaN in the other two lists where none does).
    """

    psnr: list[float]
    kept: list[float]
    shapes: list[int]


def shape_scores(prediction: torch.Tensor, truth: torch.Tensor, shapes: Sequence[Sequence[KnownShape]],
                 min_pixels: int = 16, min_contrast: float = 0.01, stray: int = 0) -> ShapeScores:
    """Score `prediction` (B, 3, T, H, W) against `truth` inside the shapes of each clip (`shapes[b]`, their
    tensors covering the same T frames). A shape counts in a frame where at least `min_pixels` pixels are mostly
    its own (visible > 0.5) and it stands out from what lies behind it: a mean squared difference of at least
    `min_contrast` (on [0, 1] pixels) between the truth and the scene without it, inside its outline.

    `stray` > 0 asks whether a shape kept its identity rather than its place: it counts as kept in frame t
    (0-based) if, for some shift d of at most stray × (t + 1) pixels each way, the prediction shifted back by d
    holds, inside the shape's outline, pixels nearer the shape than the scene without it read at the same
    shifted places (`_kept_near`). A prediction that moves a shape at up to `stray` pixels a frame too fast or
    too slow, or never moves it, keeps it; one that dissolves it into the background does not."""
    if prediction.shape != truth.shape or len(shapes) != prediction.shape[0]:
        raise ValueError(f"shape_scores: prediction {tuple(prediction.shape)}, truth {tuple(truth.shape)} and "
                         f"{len(shapes)} clips' shapes must agree")
    if stray < 0:
        raise ValueError(f"shape_scores: stray must be >= 0 pixels a frame, got {stray}")
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
            kept.append(torch.tensor([_kept_near(clip[:, t], target[:, t], mask[0, t], shape.without[:, t].float(),
                                                 stray * (t + 1)) for t in range(clip.shape[1])])
                        if stray else to_truth < to_without)
    counted, errors, kept = (torch.stack(v) for v in (counted, errors, kept))  # (shapes, T)
    n = counted.sum(0)
    db = -10 * torch.log10(errors.clamp(min=1e-10))
    mean = lambda v: torch.where(n > 0, (v * counted).sum(0) / n.clamp(min=1), torch.nan).tolist()
    return ShapeScores(psnr=mean(db), kept=mean(kept.float()), shapes=n.tolist())


def _kept_near(frame: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, without: torch.Tensor,
               radius: int) -> bool:
    """Whether, for some shift d with |dy|, |dx| <= radius, the frame (3, H, W) read at p + d is nearer the
    target's shape (`target` at p, over the mask's pixels p) than the scene without it (`without` at p + d).
    Outside the frame, frames repeat their edge. Both sums over the mask are correlations with it, so every
    shift is scored at once: |f(p+d) - x(p)|² = f(p+d)² - 2 f(p+d) x(p) + x(p)², and the distance to the
    background is the squared difference image correlated with the mask."""
    if not mask.any():
        return False
    rows, cols = mask.nonzero(as_tuple=True)
    top, left, bottom, right = rows.min(), cols.min(), rows.max() + 1, cols.max() + 1
    kernel = mask[top:bottom, left:right].double()[None, None]  # (1, 1, h, w)
    pad = lambda image: torch.nn.functional.pad(image.double()[None], (radius,) * 4, mode="replicate")[0]
    window = lambda image: pad(image)[:, top : bottom + 2 * radius, left : right + 2 * radius]
    correlate = lambda image, weights: torch.nn.functional.conv2d(image[None], weights)[0].sum(0)  # (2r+1, 2r+1)
    moved, background = window(frame), window(without)
    shape_pixels = target[:, top:bottom, left:right].double()  # (3, h, w)
    to_shape = (correlate(moved.square(), kernel.expand(3, 1, -1, -1).transpose(0, 1))
                - 2 * correlate(moved, (shape_pixels * kernel[0])[None])
                + (shape_pixels.square() * kernel[0]).sum())
    to_without = correlate((moved - background).square().sum(0, keepdim=True), kernel)
    return bool((to_shape < to_without).any())

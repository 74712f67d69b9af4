"""The context reader: the top codes after a prediction's context, read off the context's frames.

The top prior sees the context only through its top codes, each of which covers 8×8 pixels of 4 frames; in them
a shape's place and speed are blurred, and the prior continues them barely nearer the truth than repeating their
last latent frame (docs/prediction.md, "Where the shapes are"). The reader reads the frames themselves:

    context frames (B, 3, C, H, W) in [-1, 1]
      -> a stem down to the top grid            (B, channels, C/2, H/8, W/8)
      -> time folded into channels, 1×1 mix     (B, channels, H/8, W/8)
      -> `layers` residual 3×3 convolutions
      -> logits of every top code after the context at once   (B, K, (L - C)/4, H/8, W/8)

It is a conditional model of p(top codes of latent frames C/4 ... L/4 - 1 | frames 0 ... C - 1) whose positions
are independent given the frames; sampling draws each position on its own (`sample_codes`). It is causal by
construction: its input is the context's frames and nothing else. It is trained (`vqvid train reader`) on video
clips, its targets the frozen VQ-VAE's top codes of the whole clips, with cross-entropy.

On the demo's 8 held-out clips (frames 8-15 from 0-7, the demo's bottom prior filling in the detail), the
`tiny` preset's reader, 600 steps in about 100 s on two CPU cores, keeps 53% of the shapes in place where the
top prior keeps 38% and copying the last frame 44%, at 22.32 dB against 21.76 and 20.85 (docs/prediction.md,
"The context reader in vqvid").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqvid.models.vqvae import SPACE_FACTOR, TIME_FACTOR

STEMS = ("conv", "patch")


@dataclass
class ReaderConfig:
    num_codes: int = 512  # K, of the VQ-VAE's top codebook
    context: int = 8  # C, frames read; a multiple of 4 (a top latent frame)
    frames: int = 16  # L, of the VQ-VAE's clips: the reader predicts top latent frames C/4 ... L/4 - 1
    channels: int = 96
    layers: int = 6  # residual 3×3 convolutions on the top grid
    # How the frames come down to the top grid: "conv", three strided convolutions (4×4 pixels of `frame_kernel`
    # frames at full and at half resolution, then 4×4×4), or "patch", each frame's 4×4 patches embedded, then
    # 2×2×2 of those (a patch embedding, as in ViT, Dosovitskiy et al. 2020, arXiv 2010.11929, in two steps). The
    # patch stem does a sixth of the work per clip, and learned faster on the demo's clips (docs/prediction.md).
    stem: str = "patch"
    frame_kernel: int = 3

    def __post_init__(self) -> None:
        if self.context < TIME_FACTOR or self.context % TIME_FACTOR:
            raise ValueError(f"reader context={self.context}: expected a positive multiple of {TIME_FACTOR} frames")
        if self.frames <= self.context or self.frames % TIME_FACTOR:
            raise ValueError(f"reader frames={self.frames}: expected a multiple of {TIME_FACTOR} above "
                             f"context={self.context}")
        if self.stem not in STEMS:
            raise ValueError(f"reader stem={self.stem!r}: expected one of {', '.join(STEMS)}")
        if self.frame_kernel not in (1, 3):
            raise ValueError(f"reader frame_kernel={self.frame_kernel}: expected 1 or 3")
        for name in ("num_codes", "channels", "layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"reader {name}={getattr(self, name)}: expected at least 1")

    @property
    def known(self) -> int:
        """Top latent frames of the context."""
        return self.context // TIME_FACTOR

    @property
    def predicted(self) -> int:
        """Top latent frames after the context, all of which the reader predicts at once."""
        return (self.frames - self.context) // TIME_FACTOR


class ContextReader(nn.Module):
    """Logits (B, K, (L - C)/4, H/8, W/8) of the top codes after the context, from its frames (B, 3, C, H, W)."""

    def __init__(self, config: ReaderConfig):
        super().__init__()
        self.config = config
        c, k = config.channels, config.frame_kernel
        if config.stem == "conv":
            self.encoder = nn.Sequential(  # (C, H, W) -> (C/2, H/8, W/8)
                nn.Conv3d(3, 32, (k, 4, 4), (1, 2, 2), (k // 2, 1, 1)), nn.GELU(),
                nn.Conv3d(32, 64, (k, 4, 4), (1, 2, 2), (k // 2, 1, 1)), nn.GELU(),
                nn.Conv3d(64, c, (4, 4, 4), (2, 2, 2), (1, 1, 1)), nn.GELU())
        else:
            self.encoder = nn.Sequential(
                nn.Conv3d(3, 64, (1, 4, 4), (1, 4, 4)), nn.GELU(),
                nn.Conv3d(64, c, (2, 2, 2), (2, 2, 2)), nn.GELU())
        self.mix = nn.Conv2d(config.context // 2 * c, c, 1)
        self.body = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1) for _ in range(config.layers))
        self.out = nn.Conv2d(c, config.predicted * config.num_codes, 1)

    def forward(self, context: Tensor) -> Tensor:
        config = self.config
        if context.dim() != 5 or context.shape[1] != 3 or context.shape[2] != config.context \
                or context.shape[3] % SPACE_FACTOR or context.shape[4] % SPACE_FACTOR:
            raise ValueError(f"the context reader reads (B, 3, {config.context}, H, W) frames, H and W multiples "
                             f"of {SPACE_FACTOR}; got shape {tuple(context.shape)}")
        hidden = self.mix(self.encoder(context).flatten(1, 2))  # time folded into channels
        for conv in self.body:
            hidden = hidden + conv(F.gelu(hidden))
        logits = self.out(F.gelu(hidden))  # (B, predicted * K, H/8, W/8)
        return logits.unflatten(1, (config.predicted, config.num_codes)).transpose(1, 2)

    def sample_codes(self, context: Tensor, temperature: float = 1.0, top_k: int | None = None,
                     generator: torch.Generator | None = None, samples: int = 1) -> Tensor:
        """Top codes (B * samples, (L - C)/4, H/8, W/8) after the context, clip-major, each position drawn on
        its own from the logits at `temperature`, among its `top_k` most likely codes when given. Temperature 0 or
        `top_k=1` take each position's most likely code. The frames are read once per clip, however many samples
        are drawn."""
        if not temperature >= 0:
            raise ValueError(f"temperature={temperature}: expected 0 (the most likely codes) or more")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k={top_k}: expected at least 1")
        logits = self(context).movedim(1, -1)  # (B, T', H', W', K)
        if temperature == 0 or top_k == 1:  # the same codes for every sample of a clip
            return logits.argmax(-1).repeat_interleave(samples, 0)
        logits = logits.repeat_interleave(samples, 0) / temperature  # (B*S, T', H', W', K)
        if top_k is not None:
            kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, -torch.inf)
        probabilities = logits.flatten(0, -2).softmax(-1).float()
        drawn = torch.multinomial(probabilities, 1, generator=generator)
        return drawn.view(logits.shape[:-1])

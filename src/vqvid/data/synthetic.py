"""Moving shapes: a synthetic video data set that needs no files, in the spirit of Moving MNIST
(Srivastava et al. 2015, arXiv 1502.04681) but in colour.

Each clip shows 2–4 shapes (circles, squares, triangles), plain or with smooth stripes or a checker pattern,
moving at constant velocity and bouncing off the borders, over a smooth background (a colour gradient plus one
slowly drifting low-frequency wave). Everything is smooth at the scale of a few pixels, so a small VQ-VAE can
learn it within minutes on a CPU; the motion still gives a prior something to predict. A clip is a function
of (seed, index) alone, generated on the fly with numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from vqvid.data.video import to_uint8_frames, write_video

_SHAPES = ("circle", "square", "triangle")
_TEXTURES = ("plain", "stripes", "checker")
# Outward normals of an upward-pointing equilateral triangle's edges, in image coordinates (y down).
_TRIANGLE_NORMALS = ((0.0, 1.0), (math.sqrt(3) / 2, -0.5), (-math.sqrt(3) / 2, -0.5))


class MovingShapes(Dataset):
    """`num_clips` clips of 3×frames×size×size in [-1, 1]; clip i depends only on (seed, i)."""

    def __init__(self, num_clips: int, frames: int = 16, size: int = 64, seed: int = 0,
                 cache_bytes: int = 0) -> None:
        for name, value, low in (("num_clips", num_clips, 1), ("frames", frames, 1), ("size", size, 8),
                                 ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"MovingShapes: {name} must be an integer >= {low}, got {value!r}")
        self.num_clips, self.frames, self.size, self.seed = num_clips, frames, size, seed
        # A set whose clips fit in `cache_bytes` (`nbytes`, in every process that reads the set) keeps every clip
        # once rendered, so that epochs after the first cost no rendering, which otherwise competes with training
        # for the cores; a cached clip is the same array that rendering it again would give
        self._cache: dict[int, np.ndarray] | None = {} if self.nbytes <= cache_bytes else None

    def __len__(self) -> int:
        return self.num_clips

    @property
    def nbytes(self) -> int:
        """The memory every clip of the set takes once rendered (float32 RGB)."""
        return self.num_clips * 3 * self.frames * self.size * self.size * 4

    @property
    def cached(self) -> bool:
        return self._cache is not None

    def __getitem__(self, index: int) -> torch.Tensor:
        if not -self.num_clips <= index < self.num_clips:
            raise IndexError(f"clip {index} out of range for {self.num_clips} clips")
        index %= self.num_clips
        video = self._cache.get(index) if self._cache is not None else None
        if video is None:
            video = _render(np.random.default_rng([self.seed, index]), self.frames, self.size)  # (3, T, H, W)
            if self._cache is not None:
                self._cache[index] = video
        return torch.from_numpy(video * 2 - 1)  # a new tensor: the cached clip in [0, 1] stays as it was

    def describe(self, index: int) -> str:
        return f"synthetic(seed={self.seed})#{index % self.num_clips}"

    def shapes(self, index: int) -> list[Shape]:
        """The shapes of clip `index`, in drawing order, each with its outline and the clip drawn without it:
        ground truth for measuring whether a prediction keeps the shapes (`vqvid.metrics.shape_scores`)."""
        self[index]  # the same range check
        rng = np.random.default_rng([self.seed, index % self.num_clips])
        background, layers = _layers(rng, self.frames, self.size)
        shapes = []
        for i, (kind, alpha, _) in enumerate(layers):
            visible = alpha.copy()
            for _, above, _ in layers[i + 1 :]:
                visible *= 1 - above
            without = _composite(background, layers[:i] + layers[i + 1 :])
            shapes.append(Shape(kind, torch.from_numpy(visible), torch.from_numpy(without * 2 - 1)))
        return shapes


@dataclass(frozen=True)
class Shape:
    """One shape of a clip: `kind` (circle, square or triangle), `visible` (T, H, W) its coverage in [0, 1]
    where shapes drawn after it do not hide it, `without` (3, T, H, W) the clip in [-1, 1] drawn without it."""

    kind: str
    visible: torch.Tensor
    without: torch.Tensor


def _render(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """One clip, float32 (3, T, H, W) in [0, 1]."""
    return _composite(*_layers(rng, frames, size))


def _layers(rng: np.random.Generator, frames: int, size: int):
    """A clip's background (3, T, H, W) and its shapes in drawing order, each (kind, coverage (T, H, W),
    colour (3, T, H, W) or (3, 1, 1, 1)). Coordinates stay separable ((1, 1, W) and (1, H, 1)) until a full
    frame is needed, channels come first so that numpy's inner loops run along rows, and everything is float32:
    that keeps a 16×64×64 clip to a few milliseconds."""
    t = np.arange(frames, dtype=np.float32)[:, None, None]  # (T, 1, 1)
    pixels = np.arange(size, dtype=np.float32) + 0.5  # pixel centres
    x, y = pixels[None, None, :], pixels[None, :, None]  # (1, 1, W), (1, H, 1)
    background = _background(rng, t, x, y, size)
    return background, [_shape(rng, t, x, y, size) for _ in range(rng.integers(2, 5))]


def _composite(background: np.ndarray, layers: list) -> np.ndarray:
    """The shapes drawn over the background in order, clipped to [0, 1]: (3, T, H, W) float32."""
    video = background.copy()
    for _, alpha, colour in layers:
        video += alpha * (colour - video)
    return np.clip(video, 0, 1, out=video)


def _background(rng: np.random.Generator, t: np.ndarray, x: np.ndarray, y: np.ndarray, size: int):
    """(3, T, H, W): a gradient between two colours plus a slowly drifting wave of 1–2 cycles per frame."""
    start, end = rng.uniform(0.15, 0.85, size=(2, 3, 1, 1, 1)).astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    along = x * math.cos(angle) + y * math.sin(angle)  # (1, H, W)
    mix = (along - along.min()) / (along.max() - along.min())  # (1, H, W) in [0, 1]
    gradient = start + mix * (end - start)  # (3, 1, H, W)
    cycles_x, cycles_y = (rng.uniform(1, 2, size=2) * rng.choice([-1, 1], size=2)).tolist()
    spatial = (2 * math.pi / size) * (cycles_x * x + cycles_y * y)  # (1, H, W)
    drift = rng.uniform(0.05, 0.2) * t  # (T, 1, 1) radians
    # sin(spatial + drift) expanded, so that sin and cos run over (H, W) and (T,) rather than (T, H, W)
    wave = np.sin(spatial) * np.cos(drift) + np.cos(spatial) * np.sin(drift)  # (T, H, W)
    tint = rng.uniform(-0.12, 0.12, size=(3, 1, 1, 1)).astype(np.float32)
    return gradient + wave * tint  # (3, T, H, W)


def _shape(rng: np.random.Generator, t: np.ndarray, x: np.ndarray, y: np.ndarray, size: int):
    """One bouncing shape: its kind, its coverage (T, H, W), anti-aliased, and its colour, (3, 1, 1, 1) when
    plain else (3, T, H, W)."""
    kind, texture = rng.choice(_SHAPES), rng.choice(_TEXTURES)
    radius = rng.uniform(0.1, 0.2) * size
    speed, heading = rng.uniform(0.5, 1.5) * size / 32, rng.uniform(0, 2 * math.pi)  # pixels per frame
    low, span = radius, size - 2 * radius
    start_x, start_y = rng.uniform(low, low + span, size=2).tolist()
    centre_x = _bounce(start_x + speed * math.cos(heading) * t, low, span)  # (T, 1, 1)
    centre_y = _bounce(start_y + speed * math.sin(heading) * t, low, span)
    # offsets from the centre, (T, 1, W) and (T, H, 1): textures drawn in them move with the shape
    dx, dy = x - centre_x, y - centre_y

    if kind == "circle":
        distance = np.sqrt(dx**2 + dy**2) - radius
    elif kind == "square":
        distance = np.maximum(np.abs(dx), np.abs(dy)) - 0.85 * radius
    else:  # triangle with circumradius `radius`, so inradius radius / 2
        distance = np.maximum.reduce([nx * dx + ny * dy for nx, ny in _TRIANGLE_NORMALS]) - radius / 2
    alpha = np.clip(0.5 - distance / 1.5, 0, 1)  # (T, H, W); edges 1.5 pixels wide

    base = rng.uniform(0, 1, size=(3, 1, 1, 1)).astype(np.float32)
    other = np.clip(base + rng.uniform(-0.6, 0.6, size=(3, 1, 1, 1)), 0, 1).astype(np.float32)
    # Periods of a sixth to a quarter of the frame: textures that a 4×-downsampling autoencoder can keep.
    wavenumber = 2 * math.pi / rng.uniform(size / 6, size / 4)
    if texture == "plain":
        return str(kind), alpha, base
    if texture == "stripes":
        angle = rng.uniform(0, math.pi)
        along_x, along_y = wavenumber * math.cos(angle) * dx, wavenumber * math.sin(angle) * dy
        pattern = np.sin(along_x) * np.cos(along_y) + np.cos(along_x) * np.sin(along_y)  # sin(sum), separably
    else:
        pattern = np.sin(wavenumber * dx) * np.sin(wavenumber * dy)
    colour = base + (0.5 + 0.5 * pattern) * (other - base)  # (3, T, H, W)
    return str(kind), alpha, colour


def _bounce(position: np.ndarray, low: float, span: float) -> np.ndarray:
    """Free motion folded into [low, low + span]: a triangle wave, i.e. elastic bounces off both walls."""
    folded = np.mod(position - low, 2 * span)
    return low + span - np.abs(folded - span)


def write_synthetic_videos(
    folder: str | Path, n: int, frames: int = 16, size: int = 64, fps: float = 10.0, seed: int = 0
) -> list[Path]:
    """Write `n` moving-shapes clips as H.264 MP4 files `shapes_000.mp4, …` into `folder` (created if
    missing), for exercising the video path without real data. Returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    clips = MovingShapes(n, frames=frames, size=size, seed=seed)
    return [write_video(folder / f"shapes_{i:03d}.mp4", to_uint8_frames(clips[i]), fps) for i in range(n)]

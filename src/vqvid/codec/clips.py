"""Cutting a video into the clips a model codes: consecutive clips of L frames, the last held on its last frame.

A video arrives as one tensor 3×N×H×W, as clips B×3×T×H×W played one after another, or as an iterable of such
pieces read as they come (a long file need not be in memory at once). Clip boundaries may fall anywhere inside
pieces; a clip that spans pieces is assembled, and clips inside one long piece are views, not copies.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from vqvid.geometry import ClipGeometry


def _pieces(video: Tensor | Iterable[Tensor], geometry: ClipGeometry) -> Iterator[Tensor]:
    """The video's frames as consecutive pieces (3, t, H, W), checked against the model's frame size."""
    height, width = geometry.height, geometry.width
    if not isinstance(video, (Tensor, Iterable)) or isinstance(video, np.ndarray):
        raise ValueError(f"video: expected a torch tensor or an iterable of them, got {type(video).__name__}")
    for index, piece in enumerate([video] if isinstance(video, Tensor) else video):
        what = "video" if isinstance(video, Tensor) else f"video piece {index}"
        if isinstance(piece, Tensor) and piece.ndim == 5:
            piece = rearrange(piece, "b c t h w -> c (b t) h w")
        if not (isinstance(piece, Tensor) and piece.is_floating_point() and piece.ndim == 4
                and piece.shape[0] == 3 and tuple(piece.shape[2:]) == (height, width)):
            found = (f"{piece.dtype} {tuple(piece.shape)}" if isinstance(piece, Tensor)
                     else type(piece).__name__)
            raise ValueError(f"{what}: expected float frames 3×N×{height}×{width} (or clips "
                             f"B×3×T×{height}×{width}) in [-1, 1] at the model's size, got {found}")
        if not torch.isfinite(piece).all():
            raise ValueError(f"{what}: expected finite values in [-1, 1], found NaN or infinity")
        yield piece


def cut_clips(video: Tensor | Iterable[Tensor], geometry: ClipGeometry) -> Iterator[tuple[Tensor, int]]:
    """Clips (3, L, H, W) cut from the video, each with the number of its frames that are the video's own:
    L, except in the last clip, which holds its last frame to the full length."""
    length = geometry.clip_frames
    pending: list[Tensor] = []  # the start of the next clip, fewer than L frames
    held = 0
    for piece in _pieces(video, geometry):
        offset = 0
        if held:
            offset = min(length - held, piece.shape[1])
            pending.append(piece[:, :offset])
            held += offset
            if held < length:
                continue
            yield torch.cat(pending, dim=1), length
            pending, held = [], 0
        while piece.shape[1] - offset >= length:  # views into a long tensor: no copies
            yield piece[:, offset:offset + length], length
            offset += length
        if offset < piece.shape[1]:
            pending, held = [piece[:, offset:]], piece.shape[1] - offset
    if held:
        frames = torch.cat(pending, dim=1)  # (3, held, H, W)
        hold = frames[:, -1:].expand(-1, length - held, -1, -1)
        yield torch.cat([frames, hold], dim=1), held

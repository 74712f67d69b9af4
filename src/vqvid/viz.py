"""Looking at results: panels of videos side by side, written as GIF or MP4.

Videos are 3×T×H×W tensors in [-1, 1]; panels are joined along the width with a thin white gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from vqvid.data.video import to_uint8_frames, write_video


def side_by_side(panels: Sequence[torch.Tensor], gap: int = 2) -> torch.Tensor:
    """Join 3×T×H×W videos along the width. Shorter panels hold their last frame so all run the same length."""
    if not panels:
        raise ValueError("side_by_side needs at least one panel")
    frames = max(p.shape[1] for p in panels)
    height = panels[0].shape[2]
    padded = []
    for i, panel in enumerate(panels):
        if panel.dim() != 4 or panel.shape[0] != 3 or panel.shape[2] != height:
            raise ValueError(f"panel {i}: expected 3×T×{height}×W, got {tuple(panel.shape)}")
        panel = panel.detach().float().cpu().clamp(-1, 1)
        if panel.shape[1] < frames:
            hold = panel[:, -1:].expand(-1, frames - panel.shape[1], -1, -1)
            panel = torch.cat([panel, hold], dim=1)
        padded.append(panel)
        if gap and i < len(panels) - 1:
            padded.append(torch.ones(3, frames, height, gap))
    return torch.cat(padded, dim=3)


def stack_rows(rows: Sequence[torch.Tensor], gap: int = 2) -> torch.Tensor:
    """Join 3×T×H×W videos of equal width vertically (one row per clip)."""
    out = []
    for i, row in enumerate(rows):
        out.append(row)
        if gap and i < len(rows) - 1:
            out.append(torch.ones(3, row.shape[1], gap, row.shape[3]))
    return torch.cat(out, dim=2)


def upscale(video: torch.Tensor, factor: int) -> torch.Tensor:
    """Nearest-neighbour enlargement of a 3×T×H×W video, so tiny clips are visible in a GIF."""
    if factor == 1:
        return video
    return F.interpolate(video, scale_factor=(factor, factor), mode="nearest")


def for_display(video: torch.Tensor, min_height: int = 128) -> torch.Tensor:
    """Enlarge a 3×T×H×W panel by a whole factor (nearest neighbour) until it is at least `min_height` tall, so
    that 64-pixel clips stay visible in a GIF. Only for pictures; figures are measured on the real pixels."""
    return upscale(video, max(1, -(-min_height // video.shape[2])))


def save_video(path: str | Path, video: torch.Tensor, fps: float = 10.0) -> Path:
    """Write a 3×T×H×W video in [-1, 1] to `path` (.gif, .mp4 or .mkv), atomically (see `vqvid.files`)."""
    from vqvid.files import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = to_uint8_frames(video)
    with atomic_path(path) as partial:  # an existing file stays whole until the new one is complete
        write_video(partial, frames, fps)
    return path

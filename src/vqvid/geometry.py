"""The clip size a model folder works on, and its code grids: one type for compression and prediction.

A model folder's priors have grids of a fixed size (learned positional embeddings), so everything that codes or
samples works on clips of exactly that size: `clip_frames` frames of `height` × `width` pixels, whose codes are
top (L/4, H/8, W/8) and bottom (L/2, H/4, W/4) grids of `num_codes` codes (VQ-VAE-2, Razavi et al. 2019,
arXiv 1906.00446: the top level at 1/8, the bottom at 1/4 of the spatial size; vqvid's 3D version also halves
time per level).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from vqvid.models.vqvae import SPACE_FACTOR, TIME_FACTOR, VQVAE
from vqvid.persistence import ModelFolder

Shape3 = tuple[int, int, int]


class ClipGeometry(NamedTuple):
    """What a model folder codes: clips of clip_frames × height × width pixels, and their code grids."""

    clip_frames: int  # L
    height: int
    width: int
    top_shape: Shape3  # (L/4, H/8, W/8)
    bottom_shape: Shape3  # (L/2, H/4, W/4)
    num_codes: int  # K of both levels

    @property
    def positions(self) -> int:
        """Codes of one clip, both levels."""
        return math.prod(self.top_shape) + math.prod(self.bottom_shape)


def clip_geometry(model: ModelFolder, name: str | None = None) -> ClipGeometry:
    """The clip size and code grids of a model folder: from the VQ-VAE's clip spec (`data.frames`,
    `data.size`), else from the top prior's grid. Raises ValueError, naming the folder as `name` (default: by its
    fingerprint), if the priors do not fit that clip."""
    name = name or f"model folder {model.fingerprint}"
    data = model.vqvae.data
    if data.get("frames") and data.get("size"):
        frames, height, width = int(data["frames"]), int(data["size"]), int(data["size"])
    elif model.top is not None:
        t, h, w = model.top.config.shape
        frames, height, width = TIME_FACTOR * t, SPACE_FACTOR * h, SPACE_FACTOR * w
    else:
        raise ValueError(f"{name}: the VQ-VAE records no clip size (data.frames "
                         "and data.size in model.json) and there is no top prior to take it from")
    grids = VQVAE.grid_shapes(frames, height, width)
    geometry = ClipGeometry(frames, height, width, grids.top, grids.bottom, model.vqvae.config.num_codes)
    expected = {"top": (grids.top, None), "bottom": (grids.bottom, grids.top)}
    for level, prior in (("top", model.top), ("bottom", model.bottom)):
        if prior is None:
            continue
        shape, condition = expected[level]
        config = prior.config
        found = (config.shape, config.condition_shape, config.num_codes, config.condition_num_codes)
        wanted = (shape, condition, geometry.num_codes, geometry.num_codes if condition else None)
        if found != wanted:
            raise ValueError(
                f"{name}: the {level} prior models grids {config.shape} of "
                f"{config.num_codes} codes (condition {config.condition_shape}), but clips of "
                f"{frames}×{height}×{width} give {level} grids {shape} of {geometry.num_codes} codes"
                + (f" given top grids {condition}" if condition else "")
            )
    reader = model.reader
    if reader is not None and (reader.config.frames, reader.config.num_codes) != (frames, geometry.num_codes):
        raise ValueError(f"{name}: the context reader predicts the top codes of {reader.config.frames}-frame clips "
                         f"of {reader.config.num_codes} codes, but the VQ-VAE codes {frames}-frame clips of "
                         f"{geometry.num_codes} codes")
    return geometry

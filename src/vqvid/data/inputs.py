"""Opening a user's input for the commands that work on one video at a time: compression and prediction.

`open_video` gives the frames of one video, at a model's size, as consecutive pieces decoded as they are
consumed (`vqvid compress`); `open_prediction_input` gives clips as long as a whole prediction, or of one model
clip where the source is too short for that (`vqvid predict`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from fractions import Fraction
from itertools import chain
from typing import TYPE_CHECKING, NamedTuple

from vqvid.data.sources import Clips, open_clips
from vqvid.data.store import ClipStore, is_store
from vqvid.data.video import ClipSpec, DataError, DataWarning

if TYPE_CHECKING:
    from torch import Tensor
    from torch.utils.data import Dataset

    from vqvid.geometry import ClipGeometry

DEFAULT_FPS = 10  # for sources that carry no frame rate and a model trained without one


class VideoInput(NamedTuple):
    pieces: Iterator[Tensor]  # consecutive frames (3, t, H, W) in [-1, 1], decoded as they are consumed
    frames: int
    fps: Fraction


def open_video(source: str, data: dict, geometry: ClipGeometry, max_frames: int | None = None) -> VideoInput:
    """The frames of `source` at the model's size, lazily, for coding: one video file or frame folder, read
    whole (resampled to the model's frame rate if it was trained on one; resized and centre-cropped to its
    size), or a prepared store or 'synthetic[:N]', whose clips follow one another. `data` is the VQ-VAE's clip
    spec (model.json). Raises DataError for a source that holds several videos or none that decodes."""
    rates = {key: data[key] for key in ("fps", "source_fps") if data.get(key) is not None}
    length, size = geometry.clip_frames, geometry.height
    limit = max_frames if max_frames is not None else math.inf
    model_fps = Fraction(rates["fps"]).limit_denominator(1001) if "fps" in rates else None
    if source == "synthetic" or source.startswith("synthetic:") or is_store(source):
        clips = open_clips(source, ClipSpec(frames=length, stride=length, size=size, **rates))
        frames = int(min(len(clips) * length, limit))
        pieces = (clips[i][:, : frames - i * length] for i in range(-(-frames // length)))
        store_fps = clips.spec.fps if isinstance(clips, ClipStore) else None
        fps = model_fps or Fraction(store_fps or DEFAULT_FPS).limit_denominator(1001)
        return VideoInput(pieces, frames, fps)
    single = open_clips(source, ClipSpec(frames=1, stride=1, size=size, **rates))  # one item per frame
    if single.source_index(len(single) - 1) != 0:
        raise DataError(f"{source}: holds {len(single.sources)} videos; compress one video file or frame "
                        "folder at a time")
    frames = int(min(len(single), limit))
    # Whole clips decode in one pass each; only the frames of the last, partial clip are read one by one.
    whole = Clips(single.sources, ClipSpec(frames=length, stride=length, size=size, **rates))
    full = frames // length
    pieces = chain((lambda i=i: whole[i] for i in range(full)),
                   (lambda j=j: single[j] for j in range(full * length, frames)))
    return VideoInput(_skipping_unreadable(pieces), frames, model_fps or _source_fps(single.sources[0].times))


def _skipping_unreadable(pieces: Iterator[Callable[[], Tensor]]) -> Iterator[Tensor]:
    """The pieces that can be read; one that raises DataError is left out of the file with one DataWarning
    naming the file and time, and one more at the end counts them."""
    total, skipped = 0, []
    for read in pieces:
        total += 1
        try:
            yield read()
        except DataError as error:
            skipped.append(str(error))
            warnings.warn(f"compress: leaving out frames that cannot be read: {error}", DataWarning,
                          stacklevel=2)
    if skipped:
        warnings.warn(f"compress: {len(skipped)} of {total} pieces could not be read and are not in the file "
                      f"(first: {skipped[0]})", DataWarning, stacklevel=2)


def _source_fps(times) -> Fraction:
    """The mean frame rate of frames shown at `times` (seconds), as a ratio such as 30000/1001."""
    if len(times) < 2 or not times[-1] > times[0]:
        return Fraction(DEFAULT_FPS)
    return Fraction((len(times) - 1) / float(times[-1] - times[0])).limit_denominator(1001)


def open_prediction_input(source: str, spec: ClipSpec, clip_frames: int, multiple: int = 1
                          ) -> tuple[Dataset, ClipSpec]:
    """Clips of `source` as long as the whole prediction, so the truth covers every generated frame; for a
    rollout from a source too short for that, clips as long as its shortest usable video holds, in a `multiple`
    of frames (at least one model clip, from which the rollout can still start).
    """
    if spec.frames <= clip_frames:
        return open_clips(source, spec), spec
    # Files too short for the whole rollout warn that they are skipped: true only if no fallback follows.
    with warnings.catch_warnings(record=True) as skipped:
        warnings.simplefilter("always")
        try:
            dataset = open_clips(source, spec)
        except DataError:
            short = replace(spec, frames=clip_frames, stride=clip_frames)
            dataset = open_clips(source, short)
            # As long as every usable source allows: a longer clip would leave the shorter sources out.
            held = dataset.shortest_source() if isinstance(dataset, Clips) else clip_frames
            frames = max(clip_frames, held - held % multiple)
            if frames > clip_frames:
                short = replace(spec, frames=frames, stride=frames)
                dataset = open_clips(source, short)
            print(f"{source}: no clip of {spec.frames} frames; the truth covers the first {frames} only")
            return dataset, short
    for warning in skipped:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return dataset, spec

"""Opening a user's input for the commands that work on one video at a time: compression and prediction.

`open_video` gives the frames of one video, at a model's size, as consecutive pieces decoded as they are
consumed (`vqvid compress`); `open_prediction_input` gives clips as long as a whole prediction, or of one model
clip where the source is too short for that (`vqvid predict`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import replace
from fractions import Fraction
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from vqvid.data.frames import FrameFolder
from vqvid.data.sources import Clips, open_clips
from vqvid.data.store import ClipStore, is_store
from vqvid.data.video import ClipSpec, DataError, DataWarning, FrameSource

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
    size), or a prepared store or 'synthetic[:N]', whose clips follow one another (a store's overlapping clips
    give each frame once). `data` is the VQ-VAE's clip spec (model.json). Raises DataError for a source that
    holds several videos or none that decodes. `frames` counts the frames to code; one that turns out unreadable
    is left out of the pieces (`_skipping_unreadable`)."""
    rates = {key: data[key] for key in ("fps", "source_fps") if data.get(key) is not None}
    length, size = geometry.clip_frames, geometry.height
    limit = max_frames if max_frames is not None else math.inf
    if source == "synthetic" or source.startswith("synthetic:") or is_store(source):
        clips = open_clips(source, ClipSpec(frames=length, stride=length, size=size, **rates))
        spans, frames = [], 0  # (clip, first frame of it to code)
        for index, first in (_store_spans(clips) if isinstance(clips, ClipStore) else enumerate([0] * len(clips))):
            if frames >= limit:
                break
            spans.append((index, first))
            frames += length - first
        frames = int(min(frames, limit))
        pieces = _first_frames((clips[i][:, first:] for i, first in spans), frames)
        return VideoInput(pieces, frames, clips_fps(clips))
    single = open_clips(source, ClipSpec(frames=1, stride=1, size=size, **rates))  # one item per frame
    if single.source_index(len(single) - 1) != 0:
        raise DataError(f"{source}: holds {len(single.sources)} videos; compress one video file or frame "
                        "folder at a time")
    frames = int(min(len(single), limit))
    whole = Clips(single.sources, ClipSpec(frames=length, stride=length, size=size, **rates))
    return VideoInput(_skipping_unreadable(single, whole, frames), frames, clips_fps(single))


def clips_fps(dataset: Dataset) -> Fraction:
    """The rate the clips of `dataset` (from `open_clips`) play at, as a ratio such as 30000/1001: the rate
    they were resampled to, if any (a store's is checked against the one asked for); else that of the video or
    frame folder the first clip is cut from (`source_fps`); else DEFAULT_FPS (synthetic clips, stores prepared
    without a rate)."""
    spec = getattr(dataset, "spec", None)  # Clips and ClipStore have one
    if spec is not None and spec.fps:
        return Fraction(spec.fps).limit_denominator(1001)
    if isinstance(dataset, Clips) and len(dataset):
        return source_fps(dataset.sources[dataset.source_index(0)])
    return Fraction(DEFAULT_FPS)


def _store_spans(store: ClipStore) -> Iterator[tuple[int, int]]:
    """(clip, its first frame not in the clip before it) for every clip of `store`, in order. `vqvid prepare`
    starts a source's clips every `stride` frames (8 of 16 by default: each frame in two clips) and writes them
    in order, so a clip shares its first frames with the one before it. They are left out where both clips are
    of one source and those frames equal that clip's last ones, byte for byte; so the first clip of the next
    source (even one that fades in from the black the last one faded to), or a clip of a store whose stride is
    not its clips', stays whole."""
    overlap = store.spec.frames - store.spec.stride  # frames a clip shares with the one before it, if any
    source = lambda index: store.describe(index).rsplit("@", 1)[0]  # "a/b.mp4@frame=24" -> "a/b.mp4"
    yield 0, 0
    if overlap <= 0:
        yield from ((index, 0) for index in range(1, len(store)))
        return
    before = store.frames(0)
    for index in range(1, len(store)):
        frames = store.frames(index)  # each clip read once here, its frames compared with the clip before it
        shared = source(index - 1) == source(index) and np.array_equal(before[-overlap:], frames[:overlap])
        before = frames
        yield index, overlap if shared else 0


def _first_frames(pieces: Iterator[Tensor], frames: int) -> Iterator[Tensor]:
    """The first `frames` frames of consecutive pieces (3, t, H, W)."""
    for piece in pieces:
        if frames <= 0:
            return
        yield piece[:, :frames]
        frames -= piece.shape[1]


def _skipping_unreadable(single: Clips, whole: Clips, frames: int) -> Iterator[Tensor]:
    """The first `frames` frames of `single` (one frame per item) that can be read, as pieces (3, t, H, W):
    whole clips of `whole` (the same frames, one clip per `whole.spec.frames`) decode in one pass each. A clip
    that raises DataError is read frame by frame, and only the frames that still fail are left out, as dropped
    frames are: one DataWarning names each such frame's file and time, and one more at the end counts them."""
    length = whole.spec.frames
    skipped = 0
    for start in range(0, frames, length):
        if start + length <= frames:
            try:
                yield whole[start // length]
                continue
            except DataError:
                pass  # its frames one by one, below
        for index in range(start, min(start + length, frames)):
            try:
                yield single[index]
            except DataError as error:
                skipped += 1
                warnings.warn(f"compress: leaving out a frame that cannot be read: {error}", DataWarning,
                              stacklevel=2)
    if skipped:
        warnings.warn(f"compress: {skipped} of {frames} frames could not be read and are not in the file",
                      DataWarning, stacklevel=2)


def source_fps(source: FrameSource) -> Fraction:
    """The rate to play `source`'s frames at, one after another, as a ratio such as 30000/1001: a video's mean
    rate over the times its frames are shown; a frame folder's rate from the usual (median) step between its
    frame numbers, which are times only by assumption (`ClipSpec.source_fps`): a gap in the numbering, from
    dropped frames or a stray file (`0.png` … `14.png` and `1000.png`), does not slow the rest down."""
    times = source.times  # (N,) seconds
    if len(times) < 2 or not times[-1] > times[0]:
        return Fraction(DEFAULT_FPS)
    if isinstance(source, FrameFolder):
        return Fraction(1 / float(np.median(np.diff(times)))).limit_denominator(1001)
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
                # the same sources cut again, not probed again: every one holds `held` frames or more
                dataset = Clips(dataset.sources, short) if isinstance(dataset, Clips) else open_clips(source, short)
            print(f"{source}: no clip of {spec.frames} frames; the truth covers the first {frames} only")
            return dataset, short
    for warning in skipped:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return dataset, spec

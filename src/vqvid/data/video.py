"""Video in and out: the clip spec, decoding video files into clips with PyAV, and writing GIF / MP4 files.

A clip is a float32 tensor 3×T×H×W in [-1, 1]; on its way in and out of files it is a uint8 array T×H×W×3.
A frame source (a video file here, a folder of numbered images in `frames.py`) tells when each of its frames
is shown (`times`, seconds) and reads any set of them, resized and centre-cropped, as uint8; `sources.py`
cuts the clips out of those times.

Decoding follows the container rather than assuming a constant rate: frames are chosen by presentation time,
a clip is decoded by seeking to the keyframe before it, and the frame count is taken from the container header
when it states one and the stream has a constant rate, else from the packet timestamps (demuxed, not decoded).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import av
import numpy as np
import torch
from einops import rearrange
from PIL import Image

# Suffixes looked for when a folder tree is scanned; a single file is tried whatever its name.
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mkv", ".webm", ".avi", ".mov", ".mpg", ".mpeg", ".ts", ".flv"})


class DataError(ValueError):
    """A source that cannot give what was asked of it; the message names the source and what was expected."""


class DataWarning(UserWarning):
    """A file that is skipped, with the reason; the rest of the source is still used."""


@dataclass(frozen=True)
class ClipSpec:
    """How clips are cut from a source: every source yields clips of frames × size × size."""

    frames: int = 16  # T of a clip; the VQ-VAE's temporal downsampling must divide it
    stride: int = 8  # clip starts this many (resampled) frames apart; < frames makes overlapping clips
    size: int = 256  # shorter side resized to this, then centre-cropped square: models need a fixed grid
    fps: float | None = None  # resample by presentation time (nearest frame); None keeps every frame
    source_fps: float = 10.0  # assumed rate of frame-image folders, which carry no timestamps

    def __post_init__(self) -> None:
        for name in ("frames", "stride", "size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ClipSpec.{name} must be a positive integer, got {value!r}")
        if self.fps is not None and not (isinstance(self.fps, (int, float)) and self.fps > 0):
            raise ValueError(f"ClipSpec.fps must be a positive number or None, got {self.fps!r}")
        if not (isinstance(self.source_fps, (int, float)) and self.source_fps > 0):
            raise ValueError(f"ClipSpec.source_fps must be a positive number, got {self.source_fps!r}")


class FrameSource(Protocol):
    """A sequence of frames with presentation times, readable in any order."""

    times: np.ndarray  # (N,) float64 seconds, ascending

    def read(self, indices: np.ndarray) -> np.ndarray:
        """Frames `indices` (T,), resized and centre-cropped: uint8 (T, size, size, 3)."""
        ...

    def describe_frame(self, index: int) -> str:
        """Where frame `index` lives, e.g. `"a/b.mp4@frame=24"`."""
        ...


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """A clip 3×T×H×W in [-1, 1] (values outside are clipped) -> uint8 frames (T, H, W, 3)."""
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"expected a video tensor 3×T×H×W, got shape {tuple(video.shape)}")
    scaled = ((video.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # (3, T, H, W)
    return rearrange(scaled, "c t h w -> t h w c").numpy()


def from_uint8_frames(frames: np.ndarray) -> torch.Tensor:
    """uint8 frames (T, H, W, 3) -> a float32 clip 3×T×H×W in [-1, 1]; inverse of `to_uint8_frames`."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}")
    # Reorder while still one byte per value, then convert in place: half the memory traffic.
    frames = torch.from_numpy(np.ascontiguousarray(frames))  # (T, H, W, 3) uint8
    video = rearrange(frames, "t h w c -> c t h w").contiguous()  # (3, T, H, W) uint8
    return video.float().div_(127.5).sub_(1)


def resized_shape(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) with the shorter side scaled to `size`, before the centre crop."""
    scale = size / min(width, height)
    return max(size, round(width * scale)), max(size, round(height * scale))


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central size×size window of an (H, W, C) image whose sides are both at least `size`."""
    top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    return image[top : top + size, left : left + size]


@dataclass(frozen=True)
class VideoFile:
    """One video file as a frame source. Built by `probe`, which rejects files that cannot give clips."""

    path: Path
    name: str  # shown by describe_frame: the path relative to the source root
    size: int  # output frames are size×size
    times: np.ndarray  # (N,) presentation time of every frame, seconds, ascending
    exact_times: bool  # times read from packet timestamps; else estimated as start + index / rate
    rotation: int  # counterclockwise degrees to display the frame upright (container display matrix)
    tolerance: float  # seconds a decoded frame may lie from the time asked for; farther means a broken file

    @classmethod
    def probe(cls, path: Path, name: str, size: int, need_exact_times: bool) -> VideoFile:
        """Check that `path` holds a decodable video stream and index its frames.

        Raises `DataError` with the reason when the file is unreadable, has no video stream, is truncated,
        cannot be decoded or is rotated by an angle that is not a multiple of 90°. Exact times are needed to
        resample by presentation time; without them a constant-rate stream whose header states its frame count
        is indexed from the header alone.
        """
        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    kind = "audio only" if container.streams.audio else "no streams"
                    raise DataError(f"{path}: no video stream ({kind})")
                stream = container.streams.video[0]
                _check_complete(path, stream)
                first = next(container.decode(stream), None)
                if first is None or first.time is None:
                    raise DataError(f"{path}: no decodable frame with a timestamp")
                rotation = _upright_rotation(path, first.rotation)
                count, rate = stream.frames, stream.average_rate
                constant_rate = rate is not None and stream.base_rate is not None and rate == stream.base_rate
                if need_exact_times or count <= 0 or not constant_rate:
                    times = _packet_times(container, stream)
                    exact = True
                else:
                    times = first.time + np.arange(count) / float(rate)
                    exact = False
        except av.FFmpegError as error:
            raise DataError(f"{path}: cannot read it as video ({error})") from error
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(f"{path}: cannot read it ({error})") from error
        if len(times) == 0:
            raise DataError(f"{path}: no video frames")
        gaps = np.diff(times)
        interval = float(np.median(gaps)) if len(gaps) else 1.0
        # Exact times are met exactly; estimated ones (constant rate) within a frame interval.
        tolerance = 0.5 * float(gaps[gaps > 0].min(initial=interval)) if exact else interval
        return cls(path, name, size, times, exact, rotation, tolerance)

    def describe_frame(self, index: int) -> str:
        return f"{self.name}@frame={index}"

    def read(self, indices: np.ndarray) -> np.ndarray:
        """Decode frames `indices`: seek to the keyframe before the first, decode forward and keep, for each
        wanted time, the nearest decoded frame. Returns uint8 (T, size, size, 3); DataError if the file
        turns out broken."""
        wanted = self.times[indices]  # (T,) seconds
        # Seeking is only as exact as the container's index: the keyframe found can be shown after the first
        # frame wanted (open GOPs; MPEG-TS, which has no index) or past the end. Then seek further back, and
        # in the end read from the start of the file.
        seek_to, step = float(wanted.min()), max(1.0, 8 * self.tolerance)
        try:
            while True:
                with av.open(str(self.path)) as container:
                    frames = self._decode_after(container, seek_to, wanted)
                if frames is not None:
                    return np.stack(frames)
                seek_to, step = seek_to - step, 2 * step
        except av.FFmpegError as error:
            raise DataError(f"{self.path}: cannot decode frames near {wanted[0]:.3f} s ({error})") from error

    def _decode_after(
        self, container: av.container.InputContainer, seek_to: float, wanted: np.ndarray
    ) -> list[np.ndarray] | None:
        """The wanted frames decoded from the keyframe before `seek_to`, or None if that seek landed late."""
        stream = container.streams.video[0]
        from_start = seek_to <= self.times[0]
        if not from_start:  # a freshly opened file reads from its start
            container.seek(math.floor(seek_to / stream.time_base), stream=stream, backward=True)
        found = _nearest_frames(container.decode(stream), wanted, late=float(stream.time_base) + 1e-9,
                                stop_if_late=not from_start)
        if found is None:
            return None
        frames, distance = found
        missing = np.flatnonzero(distance > self.tolerance + 1e-6)
        if len(missing):
            at = wanted[missing[0]]
            raise DataError(f"{self.path}: no frame decoded near {at:.3f} s (truncated or corrupt stream?)")
        return [self._to_rgb(frame) for frame in frames]

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        width, height = resized_shape(frame.width, frame.height, self.size)
        # swscale converts any pixel format (10-bit, 4:2:2, odd sizes) and resizes in one pass.
        rgb = frame.reformat(width=width, height=height, format="rgb24", interpolation="BILINEAR")
        image = rgb.to_ndarray()  # (H, W, 3) as coded
        image = np.rot90(image, k=self.rotation // 90)  # (H, W, 3) upright
        return centre_crop(image, self.size)


def _nearest_frames(
    decoded: Iterator[av.VideoFrame], wanted: np.ndarray, late: float, stop_if_late: bool
) -> tuple[list[av.VideoFrame], np.ndarray] | None:
    """For each wanted time (T,) the nearest of the frames decoded in presentation order, and its distance in
    seconds. None when `stop_if_late` and no frame comes, or the first comes more than `late` seconds after
    the first wanted time, since an earlier frame could then be nearer."""
    nearest: list[av.VideoFrame | None] = [None] * len(wanted)
    distance = np.full(len(wanted), np.inf)  # (T,)
    first, last = wanted.min(), wanted.max()
    for frame in decoded:
        if frame.time is None:
            continue
        if stop_if_late and np.isinf(distance).all() and frame.time > first + late:
            return None
        gap = np.abs(wanted - frame.time)  # (T,)
        for j in np.flatnonzero(gap < distance):
            nearest[j], distance[j] = frame, gap[j]
        if frame.time >= last:
            break
    if stop_if_late and np.isinf(distance).all():
        return None
    return nearest, distance


def _check_complete(path: Path, stream: av.video.stream.VideoStream) -> None:
    """A file whose sample index points past its end was cut short (e.g. a copy stopped midway)."""
    entries = stream.index_entries  # only containers with a sample index (MP4, MOV, AVI) fill it
    if len(entries) == 0:
        return
    end = entries[len(entries) - 1].pos + entries[len(entries) - 1].size
    if end > path.stat().st_size:
        raise DataError(f"{path}: truncated: frames extend to byte {end}, the file has {path.stat().st_size}")


def _upright_rotation(path: Path, rotation: float) -> int:
    quarter = round(rotation / 90)
    if abs(rotation - 90 * quarter) > 1e-3:
        raise DataError(f"{path}: rotated by {rotation}°; only multiples of 90° are supported")
    return (90 * quarter) % 360


def _packet_times(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> np.ndarray:
    """Presentation times of all frames from the demuxed packets; nothing is decoded."""
    container.seek(0)
    stamps = []
    for packet in container.demux(stream):
        if packet.size == 0:  # the empty packet that ends the stream
            continue
        stamp = packet.pts if packet.pts is not None else packet.dts
        if stamp is None:
            raise DataError(f"{container.name}: packets without timestamps")
        stamps.append(stamp)
    return np.sort(np.asarray(stamps, dtype=np.float64)) * float(stream.time_base)


def write_video(path: str | Path, frames: np.ndarray, fps: float, crf: int = 18) -> Path:
    """Write uint8 frames (T, H, W, 3) to `path`: `.gif` (Pillow, looping) or `.mp4` / `.mkv` (H.264,
    yuv420p; odd sides padded by one edge pixel, as 4:2:0 chroma needs even sides). `crf`: x264 quality."""
    path = Path(path)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{path}: expected uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if len(frames) == 0:
        raise ValueError(f"{path}: no frames to write")
    if not fps > 0:
        raise ValueError(f"{path}: fps must be positive, got {fps}")
    suffix = path.suffix.lower()
    if suffix == ".gif":
        _write_gif(path, frames, fps)
    elif suffix in (".mp4", ".mkv"):
        _write_h264(path, frames, fps, crf)
    else:
        raise ValueError(f"{path}: cannot write {suffix or 'files without a suffix'}; use .gif, .mp4 or .mkv")
    return path


def _write_gif(path: Path, frames: np.ndarray, fps: float) -> None:
    images = [Image.fromarray(frame) for frame in frames]
    # GIF delays count in hundredths of a second: the nearest representable one.
    duration = max(10, round(100 / fps) * 10)
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration, loop=0)


def _write_h264(path: Path, frames: np.ndarray, fps: float, crf: int) -> None:
    _, height, width, _ = frames.shape
    pad_height, pad_width = height % 2, width % 2
    if pad_height or pad_width:
        frames = np.pad(frames, ((0, 0), (0, pad_height), (0, pad_width), (0, 0)), mode="edge")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width + pad_width, height + pad_height, "yuv420p"
        stream.options = {"crf": str(crf)}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())

"""The classical side of rate–distortion: H.264 (x264) and H.265 (x265) through PyAV, measured as vqvid is.

`encode` turns uint8 frames into an MP4 file in memory, `decode` turns one back into frames, `encode_decode`
does both and counts; `rd_sweep` runs codecs × CRFs into `RDPoint`s, which `format_rd_table` and `plot_rd`
show next to vqvid's own points (`rd_point` measures those the same way).

What is counted, so that the baseline is neither flattered nor handicapped:
- `bytes` is the whole MP4 file, container included. `stream_bytes` is the sum of the coded packets alone; the
  parameter sets (SPS/PPS/VPS, tens of bytes) sit in the MP4 header and are counted only in `bytes`.
- Both encoders write a text of their version and settings into the stream (an SEI message, ~0.7 kB for x264,
  ~2.4 kB for x265) that no decoder reads. On a 16-frame clip at a low rate that text weighs as much as the
  pictures, so it is left out: x265 through its `info=0` option, x264's (it has no such option) by passing the
  packets through FFmpeg's `filter_units` bitstream filter, as `ffmpeg -c copy -bsf:v filter_units=...` does.
- RGB goes to YUV 4:2:0 (BT.601, limited range, chroma sited at the centre; the stream is tagged so) and back
  with swscale's Lanczos kernel, full chroma interpolation and accurate rounding. 4:2:0 loses chroma detail
  that no CRF brings back, which caps PSNR (about 35 dB on 64×64 moving shapes, 42 dB at 256×256); swscale's
  default bilinear path would cap it 3–4 dB lower still.
- Odd sides are padded by repeating the edge pixels (4:2:0 needs even sides) and cropped after decoding; the
  padding is coded and counted.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np
from av.bitstream import BitStreamFilterContext
from av.video.reformatter import ColorRange, Colorspace, Interpolation

from vqvid.data import from_uint8_frames
from vqvid.data.video import pad_to_even_sides
from vqvid.metrics import psnr, ssim

CODECS: tuple[str, ...] = ("libx264", "libx265")
PRESETS: tuple[str, ...] = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo",
)
MAX_CRF = 51  # the top of the 8-bit quantiser scale of both encoders
DEFAULT_CRFS: tuple[int, ...] = (18, 23, 28, 33, 38, 43, 51)

# chromaloc=1 tags the chroma samples as centred between the luma samples, which is where swscale puts them
# when it subsamples; untagged, a decoder assumes H.264's default (left) and upsamples chroma shifted by a
# quarter sample, which costs ~2.5 dB PSNR on sharp colour edges.
_ENCODER_OPTIONS: dict[str, dict[str, str]] = {
    "libx264": {"x264-params": "chromaloc=1"},
    # x265 logs to stderr on its own, past FFmpeg's log level; info=0: see the module docstring
    "libx265": {"x265-params": "log-level=error:info=0:chromaloc=1"},
}
# NAL unit type 6 is SEI; with the options used here x264's only SEI is its settings text (no open GOP,
# interlacing or HDR metadata, which would need SEI of their own).
_SETTINGS_FILTER: dict[str, str] = {"libx264": "filter_units=remove_types=6"}
_MIN_SIDE = {"libx264": 2, "libx265": 16}  # after padding to even sides; x265 refuses smaller pictures
# x265 4.2 corrupts its heap (in cutree, at every preset) on pictures 34 to 48 pixels wide, which takes the
# whole process down: such widths are refused (counted before padding to even sides).
_X265_BAD_WIDTHS = range(33, 49)
# At width 64 (and at 32, less often) it codes the same frames and settings to files up to ~2% apart in size from
# one call to the next, single-threaded too; no x265 option tried (cutree, b-adapt, aq-mode, sao, lookahead
# slices, thread pools) makes it repeat. Widths 16, 24, 96, 128 and 256 repeat exactly. Such results are measured
# as they come: a comparison at those widths moves by that much between runs (README, "x264 / x265"). x264 with its
# default macroblock-tree rate control need not repeat either: on a 2-core AMD EPYC, 32 frames 64 pixels wide at
# CRF 18 came out as 6 different files in 40 calls, sizes up to 1.0% apart (3 sizes in 20 calls at width 96, one
# at 128). `mbtree=0` makes it repeat there, but the comparison keeps x264 as its users run it.

_TO_YUV = Interpolation.LANCZOS | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INP
_TO_RGB = Interpolation.LANCZOS | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
_BT601 = 5  # AVCOL_SPC_BT470BG, the stream tag that swscale reads as Colorspace.ITU601
_LIMITED_RANGE = 1  # AVCOL_RANGE_MPEG


class CodecResult(NamedTuple):
    """One clip through a classical codec."""

    bytes: int  # size of the MP4 file, container included
    decoded: np.ndarray  # uint8 (T, H, W, 3), the same shape as the input
    stream_bytes: int  # sum of the coded packet sizes, without the container


class RDPoint(NamedTuple):
    """One rate–distortion measurement of one method at one setting, on one video."""

    method: str  # e.g. "x264 medium" or a vqvid model's name
    setting: str  # what was varied along the curve, e.g. "crf=23"
    bits_per_pixel: float  # 8 · bytes / (T · H · W), pixels counted once, not per colour channel
    kbps: float  # kbit/s at the video's frame rate
    psnr: float  # dB, mean over frames (`vqvid.metrics.psnr`)
    ssim: float  # mean over frames (`vqvid.metrics.ssim`)
    bytes: int  # size of everything needed to decode


def encode(frames: np.ndarray, codec: str, crf: int, fps: float, preset: str = "medium") -> bytes:
    """An MP4 file (in memory) of uint8 frames (T, H, W, 3) coded by `codec` ("libx264" or "libx265") at
    constant rate factor `crf` (0–51, lower is better quality) with the encoder's `preset`."""
    _check_settings(codec, crf, fps, preset)
    _check_frames(frames, codec)
    data = _write_mp4(frames, codec, crf, fps, preset)
    if codec in _SETTINGS_FILTER:
        data = _filter_packets(data, _SETTINGS_FILTER[codec])
    return data


def decode(data: bytes, height: int, width: int) -> np.ndarray:
    """uint8 frames (T, height, width, 3) of an MP4 file made by `encode` for frames of that size."""
    frames, _ = _read_mp4(data, height, width)
    return frames


def encode_decode(frames: np.ndarray, codec: str, crf: int, fps: float,
                  preset: str = "medium") -> CodecResult:
    """Code uint8 frames (T, H, W, 3) with `codec` and decode them: the sizes, and what a viewer sees."""
    data = encode(frames, codec, crf, fps, preset)
    decoded, stream_bytes = _read_mp4(data, frames.shape[1], frames.shape[2])
    if len(decoded) != len(frames):
        raise RuntimeError(f"{codec} crf={crf}: {len(frames)} frames went in, {len(decoded)} came back")
    return CodecResult(bytes=len(data), decoded=decoded, stream_bytes=stream_bytes)


def rd_point(method: str, setting: str, original: np.ndarray, decoded: np.ndarray, num_bytes: int,
             fps: float) -> RDPoint:
    """Measure one point: `decoded` against `original` (both uint8 (T, H, W, 3)) at a cost of `num_bytes`."""
    if original.shape != decoded.shape:
        raise ValueError(f"{method} {setting}: decoded frames {decoded.shape} differ from the original "
                         f"{original.shape}")
    _check_fps(fps)
    if isinstance(num_bytes, bool) or not isinstance(num_bytes, (int, np.integer)) or num_bytes <= 0:
        raise ValueError(f"{method} {setting}: num_bytes must be a positive integer, got {num_bytes!r}")
    frames, height, width, _ = original.shape
    reference = from_uint8_frames(original)[None]  # (1, 3, T, H, W) in [-1, 1]
    result = from_uint8_frames(decoded)[None]  # (1, 3, T, H, W) in [-1, 1]
    return RDPoint(
        method=method,
        setting=setting,
        bits_per_pixel=8 * num_bytes / (frames * height * width),
        kbps=8 * num_bytes / 1000 / (frames / fps),
        psnr=psnr(result, reference),
        ssim=ssim(result, reference),
        bytes=num_bytes,
    )


def rd_sweep(frames: np.ndarray, fps: float, codecs: Sequence[str] = CODECS,
             crfs: Sequence[int] = DEFAULT_CRFS, preset: str = "medium") -> list[RDPoint]:
    """Rate–distortion curves of uint8 frames (T, H, W, 3): one point per codec and CRF, in that order."""
    if not codecs or not crfs:
        raise ValueError(f"rd_sweep: codecs and crfs must not be empty, got {list(codecs)} and {list(crfs)}")
    for codec in codecs:  # every setting is checked before the first (slow) encode
        for crf in crfs:
            _check_settings(codec, crf, fps, preset)
        _check_frames(frames, codec)
    points = []
    for codec in codecs:
        for crf in crfs:
            result = encode_decode(frames, codec, crf, fps, preset)
            method = f"{codec.removeprefix('lib')} {preset}"
            points.append(rd_point(method, f"crf={crf}", frames, result.decoded, result.bytes, fps))
    return points


def format_rd_table(points: Iterable[RDPoint]) -> str:
    """The points as an aligned text table, one row each, in the order given."""
    header = ("method", "setting", "bytes", "bpp", "kbit/s", "PSNR dB", "SSIM")
    rows = [
        (p.method, p.setting, f"{p.bytes:,}", f"{p.bits_per_pixel:.4f}", f"{p.kbps:.1f}", f"{p.psnr:.2f}",
         f"{p.ssim:.4f}")
        for p in points
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        # text columns left-aligned, numbers right-aligned
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def plot_rd(points: Iterable[RDPoint], path: str | Path) -> Path:
    """Write a PNG of PSNR against bits per pixel (log scale: CRFs span orders of magnitude in rate), one line
    per method, each point labelled with its setting."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: plot_rd writes PNG files, give a path ending in .png")
    by_method: dict[str, list[RDPoint]] = {}
    for point in points:
        by_method.setdefault(point.method, []).append(point)
    if not by_method:
        raise ValueError(f"{path}: no rate–distortion points to plot")
    figure = Figure(figsize=(7, 5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for method, curve in by_method.items():
        curve = sorted(curve, key=lambda p: p.bits_per_pixel)
        axes.plot([p.bits_per_pixel for p in curve], [p.psnr for p in curve], marker="o", label=method)
        for p in curve:
            axes.annotate(p.setting, (p.bits_per_pixel, p.psnr), textcoords="offset points", xytext=(4, -10),
                          fontsize=7, alpha=0.7)
    axes.set_xscale("log")
    axes.set_xlabel("bits per pixel (whole file)")
    axes.set_ylabel("PSNR (dB, RGB, mean over frames)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.savefig(path, format="png", dpi=120)
    return path


def _check_frames(frames: np.ndarray, codec: str) -> None:
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"frames: expected a uint8 array (T, H, W, 3), got {type(frames).__name__}")
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames: expected a uint8 array (T, H, W, 3), got {frames.dtype} {frames.shape}")
    count, height, width, _ = frames.shape
    if count == 0:
        raise ValueError("frames: no frames to code")
    padded_height, padded_width = height + height % 2, width + width % 2
    if codec in _MIN_SIDE and min(padded_height, padded_width) < _MIN_SIDE[codec]:
        raise ValueError(f"frames: {codec} needs frames of at least {_MIN_SIDE[codec]}×{_MIN_SIDE[codec]} "
                         f"pixels, got {height}×{width}")
    if codec == "libx265" and width in _X265_BAD_WIDTHS:
        low, high = _X265_BAD_WIDTHS.start, _X265_BAD_WIDTHS.stop - 1
        raise ValueError(f"frames: libx265 crashes on frames {low}–{high} pixels wide (heap corruption in "
                         f"x265), got width {width}; pad or crop the video, or leave libx265 out")


def _check_settings(codec: str, crf: int, fps: float, preset: str) -> None:
    if codec not in CODECS:
        raise ValueError(f"codec: expected one of {', '.join(CODECS)}, got {codec!r}")
    if isinstance(crf, bool) or not isinstance(crf, (int, np.integer)) or not 0 <= crf <= MAX_CRF:
        raise ValueError(f"crf: expected an integer from 0 to {MAX_CRF}, got {crf!r}")
    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {', '.join(PRESETS)}, got {preset!r}")
    _check_fps(fps)


def _check_fps(fps: float) -> None:
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps: expected a positive number, got {fps!r}")


def _write_mp4(frames: np.ndarray, codec: str, crf: int, fps: float, preset: str) -> bytes:
    """The MP4 file exactly as the encoder and muxer make it."""
    frames = pad_to_even_sides(frames)
    _, height, width, _ = frames.shape
    rate = Fraction(fps).limit_denominator(1001)  # 29.97 -> 30000/1001
    output, packets = io.BytesIO(), []
    with av.open(output, "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = 1 / rate
        stream.codec_context.colorspace, stream.codec_context.color_range = _BT601, _LIMITED_RANGE
        stream.options = {"crf": str(int(crf)), "preset": preset, **_ENCODER_OPTIONS[codec]}
        for index, rgb in enumerate(frames):  # (H, W, 3)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format="yuv420p", dst_colorspace=Colorspace.ITU601, dst_color_range=ColorRange.MPEG,
                interpolation=_TO_YUV,
            )
            frame.pts, frame.time_base = index, 1 / rate
            packets += stream.encode(frame)
        packets += stream.encode()  # flush: B-frames and lookahead hold frames back until the end
        container.mux(_with_sane_dts(packets))
    return output.getvalue()


def _with_sane_dts(packets: list) -> list:
    """`packets` with every decode timestamp the muxer would refuse replaced by a consistent one.

    libx265 (through FFmpeg's wrapper) leaves the decode timestamp of a clip's only packet uninitialised: it is
    sometimes right and sometimes a huge negative number, on which the MP4 muxer fails. A decode timestamp must
    not follow its presentation time and must increase; a packet whose own does not fit is given the one before
    its successor's, or its presentation time when it has none."""
    lowest = min((p.pts for p in packets if p.pts is not None), default=0) - len(packets)
    for index, packet in enumerate(packets):
        if packet.dts is None or packet.pts is None or not lowest <= packet.dts <= packet.pts:
            following = packets[index + 1].dts if index + 1 < len(packets) else None
            packet.dts = packet.pts if following is None else min(packet.pts, following - 1)
    return packets


def _filter_packets(data: bytes, filter_description: str) -> bytes:
    """The MP4 file `data` with its video packets passed through an FFmpeg bitstream filter, not re-coded."""
    output = io.BytesIO()
    with av.open(io.BytesIO(data)) as source, av.open(output, "w", format="mp4") as target:
        source_stream = source.streams.video[0]
        target_stream = target.add_stream_from_template(source_stream)
        packet_filter = BitStreamFilterContext(filter_description, source_stream, target_stream)
        for packet in source.demux(source_stream):
            # the demuxer ends with an empty packet; passing None instead flushes the filter
            for filtered in packet_filter.filter(packet if packet.size else None):
                filtered.stream = target_stream
                target.mux(filtered)
    return output.getvalue()


def _read_mp4(data: bytes, height: int, width: int) -> tuple[np.ndarray, int]:
    """Decoded uint8 frames (T, height, width, 3) of an MP4 file, and the summed size of its video packets."""
    frames, stream_bytes = [], 0
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise ValueError("not a video: the MP4 file holds no video stream")
            stream = container.streams.video[0]
            for packet in container.demux(stream):
                stream_bytes += packet.size
                for frame in packet.decode():
                    if (frame.height, frame.width) != (height + height % 2, width + width % 2):
                        raise ValueError(f"decoded frames are {frame.height}×{frame.width}, expected "
                                         f"{height}×{width} padded to even sides")
                    rgb = frame.to_ndarray(format="rgb24", src_colorspace=Colorspace.ITU601,
                                           src_color_range=ColorRange.MPEG, interpolation=_TO_RGB)
                    frames.append(rgb[:height, :width])  # (H, W, 3) without the padding
    except av.FFmpegError as error:
        raise ValueError(f"not a decodable MP4 video: {error}") from error
    if not frames:
        raise ValueError("the MP4 video holds no frames")
    return np.stack(frames), stream_bytes

"""Decoding video files into clips, checked against straightforward full decodes; writing GIF / MP4."""

from __future__ import annotations

import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from vqvid.data import (
    ClipSpec,
    DataError,
    DataWarning,
    from_uint8_frames,
    open_clips,
    to_uint8_frames,
    write_video,
)
from vqvid.data import video as video_module
from vqvid.data.video import VideoFile, pad_to_even_sides


def indexed_frame(index: int, width: int, height: int) -> np.ndarray:
    """A flat frame whose colour spells `index`: red 8·(index mod 32), green 8·(index div 32)."""
    frame = np.empty((height, width, 3), np.uint8)
    frame[...] = (8 * (index % 32), 8 * (index // 32), 128)
    return frame


def frame_index(frame: np.ndarray) -> int:
    """Inverse of `indexed_frame`, robust to coding noise of a few levels."""
    red, green = frame[..., 0].mean(), frame[..., 1].mean()
    return int(round(red / 8)) + 32 * int(round(green / 8))


def write_test_video(
    path: Path,
    frames: np.ndarray | int,
    fps: float = 10,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    times_ms: list[int] | None = None,
    rotation: float | None = None,
    size: tuple[int, int] = (32, 32),
) -> Path:
    """Encode uint8 frames (T, H, W, 3), or `frames` indexed frames of `size` (width, height), with PyAV.
    `times_ms` gives each frame its own presentation time (a variable frame rate)."""
    if isinstance(frames, int):
        frames = np.stack([indexed_frame(i, *size) for i in range(frames)])
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        stream.options = {"crf": "0"} if codec == "libx264" and options is None else (options or {})
        if rotation is not None:
            stream.set_display_rotation(rotation)
        if times_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if times_ms is not None:
                frame.pts, frame.time_base = times_ms[i], Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def decode_all(path: Path, width: int, height: int) -> np.ndarray:
    """Every frame, in order, through the same swscale resize the loader uses: uint8 (N, height, width, 3)."""
    with av.open(str(path)) as container:
        return np.stack([
            frame.reformat(width=width, height=height, format="rgb24", interpolation="BILINEAR").to_ndarray()
            for frame in container.decode(video=0)
        ])


def first_frame_of(description: str) -> int:
    return int(description.rpartition("@frame=")[2])


# --- ClipSpec and uint8 conversion -------------------------------------------------------------------------


@pytest.mark.parametrize("field, value", [("frames", 0), ("stride", -1), ("size", 2.5), ("fps", 0.0),
                                          ("source_fps", -3.0), ("frames", True)])
def test_clip_spec_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=f"ClipSpec.{field}"):
        ClipSpec(**{field: value})


def test_uint8_conversion_round_trips_and_maps_the_ends_to_plus_minus_one():
    frames = np.random.default_rng(0).integers(0, 256, size=(3, 5, 7, 3), dtype=np.uint8)
    video = from_uint8_frames(frames)
    assert video.shape == (3, 3, 5, 7) and video.dtype == torch.float32
    assert torch.equal(video[:, 1, 2, 3], torch.from_numpy(frames[1, 2, 3]).float() / 127.5 - 1)
    np.testing.assert_array_equal(to_uint8_frames(video), frames)
    ends = from_uint8_frames(np.array([0, 255], np.uint8).reshape(1, 1, 2, 1).repeat(3, axis=3))
    assert ends[:, 0, 0, 0].eq(-1).all() and ends[:, 0, 0, 1].eq(1).all()


def test_to_uint8_clips_values_outside_the_range():
    video = torch.tensor([-3.0, -1.0, 0.0, 1.0, 7.0]).reshape(1, 1, 1, 5).repeat(3, 1, 1, 1)
    np.testing.assert_array_equal(to_uint8_frames(video)[0, 0, :, 0], [0, 0, 128, 255, 255])
    with pytest.raises(ValueError, match="3×T×H×W"):
        to_uint8_frames(torch.zeros(2, 3, 4, 4))


# --- writing -----------------------------------------------------------------------------------------------


def test_write_gif_loops_with_the_frame_duration(tmp_path):
    frames = np.zeros((4, 9, 12, 3), np.uint8)
    for t in range(4):
        frames[t, :, : 3 * (t + 1)] = (255, 0, 0)  # a red bar growing to the right
    path = write_video(tmp_path / "a.gif", frames, fps=5)
    with Image.open(path) as gif:
        assert gif.n_frames == 4 and gif.size == (12, 9)
        assert gif.info["loop"] == 0 and gif.info["duration"] == 200
        for t in range(4):
            gif.seek(t)
            np.testing.assert_array_equal(np.asarray(gif.convert("RGB")), frames[t])


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_write_h264_pads_odd_sizes_and_keeps_the_content(tmp_path, suffix):
    frames = np.stack([indexed_frame(i, 21, 17) for i in range(6)])
    path = write_video(tmp_path / f"a{suffix}", frames, fps=12.5)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (22, 18)
        assert stream.average_rate == Fraction(25, 2)
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    assert [frame_index(frame[:17, :21]) for frame in decoded] == list(range(6))


def test_pad_to_even_sides_repeats_the_edge_only_where_a_side_is_odd():
    frames = np.arange(2 * 3 * 5 * 3, dtype=np.uint8).reshape(2, 3, 5, 3)
    padded = pad_to_even_sides(frames)
    assert padded.shape == (2, 4, 6, 3)
    np.testing.assert_array_equal(padded[:, :3, :5], frames)
    np.testing.assert_array_equal(padded[:, 3, :5], frames[:, 2])  # the last row repeated
    np.testing.assert_array_equal(padded[:, :3, 5], frames[:, :, 4])  # the last column repeated
    assert padded[:, 3, 5].tolist() == frames[:, 2, 4].tolist()
    even = frames[:, :2, :4]
    assert pad_to_even_sides(even) is even


def test_write_video_rejects_bad_frames_and_suffixes(tmp_path):
    with pytest.raises(ValueError, match="a.mp4.*uint8"):
        write_video(tmp_path / "a.mp4", np.zeros((2, 4, 4, 3), np.float32), fps=10)
    with pytest.raises(ValueError, match="a.avi.*.gif, .mp4 or .mkv"):
        write_video(tmp_path / "a.avi", np.zeros((2, 4, 4, 3), np.uint8), fps=10)


# --- reading -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, codec, options", [
    ("a.mp4", "libx264", {"crf": "0", "g": "7", "bf": "3"}),  # B-frames: decode order differs from display
    ("a.mkv", "libx264", {"crf": "0", "g": "7"}),  # no frame count in the header
    ("a.webm", "libvpx-vp9", {"lossless": "1", "g": "7"}),
    ("a.avi", "mpeg4", {"g": "7", "qscale": "1"}),
    ("a.mov", "libx264", {"crf": "0", "g": "9"}),
    ("a.ts", "libx264", {"crf": "20", "g": "7"}),  # no index: seeks land late and are retried further back
])
def test_clips_equal_a_full_decode_in_every_container(tmp_path, name, codec, options):
    path = write_test_video(tmp_path / name, 40, codec=codec, options=options, size=(32, 24))
    clips = open_clips(path, ClipSpec(frames=8, stride=5, size=16))
    reference = decode_all(path, 21, 16)[:, :, 2:18]  # shorter side 24 -> 16, then the central 16 columns
    assert len(clips) == 7  # starts 0, 5, …, 30
    for i in range(len(clips)):
        start = first_frame_of(clips.describe(i))
        assert clips.describe(i) == f"{name}@frame={5 * i}"
        np.testing.assert_array_equal(clips.frames(i), reference[start : start + 8])
        assert torch.equal(clips[i], from_uint8_frames(reference[start : start + 8]))


def test_frames_are_indexed_by_a_full_decode_without_trusting_the_header(tmp_path, monkeypatch):
    path = write_test_video(tmp_path / "a.mp4", 20)
    seen = []
    real_open = video_module.av.open
    monkeypatch.setattr(video_module.av, "open", lambda *a, **k: seen.append(a[0]) or real_open(*a, **k))
    clips = open_clips(path, ClipSpec(frames=4, stride=4, size=32))
    assert len(seen) == 1  # the probe decodes once; nothing is read until a clip is asked for
    assert len(clips) == 5
    assert [frame_index(f) for f in clips.frames(4)] == [16, 17, 18, 19]


def test_ten_bit_odd_sized_video_is_converted_and_resized(tmp_path):
    colours = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [220, 220, 30]], np.uint8)
    frames = np.broadcast_to(colours[:, None, None], (4, 33, 47, 3)).copy()
    path = write_test_video(tmp_path / "ten.mkv", frames, codec="ffv1", pix_fmt="yuv420p10le", options={})
    clips = open_clips(path, ClipSpec(frames=4, stride=4, size=16))
    out = clips.frames(0)
    assert out.shape == (4, 16, 16, 3)
    assert np.abs(out.astype(int) - colours[:, None, None].astype(int)).max() <= 3


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_display_rotation_is_applied(tmp_path, rotation):
    frames = np.zeros((8, 32, 48, 3), np.uint8)
    frames[:, :8, 18:26] = 255  # a mark on the top edge, left of the middle, shows which way is up
    path = write_test_video(tmp_path / "r.mp4", frames, rotation=rotation)
    clips = open_clips(path, ClipSpec(frames=8, stride=8, size=32))
    coded = decode_all(path, 48, 32)  # (T, 32, 48, 3) as stored
    upright = np.rot90(coded, k=rotation // 90, axes=(1, 2))  # as FFmpeg defines the display rotation
    rows, cols = upright.shape[1:3]
    expected = upright[:, (rows - 32) // 2 : (rows - 32) // 2 + 32, (cols - 32) // 2 : (cols - 32) // 2 + 32]
    np.testing.assert_array_equal(clips.frames(0), expected)
    assert np.abs(expected.astype(int) - coded[:, :, 8:40]).max() > 200  # the mark did move


def test_rotation_by_an_odd_angle_is_rejected_with_a_warning(tmp_path):
    path = write_test_video(tmp_path / "r.mp4", 8, rotation=45)
    with pytest.warns(DataWarning, match=r"r\.mp4.*45"), pytest.raises(DataError, match="no usable clip"):
        open_clips(path, ClipSpec(frames=8, stride=8, size=32))


def nearest_reference(times: list[float], fps: float) -> list[int]:
    """Slow reference of resampling: every tick of an fps clock from the first frame up to the last frame,
    mapped to the frame with the nearest time, the earlier one on a tie (within a microsecond)."""
    chosen, k = [], 0
    while k / fps <= times[-1] - times[0] + 1e-9:
        tick = times[0] + k / fps
        distances = [abs(t - tick) for t in times]
        chosen.append(next(i for i, d in enumerate(distances) if d <= min(distances) + 1e-6))
        k += 1
    return chosen


@pytest.mark.parametrize("fps", [10.0, 12.0, 7.0])
def test_resampling_picks_frames_by_presentation_time(tmp_path, fps):
    path = write_test_video(tmp_path / "a.mp4", 60, fps=30)
    clips = open_clips(path, ClipSpec(frames=6, stride=6, size=32, fps=fps))
    expected = nearest_reference([i / 30 for i in range(60)], fps)
    picked = [frame_index(f) for i in range(len(clips)) for f in clips.frames(i)]
    assert len(clips) == len(expected) // 6
    assert picked == expected[: 6 * len(clips)]
    if fps == 10.0:
        assert picked[:4] == [0, 3, 6, 9]


def test_variable_frame_rate_video_is_resampled_by_its_timestamps(tmp_path):
    times_ms = [0, 100, 150, 400, 450, 500, 800, 1000, 1033, 1066, 1100, 1500, 1600, 1900, 2000]
    path = write_test_video(tmp_path / "vfr.mp4", len(times_ms), times_ms=times_ms)
    clips = open_clips(path, ClipSpec(frames=5, stride=5, size=32, fps=10))
    expected = nearest_reference([t / 1000 for t in times_ms], 10)
    assert len(clips) == 4 and len(expected) == 21
    assert [frame_index(f) for i in range(4) for f in clips.frames(i)] == expected[:20]


def test_every_frame_of_a_variable_frame_rate_video_is_kept_in_order(tmp_path):
    times_ms = [0, 30, 200, 210, 700, 720, 1000, 1400]
    path = write_test_video(tmp_path / "vfr.mp4", len(times_ms), times_ms=times_ms)
    clips = open_clips(path, ClipSpec(frames=4, stride=2, size=32))
    assert [[frame_index(f) for f in clips.frames(i)] for i in range(len(clips))] == [
        [0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7]]


def corrupt(path: Path) -> bytes:
    """`path`'s bytes with the second half of the frames flipped (the index at the end stays intact)."""
    data = bytearray(path.read_bytes())
    for k in range(len(data) // 3, len(data) - 2000, 5):
        data[k] ^= 0xFF
    return bytes(data)


def test_a_corrupt_payload_is_cut_at_probe_with_a_warning_naming_file_and_time(tmp_path):
    path = write_test_video(tmp_path / "c.mp4", 40, options={"crf": "20"}, size=(64, 64))
    path.write_bytes(corrupt(path))
    with pytest.warns(DataWarning, match=r"c\.mp4: decoding stopped after \d+\.\d+ s .*using the \d+ frames"):
        clips = open_clips(path, ClipSpec(frames=4, stride=4, size=32))
    assert 0 < len(clips) < 10
    for i in range(len(clips)):  # every clip of the frames kept reads
        assert clips.frames(i).shape == (4, 32, 32, 3)


def write_fast_start_mp4(path: Path, count: int) -> Path:
    """An MP4 of `count` indexed frames with its index in front of the frames, as streamed files have."""
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width = stream.height = 32
        stream.pix_fmt, stream.options = "yuv420p", {"crf": "0"}
        for i in range(count):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(indexed_frame(i, 32, 32), format="rgb24")))
        container.mux(stream.encode())
    return path


def cut_halfway_through_the_frames(path: Path) -> None:
    """Keep the headers in front of the frames (an MP4's index too, when it is in front) and half the frames: a
    copy or download stopped midway. An AVI is cut where a frame's chunk starts: the decoder then meets no
    damaged frame and no error, only an early end (as with opencv-doc's vtest.avi cut at 600 kB)."""
    data = path.read_bytes()
    start = data.find({".avi": b"movi", ".mp4": b"mdat"}.get(path.suffix, b"\x1f\x43\xb6\x75"))  # Matroska: a Cluster
    middle = start + (len(data) - start) // 2
    path.write_bytes(data[: data.find(b"00dc", middle) if path.suffix == ".avi" else middle])


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".mkv", ".webm"])
def test_a_file_cut_short_keeps_the_frames_before_the_cut_with_one_warning_saying_where(tmp_path, suffix):
    path = tmp_path / f"cut{suffix}"
    if suffix == ".mp4":
        write_fast_start_mp4(path, 40)
    elif suffix == ".avi":
        write_avi_with_dropped_frames(path, list(range(40)))
    elif suffix == ".webm":
        write_test_video(path, 40, codec="libvpx-vp9", options={"lossless": "1"})
    else:
        write_test_video(path, 40)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # the whole file: no warning
        assert len(VideoFile.probe(path, path.name, 32).times) == 40
    cut_halfway_through_the_frames(path)
    where = {".mp4": "index", ".avi": "RIFF chunk"}.get(suffix, "Matroska segment")
    announced = ", of the 40 its header announces" if suffix in (".mp4", ".avi") else ""  # Matroska counts none
    with pytest.warns(DataWarning, match=rf"cut\{suffix}: decoding stopped after \d+\.\d+ s \(truncated: its {where} "
                      rf"reaches byte \d+, the file has \d+\); using the \d+ frames before it{announced}$") as caught:
        clips = open_clips(path, ClipSpec(frames=4, stride=4, size=32))
    assert len([w for w in caught if issubclass(w.category, DataWarning)]) == 1
    kept = [frame_index(frame) for i in range(len(clips)) for frame in clips.frames(i)]
    assert 8 <= len(kept) < 40 and kept == list(range(len(kept)))


def test_a_read_that_fails_names_the_file_and_time(tmp_path):
    path = write_test_video(tmp_path / "c.mp4", 40, options={"crf": "20"}, size=(64, 64))
    clips = open_clips(path, ClipSpec(frames=8, stride=8, size=32))
    path.write_bytes(corrupt(path))  # damaged after the probe, e.g. while training runs
    with pytest.raises(DataError, match=r"c\.mp4: .* \d+\.\d+ s"):
        for i in range(len(clips)):
            clips.frames(i)


def test_probe_times_are_the_decoded_frames_times(tmp_path):
    mkv = write_test_video(tmp_path / "a.mkv", 10)  # no frame count in the header
    np.testing.assert_allclose(VideoFile.probe(mkv, "a.mkv", 32).times, np.arange(10) / 10)


# --- files whose headers or packets do not tell what decodes (each failed with the reader before) -----------


def remux_with_decode_times(source: Path, path: Path) -> Path:
    """Copy the packets of `source` into `path` with every presentation time replaced by the decode time, as
    in MP4 files written without composition offsets: B-frames then come out of the decoder tagged with
    timestamps out of display order, and the muxer's edit list drops the frames stamped before zero."""
    with av.open(str(source)) as inp, av.open(str(path), "w") as out:
        stream_in = inp.streams.video[0]
        stream_out = out.add_stream_from_template(stream_in)
        for packet in inp.demux(stream_in):
            if packet.dts is None:  # the empty packet that ends the stream
                continue
            packet.pts, packet.stream = packet.dts, stream_out
            out.mux(packet)
    return path


def clip_contents(clips) -> list[list[int]]:
    return [[frame_index(f) for f in clips.frames(i)] for i in range(len(clips))]


def test_b_frames_stamped_with_decode_times_under_an_edit_list(tmp_path):
    b_frames = {"crf": "10", "bf": "3", "g": "12", "x264-params": "b-adapt=0"}  # B-frames whatever the content
    source = write_test_video(tmp_path / "src.mp4", 40, options=b_frames)
    path = remux_with_decode_times(source, tmp_path / "b.mp4")
    with av.open(str(path)) as container:
        stated = container.streams.video[0].frames
    clips = open_clips(path, ClipSpec(frames=4, stride=4, size=32))
    decoded = [frame_index(f) for f in decode_all(path, 32, 32)]
    assert stated == 40 and len(decoded) < stated  # the header counts frames the edit list drops
    assert decoded == list(range(40 - len(decoded), 40))  # the rest decode in display order
    assert clip_contents(clips) == [decoded[i : i + 4] for i in range(0, len(decoded) - 3, 4)]


def test_b_frames_at_a_variable_frame_rate(tmp_path):
    times_ms = [0, 40, 80, 200, 240, 250, 260, 500, 540, 580, 620, 900, 1000, 1100, 1110, 1120, 1400, 1450]
    b_frames = {"crf": "10", "bf": "2", "g": "8", "x264-params": "b-adapt=0"}
    path = write_test_video(tmp_path / "vfr.mkv", len(times_ms), times_ms=times_ms, options=b_frames)
    source = VideoFile.probe(path, "vfr.mkv", 32)
    np.testing.assert_allclose(source.times, np.array(times_ms) / 1000)
    clips = open_clips(path, ClipSpec(frames=6, stride=3, size=32))
    assert clip_contents(clips) == [list(range(s, s + 6)) for s in range(0, len(times_ms) - 5, 3)]


def write_avi_with_dropped_frames(path: Path, kept: list[int], fps: int = 15) -> Path:
    """An MPEG-4 AVI at `fps` holding only the indexed frames `kept`, each at its tick: the muxer fills the
    gaps with empty chunks, which the header counts as frames (as capture software that drops frames does)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width = stream.height = 32
        stream.pix_fmt, stream.bit_rate = "yuv420p", 20_000_000  # near-lossless: frames stay recognisable
        stream.codec_context.time_base = Fraction(1, fps)
        for i in kept:
            frame = av.VideoFrame.from_ndarray(indexed_frame(i, 32, 32), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def test_an_avi_with_dropped_frames_is_indexed_by_the_frames_it_holds(tmp_path):
    kept = [0, 1, 2, 5, 6, 9, 10, 11, 12, 20, 21, 22, 23, 24, 30, 31, 32, 33, 34, 35]
    path = write_avi_with_dropped_frames(tmp_path / "d.avi", kept)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 36  # the header counts the dropped frames too
    source = VideoFile.probe(path, "d.avi", 32)
    np.testing.assert_allclose(source.times, np.array(kept) / 15, atol=1e-3)
    clips = open_clips(path, ClipSpec(frames=4, stride=4, size=32))
    assert clip_contents(clips) == [kept[i : i + 4] for i in range(0, 20, 4)]
    resampled = open_clips(path, ClipSpec(frames=4, stride=4, size=32, fps=5))  # ticks every 3 source frames
    expected = nearest_reference([i / 15 for i in kept], 5)
    assert [k for clip in clip_contents(resampled) for k in clip] == [kept[i] for i in expected][:4 * len(resampled)]


def test_a_file_too_short_after_indexing_is_rejected_at_probe_with_one_warning(tmp_path):
    path = write_avi_with_dropped_frames(tmp_path / "short.avi", [0, 15, 30, 45, 60, 75])  # the header: 76
    with pytest.warns(DataWarning, match=r"short\.avi: 6 frames, fewer than one clip of 8") as caught:
        with pytest.raises(DataError, match="no usable clip"):
            open_clips(path, ClipSpec(frames=8, stride=8, size=32))
    assert len([w for w in caught if issubclass(w.category, DataWarning)]) == 1


@pytest.mark.parametrize(("head", "end"), [
    (b"\x1a\x45\xdf\xa3\x84abcd\x18\x53\x80\x67\x41\x00", 4 + 1 + 4 + 4 + 2 + 256),  # a 2-byte size
    (b"\x1a\x45\xdf\xa3\x84abcd\x18\x53\x80\x67\xff", None),  # size unknown: a live stream's
    (b"\x1a\x45\xdf\xa3\x01\xff\xff\xff\xff\xff\xff\xff\x18\x53\x80\x67\x81", None),  # header past the head
    (b"\x1a\x45\xdf\xa3\x84abcd\x1f\x43\xb6\x75\x81", None),  # no Segment after the header
    (b"\x1a\x45\xdf\xa3\x84abcd\x18\x53\x80\x67\x00", None),  # no valid size
    (b"\x1a\x45\xdf", None), (b"", None), (b"RIFF\x10\x00\x00\x00AVI ", None),
    (b"\x00\x00\x00\x18ftypmp42", None),
])
def test_a_matroska_segments_end_is_read_from_its_first_bytes(head, end):
    from vqvid.data.video import _matroska_segment_end

    assert _matroska_segment_end(head) == end

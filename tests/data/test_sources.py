"""`open_clips` dispatch, frame selection, and bad input: each bad file warns once and is skipped."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from tests.data.test_video import frame_index, write_test_video
from vqvid.data import ClipSpec, DataError, DataWarning, MovingShapes, open_clips, select_frames
from vqvid.data.sources import SYNTHETIC_CACHE_BYTES

SPEC = ClipSpec(frames=8, stride=8, size=32)


def write_audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        for _ in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 8000
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def open_with_warnings(source, spec=SPEC, split=None):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clips = open_clips(source, spec, split)
    return clips, [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


# --- frame selection ---------------------------------------------------------------------------------------


def test_select_frames_keeps_everything_without_a_target_rate():
    np.testing.assert_array_equal(select_frames(np.array([0.0, 0.3, 0.35, 2.0]), None), [0, 1, 2, 3])


def test_select_frames_agrees_with_a_brute_force_nearest_search():
    rng = np.random.default_rng(0)
    for _ in range(50):
        times = np.sort(rng.uniform(0, 3, size=rng.integers(2, 40)))
        fps = rng.uniform(1, 30)
        chosen = select_frames(times, fps)
        ticks = times[0] + np.arange(len(chosen)) / fps
        assert ticks[-1] <= times[-1] + 1e-6 < ticks[-1] + 1 / fps  # the clock runs to the last frame
        for tick, index in zip(ticks, chosen, strict=True):
            distances = np.abs(times - tick)
            assert index == np.flatnonzero(distances <= distances.min() + 1e-6)[0]


# --- dispatch ----------------------------------------------------------------------------------------------


def test_synthetic_sources_are_parsed_and_checked():
    clips = open_clips("synthetic:3", ClipSpec(frames=4, size=16))
    assert isinstance(clips, MovingShapes) and len(clips) == 3 and clips[0].shape == (3, 4, 16, 16)
    assert clips.describe(1) == "synthetic(seed=0)#1"
    assert clips.cached  # a small set stays in memory once rendered, a large one is rendered at every read
    too_many = SYNTHETIC_CACHE_BYTES // MovingShapes(1, frames=4, size=16).nbytes + 1
    assert not open_clips(f"synthetic:{too_many}", ClipSpec(frames=4, size=16)).cached
    for bad in ("synthetic:0", "synthetic:x", "synthetic:-2"):
        with pytest.raises(DataError, match="synthetic:N"):
            open_clips(bad, SPEC)
    with pytest.raises(DataError, match="split must be one of"):
        open_clips("synthetic", SPEC, split="holdout")


def test_a_missing_source_says_what_was_expected(tmp_path):
    with pytest.raises(DataError, match=r"nope: no such file or folder; expected a video file"):
        open_clips(tmp_path / "nope", SPEC)


def test_a_tree_mixes_videos_and_frame_folders_and_skips_hidden_entries(tmp_path):
    for folder in ("b", "frames", ".cache"):
        (tmp_path / folder).mkdir()
    write_test_video(tmp_path / "b" / "one.mp4", 16)
    write_test_video(tmp_path / "a.mkv", 8)
    for n in range(8):
        Image.fromarray(np.full((32, 32, 3), 8 * n, np.uint8)).save(tmp_path / "frames" / f"{n}.png")
    write_test_video(tmp_path / ".cache" / "hidden.mp4", 8)
    (tmp_path / "notes.txt").write_text("not a video")
    clips, warned = open_with_warnings(tmp_path)
    assert warned == []
    assert [clips.describe(i) for i in range(len(clips))] == [
        "a.mkv@frame=0", "b/one.mp4@frame=0", "b/one.mp4@frame=8", "frames@frame=0"]
    assert [frame_index(f) for f in clips.frames(2)] == list(range(8, 16))


def test_split_folders_of_videos(tmp_path):
    for split, count in (("train", 16), ("val", 8)):
        (tmp_path / split).mkdir()
        write_test_video(tmp_path / split / f"{split}.mp4", count)
    assert len(open_clips(tmp_path, SPEC, split="train")) == 2
    assert open_clips(tmp_path, SPEC, split="val").describe(0) == "val.mp4@frame=0"
    with pytest.raises(DataError, match="choose one with split"):
        open_clips(tmp_path, SPEC)
    with pytest.raises(DataError, match="no 'test' split"):
        open_clips(tmp_path, SPEC, split="test")


# --- bad input ---------------------------------------------------------------------------------------------


def corrupt_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[:64] = bytes(range(64))
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


BAD_FILES = {
    "corrupt header": ("bad.mp4", lambda p: (write_test_video(p, 16), corrupt_header(p)), "cannot read it"),
    "truncated before its index": ("bad.mp4", lambda p: (write_test_video(p, 40), truncate(p)), "cannot read it"),
    "audio only": ("bad.mp4", write_audio_only, r"no video stream \(audio only\)"),
    "too short": ("bad.mp4", lambda p: write_test_video(p, 5), "5 frames, fewer than one clip of 8"),
    "garbage": ("bad.mp4", lambda p: p.write_bytes(np.random.default_rng(0).bytes(4000)), "cannot read it"),
    "empty file": ("bad.webm", lambda p: p.write_bytes(b""), "cannot read it"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_file_warns_once_and_the_rest_is_used(tmp_path, case):
    name, make, reason = BAD_FILES[case]
    make(tmp_path / name)
    write_test_video(tmp_path / "good.mp4", 16)
    clips, warned = open_with_warnings(tmp_path)
    assert len(warned) == 1, warned
    assert str(tmp_path / name) in warned[0]
    assert re.search(reason, warned[0]), warned[0]
    assert [clips.describe(i) for i in range(len(clips))] == ["good.mp4@frame=0", "good.mp4@frame=8"]


@pytest.mark.parametrize("case", ["garbage", "audio only"])
def test_a_source_of_only_bad_files_is_an_error(tmp_path, case):
    name, make, _ = BAD_FILES[case]
    make(tmp_path / name)
    with pytest.warns(DataWarning), pytest.raises(DataError, match=r"no usable clip; expected video files"):
        open_clips(tmp_path / name, SPEC)


def test_an_empty_folder_is_an_error_naming_it(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no usable clip.*numbered frame images.*at least 8 frames"):
        open_clips(tmp_path / "empty", SPEC)

"""`open_video`, the input of `vqvid compress`: which frames a file, frame folder or prepared store gives, and at
what rate."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from tests.data.test_frames import write_frames
from tests.data.test_video import frame_index, write_test_video
from vqvid.data import ClipSpec, ClipStore, DataWarning, prepare_store, to_uint8_frames
from vqvid.data.inputs import open_video
from vqvid.geometry import ClipGeometry

GEOMETRY = ClipGeometry(clip_frames=8, height=16, width=16, top_shape=(2, 2, 2), bottom_shape=(4, 4, 4),
                        num_codes=16)
DATA = {"frames": 8, "size": 16, "fps": None, "source_fps": 10.0}  # a model.json's clip spec


def read_all(source, max_frames=None) -> tuple[int, float, np.ndarray, list[str]]:
    """open_video's frame count and rate, every frame its pieces give, uint8 (N, 16, 16, 3), and its warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        video = open_video(str(source), DATA, GEOMETRY, max_frames)
        frames = to_uint8_frames(torch.cat(list(video.pieces), dim=1))
    return video.frames, video.fps, frames, [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


def test_an_unreadable_image_leaves_out_that_frame_only_and_says_which(tmp_path):
    numbers = [*range(20), 21]
    folder = write_frames(tmp_path / "seq", numbers)
    (folder / "7.png").write_text("not a png")
    frames, _, read, warned = read_all(folder)
    assert frames == 21
    assert [int(round(frame[..., 0].mean() / 4)) for frame in read] == [n for n in numbers if n != 7]
    assert len(warned) == 2
    assert "leaving out a frame that cannot be read" in warned[0] and str(folder / "7.png") in warned[0]
    assert warned[1] == "compress: 1 of 21 frames could not be read and are not in the file"


@pytest.mark.parametrize(("numbers", "fps"), [
    ([*range(15), 1000], 10),  # a stray file far from the rest: 0.15 fps from the span of the numbers
    (range(0, 40, 2), 5),  # every other frame of a 10 fps sequence
    ([*range(20), 21], 10),  # one dropped frame
])
def test_a_frame_folder_is_played_at_its_usual_step(tmp_path, numbers, fps):
    folder = write_frames(tmp_path / "seq", [n for n in numbers if n < 64])  # a red channel spells n < 64
    for n in numbers:
        if n >= 64:
            (folder / f"{n}.png").write_bytes((folder / "0.png").read_bytes())
    _, rate, _, _ = read_all(folder)
    assert rate == fps


def test_a_video_is_played_at_its_mean_rate(tmp_path):
    times_ms = [*range(0, 1100, 100), 2200]  # a pause of 1.2 s: its times are measured, not assumed
    _, rate, _, _ = read_all(write_test_video(tmp_path / "v.mkv", 12, times_ms=times_ms, size=(16, 16)))
    assert rate == 5  # 11 steps in 2.2 s


def test_a_prepared_store_gives_each_frame_of_its_overlapping_clips_once(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_test_video(videos / "a.mp4", 30, size=(16, 16))  # clips start at 0, 4, …, 20: frames 0-27 stored
    write_test_video(videos / "b.mp4", 12, size=(16, 16))  # clips at 0, 4: frames 0-11
    store = prepare_store(videos, tmp_path / "store", ClipSpec(frames=8, stride=4, size=16), progress=False)
    frames, _, read, warned = read_all(store)
    assert warned == [] and frames == len(read) == 28 + 12
    assert [frame_index(frame) for frame in read] == [*range(28), *range(12)]
    frames, _, read, _ = read_all(store, max_frames=10)
    assert frames == len(read) == 10 and [frame_index(frame) for frame in read] == list(range(10))


def test_a_store_keeps_frames_that_only_repeat_across_two_sources(tmp_path):
    from PIL import Image

    for name, still in (("a", range(4, 8)), ("b", range(4))):  # a fades to black, b fades in from it
        folder = write_frames(tmp_path / "src" / name, range(8))
        black = np.zeros_like(np.asarray(Image.open(folder / "0.png")))
        for n in still:
            Image.fromarray(black).save(folder / f"{n}.png")
    store = prepare_store(tmp_path / "src", tmp_path / "store", ClipSpec(frames=8, stride=4, size=16),
                          progress=False)
    assert len(ClipStore(store)) == 2  # one clip of each folder; a's last 4 frames equal b's first 4
    frames, _, read, _ = read_all(store)
    assert frames == len(read) == 16

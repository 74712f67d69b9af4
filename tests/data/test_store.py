"""Prepared clip stores: exact round trips, workers, atomic writes, damaged stores, broken files."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from tests.data.test_video import write_test_video
from vqvid.data import ClipSpec, ClipStore, DataError, DataWarning, is_store, open_clips, prepare_store
from vqvid.data.store import STORE_DATA, STORE_META

SPEC = ClipSpec(frames=4, stride=3, size=16)


@pytest.fixture
def videos(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    write_test_video(folder / "a.mp4", 12, size=(24, 16))
    write_test_video(folder / "b.mkv", 9, size=(16, 16))
    return folder


def test_store_round_trip_equals_direct_decoding(tmp_path, videos):
    direct = open_clips(videos, SPEC)
    out = prepare_store(videos, tmp_path / "store", SPEC, progress=False)
    store = open_clips(out, SPEC)
    assert isinstance(store, ClipStore) and is_store(out)
    assert len(store) == len(direct) == 5  # a.mp4: starts 0, 3, 6; b.mkv: 0, 3
    for i in range(len(direct)):
        assert torch.equal(store[i], direct[i])
        assert store.describe(i) == direct.describe(i)
    assert (out / STORE_DATA).stat().st_size == 5 * 4 * 16 * 16 * 3
    assert store.spec == SPEC and store.source == str(videos) and store.split is None


def test_synthetic_store_holds_the_clips_quantised_to_uint8(tmp_path):
    spec = ClipSpec(frames=3, size=8)
    store = ClipStore(prepare_store("synthetic:3", tmp_path / "s", spec, progress=False))
    clips = open_clips("synthetic:3", spec)
    for i in range(3):
        assert (store[i] - clips[i]).abs().max() <= 1 / 127.5 + 1e-6
    assert store.describe(2) == "synthetic(seed=0)#2"


@pytest.mark.parametrize("context", ["fork", pytest.param("spawn", marks=pytest.mark.slow)])  # spawn: +5 s
def test_workers_read_the_same_batches(tmp_path, context):
    spec = ClipSpec(frames=2, size=8)
    store = ClipStore(prepare_store("synthetic:6", tmp_path / "s", spec, progress=False))
    store[0]  # the memmap now exists in this process and must not be shared with the workers
    loader = DataLoader(store, batch_size=2, num_workers=2 if context == "fork" else 1,
                        multiprocessing_context=context)
    assert torch.equal(torch.cat(list(loader)), torch.stack([store[i] for i in range(6)]))


def test_pickling_leaves_the_memmap_behind(tmp_path):
    spec = ClipSpec(frames=2, size=8)
    store = ClipStore(prepare_store("synthetic:2", tmp_path / "s", spec, progress=False))
    first = store[0]
    copy = pickle.loads(pickle.dumps(store))
    assert copy._clips is None
    assert torch.equal(copy[0], first)


def test_prepare_with_workers_writes_the_same_store(tmp_path, videos):
    serial = ClipStore(prepare_store(videos, tmp_path / "serial", SPEC, progress=False))
    parallel = ClipStore(prepare_store(videos, tmp_path / "parallel", SPEC, progress=False, workers=2))
    assert (serial.path / STORE_DATA).read_bytes() == (parallel.path / STORE_DATA).read_bytes()
    assert [serial.describe(i) for i in range(5)] == [parallel.describe(i) for i in range(len(parallel))]


class Interrupted(Dataset):
    """Clips until `at`, then Ctrl-C."""

    def __init__(self, at: int) -> None:
        self.at = at

    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> torch.Tensor:
        if index == self.at:
            raise KeyboardInterrupt
        return torch.zeros(3, 4, 16, 16)

    def describe(self, index: int) -> str:
        return f"clip {index}"


def test_an_interrupted_prepare_leaves_the_old_store_as_it_was(tmp_path, monkeypatch, videos):
    out = prepare_store(videos, tmp_path / "store", SPEC, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr("vqvid.data.sources.open_clips", lambda *args: Interrupted(at=3))
    with pytest.raises(KeyboardInterrupt):
        prepare_store(videos, out, SPEC, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert len(ClipStore(out)) == len(open_clips(videos, SPEC))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial folder left behind


def test_an_interrupted_first_prepare_leaves_no_store(tmp_path, monkeypatch):
    monkeypatch.setattr("vqvid.data.sources.open_clips", lambda *args: Interrupted(at=3))
    with pytest.raises(KeyboardInterrupt):
        prepare_store("synthetic:8", tmp_path / "store", SPEC, progress=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DataError):
        open_clips(tmp_path / "store", SPEC)


def test_a_prepare_killed_midway_leaves_the_old_store_usable(tmp_path):
    """SIGKILL, no cleanup at all: the old store still opens, with its old clips."""
    out = prepare_store("synthetic:2", tmp_path / "store", SPEC, progress=False)
    before = ClipStore(out).frames(1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-m", "vqvid", "prepare", "synthetic:100000", "--out", str(out),
                                "--frames", "4", "--size", "16", "--quiet"], env=env)
    try:
        deadline = time.monotonic() + 120
        while not any(p.name.endswith(".partial") and (p / STORE_DATA).is_file() and (p / STORE_DATA).stat().st_size
                      for p in tmp_path.iterdir()):  # the new store is being written
            assert process.poll() is None and time.monotonic() < deadline, "prepare ended before it was killed"
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert len(ClipStore(out)) == 2
    np.testing.assert_array_equal(ClipStore(out).frames(1), before)


@pytest.mark.parametrize("damage, message", [
    (lambda out: (out / STORE_DATA).write_bytes(bytes(15359)), "expected 15360 bytes.*has 15359"),
    (lambda out: (out / STORE_DATA).unlink(), "it is missing"),
    (lambda out: (out / STORE_META).write_text("{not json"), "not a readable JSON"),
    (lambda out: (out / STORE_META).write_text("[]"), "not a vqvid-clip-store"),
    (lambda out: _edit_meta(out, version=99), "version 99"),
    (lambda out: _edit_meta(out, num_clips=7), "clips must list 7"),
    (lambda out: _edit_meta(out, spec={"frames": 0}), "invalid store description.*frames"),
])
def test_a_damaged_store_is_an_error_naming_the_file(tmp_path, videos, damage, message):
    out = prepare_store(videos, tmp_path / "store", SPEC, progress=False)
    damage(out)
    with pytest.raises(DataError, match=message) as error:
        ClipStore(out)
    assert str(out) in str(error.value)


def _edit_meta(out, **changes) -> None:
    meta = json.loads((out / STORE_META).read_text())
    (out / STORE_META).write_text(json.dumps({**meta, **changes}))


def test_prepare_refuses_to_write_into_a_folder_that_is_not_a_store(tmp_path, videos):
    with pytest.raises(DataError, match="exists and is not a store"):
        prepare_store("synthetic:2", videos, SPEC, progress=False)
    assert sorted(p.name for p in videos.iterdir()) == ["a.mp4", "b.mkv"]


def test_a_store_of_another_clip_shape_is_refused(tmp_path, videos):
    out = prepare_store(videos, tmp_path / "store", SPEC, progress=False)
    with pytest.raises(DataError, match=r"holds clips of 4×16×16 but 8×16×16 were asked for; prepare it again "
                                        r"\(`vqvid prepare SOURCE --out STORE --frames 8 --size 16`\)"):
        open_clips(out, ClipSpec(frames=8, size=16))


def test_a_store_of_another_frame_rate_is_refused(tmp_path, videos):
    out = prepare_store(videos, tmp_path / "store", SPEC, progress=False)  # the videos' own rates
    with pytest.raises(DataError, match=r"holds clips at their videos' own rates, but clips resampled to 10 fps were "
                                        r"asked for \(data.fps\); prepare it again --fps 10, or ask for data.fps=null"):
        open_clips(out, replace(SPEC, fps=10.0))
    assert len(open_clips(out, SPEC)) > 0


def test_a_store_answers_for_the_split_it_was_prepared_from(tmp_path):
    for split, count in (("train", 8), ("val", 4)):
        (tmp_path / "src" / split).mkdir(parents=True)
        write_test_video(tmp_path / "src" / split / f"{split}.mp4", count)
    out = prepare_store(tmp_path / "src", tmp_path / "store", SPEC, split="val", progress=False)
    assert len(open_clips(out, SPEC, split="val")) == 1
    with pytest.raises(DataError, match="no 'train' split"):
        open_clips(out, SPEC, split="train")


def test_a_file_damaged_part_way_warns_once_and_keeps_only_its_clips_before_the_damage(tmp_path, videos):
    broken = write_test_video(videos / "c.mp4", 40, options={"crf": "20"}, size=(64, 64))
    data = bytearray(broken.read_bytes())
    for k in range(len(data) // 3, len(data) - 2000, 5):
        data[k] ^= 0xFF
    broken.write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = ClipStore(prepare_store(videos, tmp_path / "store", SPEC, progress=False))
    messages = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert len(messages) == 1 and "c.mp4" in messages[0]
    described = [store.describe(i) for i in range(len(store))]
    assert [d for d in described if not d.startswith("c.mp4")] == [
        "a.mp4@frame=0", "a.mp4@frame=3", "a.mp4@frame=6", "b.mkv@frame=0", "b.mkv@frame=3"]
    direct = open_clips(videos, SPEC)
    by_name = {direct.describe(i): i for i in range(len(direct))}
    for i, name in enumerate(described):  # clips of c.mp4 that decoded before it broke are kept, intact
        np.testing.assert_array_equal(store.frames(i), direct.frames(by_name[name]))


def test_a_file_that_breaks_while_preparing_warns_once_and_its_remaining_clips_are_left_out(tmp_path, videos,
                                                                                          monkeypatch):
    # The file reads whole when the clips are cut, and breaks only in the preparing pass, after its first clip.
    from vqvid.data.sources import Clips

    write_test_video(videos / "c.mp4", 12, size=(24, 16))
    in_order = Clips.clips_in_order

    def breaking_after_one_clip(self, k):
        for index, frames in in_order(self, k):
            yield index, frames
            if self.describe(index).startswith("c.mp4"):
                raise DataError("c.mp4: decoding failed at 0.300 s")

    monkeypatch.setattr(Clips, "clips_in_order", breaking_after_one_clip)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = ClipStore(prepare_store(videos, tmp_path / "store", SPEC, progress=False))
    messages = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert messages == ["skipping the rest of c.mp4: decoding failed at 0.300 s"]
    described = [store.describe(i) for i in range(len(store))]
    assert described == ["a.mp4@frame=0", "a.mp4@frame=3", "a.mp4@frame=6", "b.mkv@frame=0", "b.mkv@frame=3",
                         "c.mp4@frame=0"]
    direct = open_clips(videos, SPEC)
    assert len(direct) == 8  # c.mp4 holds three clips; the two after the break were left out
    for i in range(len(store)):
        np.testing.assert_array_equal(store.frames(i), direct.frames(i))


def test_progress_goes_to_stderr(tmp_path, capsys):
    prepare_store("synthetic:2", tmp_path / "s", ClipSpec(frames=2, size=8))
    captured = capsys.readouterr()
    assert captured.out == "" and "2/2 clips" in captured.err


def test_prepare_reads_each_file_once_in_order_without_seeking(tmp_path, videos, monkeypatch):
    from tests.data.test_video import remux_with_decode_times, write_avi_with_dropped_frames
    from vqvid.data import video as video_module

    b_frames = {"crf": "10", "bf": "3", "g": "12", "x264-params": "b-adapt=0"}
    remux_with_decode_times(write_test_video(tmp_path / "src.mp4", 30, options=b_frames), videos / "c.mp4")
    write_avi_with_dropped_frames(videos / "d.avi", [0, 1, 4, 5, 6, 9, 13, 14, 15, 20])
    direct = open_clips(videos, SPEC)
    expected = [direct.frames(i) for i in range(len(direct))]
    passes = []
    real_pass = video_module.VideoFile.frames_in_order
    monkeypatch.setattr(video_module.VideoFile, "frames_in_order",
                        lambda self: passes.append(self.name) or real_pass(self))
    monkeypatch.setattr(video_module.VideoFile, "read", lambda *args: pytest.fail("prepare read a clip by seeking"))
    store = ClipStore(prepare_store(videos, tmp_path / "store", SPEC, progress=False))
    assert passes == ["a.mp4", "b.mkv", "c.mp4", "d.avi"]  # one pass per file
    assert [store.describe(i) for i in range(len(store))] == [direct.describe(i) for i in range(len(direct))]
    for i, frames in enumerate(expected):
        np.testing.assert_array_equal(store.frames(i), frames)


def test_a_store_appears_whole_with_the_users_modes(tmp_path):
    previous = os.umask(0o027)
    try:
        out = prepare_store("synthetic:2", tmp_path / "s", ClipSpec(frames=2, size=8), progress=False)
    finally:
        os.umask(previous)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
    assert sorted(p.name for p in out.iterdir()) == [STORE_DATA, STORE_META]
    assert out.stat().st_mode & 0o777 == 0o750
    assert all(p.stat().st_mode & 0o777 == 0o640 for p in out.iterdir())

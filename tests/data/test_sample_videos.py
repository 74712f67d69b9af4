"""The opencv-doc sample videos (see `vqvid.data.samples` for where they are looked for): every frame the
probe indexes decodes, and clips read with seeks equal the same frames of one sequential decode.

Before frames were indexed by a full decode, box.mp4 (B-frames stamped with decode times, an edit list) failed
55 of its 56 clips, tree.avi (a header of 444 frames, 68 of them decodable) all 54, and the clips of
Megamind.avi (packed B-frames) read without error but held B-frames swapped with their neighbours.
"""

from __future__ import annotations

import numpy as np
import pytest

from vqvid.data import ClipSpec, open_clips
from vqvid.data.samples import SAMPLE_VIDEOS, missing_sample_videos, sample_videos_dir

SPEC = ClipSpec(frames=16, stride=8, size=64)

pytestmark = pytest.mark.skipif(
    bool(missing_sample_videos()),
    reason=f"opencv-doc sample videos not in {sample_videos_dir()} (set VQVID_SAMPLE_VIDEOS or run "
           "benchmarks/bench_real.py, which fetches them)")


def _clip_frames(clips, index: int) -> np.ndarray:
    k, position = clips._starts[index]
    return clips._chosen[k][position : position + clips.spec.frames]  # (T,) source frame indices


@pytest.mark.parametrize("name", SAMPLE_VIDEOS)
def test_sampled_clips_equal_one_sequential_decode(name):
    clips = open_clips(sample_videos_dir() / name, SPEC)
    source = clips.sources[0]
    sequential = dict(source.frames_in_order())
    assert sorted(sequential) == list(range(len(source.times)))  # every indexed frame decodes
    assert np.all(np.diff(source.times) > 0)
    # the first and last clips and three between: seeks to keyframes, into open GOPs and past B-frames
    for index in sorted({0, len(clips) // 4, len(clips) // 2, 3 * len(clips) // 4, len(clips) - 1}):
        expected = np.stack([sequential[int(n)] for n in _clip_frames(clips, index)])
        np.testing.assert_array_equal(clips.frames(index), expected, err_msg=clips.describe(index))


@pytest.mark.slow
def test_every_clip_of_every_sample_video_reads():
    clips = open_clips(sample_videos_dir(), SPEC)
    assert len(clips.sources) == len(SAMPLE_VIDEOS)
    for index in range(len(clips)):
        assert clips.frames(index).shape == (16, 64, 64, 3), clips.describe(index)

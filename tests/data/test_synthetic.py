"""Moving shapes: determinism, range, motion, bouncing, smoothness, and the MP4 writer."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from vqvid.data import MovingShapes, open_clips, synthetic, write_synthetic_videos
from vqvid.data.synthetic import _bounce
from vqvid.data.video import ClipSpec


def test_clips_have_the_contract_shape_and_range():
    clips = MovingShapes(4, frames=5, size=24)
    for i in range(len(clips)):
        clip = clips[i]
        assert clip.shape == (3, 5, 24, 24) and clip.dtype == torch.float32
        assert clip.min() >= -1 and clip.max() <= 1
        assert clip.std() > 0.1  # not a blank frame


def test_a_clip_depends_only_on_seed_and_index():
    a, b = MovingShapes(3, frames=6, size=32, seed=5), MovingShapes(100, frames=6, size=32, seed=5)
    for i in range(3):
        assert torch.equal(a[i], b[i])
    assert torch.equal(a[-1], a[2])
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(a[0], MovingShapes(3, frames=6, size=32, seed=6)[0])


def test_a_cached_set_renders_each_clip_once_and_gives_the_same_clips(monkeypatch):
    render, renders = synthetic._render, []
    monkeypatch.setattr(synthetic, "_render", lambda *args: renders.append(1) or render(*args))
    truth = torch.from_numpy(render(np.random.default_rng([0, 1]), 4, 16) * 2 - 1)  # clip 1, rendered directly
    plain, cached = MovingShapes(3, frames=4, size=16), MovingShapes(3, frames=4, size=16, cache_bytes=2**20)
    assert cached.cached and not plain.cached
    cached[1].fill_(0)  # what a reader does to its tensor does not reach the cache
    for clip in (plain[1], plain[-2], cached[1], cached[-2]):
        assert torch.equal(clip, truth)
    assert len(renders) == 2 + 1  # the plain set renders at every read, the cached set once


def test_shapes_move_between_frames():
    clip = MovingShapes(8, frames=16, size=32)[0]
    changes = (clip[:, 1:] - clip[:, :-1]).abs().mean(dim=(0, 2, 3))  # (T-1,) mean change per frame step
    assert (changes > 1e-3).all()


def test_content_is_smooth_at_the_pixel_scale():
    clip = MovingShapes(16, frames=8, size=64)[3]
    horizontal = (clip[..., 1:] - clip[..., :-1]).abs().mean()
    vertical = (clip[..., 1:, :] - clip[..., :-1, :]).abs().mean()
    # white noise in [-1, 1] would give about 0.67; smooth content a small fraction of that
    assert horizontal < 0.08 and vertical < 0.08


def test_bounce_matches_a_step_by_step_reflection():
    low, span, velocity = 3.0, 10.0, 1.7
    position, reference = 5.0, []
    for _ in range(60):
        reference.append(position)
        position += velocity
        if position > low + span:
            position, velocity = 2 * (low + span) - position, -velocity
        elif position < low:
            position, velocity = 2 * low - position, -velocity
    free = 5.0 + 1.7 * np.arange(60)
    np.testing.assert_allclose(_bounce(free, low, span), reference, atol=1e-9)


def test_bad_arguments_and_indices_are_refused():
    with pytest.raises(ValueError, match="num_clips"):
        MovingShapes(0)
    with pytest.raises(ValueError, match="size"):
        MovingShapes(1, size=4)
    with pytest.raises(IndexError):
        MovingShapes(2)[2]


def test_open_clips_gives_disjoint_splits():
    spec = ClipSpec(frames=4, size=16)
    train = open_clips("synthetic:6", spec, split="train")
    val = open_clips("synthetic:6", spec, split="val")
    assert len(train) == len(val) == 6 and len(open_clips("synthetic", spec)) == 64
    assert all(not torch.equal(train[i], val[j]) for i in range(6) for j in range(6))
    assert torch.equal(open_clips("synthetic:6", spec)[2], train[2])


def test_written_videos_decode_close_to_the_clips(tmp_path):
    paths = write_synthetic_videos(tmp_path / "videos", 2, frames=6, size=32, fps=5, seed=3)
    assert [p.name for p in paths] == ["shapes_000.mp4", "shapes_001.mp4"]
    clips = MovingShapes(2, frames=6, size=32, seed=3)
    for path, clip in zip(paths, clips, strict=True):
        with av.open(str(path)) as container:
            assert container.streams.video[0].average_rate == 5
            frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        decoded = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1  # (3, T, H, W)
        mse = ((decoded - clip) ** 2).mean() / 4  # on a [0, 1] scale
        # 4:2:0 chroma on 32×32 frames costs a few dB; another clip would score near 10 dB
        assert decoded.shape == clip.shape and 10 * torch.log10(1 / mse) > 25


def test_shapes_are_the_clip_s_layers_with_their_outlines_and_the_scene_without_each():
    clips = MovingShapes(5, frames=6, size=32, seed=7)
    for index in range(5):
        clip, shapes = clips[index], clips.shapes(index)
        assert 2 <= len(shapes) <= 4 and {s.kind for s in shapes} <= {"circle", "square", "triangle"}
        # coverage where nothing hides it telescopes: the shapes' visible parts never add up past one pixel
        visible = torch.stack([s.visible for s in shapes])  # (N, T, H, W)
        assert visible.shape == (len(shapes), 6, 32, 32) and visible.min() >= 0
        assert visible.sum(0).max() <= 1 + 1e-5
        for shape in shapes:
            assert shape.without.shape == clip.shape
            # leaving a shape out changes only the pixels it covers and nothing hides (up to the float rounding
            # of drawing an opaque shape over different pixels)
            torch.testing.assert_close(shape.without[:, shape.visible == 0], clip[:, shape.visible == 0],
                                       rtol=0, atol=1e-6)
            inside = shape.visible > 0.9
            assert inside.sum() > 0 and (shape.without - clip).abs()[:, inside].amax(0).mean() > 0.02
    # a clip's shapes depend only on seed and index, like the clip
    again = MovingShapes(50, frames=6, size=32, seed=7).shapes(3)
    assert all(torch.equal(a.visible, b.visible) and torch.equal(a.without, b.without)
               for a, b in zip(clips.shapes(3), again, strict=True))
    with pytest.raises(IndexError):
        clips.shapes(5)

"""Shape scores: whether a prediction keeps the known shapes of a scene, against hand-computed values."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from vqvid.metrics import shape_scores


@dataclass
class Known:
    visible: torch.Tensor
    without: torch.Tensor


def _scene(frames: int = 3, size: int = 16):
    """A grey scene with a red 6×6 square at (4, 4): the truth, and the square as a known shape."""
    without = torch.zeros(3, frames, size, size)
    truth = without.clone()
    visible = torch.zeros(frames, size, size)
    visible[:, 4:10, 4:10] = 1
    truth[0, :, 4:10, 4:10] = 1.0  # red in [-1, 1]: channel 0 at 1, others at 0 (grey)
    return truth, Known(visible, without)


def test_the_truth_keeps_every_shape_and_the_scene_without_it_none():
    truth, shape = _scene()
    kept = shape_scores(truth[None], truth[None], [[shape]])
    assert kept.kept == [1.0] * 3 and kept.shapes == [1] * 3 and all(v > 90 for v in kept.psnr)
    gone = shape_scores(shape.without[None], truth[None], [[shape]])
    assert gone.kept == [0.0] * 3
    # inside the outline the red channel is off by 1 on [-1, 1], i.e. 0.5 on [0, 1]; the other two match
    assert gone.psnr == pytest.approx([-10 * math.log10(0.25 / 3)] * 3, abs=1e-4)


def test_a_shape_moved_off_its_place_is_lost_and_one_nearly_in_place_is_kept():
    truth, shape = _scene()
    moved = truth.roll(shifts=8, dims=3)  # the square now lies beside its outline
    nudged = truth.roll(shifts=1, dims=3)  # five of its six columns still inside
    scores = shape_scores(torch.stack([moved, nudged]), torch.stack([truth, truth]), [[shape], [shape]])
    assert scores.kept == [0.5] * 3 and scores.shapes == [2] * 3


def test_shapes_that_are_hidden_or_blend_in_do_not_count():
    truth, shape = _scene()
    small = Known(torch.zeros_like(shape.visible), shape.without)
    small.visible[:, 0, 0:3] = 1  # 3 pixels: fewer than min_pixels
    scores = shape_scores(truth[None], truth[None], [[small]])
    assert scores.shapes == [0] * 3 and all(math.isnan(v) for v in scores.kept + scores.psnr)
    blends_in = Known(shape.visible, truth.clone())  # the scene without it looks the same
    assert shape_scores(truth[None], truth[None], [[blends_in]]).shapes == [0] * 3
    # one frame where it is hidden: it counts in the other two
    hidden = Known(shape.visible.clone(), shape.without)
    hidden.visible[1] = 0
    assert shape_scores(truth[None], truth[None], [[hidden]]).shapes == [1, 0, 1]


def test_mismatched_inputs_are_refused():
    truth, shape = _scene()
    with pytest.raises(ValueError, match="must agree"):
        shape_scores(truth[None], truth[None], [[shape], [shape]])
    with pytest.raises(ValueError, match="must agree"):
        shape_scores(truth[None, :, :2], truth[None], [[shape]])


def _moving_square(frames: int = 4, size: int = 24, speed: int = 2):
    """A red 4×4 square moving right `speed` pixels a frame over a horizontal grey ramp (so that the scene
    without it differs from place to place): the truth, and the square as a known shape."""
    ramp = torch.linspace(-0.5, 0.5, size)
    without = ramp.expand(3, frames, size, size).clone()
    truth, visible = without.clone(), torch.zeros(frames, size, size)
    for t in range(frames):
        visible[t, 8:12, 4 + speed * t : 8 + speed * t] = 1
        truth[:, t, 8:12, 4 + speed * t : 8 + speed * t] = torch.tensor([1.0, -1.0, -1.0])[:, None, None]
    return truth, Known(visible, without)


def test_stray_keeps_a_shape_held_back_within_the_allowance_and_never_one_that_dissolved():
    truth, shape = _moving_square(speed=2)
    held_back = truth[:, :1].expand_as(truth)  # never moves: 2 t pixels behind in frame t (0-based)
    in_place = shape_scores(held_back[None], truth[None], [[shape]])
    assert in_place.kept == [1.0, 0.0, 0.0, 0.0]  # the 4-pixel square has left its first outline by frame 2
    # frame t (0-based) allows (t + 1) × stray pixels: at 2 a frame every frame is within reach
    assert shape_scores(held_back[None], truth[None], [[shape]], stray=2).kept == [1.0] * 4
    # at 1 a frame the allowance t + 1 falls behind the lag 2 t from frame 2 on: 3 of the square's 4 columns
    # are within reach there (still nearer the square than the background), 2 of 4 in frame 3 (a tie: lost)
    assert shape_scores(held_back[None], truth[None], [[shape]], stray=1).kept == [1.0, 1.0, 1.0, 0.0]
    # the scene without the square keeps it nowhere, however far the search
    assert shape_scores(shape.without[None], truth[None], [[shape]], stray=5).kept == [0.0] * 4
    # within the allowance the answer at zero shift is the in-place one
    assert shape_scores(truth[None], truth[None], [[shape]], stray=1).kept == [1.0] * 4
    with pytest.raises(ValueError, match="stray must be >= 0"):
        shape_scores(truth[None], truth[None], [[shape]], stray=-1)


def test_stray_counts_a_shape_by_its_colours_not_by_any_change_from_the_background():
    """A patch of the wrong colour where the shape went is nearer the background in the ramp's channels than
    the red square is, so it does not count as the square, at any shift."""
    truth, shape = _moving_square(speed=0)
    wrong = truth.clone()
    wrong[:, :, 8:12, 4:8] = torch.tensor([-1.0, -1.0, 1.0])[:, None, None, None]  # blue, not red
    assert shape_scores(wrong[None], truth[None], [[shape]], stray=3).kept == [0.0] * 4


def _kept_near_by_loop(frame, target, mask, without, radius):
    """The slow reference: every shift in turn, the frame and background read with their edges repeated."""
    h, w = mask.shape
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            rows, cols = (torch.arange(h) + dy).clamp(0, h - 1), (torch.arange(w) + dx).clamp(0, w - 1)
            moved, behind = frame[:, rows][:, :, cols], without[:, rows][:, :, cols]
            if ((moved - target).square() * mask).sum() < ((moved - behind).square() * mask).sum():
                return True
    return False


def test_the_search_over_shifts_equals_trying_each_shift_in_turn():
    from vqvid.metrics import _kept_near

    generator = torch.Generator().manual_seed(0)
    agree, outcomes = [], set()
    for trial in range(40):
        frame, target, without = (torch.rand(3, 12, 12, generator=generator) * 2 - 1 for _ in range(3))
        mask = torch.zeros(12, 12)
        top, left = torch.randint(0, 9, (2,), generator=generator).tolist()
        mask[top : top + 3, left : left + 4] = 1  # near the edges too, where the frame's edge repeats
        radius = trial % 4
        expected = _kept_near_by_loop(frame, target, mask, without, radius)
        agree.append(_kept_near(frame, target, mask, without, radius) == expected)
        outcomes.add(expected)
    assert all(agree) and outcomes == {True, False}


def test_codebook_distance_where_averages_only_the_chosen_positions():
    from vqvid.metrics import codebook_distance

    generator = torch.Generator().manual_seed(0)
    codebook = torch.randn(7, 3, generator=generator)
    produced, truth = (torch.randint(0, 7, (2, 3, 4, 5), generator=generator) for _ in range(2))
    where = torch.rand(2, 3, 4, 5, generator=generator) < 0.4
    where[:, 2] = False  # a latent frame with no chosen position
    got = codebook_distance(produced, truth, codebook, where).tolist()
    for t in range(2):
        chosen = [float((codebook[produced[n, t, y, x]] - codebook[truth[n, t, y, x]]).square().sum())
                  for n in range(2) for y in range(4) for x in range(5) if where[n, t, y, x]]
        assert got[t] == pytest.approx(sum(chosen) / len(chosen), rel=1e-5)
    assert math.isnan(got[2])
    assert codebook_distance(produced, truth, codebook, torch.ones_like(where)).tolist() == pytest.approx(
        codebook_distance(produced, truth, codebook).tolist(), rel=1e-6)
    with pytest.raises(ValueError, match="where"):
        codebook_distance(produced, truth, codebook, where[:, :2])


def test_a_frame_equal_to_its_reference_counts_as_the_cap_and_the_mean_stays_finite():
    from vqvid.metrics import PSNR_CAP, psnr, psnr_per_frame

    target = torch.rand(2, 3, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    prediction = target.clone()
    prediction[:, :, 1:] += 0.1  # frames 1-3 off by 0.05 on [0, 1] pixels (a black frame coded exactly, say)
    noisy = -10 * math.log10(((prediction[:, :, 1:].clamp(-1, 1) - target[:, :, 1:]) / 2).square().mean().item())
    per_frame = psnr_per_frame(prediction, target).tolist()
    assert per_frame[0] == PSNR_CAP == 100.0
    assert per_frame[1:] == pytest.approx([noisy] * 3, abs=0.5)  # the clamp at 1 moves a few pixels
    assert psnr(prediction, target) == pytest.approx(sum(per_frame) / 4, rel=1e-6)
    assert psnr(target, target) == PSNR_CAP

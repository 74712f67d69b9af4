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

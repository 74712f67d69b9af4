"""One clip geometry for compression and prediction, from a model folder."""

from __future__ import annotations

import pytest

from tests.codec.test_video_codec import BOTTOM_SHAPE, CLIP_FRAMES, NUM_CODES, SIZE, TOP_SHAPE, tiny_folder
from vqvid.geometry import ClipGeometry, clip_geometry
from vqvid.sampling.predict import check_request


def test_compression_and_prediction_see_the_same_geometry():
    folder = tiny_folder()
    geometry = clip_geometry(folder)
    assert geometry == ClipGeometry(CLIP_FRAMES, SIZE, SIZE, TOP_SHAPE, BOTTOM_SHAPE, NUM_CODES)
    assert geometry.positions == 4 + 32
    assert check_request(folder, context=0, frames=CLIP_FRAMES) == geometry


def test_without_a_clip_spec_the_top_prior_gives_the_clip_size():
    folder = tiny_folder()
    folder.vqvae.data.clear()
    assert clip_geometry(folder) == (CLIP_FRAMES, SIZE, SIZE, TOP_SHAPE, BOTTOM_SHAPE, NUM_CODES)
    without = tiny_folder(priors=False)
    without.vqvae.data.clear()
    with pytest.raises(ValueError, match="records no clip size"):
        clip_geometry(without)


def test_a_folder_whose_priors_do_not_fit_its_clips_is_refused_by_prediction_too():
    folder = tiny_folder()
    folder.vqvae.data["frames"] = 8
    with pytest.raises(ValueError, match=r"top prior models grids \(1, 2, 2\)"):
        check_request(folder, context=0, frames=4)

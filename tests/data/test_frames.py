"""Folders of numbered frame images: numeric order, split layouts, timing from source_fps, bad images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqvid.data import ClipSpec, DataError, DataWarning, open_clips
from vqvid.data.frames import FrameFolder


def indexed_image(index: int, tag: int = 0, width: int = 16, height: int = 16) -> np.ndarray:
    """A flat image whose red channel spells `index` and green channel spells `tag`."""
    image = np.empty((height, width, 3), np.uint8)
    image[...] = (4 * index, 40 * tag, 100)
    return image


def image_index(frame: np.ndarray) -> int:
    return int(round(frame[..., 0].mean() / 4))


def write_frames(folder: Path, numbers, tag: int = 0, name: str = "{}.png", **size) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        Image.fromarray(indexed_image(n, tag, **size)).save(folder / name.format(n), quality=95)
    return folder


def indices(clips, i: int) -> list[int]:
    return [image_index(frame) for frame in clips.frames(i)]


def test_frames_are_ordered_numerically_not_by_name(tmp_path):
    write_frames(tmp_path / "seq", range(12))  # "10.png" sorts before "2.png" as text
    clips = open_clips(tmp_path / "seq", ClipSpec(frames=12, stride=1, size=16))
    assert len(clips) == 1
    assert indices(clips, 0) == list(range(12))
    assert clips.describe(0) == "seq@frame=0"


def test_prefixed_zero_padded_jpegs(tmp_path):
    write_frames(tmp_path / "cam", range(6), name="frame_{:04d}.jpg")
    clips = open_clips(tmp_path, ClipSpec(frames=3, stride=3, size=16))
    assert [indices(clips, i) for i in range(2)] == [[0, 1, 2], [3, 4, 5]]
    assert clips.describe(1) == "cam@frame=3"


@pytest.mark.parametrize("nested", [False, True])
def test_split_folders_select_their_own_frames(tmp_path, nested):
    for tag, split in enumerate(["train", "val", "test"]):
        folder = tmp_path / split / "seq_a" if nested else tmp_path / split
        write_frames(folder, range(4 + tag), tag=tag)
    spec = ClipSpec(frames=4, stride=1, size=16)
    for tag, split in enumerate(["train", "val", "test"]):
        clips = open_clips(tmp_path, spec, split=split)
        assert len(clips) == 1 + tag
        tags = {int(round(clips.frames(i)[..., 1].mean() / 40)) for i in range(len(clips))}
        assert tags == {tag}
        assert clips.describe(0) == ("seq_a@frame=0" if nested else f"{split}@frame=0")


def test_a_split_source_needs_a_split_and_names_what_it_has(tmp_path):
    write_frames(tmp_path / "train", range(4))
    write_frames(tmp_path / "test", range(4))
    spec = ClipSpec(frames=4, stride=1, size=16)
    with pytest.raises(DataError, match="split into train, test"):
        open_clips(tmp_path, spec)
    with pytest.raises(DataError, match=r"no 'val' split.*it has train, test"):
        open_clips(tmp_path, spec, split="val")


def test_numbers_are_times_at_source_fps(tmp_path):
    write_frames(tmp_path / "seq", range(0, 40, 2))  # every other frame of a 10 fps sequence
    at_five = open_clips(tmp_path / "seq", ClipSpec(frames=4, stride=4, size=16, fps=5, source_fps=10))
    expected = [list(range(8 * k, 8 * k + 8, 2)) for k in range(5)]  # consecutive files, 0.2 s apart
    assert [indices(at_five, i) for i in range(len(at_five))] == expected
    at_two = open_clips(tmp_path / "seq", ClipSpec(frames=4, stride=4, size=16, fps=2, source_fps=10))
    assert indices(at_two, 0) == [0, 4, 10, 14]  # ticks at frames 0, 5, 10, 15; missing 5, 15 tie: earlier
    assert at_two.describe(0) == "seq@frame=0"


def test_images_are_resized_on_the_shorter_side_and_centre_cropped(tmp_path):
    folder = tmp_path / "seq"
    folder.mkdir()
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, 10:30] = 255  # the central half is white
    for n in range(2):
        Image.fromarray(image).save(folder / f"{n}.png")
    frames = open_clips(folder, ClipSpec(frames=2, stride=1, size=10)).frames(0)
    assert frames.shape == (2, 10, 10, 3)
    expected = np.asarray(Image.fromarray(image).resize((20, 10), Image.Resampling.BILINEAR))[:, 5:15]
    np.testing.assert_array_equal(frames[0], expected)
    assert frames.min() > 200  # the crop holds the white middle, blurred by the filter only at its edges


def test_exif_orientation_is_applied(tmp_path):
    folder = tmp_path / "seq"
    folder.mkdir()
    image = np.zeros((16, 32, 3), np.uint8)
    image[:4, 8:16] = 255  # a mark on the top edge, left of the middle
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    for n in range(2):
        Image.fromarray(image).save(folder / f"{n}.jpg", exif=exif, quality=100)
    frame = open_clips(folder, ClipSpec(frames=2, stride=1, size=16)).frames(0)[0].astype(int)
    # upright the image is 32×16; the crop keeps rows 8-24
    clockwise, anticlockwise = np.rot90(image, k=-1)[8:24], np.rot90(image, k=1)[8:24]
    assert np.abs(frame - clockwise).max() < 40
    assert np.abs(frame - anticlockwise).max() > 200


def test_ambiguous_numbering_is_skipped_with_a_warning(tmp_path):
    write_frames(tmp_path / "dup", range(4))
    Image.fromarray(indexed_image(1)).save(tmp_path / "dup" / "01.png")
    write_frames(tmp_path / "good", range(4))
    with pytest.warns(DataWarning, match=r"dup.*frame 1") as caught:
        clips = open_clips(tmp_path, ClipSpec(frames=4, stride=1, size=16))
    assert len(caught) == 1 and len(clips) == 1 and clips.describe(0) == "good@frame=0"


def test_mixed_prefixes_are_rejected(tmp_path):
    write_frames(tmp_path / "seq", range(4), name="a_{}.png")
    write_frames(tmp_path / "seq", range(4, 8), name="b_{}.png")
    with pytest.raises(DataError, match="different name prefixes"):
        FrameFolder.probe(tmp_path / "seq", "seq", 16, 10.0)


def test_unreadable_images_are_caught_early_or_named_when_read(tmp_path):
    write_frames(tmp_path / "bad_first", range(4))
    (tmp_path / "bad_first" / "0.png").write_bytes(b"not a png")
    write_frames(tmp_path / "bad_later", range(8))
    (tmp_path / "bad_later" / "6.png").write_bytes(b"not a png either")
    with pytest.warns(DataWarning, match=r"bad_first.0\.png") as caught:
        clips = open_clips(tmp_path, ClipSpec(frames=4, stride=4, size=16))
    assert len(caught) == 1 and len(clips) == 2
    assert indices(clips, 0) == [0, 1, 2, 3]
    with pytest.raises(DataError, match=r"bad_later.6\.png"):
        clips.frames(1)


def test_too_short_folder_is_skipped_and_an_empty_source_is_an_error(tmp_path):
    write_frames(tmp_path / "short", range(3))
    with pytest.warns(DataWarning, match=r"short: 3 frames, fewer than one clip of 4"):
        with pytest.raises(DataError, match="no usable clip.*at least 4 frames"):
            open_clips(tmp_path, ClipSpec(frames=4, stride=1, size=16))


def test_sixteen_bit_grey_images_are_scaled_to_eight_bits_not_clipped(tmp_path):
    folder = tmp_path / "deep"
    folder.mkdir()
    grey = np.random.default_rng(0).integers(0, 65536, size=(4, 16, 16)).astype(np.uint16)  # (T, H, W)
    for n, image in enumerate(grey):
        Image.fromarray(image).save(folder / f"{n}.png")
    assert Image.open(folder / "0.png").mode.startswith("I")  # Pillow's 16-bit grey, which convert("RGB") clips
    frames = open_clips(folder, ClipSpec(frames=4, stride=4, size=16)).frames(0)  # (T, 16, 16, 3), no resize
    expected = np.rint(grey / 257).astype(np.uint8)  # 0 -> 0, 65535 -> 255
    for channel in range(3):
        np.testing.assert_array_equal(frames[..., channel], expected)


def test_a_floating_point_image_is_refused_naming_it(tmp_path):
    write_frames(tmp_path / "seq", range(4))
    Image.fromarray(np.full((16, 16), 0.5, np.float32)).save(tmp_path / "seq" / "2.png", format="TIFF")
    clips = open_clips(tmp_path / "seq", ClipSpec(frames=4, stride=4, size=16))
    with pytest.raises(DataError, match=r"seq.2\.png: cannot read it as an image \(a floating-point image"):
        clips.frames(0)

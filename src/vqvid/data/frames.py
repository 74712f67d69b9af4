"""Folders of numbered frame images (`0.png, 1.png, …` or `frame_0001.jpg, …`) as frame sources.

Image folders carry no timestamps: frame number n is shown at n / source_fps seconds, so gaps in the numbering
are gaps in time and resampling to another rate works as it does for video files.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from vqvid.data.video import DataError, centre_crop, resized_shape

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
_NUMBERED = re.compile(r"(.*?)(\d+)")  # stem = any prefix + frame number
# Gaps in the numbering are gaps in time; resampling fills them with held frames. A gap larger than this is a
# stray file (e.g. `1000000000.png`), whose resampling would ask for billions of frames.
MAX_GAP = 10_000
# Pillow opens 16-bit greyscale PNGs as "I;16" (older versions: "I"), which convert("RGB") clips at 255: a mid-grey
# 16-bit image would come out white. They are scaled to 8 bits instead, 65535 -> 255, as swscale scales 10-bit video.
# (16-bit colour PNGs Pillow opens as 8-bit "RGB" / "RGBA" itself.)
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})


def numbered_images(folder: Path) -> list[Path]:
    """The image files directly in `folder` whose stem ends in a frame number (unordered)."""
    return [
        path
        for path in folder.iterdir()
        if path.suffix.lower() in IMAGE_SUFFIXES and _NUMBERED.fullmatch(path.stem)
        and not path.name.startswith(".") and path.is_file()
    ]


@dataclass(frozen=True)
class FrameFolder:
    """One folder of numbered frames as a frame source. Built by `probe`."""

    path: Path
    name: str  # shown by describe_frame: the folder relative to the source root
    size: int  # output frames are size×size
    files: tuple[str, ...]  # image file names in frame order
    numbers: np.ndarray  # (N,) the frame number in each file name, ascending
    times: np.ndarray  # (N,) numbers / source_fps, seconds

    @classmethod
    def probe(cls, path: Path, name: str, size: int, source_fps: float) -> FrameFolder:
        """Index the numbered images in `path`; DataError when the names are ambiguous (two files with the
        same number, or different prefixes) or the first image cannot be read."""
        numbered = {}
        prefixes = set()
        for image in numbered_images(path):
            prefix, digits = _NUMBERED.fullmatch(image.stem).groups()
            prefixes.add(prefix)
            number = int(digits)
            if number in numbered:
                raise DataError(f"{path}: {numbered[number]} and {image.name} both hold frame {number}")
            numbered[number] = image.name
        if len(prefixes) > 1:
            raise DataError(f"{path}: frame images with different name prefixes {sorted(prefixes)}; expected "
                            "one numbered sequence per folder")
        if not numbered:
            raise DataError(f"{path}: no numbered frame images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        numbers = np.array(sorted(numbered), dtype=np.int64)
        gaps = np.diff(numbers)
        if len(gaps) and gaps.max() > MAX_GAP:
            at = int(gaps.argmax())
            raise DataError(f"{path}: frames {numbered[numbers[at]]} and {numbered[numbers[at + 1]]} are "
                            f"{gaps[at]:,} frame numbers apart; a frame folder's numbering may skip at most "
                            f"{MAX_GAP:,} (a stray file?)")
        folder = cls(path, name, size, tuple(numbered[n] for n in numbers), numbers, numbers / source_fps)
        folder.read(np.array([0]))  # a folder of unreadable images is rejected now, not during training
        return folder

    def describe_frame(self, index: int) -> str:
        return f"{self.name}@frame={self.numbers[index]}"

    def read(self, indices: np.ndarray) -> np.ndarray:
        """Frames `indices` (T,), upright (EXIF orientation applied), resized and centre-cropped:
        uint8 (T, size, size, 3)."""
        return np.stack([self._load(self.path / self.files[i]) for i in indices])

    def frames_in_order(self) -> Iterator[tuple[int, np.ndarray]]:
        """Every frame as (index, uint8 (size, size, 3)), in order, each image read once."""
        for index, name in enumerate(self.files):
            yield index, self._load(self.path / name)

    def _load(self, file: Path) -> np.ndarray:
        try:
            with Image.open(file) as image:
                upright = _eight_bit_rgb(ImageOps.exif_transpose(image))
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            raise DataError(f"{file}: cannot read it as an image ({error})") from error
        resized = upright.resize(resized_shape(*upright.size, self.size), Image.Resampling.BILINEAR)
        return centre_crop(np.asarray(resized), self.size)  # (size, size, 3)


def _eight_bit_rgb(image: Image.Image) -> Image.Image:
    """`image` as 8-bit RGB: 16-bit grey scaled to 8 bits (not clipped); ValueError for images whose range is
    not known (floating point, or integers beyond 16 bits)."""
    if image.mode == "F":
        raise ValueError("a floating-point image (mode F), whose range is unknown; expected 8- or 16-bit images")
    if image.mode in _SIXTEEN_BIT_MODES:
        grey = np.asarray(image, dtype=np.int64)  # (H, W)
        if grey.min() < 0 or grey.max() > 65535:
            raise ValueError(f"a mode {image.mode} image with values in [{grey.min()}, {grey.max()}]; expected 8- "
                             "or 16-bit images")
        image = Image.fromarray(np.rint(grey / 257).astype(np.uint8))  # (H, W) mode L, 65535 -> 255
    return image.convert("RGB")

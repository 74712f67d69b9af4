"""`open_clips`: one entry point from a source name to a Dataset of clips 3×T×H×W in [-1, 1].

A source is `"synthetic"` / `"synthetic:N"`, a prepared store folder, a video file, or a folder tree holding
video files and/or folders of numbered frame images. A source whose top level holds `train/`, `val/` or
`test/` folders is split: `split` picks one, and leaving it out is an error rather than a silent mix of
training and held-out data. Files that cannot give a clip are skipped with one `DataWarning` each.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from vqvid.data.frames import FrameFolder, numbered_images
from vqvid.data.store import STORE_DATA, STORE_META, ClipStore, is_store
from vqvid.data.synthetic import MovingShapes
from vqvid.data.video import (
    VIDEO_SUFFIXES,
    ClipSpec,
    DataError,
    DataWarning,
    FrameSource,
    VideoFile,
    from_uint8_frames,
)

SPLITS = ("train", "val", "test")
# Synthetic splits draw from disjoint seeds, so validation and test clips are never training clips.
SYNTHETIC_SEEDS = {"train": 0, "val": 1, "test": 2}
SYNTHETIC_DEFAULT_CLIPS = 64


class Clips(Dataset):
    """Clips cut from frame sources: each source's frames are resampled to `spec.fps` by presentation time,
    then clips of `spec.frames` consecutive frames start every `spec.stride` frames."""

    def __init__(self, sources: list[FrameSource], spec: ClipSpec) -> None:
        self.sources, self.spec = sources, spec
        self._chosen = [select_frames(source.times, spec.fps) for source in sources]  # (K,) frames per source
        starts = [
            (k, position)
            for k, chosen in enumerate(self._chosen)
            for position in range(0, len(chosen) - spec.frames + 1, spec.stride)
        ]
        self._starts = np.array(starts, dtype=np.int64).reshape(-1, 2)  # (N, 2): source, first chosen frame

    def __len__(self) -> int:
        return len(self._starts)

    def frames(self, index: int) -> np.ndarray:
        """Clip `index` as uint8 (T, size, size, 3)."""
        k, position = self._starts[index]
        return self.sources[k].read(self._chosen[k][position : position + self.spec.frames])

    def __getitem__(self, index: int) -> torch.Tensor:
        return from_uint8_frames(self.frames(index))  # (3, T, H, W) in [-1, 1]

    def describe(self, index: int) -> str:
        k, position = self._starts[index]
        return self.sources[k].describe_frame(int(self._chosen[k][position]))

    def source_index(self, index: int) -> int:
        """Which of `sources` clip `index` is cut from."""
        return int(self._starts[index][0])


def select_frames(times: np.ndarray, fps: float | None) -> np.ndarray:
    """Indices of the frames to keep (K,): all of them, or for each tick of an `fps` clock that starts at the
    first frame, the frame shown nearest to it (ties go to the earlier). Works for variable frame rates."""
    if fps is None or len(times) < 2:
        return np.arange(len(times))
    ticks = times[0] + np.arange(math.floor((times[-1] - times[0]) * fps + 1e-6) + 1) / fps  # (K,) seconds
    after = np.searchsorted(times, ticks).clip(1, len(times) - 1)
    before = after - 1
    # Ties within a microsecond count as ties, so that rounding in timestamps cannot pick the side.
    return np.where(ticks - times[before] <= times[after] - ticks + 1e-6, before, after)


def open_clips(source: str | Path, spec: ClipSpec, split: str | None = None) -> Dataset:
    """A Dataset of clips 3×spec.frames×spec.size×spec.size in [-1, 1] from `source`, with `describe(index)`
    naming where each clip came from. Raises DataError when the source gives no clip at all."""
    text = str(source)
    if text == "synthetic" or text.startswith("synthetic:"):
        return _synthetic(text, spec, split)
    root = Path(source)
    if not root.exists():
        raise DataError(f"{root}: no such file or folder; expected a video file, a folder of videos or of "
                        "numbered frame images, a prepared store, or 'synthetic[:N]'")
    root = _split_root(root, split)
    if is_store(root):
        return _store(root, spec)
    if (root / STORE_DATA).exists():
        raise DataError(f"{root}: holds {STORE_DATA} but no {STORE_META}: an unfinished or damaged store; "
                        "prepare it again")
    dataset = Clips(_usable_sources(root, spec), spec)
    if len(dataset) == 0:
        rate = f" at {spec.fps} fps" if spec.fps else ""
        suffixes = ", ".join(sorted(VIDEO_SUFFIXES))
        raise DataError(f"{root}: no usable clip; expected video files ({suffixes}) or folders of numbered "
                        f"frame images (png/jpg) with at least {spec.frames} frames{rate}")
    return dataset


def _synthetic(text: str, spec: ClipSpec, split: str | None) -> MovingShapes:
    _, _, count = text.partition(":")
    if count and not (count.isdigit() and int(count) > 0):
        raise DataError(f"source {text!r}: expected 'synthetic' or 'synthetic:N' with N a positive integer")
    if split is not None and split not in SYNTHETIC_SEEDS:
        raise DataError(f"source {text!r}: split must be one of {list(SYNTHETIC_SEEDS)}, got {split!r}")
    seed = SYNTHETIC_SEEDS[split or "train"]
    return MovingShapes(int(count or SYNTHETIC_DEFAULT_CLIPS), frames=spec.frames, size=spec.size, seed=seed)


def _split_root(root: Path, split: str | None) -> Path:
    """The folder to read for `split`: root/<split>, or root itself when it is a store prepared from it."""
    present = [name for name in SPLITS if (root / name).is_dir()] if root.is_dir() else []
    if split is None:
        if present and not is_store(root):
            raise DataError(f"{root}: split into {', '.join(present)} folders; choose one with split "
                            "(--split) rather than mixing held-out data into one set")
        return root
    if is_store(root) and ClipStore(root).split == split:
        return root
    if (root / split).is_dir():
        return root / split
    found = f"it has {', '.join(present)}" if present else "it has no split folders"
    raise DataError(f"{root}: no {split!r} split: expected a folder {root / split} ({found})")


def _store(root: Path, spec: ClipSpec) -> ClipStore:
    store = ClipStore(root)
    if (store.spec.frames, store.spec.size) != (spec.frames, spec.size):
        held, asked = (store.spec.frames, store.spec.size), (spec.frames, spec.size)
        raise DataError(f"{root}: the store holds clips of {held[0]}×{held[1]}×{held[1]} but "
                        f"{asked[0]}×{asked[1]}×{asked[1]} were asked for; prepare it again")
    return store


def _usable_sources(root: Path, spec: ClipSpec) -> list[FrameSource]:
    """Every video file and frame folder under `root` that gives at least one clip; one warning per other."""
    candidates = [(root, root.name)] if root.is_file() else _scan(root)
    usable = []
    for path, name in candidates:
        try:
            if path.is_dir():
                source = FrameFolder.probe(path, name, spec.size, spec.source_fps)
            else:
                source = VideoFile.probe(path, name, spec.size, need_exact_times=spec.fps is not None)
        except DataError as error:
            warnings.warn(f"skipping {error}", DataWarning, stacklevel=3)
            continue
        count = len(select_frames(source.times, spec.fps))
        if count < spec.frames:
            rate = f" at {spec.fps} fps" if spec.fps else ""
            warnings.warn(f"skipping {path}: {count} frames{rate}, fewer than one clip of {spec.frames}",
                          DataWarning, stacklevel=3)
            continue
        usable.append(source)
    return usable


def _scan(root: Path) -> list[tuple[Path, str]]:
    """Video files and folders of numbered frames under `root` (hidden entries skipped), in sorted order, each
    with its name relative to `root` for `describe`."""
    found = []
    for path in sorted([root, *root.rglob("*")]):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        name = relative.as_posix() if relative.parts else root.name
        if path.is_dir() and numbered_images(path):
            found.append((path, name))
        elif path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            found.append((path, name))
    return found

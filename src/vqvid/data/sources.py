"""`open_clips`: one entry point from a source name to a Dataset of clips 3×T×H×W in [-1, 1].

A source is `"synthetic"` / `"synthetic:N"`, a prepared store folder, a video file, or a folder tree holding
video files and/or folders of numbered frame images. A source whose top level holds `train/`, `val/` or
`test/` folders is split: `split` picks one, and leaving it out is an error rather than a silent mix of
training and held-out data. Files that cannot give a clip are skipped with one `DataWarning` each.

A clip can still fail when it is read (a file damaged or changed after it was probed, a decoder that gives
up after a seek). Stages that read many clips never stop for one: `SkipUnreadable` (training) and
`read_clips` (prediction, RD) skip it with one warning naming the file and time, count it and report the
count when the stage ends.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

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
SYNTHETIC_CACHE_BYTES = 512 * 2**20  # per process that reads the set


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

    def shortest_source(self) -> int:
        """The fewest frames (at the spec's rate) that any one source holds: the longest clip every source
        can give."""
        return min(len(chosen) for chosen in self._chosen)

    def clips_in_order(self, k: int) -> Iterator[tuple[int, np.ndarray]]:
        """(index, uint8 (T, size, size, 3)) for every clip cut from source `k`, in order, from one pass over
        the source that never seeks. A DataError naming the file and time ends it if the source breaks
        part-way; the clips given before are whole."""
        chosen, length = self._chosen[k], self.spec.frames  # (K,) source frames picked, in order
        mine = np.flatnonzero(self._starts[:, 0] == k)  # (M,) this source's clips, ascending
        positions: dict[int, list[int]] = {}  # source frame -> positions in `chosen` (several if resampled up)
        for position, frame in enumerate(chosen.tolist()):
            positions.setdefault(frame, []).append(position)
        held: dict[int, np.ndarray] = {}  # position in `chosen` -> frame, only while an unfinished clip needs it
        done = 0
        source = self.sources[k]
        for frame, image in source.frames_in_order():
            if done == len(mine):
                break
            for position in positions.get(frame, ()):
                held[position] = image
            while done < len(mine):
                start = int(self._starts[mine[done], 1])
                if any(p not in held for p in range(start, start + length)):
                    break
                yield int(mine[done]), np.stack([held[p] for p in range(start, start + length)])
                done += 1
                following = int(self._starts[mine[done], 1]) if done < len(mine) else len(chosen)
                held = {p: image for p, image in held.items() if p >= following}
        if done < len(mine):
            start = int(self._starts[mine[done], 1])
            missing = next(p for p in range(start, start + length) if p not in held)
            raise DataError(f"{source.describe_frame(int(chosen[missing]))}: frame did not decode "
                            f"({len(mine) - done} clips of it left out)")


class SkipUnreadable(Dataset):
    """The clips of `dataset`, where a clip whose read raises DataError is skipped: one DataWarning names the
    file and time, the clip is marked failed, and the next readable clip (in index order, wrapping) takes
    its place, so batches keep their size and the batch order stays a function of the step.

    The failure marks live in shared memory: DataLoader worker processes mark the same tensor that the main
    process counts (`failed`), so a run can stop when too many clips fail and report how many did.
    """

    def __init__(self, dataset: Dataset, stage: str) -> None:
        self.dataset, self.stage = dataset, stage
        self._failed = torch.zeros(len(dataset), dtype=torch.bool).share_memory_()  # (N,)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        n = len(self)
        for offset in range(n):
            i = (index + offset) % n
            if self._failed[i]:
                continue
            try:
                return self.dataset[i]
            except DataError as error:
                self._failed[i] = True
                warnings.warn(f"{self.stage}: skipping a clip that cannot be read: {error}", DataWarning,
                              stacklevel=2)
        raise DataError(f"{self.stage}: none of the {n} clips can be read")

    def describe(self, index: int) -> str:
        return _describe(self.dataset, index)

    @property
    def failed(self) -> list[int]:
        """Indices of the clips found unreadable so far, in any process."""
        return torch.nonzero(self._failed).flatten().tolist()

    def report(self) -> str | None:
        """One line on the clips skipped, or None when every clip read."""
        return _skip_report(self.stage, [self.describe(i) for i in self.failed], len(self))


def read_clips(dataset: Dataset, count: int, stage: str) -> list[torch.Tensor]:
    """The first `count` clips of `dataset` that can be read, each 3×T×H×W in [-1, 1]; a clip that raises
    DataError is skipped with one DataWarning naming the file and time, and one more DataWarning at the end
    counts them. DataError when none can be read."""
    clips, skipped = [], []
    for index in range(len(dataset)):
        if len(clips) == count:
            break
        try:
            clips.append(dataset[index])
        except DataError as error:
            skipped.append(_describe(dataset, index))
            warnings.warn(f"{stage}: skipping a clip that cannot be read: {error}", DataWarning, stacklevel=2)
    report = _skip_report(stage, skipped, len(clips) + len(skipped))
    if report:
        warnings.warn(report, DataWarning, stacklevel=2)
    if not clips:
        raise DataError(f"{stage}: none of the clips could be read ({report})")
    return clips


def _describe(dataset: Dataset, index: int) -> str:
    describe = getattr(dataset, "describe", None)
    if describe is None and isinstance(dataset, Subset):
        return _describe(dataset.dataset, dataset.indices[index])
    return describe(index) if describe is not None else f"clip {index}"


def _skip_report(stage: str, skipped: Sequence[str], total: int) -> str | None:
    if not skipped:
        return None
    shown = ", ".join(skipped[:3]) + (", …" if len(skipped) > 3 else "")
    return (f"{stage}: {len(skipped)} of {total} clips ({100 * len(skipped) / max(1, total):.1f}%) could not "
            f"be read and were skipped: {shown}")


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
                        f"frame images (png/jpg) with at least {spec.frames} frame{'s' * (spec.frames != 1)}{rate}")
    return dataset


def _synthetic(text: str, spec: ClipSpec, split: str | None) -> MovingShapes:
    _, _, count = text.partition(":")
    if count and not (count.isdigit() and int(count) > 0):
        raise DataError(f"source {text!r}: expected 'synthetic' or 'synthetic:N' with N a positive integer")
    if split is not None and split not in SYNTHETIC_SEEDS:
        raise DataError(f"source {text!r}: split must be one of {list(SYNTHETIC_SEEDS)}, got {split!r}")
    seed = SYNTHETIC_SEEDS[split or "train"]
    # Sets that fit in SYNTHETIC_CACHE_BYTES stay in memory once rendered: the `tiny` VQ-VAE's 800 steps read each
    # of its 512 clips 9 times, and rendering them again in a loader process competes with training for a 2-core
    # machine's cores
    return MovingShapes(int(count or SYNTHETIC_DEFAULT_CLIPS), frames=spec.frames, size=spec.size, seed=seed,
                        cache_bytes=SYNTHETIC_CACHE_BYTES)


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
                        f"{asked[0]}×{asked[1]}×{asked[1]} were asked for; prepare it again "
                        f"(`vqvid prepare SOURCE --out STORE --frames {asked[0]} --size {asked[1]}`)")
    if store.spec.fps != spec.fps:  # frames a clip apart in time: the rate the model learns motion at
        rate = lambda fps: f"resampled to {fps:g} fps" if fps else "at their videos' own rates"
        again = f"--fps {spec.fps:g}" if spec.fps else "without --fps"
        raise DataError(f"{root}: the store holds clips {rate(store.spec.fps)}, but clips {rate(spec.fps)} were "
                        f"asked for (data.fps); prepare it again {again}, or ask for data.fps="
                        f"{store.spec.fps if store.spec.fps else 'null'}")
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
                source = VideoFile.probe(path, name, spec.size)
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

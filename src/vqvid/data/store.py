"""Prepared clip stores: a source decoded once into fixed-size uint8 clips, for fast random access.

A store is a folder with two files:
- `clips.u8`: N×T×S×S×3 uint8, raw and C-ordered, read through `np.memmap`;
- `store.json`: format name and version, the ClipSpec, N, the clip shape, the source and split it was prepared
  from, and each clip's `describe` string.
A store is built whole in a hidden folder next to its destination and then put in place in one step
(`vqvid.files.replace_folder`): an interrupted prepare, killed or out of disk, leaves an existing store as it
was, and a folder holding `store.json` is always a complete store.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vqvid.data.video import ClipSpec, DataError, DataWarning, from_uint8_frames, to_uint8_frames
from vqvid.progress import Counter

if TYPE_CHECKING:
    from vqvid.data.sources import Clips

FORMAT = "vqvid-clip-store"
VERSION = 1
STORE_META = "store.json"
STORE_DATA = "clips.u8"


def is_store(path: str | Path) -> bool:
    """Whether `path` is a folder with a store's metadata file (which `ClipStore` then validates)."""
    return (Path(path) / STORE_META).is_file()


class ClipStore(Dataset):
    """A prepared store as a Dataset of clips 3×T×S×S in [-1, 1]. The memmap is opened on first access in each
    process, so the dataset can be sent to DataLoader workers whether they fork or spawn."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta = _read_meta(self.path / STORE_META)
        self.spec: ClipSpec = meta["spec"]
        self.source: str = meta["source"]
        self.split: str | None = meta["split"]
        self._descriptions: list[str] = meta["clips"]
        self._shape = (meta["num_clips"], *meta["shape"])  # (N, T, S, S, 3)
        data = self.path / STORE_DATA
        expected = int(np.prod(self._shape))
        actual = data.stat().st_size if data.is_file() else None
        if actual != expected:
            found = "it is missing" if actual is None else f"it has {actual}"
            raise DataError(f"{data}: expected {expected} bytes for {self._shape[0]} clips of "
                            f"{'×'.join(map(str, self._shape[1:]))} uint8 as {STORE_META} says, but {found}; "
                            "the store is damaged, prepare it again")
        self._clips: np.memmap | None = None
        self._opened_by: int | None = None

    def __len__(self) -> int:
        return self._shape[0]

    def frames(self, index: int) -> np.ndarray:
        """Clip `index` as stored: uint8 (T, S, S, 3)."""
        if self._clips is None or self._opened_by != os.getpid():
            self._clips = np.memmap(self.path / STORE_DATA, dtype=np.uint8, mode="r", shape=self._shape)
            self._opened_by = os.getpid()
        return np.array(self._clips[index])

    def __getitem__(self, index: int) -> torch.Tensor:
        return from_uint8_frames(self.frames(index))  # (3, T, S, S) in [-1, 1]

    def describe(self, index: int) -> str:
        return self._descriptions[index]

    def __getstate__(self) -> dict[str, Any]:
        # A memmap does not travel to spawned workers; each worker opens its own.
        return {**self.__dict__, "_clips": None, "_opened_by": None}


def prepare_store(
    source: str | Path,
    out_dir: str | Path,
    spec: ClipSpec,
    split: str | None = None,
    progress: bool = True,
    workers: int = 0,
) -> Path:
    """Decode every clip of `source` (see `open_clips`) once into a store at `out_dir`; returns `out_dir`.

    Video files and frame folders are read sequentially, each once from start to end, with no seeking, so
    that anything that decodes can be prepared; `workers` processes read different files at once. A file that
    turns out broken part-way gets one DataWarning, and its remaining clips are left out. An existing store
    at `out_dir` is replaced, once the new one is complete.
    """
    from vqvid.data.sources import open_clips  # imported here: open_clips itself opens stores
    from vqvid.files import replace_folder, staging_folder

    out = Path(out_dir)
    ours = {STORE_META, STORE_DATA, _partial(STORE_META), _partial(STORE_DATA)}
    if out.exists() and (not out.is_dir() or any(p.name not in ours for p in out.iterdir())):
        raise DataError(f"{out}: exists and is not a store; prepare writes into a new or empty folder")
    clips = open_clips(source, spec, split)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_folder(out)
    try:
        descriptions = _write_clips(clips, staging / STORE_DATA, workers, progress)
        if not descriptions:
            raise DataError(f"{source}: none of its {len(clips)} clips could be decoded")
        _write_meta(staging / STORE_META, source, spec, split, descriptions)
        replace_folder(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out


def _write_meta(path: Path, source: str | Path, spec: ClipSpec, split: str | None, descriptions: list[str]) -> None:
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "spec": dataclasses.asdict(spec),
        "num_clips": len(descriptions),
        "shape": [spec.frames, spec.size, spec.size, 3],
        "dtype": "uint8",
        "source": str(source),
        "split": split,
        "clips": descriptions,
    }
    path.write_text(json.dumps(meta, indent=1))


def _partial(name: str) -> str:
    return f".{name}.partial"  # what earlier versions left in a store folder they were interrupted writing


def _write_clips(clips: Dataset, path: Path, workers: int, progress: bool) -> list[str]:
    """Write every decodable clip's uint8 bytes to `path`, in order; returns their descriptions."""
    from vqvid.data.sources import Clips

    if isinstance(clips, Clips):
        return _write_sources(clips, path, workers, progress)
    return _write_each_clip(clips, path, workers, progress)


def _write_sources(clips: Clips, path: Path, workers: int, progress: bool) -> list[str]:
    """`_write_clips` for clips cut from files: each source decoded in one sequential pass, by one process,
    into its own part file; the parts are then joined in source order."""
    descriptions: list[str] = []
    parts = [path.with_name(f"{path.name}.{k}") for k in range(len(clips.sources))]
    counter = Counter("prepare", len(clips), "clips", enabled=progress)
    try:
        with open(path, "wb") as file:
            loader = DataLoader(_SourcePass(clips, parts), batch_size=None, num_workers=workers)
            for k, (indices, error) in enumerate(loader):
                if error:
                    warnings.warn(f"skipping the rest of {error}", DataWarning, stacklevel=4)
                with open(parts[k], "rb") as part:
                    shutil.copyfileobj(part, file)
                parts[k].unlink()
                descriptions += [clips.describe(i) for i in indices]
                counter.update(sum(1 for i in range(len(clips)) if clips.source_index(i) == k))
            file.flush()
            os.fsync(file.fileno())  # on disk before the renames publish the store, even if the machine crashes
    finally:
        for part in parts:
            part.unlink(missing_ok=True)
        counter.close()
    return descriptions


class _SourcePass(Dataset):
    """Item k: source k of `clips` decoded in one pass, its clips written to `parts[k]`; returns the indices
    of the clips written and "" — or, with them, the error that ended the pass early."""

    def __init__(self, clips: Clips, parts: list[Path]) -> None:
        self.clips, self.parts = clips, parts

    def __len__(self) -> int:
        return len(self.parts)

    def __getitem__(self, k: int) -> tuple[list[int], str]:
        written = []
        with open(self.parts[k], "wb") as part:
            try:
                for index, frames in self.clips.clips_in_order(k):
                    part.write(np.ascontiguousarray(frames).tobytes())
                    written.append(index)
            except DataError as error:
                return written, str(error)
        return written, ""


def _write_each_clip(clips: Dataset, path: Path, workers: int, progress: bool) -> list[str]:
    """`_write_clips` for any dataset of clips (synthetic, a store): clip by clip."""
    descriptions = []
    broken: set[int] = set()  # sources found broken; only clips cut from files have any
    source_of = getattr(clips, "source_index", lambda index: 0)
    with open(path, "wb") as file, Counter("prepare", len(clips), "clips", enabled=progress) as counter:
        loader = DataLoader(_Decoded(clips), batch_size=None, num_workers=workers)
        for index, (frames, error) in enumerate(loader):
            counter.update()
            owner = source_of(index)
            if owner in broken:
                continue
            if error:
                warnings.warn(f"skipping the rest of {error}", DataWarning, stacklevel=3)
                broken.add(owner)
                continue
            file.write(np.asarray(frames).tobytes())
            descriptions.append(clips.describe(index))
        file.flush()
        os.fsync(file.fileno())  # on disk before the renames publish the store, even if the machine crashes
    return descriptions


class _Decoded(Dataset):
    """Clip i as uint8 (T, S, S, 3) with "" — or None with the error, so that one broken file does not stop
    the DataLoader."""

    def __init__(self, clips: Dataset) -> None:
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> tuple[np.ndarray | None, str]:
        try:
            return to_uint8_frames(self.clips[index]), ""
        except DataError as error:
            return None, str(error)


def _read_meta(path: Path) -> dict[str, Any]:
    """The validated contents of a store's metadata file; DataError naming the file otherwise."""
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise DataError(f"{path}: missing; {path.parent} is not a prepared store (or its prepare was "
                        "interrupted)") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: not a readable JSON store description ({error})") from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(f"{path}: not a {FORMAT} description")
    if meta.get("version") != VERSION:
        raise DataError(f"{path}: store format version {meta.get('version')!r}; this vqvid reads {VERSION}")
    try:
        meta["spec"] = ClipSpec(**meta["spec"])
        count, shape, clips = meta["num_clips"], meta["shape"], meta["clips"]
        if not (isinstance(count, int) and count > 0):
            raise ValueError(f"num_clips must be a positive integer, got {count!r}")
        spec = meta["spec"]
        if shape != [spec.frames, spec.size, spec.size, 3] or meta.get("dtype") != "uint8":
            raise ValueError(f"clip shape {shape} {meta.get('dtype')} does not match the spec {spec}")
        if not (isinstance(clips, list) and len(clips) == count and all(isinstance(c, str) for c in clips)):
            raise ValueError(f"clips must list {count} descriptions")
        if not isinstance(meta["source"], str) or not isinstance(meta["split"], (str, type(None))):
            raise ValueError("source must be a string and split a string or null")
    except (KeyError, TypeError, ValueError) as error:
        raise DataError(f"{path}: invalid store description ({error})") from error
    return meta

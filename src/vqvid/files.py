"""Writing outputs so that a kill, a crash or a full disk never leaves a half-written file in place.

Every output is written to a temporary name in its own folder, flushed to disk and renamed over the target
(`os.replace`, atomic on POSIX): the target holds either its old contents or the complete new ones. A write that
fails removes the temporary file; the old one stays untouched.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def umask() -> int:
    """The process's file-mode creation mask (read without changing it for longer than one call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened or synced
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _fsync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path (same folder, same suffix, so writers that choose a format by suffix still work) to
    write `path`'s new contents to; on a clean exit it is synced and renamed over `path`, on an error removed.

        with atomic_path("out.mp4") as partial:
            write_video(partial, frames, fps)
    """
    path = Path(path)
    # A folder that cannot be made or written to is reported by `path`, not by the temporary file's name
    with _naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)  # as `-o runs/new/out.gif` asks
        descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".partial{path.suffix}",
                                            dir=path.parent)
    os.close(descriptor)
    partial = Path(name)
    try:
        with _naming(path, partial):
            yield partial
            os.chmod(partial, 0o666 & ~umask())  # mkstemp makes 0600; a new output gets the user's usual mode
            _fsync_file(partial)
            os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


@contextlib.contextmanager
def _naming(path: Path, partial: Path | None = None) -> Iterator[None]:
    """An OSError raised inside about `path`'s folder or its temporary file `partial` (a full disk, say), as one
    that says `path` cannot be written, and why; other OSErrors (an input that cannot be read) as they are."""
    try:
        yield
    except OSError as error:
        about_the_output = error.filename in (str(partial), str(path)) or (
            error.filename is None and error.errno in _WRITE_ERRORS)  # a full disk names no file
        if partial is not None and not about_the_output:
            raise
        raise OutputError(f"{path}: cannot be written ({error.strerror or error})") from None


class OutputError(OSError):
    """An output that cannot be written (`atomic_path`); the message starts with the output's own path."""


# What writing a file can meet whatever the file: no space, over quota, an I/O error, a read-only file system, a file
# too large for it
_WRITE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG})


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (see `atomic_path`)."""
    with atomic_path(path) as partial:
        partial.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically (see `atomic_path`)."""
    return write_bytes(path, text.encode("utf-8"))


_RENAME_EXCHANGE = 2  # renameat2 flag (Linux >= 3.15): swap two paths in one step
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically where the system can (Linux `renameat2`); False where it cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def staging_folder(out: str | os.PathLike) -> Path:
    """A new empty folder next to `out`, with the mode a new folder of the user's would have (umask applied),
    to build `out`'s new contents in before `replace_folder` puts them in place."""
    out = Path(out)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    os.chmod(staging, 0o777 & ~umask())
    return staging


def replace_folder(staging: Path, out: str | os.PathLike) -> Path:
    """Put the complete folder `staging` at `out`, replacing an existing `out` in one atomic swap where the
    system allows it; the old folder is removed only once the new one is in place. Its files get the modes of
    new files of the user's (umask applied)."""
    out = Path(out)
    for file in staging.iterdir():
        if file.is_file():
            os.chmod(file, 0o666 & ~umask())  # some writers (safetensors) create files 0600 whatever the umask
            _fsync_file(file)
    _fsync_folder(staging)
    if not out.exists():
        os.replace(staging, out)
    elif _exchange(staging, out):
        shutil.rmtree(staging)  # now holds the old contents
    else:  # two renames: a kill between them leaves the old folder at its hidden name, never a partial one
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old / "folder")
        os.replace(staging, out)
        shutil.rmtree(old)
    _fsync_folder(out.parent)
    return out

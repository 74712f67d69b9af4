"""The sample videos of Debian's `opencv-doc` package: real footage for tests and `benchmarks/bench_real.py`.

Five short clips of the kinds users' folders hold (MS-MPEG4 and Cinepak AVIs with dropped frames, packed
B-frames, H.264 MP4s with B-frames and edit lists). They live in one folder:
- `$VQVID_SAMPLE_VIDEOS` when that is set,
- else `$XDG_CACHE_HOME/vqvid/sample-videos` (by default `~/.cache/vqvid/sample-videos`).
`fetch_sample_videos` fills it from the package without installing anything (`apt-get download opencv-doc`,
`dpkg -x`, gunzip); the tests that need the videos are skipped, with this reason, when the folder is missing.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SAMPLE_VIDEOS = ("vtest.avi", "Megamind.avi", "box.mp4", "cup.mp4", "tree.avi")
ENV_VAR = "VQVID_SAMPLE_VIDEOS"


def sample_videos_dir() -> Path:
    """Where the sample videos are looked for and fetched to."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "vqvid" / "sample-videos"


def missing_sample_videos(folder: Path | None = None) -> list[str]:
    """The names of SAMPLE_VIDEOS not in `folder` (default `sample_videos_dir()`)."""
    folder = folder or sample_videos_dir()
    return [name for name in SAMPLE_VIDEOS if not (folder / name).is_file()]


def fetch_sample_videos(folder: Path | None = None, deb: Path | None = None) -> Path:
    """Put the five videos into `folder` (default `sample_videos_dir()`) from the `opencv-doc` package file
    `deb`, or from one that `apt-get download` fetches; returns the folder. RuntimeError when that fails."""
    folder = folder or sample_videos_dir()
    if not missing_sample_videos(folder):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        work = Path(scratch)
        if deb is None:
            _run(["apt-get", "download", "opencv-doc"], work)
            debs = sorted(work.glob("opencv-doc_*.deb"))
            if not debs:
                raise RuntimeError("apt-get download opencv-doc gave no opencv-doc_*.deb")
            deb = debs[-1]
        _run(["dpkg", "-x", str(deb), str(work / "root")], work)
        for name in SAMPLE_VIDEOS:
            found = sorted(work.glob(f"root/**/{name}")) or sorted(work.glob(f"root/**/{name}.gz"))
            if not found:
                raise RuntimeError(f"{deb}: holds no {name} or {name}.gz")
            partial = folder / f".{name}.partial"
            if found[0].suffix == ".gz":
                with gzip.open(found[0], "rb") as source, open(partial, "wb") as target:
                    shutil.copyfileobj(source, target)
            else:
                shutil.copyfile(found[0], partial)
            partial.replace(folder / name)
    return folder


def _run(command: list[str], cwd: Path) -> None:
    try:
        subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        raise RuntimeError(f"{' '.join(command)} failed: {detail.strip()}") from error

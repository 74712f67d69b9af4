"""Atomic outputs: a write that fails or a process that is killed leaves the old file whole and no debris."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from vqvid import viz
from vqvid.config import save_yaml
from vqvid.files import atomic_path, replace_folder, staging_folder, write_text
from vqvid.training.config import TrainConfig


def _disk_full_after(some_bytes: bytes):
    """A writer that gets `some_bytes` onto the disk, then finds the disk full."""

    def write(path, *args, **kwargs):
        with open(path, "wb") as file:
            file.write(some_bytes)
        raise OSError(errno.ENOSPC, "No space left on device")

    return write


def _debris(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "figures.json"
    target.write_text("old")
    with pytest.raises(OSError), atomic_path(target) as partial:
        _disk_full_after(b"half of the new")(partial)
    assert target.read_text() == "old" and _debris(tmp_path) == []
    write_text(target, "new")
    assert target.read_text() == "new" and _debris(tmp_path) == []


@pytest.mark.parametrize("name", ["out.gif", "out.mp4"])
def test_save_video_on_a_full_disk_keeps_the_old_video(tmp_path, monkeypatch, name):
    target = tmp_path / name
    video = torch.zeros(3, 2, 8, 8)  # (3, T, H, W)
    viz.save_video(target, video, 10)
    before = target.read_bytes()
    monkeypatch.setattr(viz, "write_video", _disk_full_after(b"\0" * 2048))
    with pytest.raises(OSError, match="No space left"):
        viz.save_video(target, video + 0.5, 10)
    assert target.read_bytes() == before and _debris(tmp_path) == []


def test_config_yaml_is_written_atomically(tmp_path, monkeypatch):
    target = tmp_path / "config.yaml"
    save_yaml(TrainConfig(), target)
    before = target.read_text()
    monkeypatch.setattr(Path, "write_bytes", _disk_full_after(b"batch_si"))
    with pytest.raises(OSError):
        save_yaml(TrainConfig(lr=1.0), target)
    assert target.read_text() == before and _debris(tmp_path) == []


def test_a_killed_writer_leaves_the_old_file(tmp_path):
    """SIGKILL in the middle of writing: no cleanup runs, yet the old file is whole (the partial one is a
    hidden file beside it)."""
    target = tmp_path / "out.bin"
    target.write_bytes(b"old contents")
    script = textwrap.dedent(f"""
        import sys, time
        from vqvid.files import atomic_path
        with atomic_path({str(target)!r}) as partial:
            with open(partial, "wb") as file:
                file.write(b"new" * 1000)
                file.flush()
                print("writing", flush=True)
                time.sleep(60)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout.readline().strip() == "writing"
    finally:
        process.kill()
        process.wait()
    assert target.read_bytes() == b"old contents"


def test_replace_folder_swaps_whole_folders(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "old.txt").write_text("old")
    staging = staging_folder(out)
    (staging / "new.txt").write_text("new")
    replace_folder(staging, out)
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"] and _debris(tmp_path) == []


def test_an_output_that_cannot_be_written_is_named_by_its_own_path_not_the_temporary_one(tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with pytest.raises(OSError, match=rf"^{blocked / 'out.gif'}: cannot be written \("), \
            atomic_path(blocked / "out.gif"):
        pytest.fail("no temporary file can be made under a file")
    target = tmp_path / "out.json"

    with pytest.raises(OSError, match=rf"^{target}: cannot be written \(Permission denied\)$"), \
            atomic_path(target) as partial:
        raise PermissionError(errno.EACCES, "Permission denied", str(partial))
    with pytest.raises(OSError, match=rf"^{target}: cannot be written \(No space left on device\)$"), \
            atomic_path(target) as partial:
        _disk_full_after(b"half")(partial)  # a full disk's error names no file
    with pytest.raises(FileNotFoundError, match="input.mp4"), atomic_path(target):
        open(tmp_path / "input.mp4", "rb")  # an error about another file passes as it is
    assert not target.exists() and _debris(tmp_path) == []

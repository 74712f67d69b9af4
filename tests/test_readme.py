"""The README's Python API block, run as written on a tiny model folder and videos in the places it names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from tests.tiny import CLIP_FRAMES, SIZE, tiny_checkpoints
from vqvid.data.synthetic import write_synthetic_videos
from vqvid.persistence import export_model

README = Path(__file__).resolve().parent.parent / "README.md"

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_python_api_block_runs_as_written(tmp_path, monkeypatch):
    section = README.read_text().split("## Python API", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    paths = tiny_checkpoints(tmp_path)
    (tmp_path / "demo_out").mkdir()
    export_model(paths["vqvae"], tmp_path / "demo_out" / "model", paths["top"], paths["bottom"])
    write_synthetic_videos(tmp_path / "demo_out" / "data", 1, frames=2 * CLIP_FRAMES, size=SIZE)
    monkeypatch.chdir(tmp_path)
    names: dict = {}
    exec(compile(block, "README.md", "exec"), names)
    b, t = 2, CLIP_FRAMES
    assert names["video"].shape == (b, 3, t, SIZE, SIZE)
    assert names["codes"].top.shape == (b, t // 4, SIZE // 8, SIZE // 8)
    assert names["both"].shape == names["coarse"].shape == names["video"].shape
    assert names["log_p"].shape[2:] == names["codes"].top.shape[1:]
    assert names["log_p_bottom"].shape[2:] == names["codes"].bottom.shape[1:]
    assert names["future"].video.shape == (b, 4, 3, t, SIZE, SIZE)
    assert all(torch.equal(getattr(names["back"].codes, level), getattr(names["coded"].codes, level))
               for level in ("top", "bottom"))
    assert names["back"].video.shape == (3, t, SIZE, SIZE)

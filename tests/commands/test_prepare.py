"""`vqvid prepare` end to end through `main(argv)` and the `vqvid` dispatcher."""

from __future__ import annotations

import numpy as np
import torch

from tests.data.test_video import frame_index, write_test_video
from vqvid import cli
from vqvid.commands.prepare import main
from vqvid.data import ClipSpec, ClipStore, MovingShapes, to_uint8_frames


def test_prepare_synthetic_writes_a_store_and_a_summary(tmp_path, capsys):
    out = tmp_path / "store"
    assert main(["synthetic:3", "--out", str(out), "--frames", "4", "--size", "16", "--quiet"]) == 0
    summary = capsys.readouterr()
    assert summary.out.strip() == f"prepared 3 clips of 4×16×16 from synthetic:3 into {out} (0.0 MB)"
    assert summary.err == ""
    store = ClipStore(out)
    assert store.spec == ClipSpec(frames=4, size=16)
    shapes = MovingShapes(3, frames=4, size=16)
    for i in range(3):
        np.testing.assert_array_equal(store.frames(i), to_uint8_frames(shapes[i]))


def test_prepare_resamples_a_split_video_source(tmp_path, capsys):
    for split in ("train", "val"):
        (tmp_path / "src" / split).mkdir(parents=True)
        write_test_video(tmp_path / "src" / split / "v.mp4", 30, fps=30)
    argv = ["prepare", str(tmp_path / "src"), "--out", str(tmp_path / "store"), "--split", "val",
            "--frames", "4", "--stride", "2", "--size", "32", "--fps", "10", "--quiet"]
    assert cli.main(argv) == 0
    assert "prepared 4 clips of 4×32×32" in capsys.readouterr().out  # 10 kept frames: starts 0, 2, 4, 6
    store = ClipStore(tmp_path / "store")
    assert store.split == "val" and store.spec.fps == 10
    assert [frame_index(f) for f in store.frames(1)] == [6, 9, 12, 15]  # every 3rd frame, from the 3rd kept
    assert store.describe(1) == "v.mp4@frame=6"
    assert store[0].shape == (3, 4, 32, 32) and store[0].dtype == torch.float32


def test_prepare_reports_bad_sources_and_options(tmp_path, capsys):
    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "store")]) == 2
    assert "vqvid prepare:" in capsys.readouterr().err
    for option in ("--frames", "--stride", "--size"):
        assert main(["synthetic", "--out", str(tmp_path / "store"), option, "0"]) == 2
        assert f"vqvid prepare: {option} 0: expected at least 1" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()

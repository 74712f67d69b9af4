"""`vqvid rd` through `main(argv)`: every method measured on the same frames, inputs pooled honestly."""

from __future__ import annotations

import json
import math

import pytest
from PIL import Image

from tests.commands.test_predict import model_dir  # noqa: F401  (the tiny model folder fixture)
from tests.sampling.test_predict import CLIP_FRAMES, SIZE
from vqvid.commands import rd
from vqvid.commands.rd import main
from vqvid.data import DataWarning, write_synthetic_videos


def _rows(path):
    return {(row["method"], row["setting"]): row for row in json.loads(path.read_text())}


def test_rd_measures_vqvid_fixed_codes_and_x264_on_the_same_frames(model_dir, tmp_path):  # noqa: F811
    videos = write_synthetic_videos(tmp_path / "videos", 2, frames=CLIP_FRAMES, size=SIZE, fps=10, seed=5)
    runs = {}
    for name, inputs in (("a", videos[:1]), ("b", videos[1:]), ("both", videos)):
        out = tmp_path / f"{name}.json"
        argv = ["--model", str(model_dir), *map(str, inputs), "-o", str(tmp_path / f"{name}.png"), "--json",
                str(out), "--crf", "30", "51", "--codecs", "libx264"]
        assert main(argv) == 0
        runs[name] = _rows(out)

    rows = runs["a"]
    assert set(rows) == {("vqvid", "priors"), ("vqvid", "priors, top only"), ("vqvid 9-bit", "fixed"),
                         ("vqvid 9-bit", "fixed, top only"), ("x264 medium", "crf=30"), ("x264 medium", "crf=51")}
    # the codes are the same, so both vqvid rows decode to the same frames, at both points
    for part in ("", ", top only"):
        assert rows[("vqvid", "priors" + part)]["psnr"] == rows[("vqvid 9-bit", "fixed" + part)]["psnr"]
    # the top-only point is the same file cut after its top layer: fewer bytes, and other frames
    full, top = rows[("vqvid", "priors")], rows[("vqvid", "priors, top only")]
    assert top["bytes"] < full["bytes"] and top["psnr"] != full["psnr"]
    assert rows[("vqvid 9-bit", "fixed, top only")]["bytes"] < rows[("vqvid 9-bit", "fixed")]["bytes"]
    assert rows[("x264 medium", "crf=30")]["bytes"] > rows[("x264 medium", "crf=51")]["bytes"]
    pixels = CLIP_FRAMES * SIZE * SIZE
    for row in rows.values():
        assert math.isclose(row["bits_per_pixel"], 8 * row["bytes"] / pixels)
    # pooling two inputs sums their bytes and averages quality over frames
    for key, row in runs["both"].items():
        pooled_bytes = runs["a"][key]["bytes"] + runs["b"][key]["bytes"]
        pooled_psnr = (runs["a"][key]["psnr"] + runs["b"][key]["psnr"]) / 2
        if key[0].startswith("x264"):  # coded again, and x264 need not repeat itself (README, "x264 / x265")
            assert math.isclose(row["bytes"], pooled_bytes, rel_tol=0.03)
            assert math.isclose(row["psnr"], pooled_psnr, abs_tol=0.2)
        else:
            assert row["bytes"] == pooled_bytes
            assert math.isclose(row["psnr"], pooled_psnr)
    with Image.open(tmp_path / "both.png") as image:
        assert image.format == "PNG"


def test_rd_reports_a_bad_input(model_dir, tmp_path, capsys):  # noqa: F811
    assert main(["--model", str(model_dir), str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "x.png")]) == 2
    assert "vqvid rd:" in capsys.readouterr().err


def test_rd_counts_kbit_per_second_at_the_input_frame_rate(model_dir, tmp_path, capsys):  # noqa: F811
    (video,) = write_synthetic_videos(tmp_path / "videos", 1, frames=CLIP_FRAMES, size=SIZE, fps=25, seed=5)
    out = tmp_path / "rd.json"
    assert main(["--model", str(model_dir), str(video), "-o", str(tmp_path / "rd.png"), "--json", str(out),
                 "--crf", "51", "--codecs", "libx264"]) == 0
    seconds = CLIP_FRAMES / 25  # the video's own rate, as `vqvid compress` records it; not the fallback's 10
    for row in _rows(out).values():
        assert math.isclose(row["kbps"], 8 * row["bytes"] / 1000 / seconds)
    assert f"{CLIP_FRAMES} frames of {SIZE}×{SIZE} at 25 fps measured" in capsys.readouterr().out


def test_rd_refuses_a_bad_input_before_measuring_any(model_dir, tmp_path, capsys, monkeypatch):  # noqa: F811
    (good,) = write_synthetic_videos(tmp_path / "videos", 1, frames=CLIP_FRAMES, size=SIZE, seed=5)
    bad = tmp_path / "text.mp4"
    bad.write_text("not a video")
    measured = []
    monkeypatch.setattr(rd, "measure", lambda *arguments: measured.append(arguments) or [])
    with pytest.warns(DataWarning, match=f"skipping {bad}"):
        code = main(["--model", str(model_dir), str(good), str(bad), "-o", str(tmp_path / "rd.png"),
                     "--codecs", "libx264", "--crf", "51"])
    assert code == 2
    assert f"vqvid rd: {bad}: no usable clip" in capsys.readouterr().err
    assert not measured and not (tmp_path / "rd.png").exists()


@pytest.mark.parametrize(("options", "message"), [
    (["--crf", "51", "30", "51"], "--crf 51 30 51: 51 is given more than once; expected each at most once"),
    (["--codecs", "libx264", "libx264"], "--codecs libx264 libx264: libx264 is given more than once"),
])
def test_rd_refuses_a_setting_given_twice(model_dir, tmp_path, capsys, options, message):  # noqa: F811
    # measured twice, it would count twice in the pooled bytes
    code = main(["--model", str(model_dir), "synthetic:1", "-o", str(tmp_path / "rd.png"), *options])
    assert code == 2 and capsys.readouterr().err.startswith(f"vqvid rd: {message}")
    assert not (tmp_path / "rd.png").exists()

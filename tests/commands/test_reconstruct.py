"""`vqvid reconstruct`: the level figures against direct decoding, and the CLI's printed and JSON output."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from tests.tiny import CLIP_FRAMES, SIZE, tiny_checkpoints, tiny_vqvae
from vqvid.commands.reconstruct import main, reconstruct
from vqvid.data import write_synthetic_videos
from vqvid.metrics import psnr

pytestmark = pytest.mark.usefixtures("one_thread")


def _clips(n: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    return torch.rand(n, 3, CLIP_FRAMES, SIZE, SIZE, generator=generator) * 2 - 1  # (N, 3, T, H, W)


def test_level_figures_match_direct_decoding_whatever_the_batch_size():
    model, clips = tiny_vqvae(), _clips(5)
    with torch.no_grad():
        codes = model.encode(clips)
        decoded = lambda top, bottom: model.decode_codes(top, bottom).clamp(-1, 1)
        expected = {
            "both": psnr(decoded(codes.top, codes.bottom), clips),
            "top_only": psnr(decoded(codes.top, None), clips),
            "bottom_only": psnr(decoded(None, codes.bottom), clips),
            # clip i takes the top codes of clip i + N // 2 = i + 2, cyclically
            "top_swap": psnr(decoded(codes.top[[2, 3, 4, 0, 1]], codes.bottom), clips),
            "mean_colour": psnr(clips.mean(dim=(2, 3, 4), keepdim=True).expand_as(clips), clips),
            "top_changed": sum((codes.top[i, t] != codes.top[i, t - 1]).sum().item()
                               for i in range(5) for t in range(1, codes.top.shape[1])) / codes.top[:, 1:].numel(),
        }
    for batch_size in (1, 2, 5):
        result = reconstruct(model, clips, levels=True, batch_size=batch_size, device="cpu")
        figures = result.levels._asdict()
        assert figures == pytest.approx(expected, abs=1e-3), batch_size
        assert result.levels.top_swap_cost == pytest.approx(expected["both"] - expected["top_swap"], abs=1e-3)
        assert len(result.panels) == 5 and len(result.panels[0]) == 3  # input | top only | bottom only
    plain = reconstruct(model, clips, levels=False, batch_size=2, device="cpu")
    assert plain.levels is None and len(plain.panels[0]) == 2
    assert psnr(plain.videos, clips) == pytest.approx(expected["both"], abs=1e-3)


def test_one_clip_has_no_top_swap():
    figures = reconstruct(tiny_vqvae(), _clips(1), levels=True, batch_size=1, device="cpu").levels
    assert figures.top_swap is None and figures.top_swap_cost is None


def test_levels_are_printed_and_written_as_json(tmp_path, capsys):
    paths = tiny_checkpoints(tmp_path)
    videos = write_synthetic_videos(tmp_path / "videos", 2, frames=CLIP_FRAMES, size=SIZE)
    out = tmp_path / "levels.json"
    assert main(["--vqvae", str(paths["vqvae"]), str(videos[0].parent), "-o", str(tmp_path / "levels.gif"),
                 "--levels", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    levels = figures["levels"]
    assert set(levels) == {"both", "top_only", "bottom_only", "top_swap", "top_swap_cost", "mean_colour",
                           "top_changed"}
    assert levels["both"] == pytest.approx(figures["psnr"])
    assert levels["top_swap_cost"] == pytest.approx(levels["both"] - levels["top_swap"])
    printed = capsys.readouterr().out
    assert f"top only {levels['top_only']:.2f} dB" in printed and f"costs {levels['top_swap_cost']:.2f} dB" in printed
    assert f"top codes changed from one latent frame to the next: {100 * levels['top_changed']:.1f}%" in printed
    assert main(["--vqvae", str(paths["vqvae"]), str(videos[0].parent), "-o", str(tmp_path / "plain.gif"),
                 "--json", str(out)]) == 0
    assert "levels" not in json.loads(out.read_text())


@pytest.mark.parametrize(("source", "options", "delay"), [
    ("video", [], 40),  # the 25-fps video's own rate, as `vqvid compress` records it; not the fallback's 100 ms
    ("video", ["--fps", "5"], 200),
    ("synthetic:1", [], 100),  # no rate of its own: 10 fps
])
def test_the_output_plays_at_the_input_frame_rate_unless_fps_is_given(tmp_path, capsys, source, options, delay):
    paths = tiny_checkpoints(tmp_path)
    if source == "video":
        (video,) = write_synthetic_videos(tmp_path / "videos", 1, frames=CLIP_FRAMES, size=SIZE, fps=25)
        source = str(video)
    out = tmp_path / "out.gif"
    assert main(["--vqvae", str(paths["vqvae"]), source, "-o", str(out), *options]) == 0
    with Image.open(out) as gif:
        assert gif.info["duration"] == delay  # milliseconds a frame
    assert f"wrote {out} at {1000 / delay:.4g} fps" in capsys.readouterr().out

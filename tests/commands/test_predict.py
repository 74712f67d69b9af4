"""`vqvid predict` end to end through `main(argv)`, with a model folder of tiny random-weight models."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from einops import repeat
from PIL import Image

from tests.tiny import CLIP_FRAMES, SIZE, tiny_checkpoints
from vqvid.commands.predict import main
from vqvid.data import ClipSpec, open_clips, write_synthetic_videos
from vqvid.metrics import psnr_per_frame, ssim_per_frame
from vqvid.persistence import export_model, load_model_folder
from vqvid.sampling.predict import ANCHOR_TOLERANCE, WARP_RADIUS, predict

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A model folder written by `export_model` from checkpoints of tiny random-weight models."""
    root = tmp_path_factory.mktemp("model")
    paths = tiny_checkpoints(root)
    export_model(paths["vqvae"], root / "vqvae_only", None, None)
    return export_model(paths["vqvae"], root / "model", paths["top"], paths["bottom"])


def test_predict_writes_the_panels_and_honest_figures(model_dir, tmp_path, capsys):
    out, figures_path = tmp_path / "out.gif", tmp_path / "figures.json"
    code = main(["--model", str(model_dir), "synthetic:2", "--context", "4", "--frames", str(CLIP_FRAMES),
                 "--samples", "2", "--seed", "3", "-o", str(out), "--json", str(figures_path),
                 "--no-progress", "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "positions/s" in printed and "copy last frame" in printed

    with Image.open(out) as gif:
        # original | generated top with original bottom | mean of the samples | 2 samples, 2-pixel gaps between
        # them, enlarged by a whole factor to at least 128 pixels tall for display
        zoom = -(-128 // SIZE)
        assert gif.size == (zoom * (5 * SIZE + 4 * 2), zoom * SIZE)
        assert gif.n_frames == CLIP_FRAMES

    figures = json.loads(figures_path.read_text())
    assert figures["decoding"] == "mean_of_n"
    table = figures["psnr_per_frame"]
    assert table["frame"] == [4, 5, 6, 7]
    assert figures["positions"] == 2 * (4 + 32)  # one clip, two samples
    # The same prediction through the library, and the copy-last baseline by hand.
    clip = open_clips("synthetic:2", ClipSpec(frames=CLIP_FRAMES, stride=CLIP_FRAMES, size=SIZE))[0][None]
    folder = load_model_folder(model_dir)
    prediction = predict(folder, clip, 4, CLIP_FRAMES, samples=2, seed=3, progress=False)
    truth = clip[:, :, 4:]
    expected = (psnr_per_frame(prediction.video[:, 0, :, 4:], truth)
                + psnr_per_frame(prediction.video[:, 1, :, 4:], truth)) / 2
    assert table["generated"] == pytest.approx(expected.tolist(), abs=1e-4)
    copy_last = psnr_per_frame(repeat(clip[:, :, 3], "b c h w -> b c t h w", t=4), truth)
    assert table["copy_last"] == pytest.approx(copy_last.tolist(), abs=1e-4)
    # best of N: the sample whose mean PSNR is higher, frame by frame; mean of N: the pixel mean of both
    per_sample = [psnr_per_frame(prediction.video[:, s, :, 4:], truth) for s in range(2)]
    best = max(per_sample, key=lambda values: values.mean().item())
    assert table["best_of_n"] == pytest.approx(best.tolist(), abs=1e-3)  # float32 sums in another order
    mean_video = prediction.video.clamp(-1, 1).mean(1)[:, :, 4:]
    assert table["mean_of_n"] == pytest.approx(psnr_per_frame(mean_video, truth).tolist(), abs=1e-4)
    # Anchored on the last context frame by default; the codes alone are reported next to it.
    assert figures["anchor"] == "last" and prediction.anchored
    decoded_mean = prediction.decoded.clamp(-1, 1).mean(1)[:, :, 4:]
    assert table["mean_of_n_decoded"] == pytest.approx(psnr_per_frame(decoded_mean, truth).tolist(), abs=1e-4)
    assert table["mean_of_n_decoded"] != pytest.approx(table["mean_of_n"], abs=1e-2)
    ssim_table = figures["ssim_per_frame"]
    assert set(ssim_table) == set(table) and ssim_table["frame"] == [4, 5, 6, 7]
    assert ssim_table["copy_last"] == pytest.approx(
        ssim_per_frame(repeat(clip[:, :, 3], "b c h w -> b c t h w", t=4), truth).tolist(), abs=1e-4)
    assert all(-1 <= value <= 1 for key in ("generated", "best_of_n", "mean_of_n") for value in ssim_table[key])
    assert figures["padding_cost"]["padded_psnr"] > 0


def test_a_rollout_from_a_short_video_uses_what_the_video_holds(model_dir, tmp_path, recwarn):
    (video,) = write_synthetic_videos(tmp_path / "videos", 1, size=SIZE, frames=CLIP_FRAMES, fps=10, seed=5)
    out, figures_path = tmp_path / "out.mp4", tmp_path / "figures.json"
    code = main(["--model", str(model_dir), str(video), "--context", "4", "--frames", "12", "--samples", "1",
                 "-o", str(out),
                 "--json", str(figures_path), "--no-progress", "--device", "cpu"])
    assert code == 0 and out.stat().st_size > 0
    figures = json.loads(figures_path.read_text())
    assert figures["psnr_per_frame"]["frame"] == [4, 5, 6, 7]  # the truth ends after 8 frames
    assert figures["positions"] == 2 * (4 + 32)  # two windows
    # The file is used after all: no warning that it was skipped.
    assert not [w for w in recwarn if "skipping" in str(w.message)]


def test_a_rollout_longer_than_the_videos_is_measured_on_all_they_hold(model_dir, tmp_path, capsys):
    write_synthetic_videos(tmp_path / "videos" / "long", 1, size=SIZE, frames=CLIP_FRAMES + 10, fps=10, seed=5)
    write_synthetic_videos(tmp_path / "videos" / "short", 1, size=SIZE, frames=CLIP_FRAMES + 6, fps=10, seed=6)
    figures_path = tmp_path / "figures.json"
    code = main(["--model", str(model_dir), str(tmp_path / "videos"), "--context", "4", "--frames", "20",
                 "--samples", "1", "--clips", "2", "-o", str(tmp_path / "out.gif"), "--json", str(figures_path),
                 "--no-progress"])
    assert code == 0
    assert f"no clip of 20 frames; the truth covers the first {CLIP_FRAMES + 4} only" in capsys.readouterr().out
    figures = json.loads(figures_path.read_text())
    assert figures["clips"] == 2  # both videos, the shorter one too
    # the shorter holds 14 frames: the truth of the whole latent frames among them, 12, past one model clip (8)
    assert figures["psnr_per_frame"]["frame"] == list(range(4, CLIP_FRAMES + 4))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--context", "3"], r"--context 3 frames does not fit 8-frame clips: .*use one of \[0, 4\]"),
        (["--frames", "6"], "--frames 6: expected a multiple of 4 larger than --context 4"),
        (["--frames", "4"], "--frames 4: expected a multiple of 4 larger than --context 4"),
        (["--samples", "0"], "--samples 0: expected at least 1"),
        (["--clips", "0"], "--clips 0: expected at least 1"),
        (["--top-k", "0"], r"--top-k 0: expected at least 1 \(1: the most likely code\)"),
        (["--temperature", "0"], r"--temperature 0\.0: expected a positive number"),
        (["--bottom-temperature", "-1"], r"--bottom-temperature -1\.0: expected a positive number"),
        (["--bottom-temperature", "nan"], r"--bottom-temperature nan: expected a positive number"),
        (["--anchor-tolerance", "0"], r"--anchor-tolerance 0\.0: expected a positive number or inf"),
        (["--anchor-tolerance", "nan"], r"--anchor-tolerance nan: expected a positive number or inf"),
        (["--warp-radius", "-1"], r"--warp-radius -1: expected 0 or more pixels"),
        (["--top-k", "17"], r"--top-k 17: the model has 16 codes per level; expected at most that"),
        (["--save-samples", "samples.npz"], r"--save-samples samples\.npz: expected a file ending in \.pt"),
    ],
)
def test_bad_options_exit_2_with_a_message(model_dir, tmp_path, capsys, options, message):
    out = tmp_path / "out.gif"
    code = main(["--model", str(model_dir), "synthetic:1", "-o", str(out), "--context", "4", "--frames", "8",
                 "--no-progress", *options])
    assert code == 2
    assert re.fullmatch(f"vqvid predict: {message}.*", capsys.readouterr().err.strip(), flags=re.DOTALL)
    assert not out.exists()


def test_the_output_plays_at_the_input_frame_rate_and_fewer_clips_are_noted(model_dir, tmp_path, capsys):
    (video,) = write_synthetic_videos(tmp_path / "videos", 1, size=SIZE, frames=CLIP_FRAMES, fps=25, seed=5)
    out = tmp_path / "out.gif"
    assert main(["--model", str(model_dir), str(video), "--context", "4", "--frames", str(CLIP_FRAMES),
                 "--samples", "1", "--clips", "3", "-o", str(out), "--no-progress", "--device", "cpu"]) == 0
    with Image.open(out) as gif:
        assert gif.info["duration"] == 40  # milliseconds a frame: the video's 25 fps, not the fallback's 10
    printed = capsys.readouterr().out
    assert f"{video}: holds 1 clip(s) of {CLIP_FRAMES} frames, fewer than --clips 3; predicting 1" in printed
    assert f"wrote {out} at 25 fps: 1 clip(s)" in printed
    assert main(["--model", str(model_dir), str(video), "--context", "4", "--frames", str(CLIP_FRAMES),
                 "--samples", "1", "--fps", "5", "-o", str(out), "--no-progress", "--device", "cpu"]) == 0
    with Image.open(out) as gif:
        assert gif.info["duration"] == 200
    assert "fewer than --clips" not in capsys.readouterr().out


def test_a_model_folder_without_priors_is_refused(model_dir, tmp_path, capsys):
    code = main(["--model", str(model_dir.parent / "vqvae_only"), "synthetic:1", "-o",
                 str(tmp_path / "out.gif"), "--context", "4", "--frames", "8"])
    assert code == 2
    assert "vqvid predict: model folder has no top and no bottom prior" in capsys.readouterr().err


def test_decoding_sample_shows_every_sample_and_no_mean(model_dir, tmp_path):
    out, figures_path = tmp_path / "out.gif", tmp_path / "figures.json"
    assert main(["--model", str(model_dir), "synthetic:1", "--context", "4", "--frames", str(CLIP_FRAMES),
                 "--samples", "3", "--decoding", "sample", "-o", str(out), "--json", str(figures_path),
                 "--no-progress", "--device", "cpu"]) == 0
    with Image.open(out) as gif:  # original | generated top with original bottom | 3 samples
        assert gif.size == (-(-128 // SIZE) * (5 * SIZE + 4 * 2), -(-128 // SIZE) * SIZE)
    assert json.loads(figures_path.read_text())["decoding"] == "generated"


def test_anchor_none_shows_and_measures_the_codes_alone(model_dir, tmp_path):
    figures = {}
    for name, options in (("last", []), ("warp", ["--anchor", "warp"]),
                          ("still", ["--anchor", "warp", "--warp-radius", "0"]), ("none", ["--anchor", "none"]),
                          ("everywhere", ["--anchor-tolerance", "inf"])):
        path = tmp_path / f"{name}.json"
        assert main(["--model", str(model_dir), "synthetic:1", "--context", "4", "--frames", str(CLIP_FRAMES),
                     "--samples", "2", *options, "-o", str(tmp_path / f"{name}.gif"), "--json",
                     str(path), "--no-progress", "--device", "cpu"]) == 0
        figures[name] = json.loads(path.read_text())
    assert figures["last"]["anchor_tolerance"] == ANCHOR_TOLERANCE and figures["everywhere"]["anchor_tolerance"] is None
    # the tolerance changes the anchored figures only
    last, everywhere = figures["last"]["psnr_per_frame"], figures["everywhere"]["psnr_per_frame"]
    assert everywhere["mean_of_n_decoded"] == last["mean_of_n_decoded"]
    assert everywhere["mean_of_n"] != pytest.approx(last["mean_of_n"], abs=1e-3)
    assert figures["none"]["anchor"] == "none" and "mean_of_n_decoded" not in figures["none"]["psnr_per_frame"]
    # The same samples: without the anchor, the prediction is what the anchored run reports as the codes alone.
    assert figures["none"]["psnr_per_frame"]["mean_of_n"] == pytest.approx(
        figures["last"]["psnr_per_frame"]["mean_of_n_decoded"], abs=1e-4)
    assert figures["none"]["psnr_per_frame"]["copy_last"] == figures["last"]["psnr_per_frame"]["copy_last"]
    # The warp is another reading of the same samples; searching no motion is copy-last.
    warp, still = figures["warp"]["psnr_per_frame"], figures["still"]["psnr_per_frame"]
    assert figures["warp"]["anchor"] == "warp" and figures["warp"]["warp_radius"] == WARP_RADIUS
    assert figures["still"]["warp_radius"] == 0
    assert warp["mean_of_n_decoded"] == last["mean_of_n_decoded"]
    assert warp["mean_of_n"] != pytest.approx(last["mean_of_n"], abs=1e-3)
    assert still["mean_of_n"] == pytest.approx(still["copy_last"], abs=1e-4)


def test_save_samples_writes_what_the_figures_were_measured_on(model_dir, tmp_path):
    saved, figures_path = tmp_path / "samples.pt", tmp_path / "figures.json"
    assert main(["--model", str(model_dir), "synthetic:2", "--context", "4", "--frames", str(CLIP_FRAMES),
                 "--samples", "3", "--clips", "2", "--seed", "1", "-o", str(tmp_path / "out.gif"), "--json",
                 str(figures_path), "--save-samples", str(saved), "--no-progress", "--device", "cpu"]) == 0
    data = torch.load(saved, weights_only=True)
    clips = torch.stack([open_clips("synthetic:2", ClipSpec(frames=CLIP_FRAMES, stride=CLIP_FRAMES, size=SIZE))[i]
                         for i in range(2)])
    assert data["context"] == 4 and torch.equal(data["clips"], clips)
    assert data["samples"].shape == (2, 3, 3, CLIP_FRAMES, SIZE, SIZE)
    assert data["generated_top"].shape == data["decoded"].shape == data["samples"].shape
    assert torch.equal(data["samples"][:, :, :, :4], clips[:, None, :, :4].expand(-1, 3, -1, -1, -1, -1))
    table = json.loads(figures_path.read_text())["psnr_per_frame"]
    mean = data["samples"].clamp(-1, 1).mean(1)[:, :, 4:]
    assert table["mean_of_n"] == pytest.approx(psnr_per_frame(mean, clips[:, :, 4:]).tolist(), abs=1e-4)
    decoded_mean = data["decoded"].clamp(-1, 1).mean(1)[:, :, 4:]
    assert table["mean_of_n_decoded"] == pytest.approx(psnr_per_frame(decoded_mean, clips[:, :, 4:]).tolist(),
                                                       abs=1e-4)
    assert not list(tmp_path.glob(".samples.pt.*"))  # no partial file left behind

"""The README's main job, end to end at smoke-test sizes: every stage runs through its command's main(argv)."""

import json

import numpy as np
import pytest
import torch
from einops import repeat
from PIL import Image

from vqvid.commands.demo import (
    DEMO_MARKER,
    HELD_OUT_FRAMES,
    HELD_OUT_SEED,
    Demo,
    held_out_shape_scores,
    main,
    mean_of_n_scores,
)
from vqvid.data import MovingShapes
from vqvid.data.codes import CodeStore
from vqvid.persistence import load_vqvae


def test_demo_runs_every_stage_and_reports_its_figures(tmp_path):
    out = tmp_path / "demo_out"
    # --vqvae-set reaches the VQ-VAE's training (checked on the exported model below) and the report names it
    assert main(["--fast", "--out", str(out), "--vqvae-set", "model.top_slowness=0.01"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["vqvae_overrides"] == ["model.top_slowness=0.01"]
    assert list(report["seconds"]) == ["data", "vqvae", "reconstruct", "extract", "priors", "reader", "export",
                                       "predict", "compress"]
    figures = report["figures"]
    reconstruction = figures["reconstruction"]
    assert reconstruction["code_bits"] == (4 * 8 * 8 + 8 * 16 * 16) * 9  # tiny grids at 9 bits a code
    assert 0 < reconstruction["psnr"] < 60 and 0 < reconstruction["ssim"] <= 1
    assert set(figures["prior_bits_per_code"]) == {"top", "bottom"}
    assert all(0 < bits < 20 for bits in figures["prior_bits_per_code"].values())
    continuation = figures["top_continuation"]  # latent frames 2-3 of the 16 validation clips, in code space
    assert continuation["context"] == 2 and continuation["clips"] == 16
    assert set(continuation["rows"]) == {"repeat", "sampled", "teacher_forced", "another_clip"}
    assert all(len(row["distance"]) == 2 for row in continuation["rows"].values())
    prediction = figures["prediction"]
    assert prediction["psnr_per_frame"]["frame"] == list(range(8, 16))
    # anchored on the last context frame, with the codes alone reported beside it, in PSNR and in shapes kept
    assert prediction["anchor"] == "last" and "mean_of_n_decoded" in prediction["mean_psnr"]
    assert "mean_of_n_decoded" in prediction["shapes"]
    at_one = prediction["temperature_1"]  # the same clips sampled at temperature 1
    assert at_one["psnr_per_frame"]["frame"] == list(range(8, 16))
    assert {"mean_of_n", "generated", "best_of_n"} <= set(at_one["mean_psnr"])
    assert at_one["mean_psnr"]["copy_last"] == prediction["mean_psnr"]["copy_last"]  # same truth, same baseline
    assert not (out / "predict_t1.gif").exists() and not list(out.glob("*.pt"))
    # the default takes the top codes from the context reader; the top prior's run is reported beside it
    assert figures["reader"]["steps"] == 4 and 0 < figures["reader"]["bits_per_code"] < 20
    assert prediction["top_codes_from"] == ["reader"]
    top_prior = prediction["top_prior"]
    assert top_prior["top_codes_from"] == ["top prior"] and not (out / "predict_prior.gif").exists()
    assert top_prior["mean_psnr"]["copy_last"] == prediction["mean_psnr"]["copy_last"]
    assert top_prior["mean_psnr"]["mean_of_n"] != prediction["mean_psnr"]["mean_of_n"]
    # known shapes of the held-out clips, kept or not
    for shapes in (prediction["shapes"], at_one["shapes"], top_prior["shapes"]):
        assert shapes["frame"] == list(range(8, 16)) and min(shapes["shapes"]) > 0
        assert all(0 <= v <= 1 for key in ("mean_of_n", "generated", "copy_last") for v in shapes[key]["kept"])
    compression = figures["compression"]
    assert {row["method"] for row in compression["rd"]} >= {"vqvid", "vqvid 9-bit", "x264 medium"}
    assert 0 < compression["share_of_fixed_width"]
    for gif in ("reconstruction.gif", "levels.gif", "predict.gif"):
        with Image.open(out / gif) as image:
            assert image.n_frames >= 16
    assert (out / "model" / "model.json").exists() and (out / "heldout.vqv").exists()
    report_md = (out / "report.md").read_text()
    assert f"{reconstruction['psnr']:.2f}" in report_md
    assert "| single sample, T = 1 | " in report_md and "Do the shapes keep their identity?" in report_md
    near = prediction["shapes_near"]  # identity rather than place, on fewer readings
    assert near["stray"] == 1 and {"mean_of_n", "copy_last"} <= set(near) and "generated" not in near
    assert "Kept as themselves rather than in place" in report_md
    assert f"| mean of the samples, codes alone | {prediction['psnr_per_frame']['mean_of_n_decoded'][0]:.1f}" \
        in report_md
    assert "| single sample, T = 1 | " in report_md and f"{at_one['mean_psnr']['generated']:.2f}" in report_md
    assert f"| mean of the samples, top prior | {top_prior['psnr_per_frame']['mean_of_n'][0]:.1f}" in report_md
    assert "Context reader (`vqvid train reader`, 4 steps)" in report_md
    assert "(its VQ-VAE with `model.top_slowness=0.01`)" in report_md
    repeat = continuation["rows"]["repeat"]
    assert (f"| the last context latent frame repeated (the line to beat) | {repeat['distance'][0]:.4f} "
            f"({100 * repeat['equal'][0]:.0f}%) |") in report_md
    vqvae = load_vqvae(out / "model").model
    assert vqvae.config.top_slowness == 0.01
    with CodeStore.open(out / "codes" / "train") as store:  # what the priors' embeddings started from
        codebooks = store.codebooks()
    np.testing.assert_array_equal(codebooks.top, vqvae.top_quantizer.codebook.numpy())
    np.testing.assert_array_equal(codebooks.bottom, vqvae.bottom_quantizer.codebook.numpy())


@pytest.fixture
def stages(monkeypatch):
    """The names of the stages `main` runs, none of which does any work; nor is a report written."""
    ran = []
    monkeypatch.setattr(Demo, "stage", lambda self, name, run: ran.append(name))
    monkeypatch.setattr(Demo, "report", lambda self: None)
    return ran


def test_demo_refuses_a_folder_that_is_not_a_demos_before_any_work(tmp_path, stages, capsys):
    out = tmp_path / "myproj"  # a user's own runs, which the demo's stages would delete
    (out / "vqvae" / "checkpoints").mkdir(parents=True)
    (out / "vqvae" / "checkpoints" / "last.ckpt").write_text("x")
    assert main(["--fast", "--out", str(out)]) == 2
    assert f"--out {out}: not empty and not an earlier demo's output" in capsys.readouterr().err
    assert stages == [] and (out / "vqvae" / "checkpoints" / "last.ckpt").read_text() == "x"
    assert sorted(p.name for p in out.iterdir()) == ["vqvae"]
    (out / "report.json").write_text('{"psnr": 30}')  # a report.json, but not a demo's
    assert main(["--fast", "--out", str(out)]) == 2 and stages == []


def test_demo_runs_again_into_an_earlier_demos_folder(tmp_path, stages):
    out = tmp_path / "demo_out"
    assert main(["--fast", "--out", str(out)]) == 0
    assert (out / DEMO_MARKER).is_file()  # written before the first stage
    (out / "vqvae" / "checkpoints").mkdir(parents=True)  # as a demo interrupted in its vqvae stage leaves it
    assert main(["--fast", "--out", str(out)]) == 0
    assert stages == 2 * ["data", "vqvae", "reconstruct", "extract", "priors", "reader", "export", "predict",
                          "compress"]
    # a demo finished before the marker was written is known by its report.json
    (out / DEMO_MARKER).unlink()
    (out / "report.json").write_text(json.dumps({"figures": {}, "seconds": {}, "fast": True,
                                                 "vqvae_overrides": []}))
    assert main(["--fast", "--out", str(out)]) == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--fast", "--out", str(empty)]) == 0


def test_demo_refuses_an_out_that_is_a_file(tmp_path, stages, capsys):
    video = tmp_path / "text.mp4"
    video.write_text("x")
    assert main(["--fast", "--out", str(video)]) == 2
    assert capsys.readouterr().err.strip() == f"vqvid demo: --out {video}: exists and is not a folder"
    assert main(["--fast", "--out", str(video / "demo_out")]) == 2
    assert f"--out {video / 'demo_out'}: {video} is a file" in capsys.readouterr().err
    assert stages == [] and video.read_text() == "x"


@pytest.mark.parametrize(("override", "expected"), [
    ("model.channels", "--vqvae-set: override 'model.channels': expected KEY=VALUE"),
    ("model.chanels=16", "--vqvae-set: config.model: unknown field(s) ['chanels']"),
    ("model.channels=many", "--vqvae-set: config.model.channels: expected an integer"),
])
def test_demo_refuses_vqvae_overrides_that_training_would_refuse_before_any_work(tmp_path, stages, capsys,
                                                                                override, expected):
    out = tmp_path / "demo_out"
    assert main(["--fast", "--out", str(out), "--vqvae-set", override]) == 2
    assert expected in capsys.readouterr().err
    assert stages == [] and not out.exists()


def test_demo_refuses_vqvae_steps_below_one_and_passes_on_those_given(tmp_path, stages, capsys):
    out = tmp_path / "demo_out"
    for steps in ("0", "-3"):
        assert main(["--fast", "--out", str(out), "--vqvae-steps", steps]) == 2
        assert f"--vqvae-steps {steps}: expected at least 1" in capsys.readouterr().err
    assert stages == [] and not out.exists()
    max_steps = lambda argv: argv[argv.index("--max-steps") + 1] if "--max-steps" in argv else None
    assert max_steps(Demo(out, fast=True, vqvae_steps=1).vqvae_argv(out)) == "1"
    assert max_steps(Demo(out, fast=True).vqvae_argv(out)) == "20"  # not given: --fast's own
    assert max_steps(Demo(out, fast=False).vqvae_argv(out)) is None  # not given: the preset's


def test_held_out_shape_scores_find_every_shape_of_the_held_out_clips():
    videos = MovingShapes(2, frames=HELD_OUT_FRAMES, size=32, seed=HELD_OUT_SEED)
    clips = torch.stack([videos[i // 2][:, 16 * (i % 2) : 16 * (i % 2) + 16] for i in range(4)])
    saved = {"clips": clips, "samples": repeat(clips, "b ... -> b s ...", s=2), "generated_top": None,
             "context": 8}
    scores = held_out_shape_scores(saved)
    assert scores["frame"] == list(range(8, 16)) and min(scores["shapes"]) >= 4
    assert scores["mean_of_n"]["kept"] == [1.0] * 8 and scores["generated"]["kept"] == [1.0] * 8
    assert "generated_top" not in scores and "mean_of_n_decoded" not in scores
    # samples that were anchored come with their decoding, whose shapes are scored too
    blurred = saved["samples"] * 0.1  # a decoding that has lost every shape's contrast
    scores = held_out_shape_scores({**saved, "decoded": blurred})
    assert scores["mean_of_n"]["kept"] == [1.0] * 8 and scores["mean_of_n_decoded"]["kept"] != [1.0] * 8
    # the shapes move: repeating frame 7 loses some of them by frame 15
    assert scores["copy_last"]["kept"][-1] < 1 and scores["copy_last"]["psnr"][-1] < scores["copy_last"]["psnr"][0]
    # another video's copy-last is a scene of other shapes: what a reading keeps by chance
    chance = scores["another_video"]["kept"]
    assert sum(chance) < sum(scores["copy_last"]["kept"]) - 2
    # allowed to stray, a copy of frame 7 keeps more of the moving shapes, and only the readings asked for
    near = held_out_shape_scores({**saved, "decoded": blurred}, stray=2, only=("copy_last", "another_video"))
    assert set(near) == {"frame", "shapes", "copy_last", "another_video"} and near["shapes"] == scores["shapes"]
    assert sum(near["copy_last"]["kept"]) > sum(scores["copy_last"]["kept"])
    # both reach the report: the chance row under the in-place table, and the identity table with its own
    from vqvid.commands.demo import CHANCE_ROW, _identity_table, _shape_rows

    chance_label = "| another held-out video's last context frame (chance) |"
    assert _shape_rows(scores, CHANCE_ROW)[0].startswith(chance_label)
    table = "\n".join(_identity_table({"stray": 2, **near}))
    assert "(t = 1 in frame 8)" in table and "within 2 × t pixels" in table and chance_label in table
    # clips that are not the held-out videos are refused, not scored against another clip's shapes
    saved["clips"] = saved["clips"].flip(0)
    with pytest.raises(RuntimeError, match="held-out clip 0 is not frames 0-15 of video 0"):
        held_out_shape_scores(saved)


def test_the_warped_reading_follows_the_shapes_of_a_near_perfect_decoding():
    """mean_of_n_scores of the warp of a decoding that is each held-out clip slightly blurred (what a perfect
    prior would sample): the last context frame warped along it keeps nearly every shape, and along another
    video's decoding it does not. So near-perfect a decoding is still better anchored in place: the warp can only
    move frame 7's pixels, and the background's drifting wave is not among them."""
    from vqvid.sampling.predict import anchor_on_context, warp_along_decoding

    videos = MovingShapes(3, frames=HELD_OUT_FRAMES, size=32, seed=HELD_OUT_SEED)
    clips = torch.stack([videos[i // 2][:, 16 * (i % 2) : 16 * (i % 2) + 16] for i in range(6)])
    decoded = torch.nn.functional.avg_pool3d(clips, (1, 3, 3), stride=1, padding=(0, 1, 1),
                                             count_include_pad=False)
    decoded = repeat(decoded, "b ... -> b s ...", s=2)
    saved = {"clips": clips, "samples": anchor_on_context(decoded, clips, 8), "generated_top": None,
             "decoded": decoded, "context": 8}
    warped_reading = lambda saved: mean_of_n_scores(saved, warp_along_decoding(saved["decoded"], clips, 8))
    frames, warped = warped_reading(saved)
    assert len(frames["psnr_per_frame"]) == len(frames["ssim_per_frame"]) == 8
    _, elsewhere = warped_reading({**saved, "decoded": decoded.roll(2, 0)})  # another video's motion
    in_place = held_out_shape_scores(saved)["mean_of_n"]
    assert sum(warped["kept"]) / 8 > 0.9 and sum(elsewhere["kept"]) < sum(warped["kept"]) - 0.5
    assert sum(elsewhere["psnr"]) < sum(warped["psnr"]) < sum(in_place["psnr"])

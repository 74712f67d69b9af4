"""The README's main job, end to end at smoke-test sizes: every stage runs through its command's main(argv)."""

import json

import numpy as np
from PIL import Image

from vqvid.commands.demo import main
from vqvid.data.codes import CodeStore
from vqvid.persistence import load_vqvae


def test_demo_runs_every_stage_and_reports_its_figures(tmp_path):
    out = tmp_path / "demo_out"
    assert main(["--fast", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert list(report["seconds"]) == ["data", "vqvae", "reconstruct", "extract", "priors", "export", "predict",
                                       "compress"]
    figures = report["figures"]
    reconstruction = figures["reconstruction"]
    assert reconstruction["code_bits"] == (4 * 8 * 8 + 8 * 16 * 16) * 9  # tiny grids at 9 bits a code
    assert 0 < reconstruction["psnr"] < 60 and 0 < reconstruction["ssim"] <= 1
    assert set(figures["prior_bits_per_code"]) == {"top", "bottom"}
    assert all(0 < bits < 20 for bits in figures["prior_bits_per_code"].values())
    prediction = figures["prediction"]
    assert prediction["psnr_per_frame"]["frame"] == list(range(8, 16))
    at_one = prediction["temperature_1"]  # the same clips sampled at temperature 1
    assert at_one["psnr_per_frame"]["frame"] == list(range(8, 16))
    assert {"mean_of_n", "generated", "best_of_n"} <= set(at_one["mean_psnr"])
    assert at_one["mean_psnr"]["copy_last"] == prediction["mean_psnr"]["copy_last"]  # same truth, same baseline
    assert not (out / "predict_t1.gif").exists()
    compression = figures["compression"]
    assert {row["method"] for row in compression["rd"]} >= {"vqvid", "vqvid 9-bit", "x264 medium"}
    assert 0 < compression["share_of_fixed_width"]
    for gif in ("reconstruction.gif", "levels.gif", "predict.gif"):
        with Image.open(out / gif) as image:
            assert image.n_frames >= 16
    assert (out / "model" / "model.json").exists() and (out / "heldout.vqv").exists()
    report_md = (out / "report.md").read_text()
    assert f"{reconstruction['psnr']:.2f}" in report_md
    assert "| single sample, T = 1 | " in report_md and f"{at_one['mean_psnr']['generated']:.2f}" in report_md
    vqvae = load_vqvae(out / "model").model
    with CodeStore.open(out / "codes" / "train") as store:  # what the priors' embeddings started from
        codebooks = store.codebooks()
    np.testing.assert_array_equal(codebooks.top, vqvae.top_quantizer.codebook.numpy())
    np.testing.assert_array_equal(codebooks.bottom, vqvae.bottom_quantizer.codebook.numpy())

"""`vqvid export` through `main(argv)`: what it refuses before writing anything, each in one line naming the
option: a folder or a model folder's weights where a checkpoint belongs, a bottom prior without a top one, priors
that do not fit the VQ-VAE's clips."""

from __future__ import annotations

import pytest
import torch

from tests.tiny import CLIP_FRAMES
from vqvid.commands import export

pytestmark = pytest.mark.usefixtures("one_thread")


def refused(code: int, capsys, start: str) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"vqvid export: {start}") and err.count("\n") == 1, err
    return err


def test_a_bottom_prior_without_a_top_one_is_refused(models, tmp_path, capsys):
    out = tmp_path / "model"
    code = export.main(["--vqvae", str(models["vqvae"]), "--bottom", str(models["bottom"]), "--out", str(out)])
    err = refused(code, capsys, f"--bottom {models['bottom']} without --top: ")
    assert "give --top too" in err
    assert not out.exists()


def test_a_folder_where_a_checkpoint_belongs_is_named_as_a_folder(models, tmp_path, capsys):
    out = tmp_path / "model"
    code = export.main(["--vqvae", str(models["vqvae"]), "--top", str(models["model"]), "--out", str(out)])
    refused(code, capsys, f"--top {models['model']}: a model folder, not a checkpoint; expected a vqvid prior "
                          "checkpoint (.ckpt)")
    code = export.main(["--vqvae", str(models["vqvae"]), "--top", str(tmp_path), "--out", str(out)])
    refused(code, capsys, f"--top {tmp_path}: a folder, not a checkpoint; expected a vqvid prior checkpoint (.ckpt)")
    assert not out.exists()


@pytest.mark.parametrize(("option", "weights", "kind"), [("--vqvae", "vqvae", "vqvae"), ("--top", "top", "prior")])
def test_a_model_folders_weights_where_a_checkpoint_belongs_point_to_the_folder(models, tmp_path, capsys, option,
                                                                               weights, kind):
    path = models["model"] / f"{weights}.safetensors"
    arguments = {"--vqvae": str(models["vqvae"]), option: str(path)}
    code = export.main([*[arg for item in arguments.items() for arg in item], "--out", str(tmp_path / "model")])
    err = refused(code, capsys, f"{option} {path}: weights of a model folder, not a checkpoint; expected a vqvid "
                                f"{kind} checkpoint (.ckpt)")
    assert f"--model {models['model']}" in err and "cut short" not in err


def test_priors_that_do_not_fit_the_vqvaes_clips_are_refused_before_writing(models, tmp_path, capsys):
    checkpoint = torch.load(models["vqvae"], weights_only=True)  # the priors' VQ-VAE, recorded with clips twice
    checkpoint["hyper_parameters"]["data"]["frames"] = 2 * CLIP_FRAMES  # as long as the priors' grids hold
    longer = tmp_path / "longer.ckpt"
    torch.save(checkpoint, longer)
    out = tmp_path / "model"
    code = export.main(["--vqvae", str(longer), "--top", str(models["top"]), "--bottom", str(models["bottom"]),
                        "--out", str(out)])
    refused(code, capsys, f"--vqvae {longer} --top {models['top']} --bottom {models['bottom']}: the top prior "
                          "models grids (2, 2, 2)")
    assert not out.exists()

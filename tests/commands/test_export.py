"""`vqvid export` through `main(argv)`: what it refuses before writing anything, each in one line naming the
option: a folder or a model folder's weights where a checkpoint belongs, a bottom prior without a top one, priors
that do not fit the VQ-VAE's clips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.tiny import CLIP_FRAMES, tiny_checkpoints
from vqvid.commands import export
from vqvid.persistence import export_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("files")
    paths = tiny_checkpoints(root)
    paths["model"] = export_model(paths["vqvae"], root / "model", paths["top"], paths["bottom"])
    return paths


def refused(code: int, capsys, start: str) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"vqvid export: {start}") and err.count("\n") == 1, err
    return err


def test_a_bottom_prior_without_a_top_one_is_refused(files, tmp_path, capsys):
    out = tmp_path / "model"
    code = export.main(["--vqvae", str(files["vqvae"]), "--bottom", str(files["bottom"]), "--out", str(out)])
    err = refused(code, capsys, f"--bottom {files['bottom']} without --top: ")
    assert "give --top too" in err
    assert not out.exists()


def test_a_folder_where_a_checkpoint_belongs_is_named_as_a_folder(files, tmp_path, capsys):
    out = tmp_path / "model"
    code = export.main(["--vqvae", str(files["vqvae"]), "--top", str(files["model"]), "--out", str(out)])
    refused(code, capsys, f"--top {files['model']}: a model folder, not a checkpoint; expected a vqvid prior "
                          "checkpoint (.ckpt)")
    code = export.main(["--vqvae", str(files["vqvae"]), "--top", str(tmp_path), "--out", str(out)])
    refused(code, capsys, f"--top {tmp_path}: a folder, not a checkpoint; expected a vqvid prior checkpoint (.ckpt)")
    assert not out.exists()


@pytest.mark.parametrize(("option", "weights", "kind"), [("--vqvae", "vqvae", "vqvae"), ("--top", "top", "prior")])
def test_a_model_folders_weights_where_a_checkpoint_belongs_point_to_the_folder(files, tmp_path, capsys, option,
                                                                               weights, kind):
    path = files["model"] / f"{weights}.safetensors"
    arguments = {"--vqvae": str(files["vqvae"]), option: str(path)}
    code = export.main([*[arg for item in arguments.items() for arg in item], "--out", str(tmp_path / "model")])
    err = refused(code, capsys, f"{option} {path}: weights of a model folder, not a checkpoint; expected a vqvid "
                                f"{kind} checkpoint (.ckpt)")
    assert f"--model {files['model']}" in err and "cut short" not in err


def test_priors_that_do_not_fit_the_vqvaes_clips_are_refused_before_writing(files, tmp_path, capsys):
    checkpoint = torch.load(files["vqvae"], weights_only=True)  # the priors' VQ-VAE, recorded with clips twice
    checkpoint["hyper_parameters"]["data"]["frames"] = 2 * CLIP_FRAMES  # as long as the priors' grids hold
    longer = tmp_path / "longer.ckpt"
    torch.save(checkpoint, longer)
    out = tmp_path / "model"
    code = export.main(["--vqvae", str(longer), "--top", str(files["top"]), "--bottom", str(files["bottom"]),
                        "--out", str(out)])
    refused(code, capsys, f"--vqvae {longer} --top {files['top']} --bottom {files['bottom']}: the top prior "
                          "models grids (2, 2, 2)")
    assert not out.exists()

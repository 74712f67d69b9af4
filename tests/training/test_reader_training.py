"""`vqvid train reader`: a context reader trained on video clips against a frozen VQ-VAE's top codes, exported
into a model folder and used by `vqvid predict`."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from tests.tiny import CLIP_FRAMES, SIZE, tiny_checkpoints
from vqvid.commands import export, info, predict, train
from vqvid.geometry import clip_geometry
from vqvid.models.reader import ContextReader
from vqvid.persistence import (
    LoadedReader,
    export_model,
    folder_fingerprint,
    load_model_folder,
    load_reader,
    load_vqvae,
    read_checkpoint,
)
from vqvid.training.runner import VALIDATION_HISTORY

pytestmark = pytest.mark.usefixtures("one_thread")

QUICK = ["--no-progress", "--max-steps", "3", "train.val_every=3", "train.val_batches=1", "train.num_workers=0",
         "train.batch_size=2", "train.logger=csv", "--accelerator", "cpu", "--devices", "1", "model.context=4",
         "model.channels=8", "model.layers=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A reader of 3 steps on synthetic clips, against the tiny VQ-VAE's top codes."""
    root = tmp_path_factory.mktemp("reader")
    paths = tiny_checkpoints(root)
    paths["run"] = root / "run"
    code = train.main(["reader", "--vqvae", str(paths["vqvae"]), "--data", "synthetic:16", "--out",
                       str(paths["run"]), *QUICK])
    assert code == 0
    paths["trained"] = paths["run"] / "checkpoints" / "last.ckpt"
    return paths


def test_it_trains_against_the_vqvaes_top_codes_and_saves_the_reader_alone(trained):
    checkpoint = read_checkpoint(trained["trained"], "reader")
    vqvae = load_vqvae(trained["vqvae"])
    assert checkpoint["hyper_parameters"]["vqvae_fingerprint"] == vqvae.fingerprint
    assert checkpoint["global_step"] == 3
    assert all(name.startswith("model.") for name in checkpoint["state_dict"])  # no VQ-VAE inside
    reader = load_reader(trained["trained"])
    assert (reader.config.context, reader.config.frames, reader.config.num_codes) == (4, CLIP_FRAMES, 16)
    assert reader.config.stem == "patch"  # the `tiny` preset's
    last = json.loads((trained["run"] / VALIDATION_HISTORY).read_text())[-1]
    assert last["step"] == 3 and 0 < last["val/bits_per_code"] < 20 and 0 <= last["val/accuracy"] <= 1
    # its weights moved from their initial values (seed 0)
    torch.manual_seed(0)
    assert not torch.equal(ContextReader(reader.config).out.weight, reader.model.out.weight)


def test_the_exported_reader_round_trips_and_predict_uses_it(trained, tmp_path, capsys):
    model = tmp_path / "model"
    assert export.main(["--vqvae", str(trained["vqvae"]), "--top", str(trained["top"]), "--bottom",
                        str(trained["bottom"]), "--reader", str(trained["trained"]), "--out", str(model)]) == 0
    assert "vqvae, top, bottom, reader" in capsys.readouterr().out
    folder, reader = load_model_folder(model), load_reader(trained["trained"])
    assert folder.reader.fingerprint == reader.fingerprint
    for name, tensor in reader.model.state_dict().items():
        assert torch.equal(folder.reader.model.state_dict()[name], tensor)
    assert info.main([str(model)]) == 0
    assert "reader" in capsys.readouterr().out
    figures = tmp_path / "p.json"
    argv = ["--model", str(model), "synthetic", "--context", "4", "--frames", str(CLIP_FRAMES), "--samples", "2",
            "-o", str(tmp_path / "p.gif"), "--json", str(figures), "--no-progress"]
    assert predict.main(argv) == 0
    assert "top codes after the context from the context reader" in capsys.readouterr().out
    written = json.loads(figures.read_text())
    assert written["top_codes_from"] == ["reader"] and written["reader_temperature"] == 0
    assert written["reader_passes"] == 1
    assert predict.main([*argv, "--no-reader"]) == 0
    assert json.loads(figures.read_text())["top_codes_from"] == ["top prior"]
    assert predict.main([*argv, "--reader-temperature", "-1"]) == 2
    assert "--reader-temperature -1.0: expected 0 (the most likely codes) or a positive number" in \
        capsys.readouterr().err
    # a folder without a reader is fingerprinted from its three parts, as before readers existed
    without = load_model_folder(export_model(trained["vqvae"], tmp_path / "without", trained["top"],
                                             trained["bottom"]))
    parts = {"vqvae": without.vqvae.fingerprint, "top": without.top.fingerprint, "bottom": without.bottom.fingerprint}
    assert without.fingerprint == folder_fingerprint(parts) != folder.fingerprint
    assert folder.fingerprint == folder_fingerprint({**parts, "reader": reader.fingerprint})


def _refused(code: int, capsys, *needles: str) -> None:
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


def test_a_reader_of_another_vqvae_or_in_the_wrong_place_is_refused(trained, tmp_path, capsys):
    other = tiny_checkpoints(tmp_path)  # the same VQ-VAE: give it other weights
    state = torch.load(other["vqvae"], weights_only=True)
    state["state_dict"] = {k: v + 1 if v.is_floating_point() else v for k, v in state["state_dict"].items()}
    torch.save(state, other["vqvae"])
    out = tmp_path / "model"
    _refused(export.main(["--vqvae", str(other["vqvae"]), "--reader", str(trained["trained"]), "--out", str(out)]),
             capsys, f"--reader {trained['trained']}: this context reader was trained on top codes of VQ-VAE")
    _refused(export.main(["--vqvae", str(trained["vqvae"]), "--top", str(trained["trained"]), "--out", str(out)]),
             capsys, "expected a vqvid prior checkpoint, but it is a vqvid reader checkpoint")
    _refused(export.main(["--vqvae", str(trained["vqvae"]), "--reader", str(trained["top"]), "--out", str(out)]),
             capsys, "expected a vqvid reader checkpoint, but it is a vqvid prior checkpoint")
    assert not out.exists()
    _refused(train.main(["reader", "--vqvae", str(other["vqvae"]), "--data", "synthetic:16", "--out",
                         str(trained["run"]), "--resume", *QUICK, "--max-steps", "6"]),
             capsys, "the reader was trained on top codes of VQ-VAE")


def test_a_context_that_does_not_fit_the_vqvaes_clips_is_refused_before_anything_is_written(trained, tmp_path,
                                                                                              capsys):
    run = tmp_path / "run"
    code = train.main(["reader", "--vqvae", str(trained["vqvae"]), "--data", "synthetic:16", "--out", str(run),
                       *QUICK, "model.context=8"])
    _refused(code, capsys, f"--vqvae {trained['vqvae']}: its {CLIP_FRAMES}-frame clips do not fit the reader's "
                           "model.context=8")
    assert not run.exists()
    _refused(train.main(["reader", "--vqvae", str(trained["top"]), "--data", "synthetic:16", "--out", str(run),
                         *QUICK]), capsys, "expected a vqvid vqvae checkpoint, but it is a vqvid prior checkpoint")


def test_a_damaged_reader_in_a_model_folder_is_refused(trained, tmp_path):
    model = export_model(trained["vqvae"], tmp_path / "model", trained["top"], trained["bottom"],
                         reader=trained["trained"])
    weights = model / "reader.safetensors"
    data = bytearray(weights.read_bytes())
    data[-8] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="reader.safetensors has fingerprint .* model.json expects"):
        load_model_folder(model)
    meta = json.loads((model / "model.json").read_text())
    meta["reader"]["vqvae_fingerprint"] = "0" * 16
    (model / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="the context reader models codes of VQ-VAE 0000000000000000, but the "
                                         "folder's VQ-VAE is"):
        load_model_folder(model)


def test_a_reader_of_other_clips_than_the_vqvaes_is_refused(trained):
    folder = load_model_folder(export_model(trained["vqvae"], trained["run"].parent / "geometry", trained["top"],
                                            trained["bottom"], reader=trained["trained"]))
    longer = ContextReader(replace(folder.reader.config, frames=2 * CLIP_FRAMES))
    folder.reader = LoadedReader(longer, longer.config, "reader", folder.vqvae.fingerprint)
    with pytest.raises(ValueError, match=f"the context reader predicts the top codes of {2 * CLIP_FRAMES}-frame "
                                         f"clips of 16 codes, but the VQ-VAE codes {CLIP_FRAMES}-frame clips"):
        clip_geometry(folder)
    assert (SIZE, SIZE) == clip_geometry(replace(folder, reader=None))[1:3]

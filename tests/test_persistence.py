"""Reading, verifying and fingerprinting checkpoints and model folders: every path refuses hostile, damaged and
foreign files with one line (exit 2 from the CLI), and fingerprints survive config fields added later."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from tests.tiny import tiny_checkpoints, tiny_vqvae, write_checkpoint
from vqvid.commands import export, reconstruct, train
from vqvid.config import to_dict
from vqvid.persistence import (
    ModelFolderError,
    export_model,
    fingerprint,
    load_model_folder,
    load_prior,
    load_vqvae,
    read_checkpoint,
)

pytestmark = pytest.mark.usefixtures("one_thread")


class _Payload:
    """A pickle that would create a file if it were ever unpickled with full pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("files")
    paths = tiny_checkpoints(root)
    paths["model"] = export_model(paths["vqvae"], root / "model", paths["top"], paths["bottom"])
    marker = root / "payload-ran"
    torch.save({"state_dict": {}, "evil": _Payload(marker)}, root / "evil.ckpt")
    paths["evil"], paths["marker"] = root / "evil.ckpt", marker
    data = paths["vqvae"].read_bytes()
    (root / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    paths["truncated"] = root / "truncated.ckpt"
    return paths


def _one_line_refusal(code: int, capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and "weights_only" not in err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize("bad", ["evil", "truncated", "top"])
def test_train_resume_refuses_bad_checkpoints_with_one_line(files, bad, tmp_path, capsys):
    run = tmp_path / "run"
    code = train.main(["vqvae", "--data", "synthetic:4", "--out", str(run), "--resume", str(files[bad]),
                       "--no-progress", "--max-steps", "1"])
    _one_line_refusal(code, capsys, "--resume", str(files[bad]))
    assert not files["marker"].exists()
    assert not run.exists()  # the refused run leaves nothing behind


def test_train_resume_refuses_a_vqvae_of_another_config_naming_what_differs(files, tmp_path, capsys):
    run = tmp_path / "run"
    code = train.main(["vqvae", "--data", "synthetic:4", "--out", str(run), "--resume", str(files["vqvae"]),
                       "--no-progress", "--max-steps", "1"])
    _one_line_refusal(code, capsys, "a VQ-VAE of another model config than this run's (differing in model.channels",
                      "e.g. add 'model.channels=")
    assert not run.exists()


def test_train_resume_refuses_a_replaced_last_checkpoint(files, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(files["evil"], run / "checkpoints" / "last.ckpt")
    code = train.main(["vqvae", "--data", "synthetic:4", "--out", str(run), "--resume", "--no-progress"])
    _one_line_refusal(code, capsys, "last.ckpt", "was not loaded")
    assert not files["marker"].exists()


def test_train_prior_resume_refuses_a_vqvae_checkpoint(files, tmp_path, capsys):
    code = train.main(["prior", "--level", "top", "--codes", str(tmp_path / "codes"), "--out",
                       str(tmp_path / "run"), "--resume", str(files["vqvae"]), "--no-progress"])
    _one_line_refusal(code, capsys)


@pytest.mark.parametrize("bad", ["evil", "truncated", "top"])
def test_other_commands_refuse_the_same_files(files, bad, tmp_path, capsys):
    code = reconstruct.main(["synthetic:2", "--vqvae", str(files[bad]), "-o", str(tmp_path / "out.gif")])
    _one_line_refusal(code, capsys, str(files[bad]))
    code = export.main(["--vqvae", str(files["vqvae"]), "--top", str(files["top"]), "--bottom", str(files[bad]),
                        "--out", str(tmp_path / "m")])
    _one_line_refusal(code, capsys, str(files[bad]))
    assert not files["marker"].exists()


def test_a_file_that_is_no_pytorch_archive_is_named_as_such(files, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a checkpoint")
    for path in (text, files["truncated"]):
        with pytest.raises(ValueError, match=f"--vqvae {path}: not a complete PyTorch archive: a file cut short, "
                                             "or not a checkpoint"):
            read_checkpoint(path, "vqvae", "--vqvae")


def test_a_refusal_never_repeats_the_advice_to_load_unsafely(files):
    with pytest.raises(ValueError) as caught:
        read_checkpoint(files["evil"], "vqvae")
    message = str(caught.value)
    assert "weights_only" not in message and "was not loaded" in message and "\n" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # torch's text is not chained


def _edited_folder(files, tmp_path, edit) -> Path:
    folder = tmp_path / "edited"
    shutil.copytree(files["model"], folder)
    meta = json.loads((folder / "model.json").read_text())
    edit(meta)
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


@pytest.mark.parametrize(("part", "field", "value", "limit"), [
    ("vqvae", "channels", 200_000, "8192"),
    ("vqvae", "num_codes", 4_000_000_000, "65536"),
    ("top", "shape", [4, 100_000, 4], "4096"),
])
def test_sizes_are_checked_before_anything_is_allocated(files, tmp_path, part, field, value, limit):
    folder = _edited_folder(files, tmp_path, lambda meta: meta[part]["config"].update({field: value}))
    with pytest.raises(ValueError, match=rf"{part}\.config\.{field}=.*limit of {limit}"):
        load_model_folder(folder)


def test_a_model_too_large_in_total_is_refused_before_it_is_built(files, tmp_path, monkeypatch):
    import vqvid.persistence as persistence

    monkeypatch.setattr(persistence, "MAX_PARAMETERS", 1000)
    with pytest.raises(ValueError, match="parameters; vqvid's limit is 1,000"):
        load_vqvae(files["vqvae"])


def test_checkpoint_sizes_are_checked_too(tmp_path):
    vqvae = tiny_vqvae()
    config = {**to_dict(vqvae.config), "res_channels": 10**6}
    path = write_checkpoint(tmp_path / "big.ckpt", "vqvae", vqvae, {"model": config})
    with pytest.raises(ValueError, match=r"big.ckpt: model\.res_channels=1000000: exceeds vqvid's limit of 8192"):
        load_vqvae(path)


@pytest.mark.parametrize(("data", "message"), [
    ({"frames": "abc"}, r"vqvae\.data\.frames: expected an integer, got 'abc'"),
    ("x", r"vqvae\.data: expected a mapping of ClipSpec fields, got 'x'"),
    ({"fps": float("nan")}, r"vqvae\.data\.fps: expected a finite number"),
])
def test_model_json_field_errors_name_the_field(files, tmp_path, data, message):
    folder = _edited_folder(files, tmp_path, lambda meta: meta["vqvae"].update({"data": data}))
    with pytest.raises(ValueError, match=message):
        load_model_folder(folder)


def test_a_model_json_whose_clips_do_not_fit_its_priors_is_named_by_its_path(files, tmp_path):
    folder = _edited_folder(files, tmp_path, lambda meta: meta["vqvae"]["data"].update({"frames": 16}))
    with pytest.raises(ModelFolderError, match=rf"^{folder / 'model.json'}: the top prior models grids \(2, 2, 2\) "):
        load_model_folder(folder)


def test_a_folder_carrying_another_folders_fingerprint_is_refused(files, tmp_path):
    other = export_model(files["vqvae"], tmp_path / "vqvae_only")  # another folder: no priors
    foreign = json.loads((other / "model.json").read_text())["fingerprint"]
    folder = _edited_folder(files, tmp_path, lambda meta: meta.update({"fingerprint": foreign}))
    with pytest.raises(ModelFolderError, match=f"records folder fingerprint '{foreign}'"):
        load_model_folder(folder)
    assert load_model_folder(files["model"]).fingerprint != foreign


def test_fingerprints_survive_a_config_field_added_later(files, tmp_path):
    """A checkpoint saved before `activation` and `codebook_init` existed: it exports, its folder loads, and
    the VQ-VAE's fingerprint is the same from the checkpoint, from the folder and for its priors."""
    old = tmp_path / "old"
    old.mkdir()
    for name in ("vqvae", "top", "bottom"):
        checkpoint = torch.load(files[name], weights_only=True)
        checkpoint["hyper_parameters"]["model"].pop("activation" if name == "vqvae" else "codebook_init")
        torch.save(checkpoint, old / f"{name}.ckpt")
    vqvae = load_vqvae(old / "vqvae.ckpt")
    assert vqvae.fingerprint == load_vqvae(files["vqvae"]).fingerprint  # the default is what was used
    folder = load_model_folder(export_model(old / "vqvae.ckpt", tmp_path / "model", old / "top.ckpt",
                                            old / "bottom.ckpt"))
    assert folder.vqvae.fingerprint == vqvae.fingerprint
    assert folder.top.fingerprint == load_prior(old / "top.ckpt").fingerprint
    assert folder.fingerprint == load_model_folder(files["model"]).fingerprint


def _fingerprint_before_block_fields(config_fields: dict, state: dict[str, torch.Tensor]) -> str:
    """The fingerprint as vqvid computed it before `block`, `resample_frames`, `top_only_weight` and
    `top_slowness` (and the priors' `tied_head`) existed:
    SHA-256 over the config's JSON, then every tensor's name, dtype, shape and bytes."""
    import hashlib

    digest = hashlib.sha256(json.dumps(config_fields, sort_keys=True).encode())
    for name in sorted(state):
        tensor = state[name].contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def test_block_design_fields_left_a_models_fingerprint_as_it_was_recorded(files, tmp_path):
    """Code stores, priors, .vqv files and model folders written before the block design could be chosen
    record the old fingerprint: a model of the default design must still have it, and its folder, written with
    a model.json that lacks the fields, must load."""
    vqvae = load_vqvae(files["vqvae"])
    # fields added after fingerprints were recorded
    later = ("block", "resample_frames", "top_only_weight", "top_slowness", "causal_encoder")
    old_fields = {k: v for k, v in to_dict(vqvae.config).items() if k not in later}
    state = vqvae.model.state_dict()
    assert vqvae.fingerprint == _fingerprint_before_block_fields(old_fields, state)
    folder = _edited_folder(files, tmp_path, lambda meta: meta["vqvae"].update({"config": old_fields}))
    assert load_model_folder(folder).fingerprint == load_model_folder(files["model"]).fingerprint
    # Another design is another model: it must not share the fingerprint of the default one.
    factorised = dataclasses.replace(vqvae.config, block="factorised")
    assert fingerprint(factorised, state) != vqvae.fingerprint
    assert fingerprint(dataclasses.replace(vqvae.config, resample_frames=1), state) != vqvae.fingerprint
    assert fingerprint(dataclasses.replace(vqvae.config, top_slowness=0.01), state) != vqvae.fingerprint
    assert fingerprint(dataclasses.replace(vqvae.config, causal_encoder=True), state) != vqvae.fingerprint


PRIOR_FIELDS_ADDED_LATER = ("tied_head", "copy_head", "condition_norm")


@pytest.mark.parametrize("level", ["top", "bottom"])
def test_the_fields_added_to_priors_left_their_fingerprints_as_recorded(files, tmp_path, level):
    """Priors made before `tied_head`, `copy_head` and `condition_norm` existed (an untied head, no copy head,
    an unnormalised conditioning stack) keep the fingerprint their model folders record, and a folder whose
    model.json lacks the fields loads; a prior with any of them set is another model."""
    prior = load_prior(files[level])
    assert not any(getattr(prior.config, field) for field in PRIOR_FIELDS_ADDED_LATER)
    old_fields = {k: v for k, v in to_dict(prior.config).items() if k not in PRIOR_FIELDS_ADDED_LATER}
    state = prior.model.state_dict()
    assert prior.fingerprint == _fingerprint_before_block_fields(old_fields, state)
    folder = _edited_folder(files, tmp_path, lambda meta: meta[level].update({"config": old_fields}))
    assert load_model_folder(folder).fingerprint == load_model_folder(files["model"]).fingerprint
    for field in PRIOR_FIELDS_ADDED_LATER:
        assert fingerprint(dataclasses.replace(prior.config, **{field: True}), state) != prior.fingerprint


def test_fingerprint_takes_the_canonical_typed_config_only():
    vqvae = tiny_vqvae()
    state = vqvae.state_dict()
    reference = fingerprint(vqvae.config, state)
    assert fingerprint(vqvae.config, dict(reversed(state.items()))) == reference  # the names' order is not hashed
    name = next(n for n, t in state.items() if t.is_floating_point())
    nudged = {**state, name: state[name].clone()}
    nudged[name].view(-1)[0] += 1
    assert fingerprint(vqvae.config, nudged) != reference  # every tensor's bytes are
    assert fingerprint(dataclasses.replace(vqvae.config, beta=vqvae.config.beta + 0.1), state) != reference
    with pytest.raises(TypeError):
        fingerprint(to_dict(vqvae.config), vqvae.state_dict())


def test_a_checkpoint_or_a_missing_folder_is_not_a_model_folder_and_says_how_to_make_one(files, tmp_path):
    with pytest.raises(ModelFolderError, match=r"last\.ckpt: a training checkpoint, not a vqvid model folder.*"
                                               r"vqvid export"):
        load_model_folder(shutil.copy(files["vqvae"], tmp_path / "last.ckpt"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ModelFolderError, match=r"notes\.txt: a file, not a vqvid model folder"):
        load_model_folder(tmp_path / "notes.txt")
    with pytest.raises(ModelFolderError, match=r"nowhere: not a vqvid model folder \(no model\.json\)"):
        load_model_folder(tmp_path / "nowhere")

"""Trained models on disk: reading, verifying and fingerprinting them, one way for every command.

Two forms travel:
- a Lightning checkpoint (`.ckpt`) of a training run, read with `torch.load(weights_only=True)`;
- a model folder written by `vqvid export`, safetensors weights plus one JSON file, no pickle:

    MODEL_DIR/
      model.json          format, configs, fingerprints, the VQ-VAE's clip spec
      vqvae.safetensors
      top.safetensors     (optional) top prior p(top)
      bottom.safetensors  (optional) bottom prior p(bottom | top)
      reader.safetensors  (optional) context reader: the top codes after a context, from its frames

Neither form can run code from the file. Every checkpoint a command reads, `--resume` included, goes through
`read_checkpoint`, which refuses a file of another kind, a damaged one or one holding anything but tensors and
plain values with one line. Configs read from a file are checked against size limits before any model is built,
so a file that declares a huge model is refused instead of allocated.

A fingerprint is a short hash of a model's config and weights: a code store, a prior and a `.vqv` file record the
fingerprint of the VQ-VAE whose codes they hold, and refuse to be mixed with another. The config is hashed in one
canonical form, the typed config with every field (`to_dict(from_dict(...))`), so a checkpoint saved before a
field was added fingerprints the same whether it is read from the checkpoint or from its exported folder. Fields
listed in `UNHASHED_DEFAULTS` are left out of the hash while they hold the value that every model made before
them used, so those models keep the fingerprints that their code stores, priors, `.vqv` files and model folders
already record. A model folder's fingerprints, its own included, are recomputed from its contents whenever it is
loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_file, save_file

from vqvid.config import ConfigError, from_dict, to_dict
from vqvid.models.pixelsnail import PixelSNAIL, PixelSNAILConfig
from vqvid.models.reader import ContextReader, ReaderConfig
from vqvid.models.vqvae import VQVAE, VQVAEConfig

CHECKPOINT_KEY = "vqvid"  # extra entry every vqvid Lightning checkpoint carries: {"kind": ..., "format": 1}
FORMAT = 1  # of model folders
PRIOR_LEVELS = ("top", "bottom")
CHECKPOINT_KINDS = ("vqvae", "prior", "reader")  # as `vqvid train` names its stages

# Upper bounds on config fields read from files, checked before a model is built: generous for any model that
# fits a GPU, small enough that a damaged or hostile file cannot make vqvid allocate terabytes.
LIMITS = {
    "num_codes": 65_536, "condition_num_codes": 65_536,  # codes are stored as uint16
    "in_channels": 64, "channels": 8_192, "res_channels": 8_192, "embed_dim": 8_192, "key_channels": 8_192,
    "value_channels": 8_192, "condition_channels": 8_192,
    "n_res_blocks": 256, "n_blocks": 256, "n_cond_res_blocks": 256, "n_heads": 256, "kernel_size": 31,
    "shape": 4_096, "condition_shape": 4_096,  # each of (T, H, W)
    "layers": 256, "context": 4_096, "frames": 4_096,  # of a context reader
}
MAX_PARAMETERS = 2_000_000_000  # 8 GB of float32 weights
# Config fields added after fingerprints were first recorded, with the value that reproduces the models made
# before them: at that value a field is not hashed, so adding it changed no existing fingerprint.
UNHASHED_DEFAULTS: dict[type, dict[str, Any]] = {
    VQVAEConfig: {"block": "3d", "resample_frames": 3, "top_only_weight": 1.0, "top_slowness": 0.0,
                  "causal_encoder": False},
    PixelSNAILConfig: {"tied_head": False, "copy_head": False, "condition_norm": False},
}

ConfigT = TypeVar("ConfigT")


class ModelFolderError(ValueError):
    """A model folder that is missing, damaged, or mixes models."""


# --- fingerprints ------------------------------------------------------------------------------------------


def fingerprint(config: Any, state: dict[str, torch.Tensor]) -> str:
    """16 hex digits of SHA-256 over a typed config (canonical JSON of every field but those at their value of
    `UNHASHED_DEFAULTS`) and every tensor (name, dtype, shape, bytes)."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"fingerprint needs a typed config, got {type(config).__name__}")
    fields = to_dict(config)
    for name, value in UNHASHED_DEFAULTS.get(type(config), {}).items():
        if fields.get(name) == value:
            del fields[name]
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode())
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:16]


def folder_fingerprint(parts: dict[str, str]) -> str:
    """The fingerprint of a model folder from those of its parts ({"vqvae": ..., "top": ..., "bottom": ...})."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


# --- configs and models read from files --------------------------------------------------------------------


def read_config(cls: type[ConfigT], data: Any, where: str) -> ConfigT:
    """A typed config from a dict read from a file, refused (naming the field and the limit) when a size
    exceeds `LIMITS`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of {cls.__name__} fields, got {data!r}")
    config = from_dict(cls, data, where)
    for name, limit in LIMITS.items():
        value = getattr(config, name, None)
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, int) and v > limit for v in values):
            raise ConfigError(f"{where}.{name}={value}: exceeds vqvid's limit of {limit}")
    return config


def build_model(model_class: type[torch.nn.Module], config: Any, where: str) -> torch.nn.Module:
    """`model_class(config)`, once its size in parameters and buffers (measured without allocating, on the meta
    device) is within `MAX_PARAMETERS`."""
    with torch.device("meta"):
        probe = model_class(config)
    count = sum(t.numel() for t in (*probe.parameters(), *probe.buffers()))
    if count > MAX_PARAMETERS:
        raise ConfigError(f"{where}: describes a {model_class.__name__} of {count:,} parameters; vqvid's limit "
                          f"is {MAX_PARAMETERS:,}")
    return model_class(config)


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """`model.load_state_dict(state)`, with an error that names the file when the weights do not fit."""
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()[1:2] or [str(error)]
        raise ValueError(
            f"{source}: its weights do not fit a {type(model).__name__} of its own config "
            f"(made by another version of vqvid?): {first[0].strip()}"
        ) from error


def read_clip_spec(data: Any, where: str) -> dict[str, Any]:
    """The clip spec a VQ-VAE was trained with, as stored (a dict, possibly partial), once it is a valid
    `ClipSpec`."""
    from vqvid.data import ClipSpec

    data = {} if data is None else data
    read_config(ClipSpec, data, where)
    return dict(data)


# --- checkpoints --------------------------------------------------------------------------------------------


def _why_unreadable(error: Exception) -> str:
    """A one-line reason from torch's error, without its advice to load with `weights_only=False` (which would
    run whatever the file holds)."""
    text = " ".join(str(error).split())
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text) or re.search(r"Unsupported operand \w+", text)
    if found:
        what = found.group(1) if found.groups() else found.group(0)
        return f"it holds a Python object ({what}) besides tensors and plain values; it was not loaded"
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if "weights_only" in first or "weights only" in first.lower():
        return "it holds something besides tensors and plain values; it was not loaded"
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def read_checkpoint(path: str | Path, kind: str, option: str = "checkpoint") -> dict[str, Any]:
    """A vqvid Lightning checkpoint of the given kind (one of CHECKPOINT_KINDS), as a dict of tensors and
    scalars.

    A missing, damaged or foreign file raises (FileNotFoundError or ValueError) with one line that starts with
    `option` and the path, e.g. "--resume run/checkpoints/last.ckpt: ...". Nothing in the file is executed."""
    path = Path(path)
    expected = f"expected a vqvid {kind} checkpoint (.ckpt) written by `vqvid train {kind}`"
    if path.is_dir():
        what = "a model folder" if is_model_folder(path) else "a folder"
        raise ValueError(f"{option} {path}: {what}, not a checkpoint; {expected}")
    if not path.is_file():
        raise FileNotFoundError(f"{option} {path}: no such file")
    if path.suffix == ".safetensors":  # a part of a model folder, which is only ever read whole
        whole = (f"use --model {path.parent} (or --vqvae {path.parent})" if kind == "vqvae" else
                 f"its priors are used through --model {path.parent}")
        raise ValueError(f"{option} {path}: weights of a model folder, not a checkpoint; {expected}. A model "
                         f"folder is read whole: {whole}")
    if not zipfile.is_zipfile(path):  # what torch.save has written since torch 1.6, and Lightning with it
        raise ValueError(f"{option} {path}: not a complete PyTorch archive: a file cut short, or not a "
                         "checkpoint (expected a .ckpt written by `vqvid train`)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, damaged, or a pickle of arbitrary objects
        raise ValueError(f"{option} {path}: cannot be read as a checkpoint ({_why_unreadable(error)})") from None
    found = checkpoint.get(CHECKPOINT_KEY, {}) if isinstance(checkpoint, dict) else None
    found = found.get("kind") if isinstance(found, dict) else None
    if found != kind:
        what = f"a vqvid {found} checkpoint" if found in CHECKPOINT_KINDS else "not a vqvid checkpoint"
        raise ValueError(f"{option} {path}: expected a vqvid {kind} checkpoint, but it is {what}")
    hparams, state = checkpoint.get("hyper_parameters"), checkpoint.get("state_dict")
    if not (isinstance(hparams, dict) and isinstance(hparams.get("model"), dict) and isinstance(state, dict)
            and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise ValueError(f"{option} {path}: a damaged vqvid {kind} checkpoint (no model config or weights)")
    if kind == "prior" and (hparams.get("level") not in PRIOR_LEVELS
                            or not isinstance(hparams.get("vqvae_fingerprint"), str)):
        raise ValueError(f"{option} {path}: a damaged vqvid prior checkpoint (no level or VQ-VAE fingerprint)")
    if kind == "reader" and not isinstance(hparams.get("vqvae_fingerprint"), str):
        raise ValueError(f"{option} {path}: a damaged vqvid reader checkpoint (no VQ-VAE fingerprint)")
    return checkpoint


def model_state(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}


# --- loaded models ------------------------------------------------------------------------------------------


@dataclass
class LoadedVQVAE:
    model: VQVAE  # in eval mode, on the CPU
    config: VQVAEConfig
    fingerprint: str
    data: dict[str, Any]  # the clip spec it was trained with (frames, size, fps, ...)

    def clip_spec(self, whole_clips: bool = False):
        """The `ClipSpec` the VQ-VAE was trained with (defaults for fields its checkpoint lacks). `whole_clips`:
        consecutive, non-overlapping clips (stride = frames), to show or code a video once."""
        from vqvid.data import ClipSpec

        spec = ClipSpec(**self.data)
        return replace(spec, stride=spec.frames) if whole_clips else spec


@dataclass
class LoadedPrior:
    model: PixelSNAIL  # eval mode, CPU
    config: PixelSNAILConfig
    level: str
    fingerprint: str
    vqvae_fingerprint: str  # the VQ-VAE whose codes it models


@dataclass
class LoadedReader:
    model: ContextReader  # eval mode, CPU
    config: ReaderConfig
    fingerprint: str
    vqvae_fingerprint: str  # the VQ-VAE whose top codes it predicts


@dataclass
class ModelFolder:
    vqvae: LoadedVQVAE
    top: LoadedPrior | None
    bottom: LoadedPrior | None
    fingerprint: str  # of the whole folder, computed from its contents
    reader: LoadedReader | None = None

    @property
    def has_priors(self) -> bool:
        return self.top is not None and self.bottom is not None


def _loaded(model_class, config, state, source: Path, where: str):
    model = build_model(model_class, config, where)
    load_weights(model, state, source)
    return model.eval()


def _checkpoint_model(checkpoint: dict[str, Any], path: str | Path, option: str, config_class: type,
                      model_class: type) -> tuple[torch.nn.Module, Any, str]:
    """The model of a checkpoint read by `read_checkpoint` from `path` (named in messages by `option`): the model
    (eval mode, CPU), its config and its fingerprint."""
    where = f"{option} {path}: model"
    config = read_config(config_class, checkpoint["hyper_parameters"]["model"], where)
    state = model_state(checkpoint)
    return _loaded(model_class, config, state, Path(path), where), config, fingerprint(config, state)


def load_vqvae(path: str | Path, option: str = "--vqvae") -> LoadedVQVAE:
    """The VQ-VAE of a training checkpoint (`.ckpt`) or of a model folder written by `vqvid export`."""
    path = Path(path)
    if path.is_dir():
        return load_model_folder(path).vqvae
    checkpoint = read_checkpoint(path, "vqvae", option)
    model, config, found = _checkpoint_model(checkpoint, path, option, VQVAEConfig, VQVAE)
    data = read_clip_spec(checkpoint["hyper_parameters"].get("data"), f"{option} {path}: data")
    return LoadedVQVAE(model, config, found, data)


def load_prior(path: str | Path, level: str | None = None, option: str | None = None) -> LoadedPrior:
    """A prior from a training checkpoint (`.ckpt`)."""
    option = option or (f"--{level}" if level else "checkpoint")
    checkpoint = read_checkpoint(path, "prior", option)
    hparams = checkpoint["hyper_parameters"]
    if level is not None and hparams["level"] != level:
        raise ValueError(f"{option} {path}: expected a {level} prior, but it is a {hparams['level']} prior")
    model, config, found = _checkpoint_model(checkpoint, path, option, PixelSNAILConfig, PixelSNAIL)
    return LoadedPrior(model, config, hparams["level"], found, hparams["vqvae_fingerprint"])


def load_reader(path: str | Path, option: str = "--reader") -> LoadedReader:
    """A context reader from a training checkpoint (`.ckpt`)."""
    checkpoint = read_checkpoint(path, "reader", option)
    model, config, found = _checkpoint_model(checkpoint, path, option, ReaderConfig, ContextReader)
    return LoadedReader(model, config, found, checkpoint["hyper_parameters"]["vqvae_fingerprint"])


# --- model folders ------------------------------------------------------------------------------------------


def is_model_folder(path: str | Path) -> bool:
    """Whether `path` is a folder holding a model description (which `load_model_folder` then verifies)."""
    return (Path(path) / "model.json").is_file()


def export_model(vqvae: str | Path, out: str | Path, top: str | Path | None = None,
                 bottom: str | Path | None = None, force: bool = False, reader: str | Path | None = None) -> Path:
    """Write a model folder from checkpoints (or, for the VQ-VAE, another model folder). Returns `out`.

    `out` must be absent, empty or a model folder (which is replaced) unless `force`. The folder is built next
    to `out` and put in place whole: an interrupted export leaves the old folder as it was."""
    from vqvid.files import replace_folder, staging_folder

    out = Path(out)
    if bottom is not None and top is None:
        raise ModelFolderError(f"--bottom {bottom} without --top: the bottom prior codes and samples bottom codes "
                               "given top codes, which only the top prior can code or sample; give --top too (or "
                               "neither, for a folder of the VQ-VAE alone)")
    if out.exists() and not force:
        if not out.is_dir():
            raise ModelFolderError(f"--out {out}: exists and is not a folder; choose another path")
        if any(out.iterdir()) and not is_model_folder(out):
            raise ModelFolderError(f"--out {out}: exists and is not a vqvid model folder; refusing to replace "
                                   "its contents (choose an empty or new folder, or pass --force)")
    if not out.parent.is_dir():
        raise ModelFolderError(f"--out {out}: the folder {out.parent} does not exist")
    loaded = load_vqvae(vqvae)
    priors = {}
    for level, path in (("top", top), ("bottom", bottom)):
        if path is None:
            continue
        prior = load_prior(path, level)
        if prior.vqvae_fingerprint != loaded.fingerprint:
            raise ModelFolderError(
                f"--{level} {path}: this prior was trained on codes of VQ-VAE {prior.vqvae_fingerprint}, "
                f"but --vqvae {vqvae} is VQ-VAE {loaded.fingerprint}"
            )
        priors[level] = prior
    read = None if reader is None else load_reader(reader)
    if read is not None and read.vqvae_fingerprint != loaded.fingerprint:
        raise ModelFolderError(f"--reader {reader}: this context reader was trained on top codes of VQ-VAE "
                               f"{read.vqvae_fingerprint}, but --vqvae {vqvae} is VQ-VAE {loaded.fingerprint}")
    given = " ".join(f"--{part} {path}" for part, path in (("top", top), ("bottom", bottom), ("reader", reader))
                     if path)
    _check_geometry(ModelFolder(loaded, priors.get("top"), priors.get("bottom"), "", read),
                    f"--vqvae {vqvae} {given}")

    meta: dict[str, Any] = {
        "format": FORMAT,
        "vqvae": {"config": to_dict(loaded.config), "fingerprint": loaded.fingerprint, "data": loaded.data},
    }
    parts = {"vqvae": loaded.fingerprint}
    staging = staging_folder(out)
    try:
        save_file(loaded.model.state_dict(), staging / "vqvae.safetensors")
        for level, prior in priors.items():
            save_file(prior.model.state_dict(), staging / f"{level}.safetensors")
            meta[level] = {"config": to_dict(prior.config), "fingerprint": prior.fingerprint,
                           "vqvae_fingerprint": prior.vqvae_fingerprint}
            parts[level] = prior.fingerprint
        if read is not None:
            save_file(read.model.state_dict(), staging / "reader.safetensors")
            meta["reader"] = {"config": to_dict(read.config), "fingerprint": read.fingerprint,
                              "vqvae_fingerprint": read.vqvae_fingerprint}
            parts["reader"] = read.fingerprint
        meta["fingerprint"] = folder_fingerprint(parts)
        (staging / "model.json").write_text(json.dumps(meta, indent=2))
        if out.exists() and not out.is_dir():  # --force over a file
            out.unlink()
        replace_folder(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out


def _weights(folder: Path, name: str, config: Any, expected: Any) -> tuple[dict[str, torch.Tensor], str]:
    """The weights of part `name` and their fingerprint, which must be the one model.json records."""
    path = folder / f"{name}.safetensors"
    try:
        state = load_file(path)
    except FileNotFoundError:
        raise ModelFolderError(f"model folder {folder}: {path.name} is missing") from None
    except Exception as error:
        raise ModelFolderError(f"model folder {folder}: {path.name} is damaged ({error})") from error
    found = fingerprint(config, state)
    if found != expected:
        raise ModelFolderError(
            f"model folder {folder}: {path.name} has fingerprint {found}, model.json expects {expected} "
            "(damaged or replaced weights)"
        )
    return state, found


def _part(folder: Path, meta: dict[str, Any], name: str, what: str, config_class: type, model_class: type,
          vqvae: str) -> tuple[torch.nn.Module, Any, str]:
    """Part `name` of a model folder (a prior or the context reader; `what` names it in messages): its model,
    config and fingerprint, once model.json says that it models the codes of the folder's VQ-VAE `vqvae`."""
    meta_path = folder / "model.json"
    part = meta[name]
    if part["vqvae_fingerprint"] != vqvae:
        raise ModelFolderError(f"{meta_path}: the {what} models codes of VQ-VAE {part['vqvae_fingerprint']}, but "
                               f"the folder's VQ-VAE is {vqvae}")
    where = f"{meta_path}: {name}.config"
    config = read_config(config_class, part["config"], where)
    state, found = _weights(folder, name, config, part["fingerprint"])
    return _loaded(model_class, config, state, folder / f"{name}.safetensors", where), config, found


def load_model_folder(path: str | Path) -> ModelFolder:
    """Load and verify a folder written by `export_model`: every part's fingerprint, and the folder's own, are
    computed from the files and must match those model.json records."""
    folder = Path(path)
    meta_path = folder / "model.json"
    if folder.is_file():
        what = "a training checkpoint" if folder.suffix == ".ckpt" else "a file"
        raise ModelFolderError(f"{folder}: {what}, not a vqvid model folder; make one from the checkpoints "
                               "with `vqvid export --vqvae ... [--top ... --bottom ...] --out DIR`")
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise ModelFolderError(
            f"{folder}: not a vqvid model folder (no model.json); make one with `vqvid export`"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ModelFolderError(f"{meta_path}: not valid JSON ({error})") from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("vqvae"), dict):
        raise ModelFolderError(f"{meta_path}: expected a vqvid model description of format {FORMAT}")
    try:
        vqvae_meta = meta["vqvae"]
        where = f"{meta_path}: vqvae.config"
        config = read_config(VQVAEConfig, vqvae_meta["config"], where)
        data = read_clip_spec(vqvae_meta.get("data"), f"{meta_path}: vqvae.data")
        state, found = _weights(folder, "vqvae", config, vqvae_meta["fingerprint"])
        vqvae = LoadedVQVAE(_loaded(VQVAE, config, state, folder / "vqvae.safetensors", where), config, found,
                            data)
        parts = {"vqvae": found}
        priors: dict[str, LoadedPrior | None] = {"top": None, "bottom": None}
        for level in PRIOR_LEVELS:
            if level in meta:
                prior, prior_config, parts[level] = _part(folder, meta, level, f"{level} prior", PixelSNAILConfig,
                                                          PixelSNAIL, vqvae.fingerprint)
                priors[level] = LoadedPrior(prior, prior_config, level, parts[level], vqvae.fingerprint)
        reader = None
        if "reader" in meta:
            model, reader_config, parts["reader"] = _part(folder, meta, "reader", "context reader", ReaderConfig,
                                                          ContextReader, vqvae.fingerprint)
            reader = LoadedReader(model, reader_config, parts["reader"], vqvae.fingerprint)
    except (KeyError, TypeError) as error:
        raise ModelFolderError(f"{meta_path}: missing or malformed field {error}") from error
    own = folder_fingerprint(parts)
    if meta.get("fingerprint") != own:
        raise ModelFolderError(f"{meta_path}: records folder fingerprint {meta.get('fingerprint')!r}, but its "
                               f"contents have fingerprint {own} (edited or copied from another folder)")
    loaded = ModelFolder(vqvae, priors["top"], priors["bottom"], own, reader)
    _check_geometry(loaded, str(meta_path))
    return loaded


def _check_geometry(folder: ModelFolder, where: str) -> None:
    """Refuses, naming `where` (the file or options it came from), priors whose grids do not fit the clips of
    the VQ-VAE's clip spec (which no fingerprint covers, so an edited model.json can break it)."""
    if folder.top is None and folder.bottom is None and folder.reader is None:
        return  # the geometry comes from the priors' grids or must fit them: nothing to check without them
    from vqvid.geometry import clip_geometry

    try:
        clip_geometry(folder, where)
    except ValueError as error:
        raise ModelFolderError(str(error)) from None

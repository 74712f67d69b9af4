"""Model folders: a trained VQ-VAE and its priors as safetensors weights plus one JSON file. No pickle.

    MODEL_DIR/
      model.json          format, configs, fingerprints, the VQ-VAE's clip spec
      vqvae.safetensors
      top.safetensors     (optional) top prior p(top)
      bottom.safetensors  (optional) bottom prior p(bottom | top)

Every part's fingerprint is recomputed from its weights on load, so damaged or swapped weight files are refused.
Priors record the fingerprint of the VQ-VAE whose codes they learned; a folder mixing models is refused.
The folder's own fingerprint (one hash of all parts) is what `.vqv` files record.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from vqvid.checkpoints import LoadedVQVAE, fingerprint, load_vqvae, load_weights, model_state, read_checkpoint
from vqvid.config import from_dict
from vqvid.models.pixelsnail import PixelSNAIL, PixelSNAILConfig
from vqvid.models.vqvae import VQVAE, VQVAEConfig

FORMAT = 1
PRIOR_LEVELS = ("top", "bottom")


class ModelFolderError(ValueError):
    """A model folder that is missing, damaged, or mixes models."""


@dataclass
class LoadedPrior:
    model: PixelSNAIL  # eval mode, CPU
    config: PixelSNAILConfig
    level: str
    fingerprint: str
    vqvae_fingerprint: str  # the VQ-VAE whose codes it models


@dataclass
class ModelFolder:
    vqvae: LoadedVQVAE
    top: LoadedPrior | None
    bottom: LoadedPrior | None
    fingerprint: str  # of the whole folder

    @property
    def has_priors(self) -> bool:
        return self.top is not None and self.bottom is not None


def load_prior(path: str | Path, level: str | None = None) -> LoadedPrior:
    """A prior from a training checkpoint (`.ckpt`)."""
    checkpoint = read_checkpoint(path, "prior")
    hparams = checkpoint["hyper_parameters"]
    if level is not None and hparams["level"] != level:
        raise ValueError(f"checkpoint {path}: expected a {level} prior, but it is a {hparams['level']} prior")
    config = from_dict(PixelSNAILConfig, hparams["model"], "model")
    state = model_state(checkpoint)
    model = PixelSNAIL(config)
    load_weights(model, state, path)
    model.eval()
    return LoadedPrior(model, config, hparams["level"], fingerprint(hparams["model"], state),
                       hparams["vqvae_fingerprint"])


def _folder_fingerprint(parts: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def export_model(vqvae: str | Path, out: str | Path, top: str | Path | None = None,
                 bottom: str | Path | None = None) -> Path:
    """Write a model folder from checkpoints (or, for the VQ-VAE, another model folder). Returns `out`."""
    out = Path(out)
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
    from vqvid.config import to_dict

    meta: dict[str, Any] = {
        "format": FORMAT,
        "vqvae": {"config": to_dict(loaded.config), "fingerprint": loaded.fingerprint, "data": loaded.data},
    }
    parts = {"vqvae": loaded.fingerprint}
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent if out.parent.exists() else None))
    try:
        save_file(loaded.model.state_dict(), staging / "vqvae.safetensors")
        for level, prior in priors.items():
            save_file(prior.model.state_dict(), staging / f"{level}.safetensors")
            meta[level] = {"config": to_dict(prior.config), "fingerprint": prior.fingerprint,
                           "vqvae_fingerprint": prior.vqvae_fingerprint}
            parts[level] = prior.fingerprint
        meta["fingerprint"] = _folder_fingerprint(parts)
        (staging / "model.json").write_text(json.dumps(meta, indent=2))
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out


def _weights(folder: Path, name: str, config: dict[str, Any], expected: str):
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
    return state


def load_model_folder(path: str | Path) -> ModelFolder:
    """Load and verify a folder written by `export_model`."""
    folder = Path(path)
    meta_path = folder / "model.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise ModelFolderError(
            f"{folder}: not a vqvid model folder (no model.json); make one with `vqvid export`"
        ) from None
    except (OSError, json.JSONDecodeError) as error:
        raise ModelFolderError(f"{meta_path}: not valid JSON ({error})") from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "vqvae" not in meta:
        raise ModelFolderError(f"{meta_path}: expected a vqvid model description of format {FORMAT}")
    try:
        vqvae_meta = meta["vqvae"]
        config = from_dict(VQVAEConfig, vqvae_meta["config"], "vqvae.config")
        model = VQVAE(config)
        load_weights(model, _weights(folder, "vqvae", vqvae_meta["config"], vqvae_meta["fingerprint"]),
                     folder / "vqvae.safetensors")
        model.eval()
        vqvae = LoadedVQVAE(model, config, vqvae_meta["fingerprint"], dict(vqvae_meta.get("data") or {}))
        priors: dict[str, LoadedPrior | None] = {"top": None, "bottom": None}
        for level in PRIOR_LEVELS:
            if level not in meta:
                continue
            prior_meta = meta[level]
            if prior_meta["vqvae_fingerprint"] != vqvae.fingerprint:
                raise ModelFolderError(
                    f"{meta_path}: the {level} prior models codes of VQ-VAE {prior_meta['vqvae_fingerprint']}, "
                    f"but the folder's VQ-VAE is {vqvae.fingerprint}"
                )
            prior_config = from_dict(PixelSNAILConfig, prior_meta["config"], f"{level}.config")
            prior = PixelSNAIL(prior_config)
            load_weights(prior, _weights(folder, level, prior_meta["config"], prior_meta["fingerprint"]),
                         folder / f"{level}.safetensors")
            prior.eval()
            priors[level] = LoadedPrior(prior, prior_config, level, prior_meta["fingerprint"],
                                        prior_meta["vqvae_fingerprint"])
    except (KeyError, TypeError) as error:
        raise ModelFolderError(f"{meta_path}: missing or malformed field {error}") from error
    return ModelFolder(vqvae, priors["top"], priors["bottom"], meta.get("fingerprint", ""))

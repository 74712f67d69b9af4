"""Loading trained models from Lightning checkpoints and model folders, safely, and fingerprinting them.

Two forms travel:
- a Lightning checkpoint (`.ckpt`) of a training run, read with `torch.load(weights_only=True)`;
- a model folder written by `vqvid export`: `model.json` (configs, fingerprints) + `*.safetensors` weights.
Neither form can run code from the file. A file of another kind, or of another model, is refused with a message.

A fingerprint is a short hash of a model's config and weights: a code store, a prior and a `.vqv` file record the
fingerprint of the VQ-VAE whose codes they hold, and refuse to be mixed with another.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from vqvid.config import from_dict
from vqvid.models.vqvae import VQVAE, VQVAEConfig

CHECKPOINT_KEY = "vqvid"  # extra entry every vqvid Lightning checkpoint carries: {"kind": ..., "format": 1}


def fingerprint(config: dict[str, Any], state: dict[str, torch.Tensor]) -> str:
    """16 hex digits of SHA-256 over the config (canonical JSON) and every tensor (name, dtype, shape, bytes)."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:16]


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


def read_checkpoint(path: str | Path, kind: str) -> dict[str, Any]:
    """A vqvid Lightning checkpoint of the given kind ("vqvae" or "prior"), as a dict of tensors and scalars."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, damaged or not a torch file at all
        raise ValueError(
            f"checkpoint {path}: cannot be read as a checkpoint ({type(error).__name__}: {error})"
        ) from error
    found = checkpoint.get(CHECKPOINT_KEY, {}).get("kind") if isinstance(checkpoint, dict) else None
    if found != kind:
        what = f"a vqvid {found} checkpoint" if found else "not a vqvid checkpoint"
        raise ValueError(f"checkpoint {path}: expected a vqvid {kind} checkpoint, but it is {what}")
    return checkpoint


def model_state(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}


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


def load_vqvae(path: str | Path) -> LoadedVQVAE:
    """The VQ-VAE of a training checkpoint (`.ckpt`) or of a model folder written by `vqvid export`."""
    path = Path(path)
    if path.is_dir():
        from vqvid.modelpack import load_model_folder

        return load_model_folder(path).vqvae
    checkpoint = read_checkpoint(path, "vqvae")
    hparams = checkpoint["hyper_parameters"]
    config = from_dict(VQVAEConfig, hparams["model"], "model")
    model = VQVAE(config)
    state = model_state(checkpoint)
    load_weights(model, state, path)
    model.eval()
    return LoadedVQVAE(model, config, fingerprint(hparams["model"], state), dict(hparams.get("data") or {}))

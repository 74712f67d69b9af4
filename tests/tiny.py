"""Tiny random-weight models and model folders shared by the tests of sampling, prediction and compression."""

from __future__ import annotations

from pathlib import Path

import torch

from vqvid.config import to_dict
from vqvid.models.pixelsnail import PixelSNAIL, PixelSNAILConfig
from vqvid.models.reader import ContextReader, ReaderConfig
from vqvid.models.vqvae import VQVAE, VQVAEConfig
from vqvid.persistence import fingerprint

CLIP_FRAMES, SIZE, NUM_CODES = 8, 16, 16


def tiny_vqvae() -> VQVAE:
    """A random-weight VQ-VAE whose codebooks were moved onto encoder outputs by a few training-mode passes,
    so that its codes vary with the input (fresh random codebooks map every input to one code)."""
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(channels=8, res_channels=4, n_res_blocks=1, embed_dim=4, num_codes=NUM_CODES,
                              decay=0.5))
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(4, 3, CLIP_FRAMES, SIZE, SIZE) * 2 - 1)
    return model.eval()


def tiny_priors(frames: int = CLIP_FRAMES) -> tuple[PixelSNAIL, PixelSNAIL]:
    """Random-weight top and bottom priors over the codes of `tiny_vqvae`, for clips of `frames` frames."""
    torch.manual_seed(1)
    common = dict(num_codes=NUM_CODES, channels=8, n_blocks=1, n_res_blocks=1, key_channels=4,
                  value_channels=8, dropout=0.0, embed_dim=4)
    top_shape = (frames // 4, SIZE // 8, SIZE // 8)
    top = PixelSNAIL(PixelSNAILConfig(shape=top_shape, **common))
    bottom = PixelSNAIL(PixelSNAILConfig(shape=tuple(2 * s for s in top_shape), condition_num_codes=NUM_CODES,
                                         condition_shape=top_shape, condition_channels=8, n_cond_res_blocks=1,
                                         **common))
    return top.eval(), bottom.eval()


def tiny_reader(context: int = 4, frames: int = CLIP_FRAMES) -> ContextReader:
    """A random-weight context reader of `tiny_vqvae`'s codes: reads `context` frames, predicts the top codes of
    the rest of a clip of `frames` frames."""
    torch.manual_seed(3)
    return ContextReader(ReaderConfig(num_codes=NUM_CODES, context=context, frames=frames, channels=8,
                                      layers=1, stem="patch")).eval()


def write_checkpoint(path: Path, kind: str, model: torch.nn.Module, hyper_parameters: dict) -> Path:
    """A file laid out as a vqvid Lightning checkpoint: the module's weights under `model.`."""
    state = {f"model.{name}": tensor for name, tensor in model.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": hyper_parameters,
                "vqvid": {"kind": kind, "format": 1}}, path)
    return path


def tiny_checkpoints(root: Path) -> dict[str, Path]:
    """Checkpoints of `tiny_vqvae`, `tiny_priors` and `tiny_reader`, as `vqvid export` takes them: keys vqvae, top,
    bottom, reader."""
    vqvae = tiny_vqvae()
    vqvae_config = to_dict(vqvae.config)
    data = {"frames": CLIP_FRAMES, "stride": CLIP_FRAMES, "size": SIZE}
    paths = {"vqvae": write_checkpoint(root / "vqvae.ckpt", "vqvae", vqvae, {"model": vqvae_config, "data": data})}
    for level, prior in zip(("top", "bottom"), tiny_priors(), strict=True):
        hyper_parameters = {"model": to_dict(prior.config), "level": level,
                            "vqvae_fingerprint": fingerprint(vqvae.config, vqvae.state_dict())}
        paths[level] = write_checkpoint(root / f"{level}.ckpt", "prior", prior, hyper_parameters)
    reader = tiny_reader()
    paths["reader"] = write_checkpoint(root / "reader.ckpt", "reader", reader, {
        "model": to_dict(reader.config), "train": {}, "vqvae_fingerprint": fingerprint(vqvae.config,
                                                                                       vqvae.state_dict())})
    return paths


def quick_train_config(steps: int, **changes):
    """A `TrainConfig` for few-step CPU training runs in tests: batch 2, a validation and checkpoint every 3
    steps, CSV logs, deterministic kernels."""
    from vqvid.training.config import TrainConfig

    fields = dict(batch_size=2, max_steps=steps, val_every=3, val_batches=1, num_workers=0, log_every=1,
                  logger="csv", accelerator="cpu", devices="1", deterministic=True)
    return TrainConfig(**{**fields, **changes})

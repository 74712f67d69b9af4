"""The reconstruction-GIF callback: runs on rank 0 alone, so it must never update (and all-reduce) codebooks."""

from types import SimpleNamespace

import torch

from vqvid.models.quantize import EMAQuantizer
from vqvid.models.vqvae import VQVAEConfig
from vqvid.training.callbacks import ReconstructionGIFs
from vqvid.training.config import TrainConfig
from vqvid.training.vqvae import VQVAEModule

MODEL = VQVAEConfig(channels=8, res_channels=4, n_res_blocks=1, embed_dim=4, num_codes=16)


def test_gifs_encode_and_decode_in_eval_mode_without_touching_the_codebooks(tmp_path, monkeypatch):
    torch.manual_seed(0)
    module = VQVAEModule.from_configs(MODEL, TrainConfig()).train()  # as a module is between training steps
    clips = torch.rand(3, 3, 4, 16, 16) * 2 - 1  # (N, 3, T, H, W)
    trainer = SimpleNamespace(datamodule=SimpleNamespace(val_set=clips), is_global_zero=True,
                              sanity_checking=False, global_step=7, logger=None)
    quantizer_calls = []
    monkeypatch.setattr(EMAQuantizer, "forward", lambda self, x: quantizer_calls.append(self.training))
    before = {name: buffer.clone() for name, buffer in module.named_buffers()}

    ReconstructionGIFs(tmp_path / "gifs", num_clips=2).on_validation_end(trainer, module)

    assert quantizer_calls == []  # no forward through the quantisers: no codebook update, no all-reduce
    for name, buffer in module.named_buffers():
        assert torch.equal(buffer, before[name]), name
    assert module.training and module.model.training  # the mode the module was in comes back
    assert (tmp_path / "gifs" / "step_0000007.gif").stat().st_size > 0

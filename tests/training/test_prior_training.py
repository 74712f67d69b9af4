"""Training a prior with Lightning: a stop and a resume continue exactly, dropout included."""

import lightning as L
import torch

from tests.tiny import quick_train_config
from vqvid.config import to_dict
from vqvid.models.pixelsnail import PixelSNAILConfig
from vqvid.training.config import TrainConfig
from vqvid.training.data import TrainValData
from vqvid.training.prior import PriorModule
from vqvid.training.runner import fit

MODEL = PixelSNAILConfig(num_codes=8, shape=(2, 4, 4), channels=8, n_blocks=1, n_res_blocks=1, attention=True,
                         n_heads=1, key_channels=4, value_channels=8, dropout=0.3, embed_dim=4)


def _train(out, steps, resume=None):
    config = quick_train_config(steps, lr=1e-2)
    L.seed_everything(0, verbose=False)
    module = PriorModule(to_dict(MODEL), to_dict(config), "top", "vqvae-fingerprint")
    codes = torch.randint(0, 8, (10, 2, 4, 4), generator=torch.Generator().manual_seed(1))
    data = TrainValData(list(codes), list(codes[:2]), config.batch_size, 0, seed=0)
    fit(module, data, config, out, resume, progress=False)
    return module


def test_prior_resume_continues_exactly(tmp_path):
    straight = _train(tmp_path / "straight", 7)
    _train(tmp_path / "stopped", 3)
    resumed = _train(tmp_path / "stopped", 7, resume=tmp_path / "stopped" / "checkpoints" / "last.ckpt")
    a, b = straight.state_dict(), resumed.state_dict()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resume"
    L.seed_everything(0, verbose=False)
    initial = PriorModule(to_dict(MODEL), to_dict(TrainConfig()), "top", "x").state_dict()
    assert sum(not torch.equal(initial[name], a[name]) for name in a) > len(a) // 2

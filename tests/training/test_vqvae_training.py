"""Training the VQ-VAE with Lightning: exact resume, safe checkpoints, refusal of foreign checkpoints."""

import dataclasses

import lightning as L
import pytest
import torch

from tests.tiny import quick_train_config
from vqvid.metrics import psnr
from vqvid.models.vqvae import VQVAEConfig
from vqvid.persistence import load_vqvae, read_checkpoint
from vqvid.training.config import TrainConfig
from vqvid.training.data import TrainValData
from vqvid.training.runner import fit
from vqvid.training.vqvae import VQVAEModule

MODEL = VQVAEConfig(channels=8, res_channels=4, n_res_blocks=1, embed_dim=4, num_codes=16)


def _clips(n, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 4, 16, 16, generator=generator) * 2 - 1  # (N, 3, T, H, W)


def _train(out, steps, resume=None):
    config = quick_train_config(steps, warmup_steps=2)
    L.seed_everything(0, verbose=False)
    module = VQVAEModule.from_configs(MODEL, config)
    # 10 clips, batch 2: 5 steps per epoch, so the resume point (step 3) falls inside an epoch
    data = TrainValData(_clips(10, 1), _clips(2, 2), config.batch_size, 0, seed=0)
    fit(module, data, config, out, resume, progress=False)
    return module


def test_resume_continues_exactly(tmp_path):
    straight = _train(tmp_path / "straight", 8)
    _train(tmp_path / "stopped", 3)
    resumed = _train(tmp_path / "stopped", 8, resume=tmp_path / "stopped" / "checkpoints" / "last.ckpt")
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resume"
    # training moved every weight away from the (same-seed) initial ones, so the equality above is not trivial
    L.seed_everything(0, verbose=False)
    initial = VQVAEModule.from_configs(MODEL, TrainConfig()).state_dict()
    moved = [name for name in initial if initial[name].is_floating_point() and not torch.equal(initial[name], a[name])]
    assert len(moved) > len(initial) // 2


def test_checkpoint_loads_safely_and_refuses_other_files(tmp_path):
    _train(tmp_path / "run", 3)
    loaded = load_vqvae(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert loaded.config == MODEL and len(loaded.fingerprint) == 16
    video = _clips(1, 5)
    assert loaded.model.encode(video).top.shape == (1, 1, 2, 2)

    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="garbage.ckpt: not a complete PyTorch archive"):
        load_vqvae(garbage)
    prior_like = tmp_path / "prior.ckpt"
    checkpoint = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt", "vqvae")
    checkpoint["vqvid"]["kind"] = "prior"
    torch.save(checkpoint, prior_like)
    with pytest.raises(ValueError, match="expected a vqvid vqvae checkpoint, but it is a vqvid prior checkpoint"):
        load_vqvae(prior_like)


def test_interrupted_save_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    module = _train(tmp_path / "run", 3)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    before = last.read_bytes()

    import fsspec.implementations.local as local

    def dies_halfway(self, data):  # the process is killed in the middle of writing the new checkpoint
        raise KeyboardInterrupt

    monkeypatch.setattr(local.LocalFileOpener, "write", dies_halfway)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False)
    trainer.strategy.connect(module)
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint(last)
    monkeypatch.undo()
    assert last.read_bytes() == before
    assert load_vqvae(last).config == MODEL


def test_a_run_whose_loss_turns_non_finite_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    from vqvid.training.runner import NonFiniteTraining

    class Diverging(VQVAEModule):
        def training_step(self, video, batch_idx):
            loss = super().training_step(video, batch_idx)
            return loss * float("nan") if self.global_step >= 1 else loss  # the 2nd step diverges

    config = quick_train_config(3, val_every=1)
    L.seed_everything(0, verbose=False)
    module = Diverging.from_configs(MODEL, config)
    data = TrainValData(_clips(10, 1), _clips(2, 2), config.batch_size, 0, seed=0)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    with pytest.raises(NonFiniteTraining, match=f"the training loss is nan.*stopped \\({last} holds the last good"):
        fit(module, data, config, tmp_path / "run", progress=False)
    checkpoint = read_checkpoint(last, "vqvae")
    assert checkpoint["global_step"] == 1  # the checkpoint of step 1, not one of the diverged step
    assert all(torch.isfinite(tensor).all() for tensor in checkpoint["state_dict"].values())
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt", "step=1.ckpt"]


@pytest.mark.parametrize("weight", [1.0, 0.25])
def test_a_dropped_clip_counts_top_only_weight_of_a_full_reconstruction(weight):
    config = dataclasses.replace(MODEL, level_dropout=0.5, top_only_weight=weight, restart_threshold=0.0)
    module = VQVAEModule.from_configs(config, quick_train_config(1)).train()
    video = _clips(8, 3)
    torch.manual_seed(4)
    out, mse, loss = module._step(video)
    kept = out.bottom_kept
    assert 0 < kept.sum() < 8  # with this seed, some clips of eight are dropped and some kept
    per_clip = (out.reconstruction - video).pow(2).flatten(1).mean(1)
    expected = (per_clip * (kept + (1 - kept) * weight)).mean() + out.commitment_loss
    assert torch.allclose(loss, expected, rtol=1e-5)
    assert torch.allclose(mse, per_clip.mean(), rtol=1e-5)  # logged unweighted
    if weight < 1:
        assert loss < mse + out.commitment_loss  # dropped clips err more; their weight is below one


def test_validation_logs_what_the_top_level_decodes_to_alone(tmp_path):
    config = quick_train_config(12, warmup_steps=2, val_every=12, lr=1e-2)  # validated after the last step
    L.seed_everything(0, verbose=False)
    module = VQVAEModule.from_configs(MODEL, config)
    val_clips = _clips(2, 2)
    data = TrainValData(_clips(10, 1), val_clips, config.batch_size, 0, seed=0)
    run = fit(module, data, config, tmp_path / "run", progress=False)
    model = module.model.eval()
    with torch.no_grad():
        codes = model.encode(val_clips)
        top_only = psnr(model.decode_codes(codes.top, None).clamp(-1, 1), val_clips)
        both = psnr(model.decode_codes(codes.top, codes.bottom).clamp(-1, 1), val_clips)
    assert run.validation["val/psnr_top_only"] == pytest.approx(top_only, abs=1e-4)
    assert run.validation["val/psnr"] == pytest.approx(both, abs=1e-4)
    assert abs(top_only - both) > 1e-3  # the two decodings differ, so the logged figures cannot be swapped

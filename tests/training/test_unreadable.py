"""Clips that fail to read while a VQ-VAE trains: skipped with a warning, counted across DataLoader workers,
reported at the end; too many stop the run with an error naming the option."""

from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch
from torch.utils.data import Dataset

from tests.data.test_unreadable_clips import FlakyClips
from tests.tiny import quick_train_config
from vqvid.data import DataError, DataWarning
from vqvid.data.sources import SkipUnreadable
from vqvid.models.vqvae import VQVAEConfig
from vqvid.training.callbacks import UnreadableClips
from vqvid.training.data import TrainValData
from vqvid.training.runner import fit
from vqvid.training.vqvae import VQVAEModule

MODEL = VQVAEConfig(channels=8, res_channels=4, n_res_blocks=1, embed_dim=4, num_codes=16)


def test_a_clip_that_fails_is_replaced_by_the_next_readable_one_with_one_warning():
    clips = SkipUnreadable(FlakyClips(5, broken={1, 2, 4}), "training")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert torch.equal(clips[1], clips.dataset.clips[3])
        assert torch.equal(clips[4], clips.dataset.clips[0])  # wraps around
        assert torch.equal(clips[2], clips.dataset.clips[3])  # known failures are not read again
    messages = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert messages == ["training: skipping a clip that cannot be read: v.mp4: frame 1 at 0.100 s did not "
                        "decode again", "training: skipping a clip that cannot be read: v.mp4: frame 2 at "
                        "0.200 s did not decode again", "training: skipping a clip that cannot be read: v.mp4: "
                        "frame 4 at 0.400 s did not decode again"]
    assert clips.failed == [1, 2, 4]
    assert clips.report().startswith("training: 3 of 5 clips (60.0%) could not be read")
    with pytest.raises(DataError, match="none of the 2 clips"):
        SkipUnreadable(FlakyClips(2, broken={0, 1}), "training")[0]


def _train(out, train: Dataset, max_share: float, workers: int):
    config = quick_train_config(6, num_workers=workers, max_unreadable=max_share)
    L.seed_everything(0, verbose=False)
    module = VQVAEModule.from_configs(MODEL, config)
    train_set, val_set = SkipUnreadable(train, "training"), SkipUnreadable(FlakyClips(2, set()), "validation")
    data = TrainValData(train_set, val_set, config.batch_size, workers, seed=0)
    fit(module, data, config, out, callbacks=[UnreadableClips([train_set, val_set], max_share)],
        progress=False)
    return train_set


def test_training_skips_a_broken_clip_read_in_a_worker_and_reports_it(tmp_path, capfd):
    train_set = _train(tmp_path / "run", FlakyClips(10, broken={3}), max_share=0.1, workers=1)
    assert train_set.failed == [3]  # marked in the worker process, seen here
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
    assert "training: 1 of 10 clips (10.0%) could not be read and were skipped: v.mp4@frame=3" in \
        capfd.readouterr().err


def test_training_stops_once_more_than_the_allowed_share_fails(tmp_path):
    with pytest.warns(DataWarning), pytest.raises(DataError, match=r"2 of 10 clips .*train\.max_unreadable = 0\.1"):
        _train(tmp_path / "run", FlakyClips(10, broken={3, 7}), max_share=0.1, workers=0)

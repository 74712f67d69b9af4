"""Training a prior with Lightning: a stop and a resume continue exactly, dropout included; a new run starts
its code embeddings from the codebooks in the code store."""

from dataclasses import replace
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from tests.tiny import quick_train_config
from vqvid.config import to_dict
from vqvid.data.codes import CodeStore, CodeStoreMeta
from vqvid.models.pixelsnail import PixelSNAILConfig, codebook_coordinates
from vqvid.persistence import read_checkpoint
from vqvid.presets import PriorRun
from vqvid.training.config import TrainConfig
from vqvid.training.data import TrainValData
from vqvid.training.prior import PriorModule, train_prior_run
from vqvid.training.runner import VALIDATION_HISTORY, TrainedRun, fit, read_validation_history

MODEL = PixelSNAILConfig(num_codes=8, shape=(2, 4, 4), channels=8, n_blocks=1, n_res_blocks=1, attention=True,
                         n_heads=1, key_channels=4, value_channels=8, dropout=0.3, embed_dim=4)


def _train(out, steps, resume=None, model=MODEL, **changes):
    config = quick_train_config(steps, lr=1e-2, **changes)
    L.seed_everything(0, verbose=False)
    module = PriorModule(to_dict(model), to_dict(config), "top", "vqvae-fingerprint")
    codes = torch.randint(0, 8, (10, 2, 4, 4), generator=torch.Generator().manual_seed(1))
    data = TrainValData(list(codes), list(codes[:2]), config.batch_size, 0, seed=0)
    module.run = fit(module, data, config, out, resume, progress=False)
    return module


def test_a_run_shorter_than_val_every_still_ends_validated(tmp_path):
    run = _train(tmp_path / "short", 2, val_every=5).run
    assert set(run.validation) == {"val/bits_per_code", "val/accuracy"}
    assert read_checkpoint(run.last, "prior")["global_step"] == 2  # the weights that validation measured
    assert (tmp_path / "short" / "checkpoints" / "step=2.ckpt").is_file()
    logged = np.genfromtxt(tmp_path / "short" / "logs" / "metrics.csv", delimiter=",", names=True)
    assert logged["step"][~np.isnan(logged["valbits_per_code"])].tolist() == [2]  # once, after the last step


# With a copy head, training takes `PixelSNAIL.score`'s path; stopped after 4 steps (val_every 3), the run
# ends with a validation and a checkpoint of its own.
@pytest.mark.parametrize(("copy_head", "stop"), [(False, 3), (True, 3), (False, 4)])
def test_prior_resume_continues_exactly(tmp_path, copy_head, stop):
    model = replace(MODEL, copy_head=copy_head)
    straight = _train(tmp_path / "straight", 7, model=model)
    _train(tmp_path / "stopped", stop, model=model)
    assert read_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.ckpt", "prior")["global_step"] == stop
    resumed = _train(tmp_path / "stopped", 7, resume=tmp_path / "stopped" / "checkpoints" / "last.ckpt",
                     model=model)
    a, b = straight.state_dict(), resumed.state_dict()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resume"
    L.seed_everything(0, verbose=False)
    initial = PriorModule(to_dict(model), to_dict(TrainConfig()), "top", "x").state_dict()
    assert sum(not torch.equal(initial[name], a[name]) for name in a) > len(a) // 2


def test_every_validation_is_kept_by_step_and_a_resume_continues_the_history(tmp_path):
    run = _train(tmp_path / "straight", 7).run
    assert [step for step, _ in run.history] == [3, 6, 7]  # every val_every steps, and the last step
    assert run.history[-1][1] == run.validation
    assert read_validation_history(tmp_path / "straight" / VALIDATION_HISTORY) == run.history
    logged = np.genfromtxt(tmp_path / "straight" / "logs" / "metrics.csv", delimiter=",", names=True)
    validated = ~np.isnan(logged["valbits_per_code"])
    assert [figures["val/bits_per_code"] for _, figures in run.history] == \
        pytest.approx(logged["valbits_per_code"][validated].tolist())

    _train(tmp_path / "stopped", 4)  # validated at steps 3 and 4
    resumed = _train(tmp_path / "stopped", 7, resume=tmp_path / "stopped" / "checkpoints" / "step=3.ckpt").run
    # From step 3: the validation of step 4, which the resumed run does not continue, is dropped
    assert [step for step, _ in resumed.history] == [3, 6, 7]
    assert resumed.history == run.history  # the resume is exact, so are its validations
    # Resumed at its last step, a run trains nothing and validates that step again: the history stays whole
    again = _train(tmp_path / "stopped", 7, resume=tmp_path / "stopped" / "checkpoints" / "last.ckpt").run
    assert again.history == run.history


def _validated(*bits: float, run: Path = Path("run")) -> TrainedRun:
    history = [(100 * (i + 1), {"val/bits_per_code": value}) for i, value in enumerate(bits)]
    return TrainedRun(run / "checkpoints" / "last.ckpt", history)


def test_a_run_that_got_worse_on_validation_names_its_best_checkpoint(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "step=200.ckpt").touch()
    note = _validated(5.0, 4.0, 4.6, run=tmp_path).overfit_note("val/bits_per_code", lower_is_better=True,
                                                                 margin=0.05)
    assert "best at step 200 (4)" in note and "at step 300 it is 4.6" in note
    assert f"{tmp_path / 'checkpoints' / 'step=200.ckpt'} holds the weights of step 200" in note
    # A checkpoint that is no longer there is not offered
    gone = _validated(5.0, 4.0, 4.6).overfit_note("val/bits_per_code", True, 0.05)
    assert "holds the weights" not in gone and gone.endswith("clips. Train for fewer steps or on more clips")
    # Still improving, or within the margin of the best, or never validated on that metric: nothing to say
    assert _validated(5.0, 4.0, 3.9).overfit_note("val/bits_per_code", True, 0.05) is None
    assert _validated(5.0, 4.0, 4.04).overfit_note("val/bits_per_code", True, 0.05) is None
    assert _validated(5.0, 4.0, 4.6).overfit_note("val/psnr", False, 0.25) is None
    assert _validated(4.0).overfit_note("val/bits_per_code", True, 0.05) is None
    # Higher is better (PSNR): the same history read the other way
    psnr = _validated(20.0, 25.0, 24.0).overfit_note("val/bits_per_code", lower_is_better=False, margin=0.25)
    assert "best at step 200 (25)" in psnr


def _code_store(path, codebooks: bool, seed: int = 0, clips: int = 10):
    meta = CodeStoreMeta("vqvae-fingerprint", (1, 2, 2), (2, 4, 4), 8, "random codes")
    rng = np.random.default_rng(seed)
    with CodeStore.create_or_open(path, meta) as store:
        store.append(rng.integers(0, 8, (clips, 1, 2, 2)), rng.integers(0, 8, (clips, 2, 4, 4)),
                     [f"clip {k}" for k in range(clips)], list(range(clips)))
        if codebooks:
            store.put_codebooks(*rng.normal(size=(2, 8, 3)).astype(np.float32))
    return path


def _first_step_embeddings(tmp_path, codebooks: bool):
    """The bottom prior's code and condition embeddings after three steps (and a validation) at a negligible
    learning rate."""
    codes = _code_store(tmp_path / "codes", codebooks)
    run = PriorRun(model=PixelSNAILConfig(channels=8, n_blocks=1, attention=False, embed_dim=4,
                                          condition_channels=4, dropout=0.0),
                   train=quick_train_config(3, lr=1e-9))
    result = train_prior_run(run, "bottom", codes, None, tmp_path / "run", None, progress=False)
    assert set(result.validation) == {"val/bits_per_code", "val/accuracy"}
    assert 0 < result.validation["val/bits_per_code"] < 20
    state = read_checkpoint(result.last, "prior")["state_dict"]
    return state["model.embedding.weight"], state["model.condition_embedding.weight"]


def test_train_prior_says_which_checkpoint_was_best_when_it_overfits(tmp_path, capsys):
    from vqvid.commands import train

    # 4 clips of random codes, validated on 4 others: the prior can only memorise, and gets worse on validation
    codes, val = _code_store(tmp_path / "codes", False, clips=4), _code_store(tmp_path / "val", False, 1, 4)
    argv = ["prior", "--level", "top", "--codes", str(codes), "--val-codes", str(val), "--out", str(tmp_path / "run"),
            "--no-progress", "--max-steps", "40", "train.val_every=10", "train.lr=0.01", "train.batch_size=4",
            "train.val_batches=1", "train.logger=csv", "train.lr_schedule=constant", "model.dropout=0"]
    with pytest.warns(UserWarning, match="holds no codebooks"):
        assert train.main(argv) == 0
    history = read_validation_history(tmp_path / "run" / VALIDATION_HISTORY)
    bits = {step: figures["val/bits_per_code"] for step, figures in history}
    assert list(bits) == [10, 20, 30, 40] and bits[40] > min(bits.values()) + 1
    best = min(bits, key=bits.get)
    out = capsys.readouterr().out
    assert f"note: val/bits_per_code was best at step {best}" in out
    assert str(tmp_path / "run" / "checkpoints" / f"step={best}.ckpt") in out
    assert (tmp_path / "run" / "checkpoints" / f"step={best}.ckpt").is_file()


def test_a_new_prior_starts_from_the_stores_codebooks(tmp_path):
    embedding, condition_embedding = _first_step_embeddings(tmp_path, codebooks=True)
    with CodeStore.open(tmp_path / "codes") as store:
        codebooks = store.codebooks()
    torch.testing.assert_close(embedding[:, :3], codebook_coordinates(torch.from_numpy(codebooks.bottom), 4),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(condition_embedding[:, :3],
                               codebook_coordinates(torch.from_numpy(codebooks.top), 4), atol=1e-6, rtol=0)


def test_a_store_without_codebooks_trains_from_random_embeddings_with_a_warning(tmp_path):
    with pytest.warns(UserWarning, match="holds no codebooks"):
        embedding, _ = _first_step_embeddings(tmp_path, codebooks=False)
    assert embedding.std() > 0.5  # nn.Embedding's N(0, 1) start, not zeros


def test_resuming_from_a_prior_of_another_level_or_config_is_refused_before_training(tmp_path):
    from tests.tiny import write_checkpoint
    from vqvid.models.pixelsnail import PixelSNAIL

    codes = _code_store(tmp_path / "codes", codebooks=False)
    top = write_checkpoint(tmp_path / "top.ckpt", "prior", PixelSNAIL(MODEL),
                           {"model": to_dict(MODEL), "level": "top", "vqvae_fingerprint": "vqvae-fingerprint"})
    run = PriorRun(model=PixelSNAILConfig(channels=8, n_blocks=1, attention=False, embed_dim=4,
                                          condition_channels=4, dropout=0.0), train=quick_train_config(3))
    with pytest.raises(ValueError, match="top.ckpt: a top prior, not a bottom prior"):
        train_prior_run(run, "bottom", codes, None, tmp_path / "run", top, progress=False)
    assert not (tmp_path / "run").exists()
    # the same level with one field changed: the message names it, and the override that matches the checkpoint
    normed = replace(MODEL, condition_norm=True)
    with pytest.raises(ValueError, match=r"differing in .*model\.condition_norm\).*'model\.condition_norm=false'"):
        train_prior_run(PriorRun(model=normed, train=quick_train_config(3)), "top", codes, None, tmp_path / "run",
                        top, progress=False)
    assert not (tmp_path / "run").exists()


def test_bits_per_code_is_the_mean_negative_log2_likelihood_of_every_code():
    from vqvid.models.pixelsnail import PixelSNAIL
    from vqvid.training.prior import bits_per_code, bits_per_frame

    torch.manual_seed(0)
    prior = PixelSNAIL(MODEL)
    clips = [torch.randint(0, MODEL.num_codes, MODEL.shape) for _ in range(5)]  # batches of 2, 2 and 1
    codes = torch.stack(clips)
    log_probs = prior.eval().log_probs(codes)  # (N, K, T, H, W), the reference layout
    expected = -log_probs.gather(1, codes[:, None]).mean().item() / np.log(2)
    assert bits_per_code(prior, clips, batch_size=2) == pytest.approx(expected, rel=1e-6)
    # frame by frame: frame t's codes alone
    per_frame = -log_probs.gather(1, codes[:, None]).squeeze(1).mean((0, 2, 3)) / np.log(2)
    assert bits_per_frame(prior, clips, batch_size=2) == pytest.approx(per_frame.tolist(), rel=1e-6)


@pytest.mark.parametrize("level", ["top", "bottom"])
def test_the_overrides_a_refused_resume_suggests_parse_back_to_the_checkpoints_values(level):
    """Every field of a prior's config, written as the refusal writes it (None as null, booleans lowercase,
    shapes as lists), is read back by the override parser as the same value."""
    from vqvid.config import override_value, resolve
    from vqvid.presets import PriorRun, get_preset

    run = get_preset("tiny").prior(level)
    overrides = [f"model.{name}={override_value(getattr(run.model, name))}" for name in to_dict(run.model)]
    assert any("=null" in o for o in overrides) == (level == "top")  # the top prior has no condition
    assert resolve(PriorRun, run, None, overrides) == run

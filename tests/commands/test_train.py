"""`vqvid train` through `main(argv)` and the `vqvid` entry point: refusals in one line that name the option
(hardware Lightning cannot load, a precision that is none, a run of the other stage, a --max-steps the run is
past), and Ctrl-C."""

from __future__ import annotations

import importlib.util
import shutil
import signal
from pathlib import Path

import pytest

from vqvid import cli
from vqvid.commands import train
from vqvid.config import save_yaml
from vqvid.presets import VQVAERun, get_preset

pytestmark = pytest.mark.usefixtures("one_thread")
TINY_RUN = ["--data", "synthetic:2", "--batch-size", "1", "--no-progress"]


def refused(code: int, capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert all(needle in err for needle in needles), err
    return err


@pytest.mark.skipif(importlib.util.find_spec("torch_xla") is not None, reason="needs a machine without torch_xla")
def test_an_accelerator_whose_package_is_missing_is_refused_by_its_flag(tmp_path, capsys):
    out = tmp_path / "run"
    code = train.main(["vqvae", *TINY_RUN, "--out", str(out), "--max-steps", "1", "--accelerator", "tpu"])
    refused(code, capsys, "--accelerator tpu", "torch_xla")
    assert not out.exists()


def test_a_precision_that_is_none_is_refused_with_the_accepted_values(tmp_path, capsys):
    out = tmp_path / "run"
    code = train.main(["vqvae", *TINY_RUN, "--out", str(out), "--max-steps", "1", "--precision", "7"])
    refused(code, capsys, "vqvid train vqvae: --precision 7: not a Lightning precision", "'bf16-mixed'", "'32'")
    assert not out.exists()


def test_a_numeric_precision_reaches_lightning_as_the_string_it_accepts(tmp_path):
    args = train.build_parser().parse_args(["vqvae", "--data", "synthetic:2", "--out", str(tmp_path),
                                            "--precision", "32", "--accelerator", "cpu"])
    run = train.resolve_run(VQVAERun, get_preset("tiny").vqvae, args)
    assert (run.train.precision, run.train.accelerator) == ("32", "cpu")


def test_overrides_are_taken_after_options_too_and_anything_else_is_refused(tmp_path, capsys):
    args = train.parse_args(["vqvae", "--data", "synthetic:2", "train.lr=5e-4", "--out", str(tmp_path),
                             "--no-progress", "model.channels=8", "model.res_channels=4"])
    assert args.overrides == ["train.lr=5e-4", "model.channels=8", "model.res_channels=4"]
    run = train.resolve_run(VQVAERun, get_preset("tiny").vqvae, args)
    assert (run.train.lr, run.model.channels, run.model.res_channels) == (5e-4, 8, 4)
    with pytest.raises(SystemExit):
        train.parse_args(["vqvae", "--data", "synthetic:2", "--out", str(tmp_path), "train.lr=5e-4",
                          "--no-progress", "--unknown-flag"])
    assert "unrecognized arguments: --unknown-flag" in capsys.readouterr().err


@pytest.mark.parametrize(("stage", "saved", "found", "asked"), [
    ("prior", VQVAERun(), "a VQ-VAE run, not a prior run", "`vqvid train vqvae --resume`"),
    ("vqvae", get_preset("tiny").prior("top"), "a prior run, not a VQ-VAE run", "`vqvid train prior --resume`"),
])
def test_resuming_a_run_of_the_other_stage_says_which_it_is(tmp_path, capsys, stage, saved, found, asked):
    out = tmp_path / "run"
    out.mkdir()
    save_yaml(saved, out / "config.yaml")
    inputs = ["--level", "top", "--codes", str(tmp_path / "codes")] if stage == "prior" else TINY_RUN
    code = train.main([stage, *inputs, "--out", str(out), "--resume", "--no-progress"])
    refused(code, capsys, f"--out {out}: holds {found}", asked)
    assert [p.name for p in out.iterdir()] == ["config.yaml"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A VQ-VAE run of 2 steps."""
    out = tmp_path_factory.mktemp("trained") / "run"
    assert train.main(["vqvae", *TINY_RUN, "--out", str(out), "--max-steps", "2"]) == 0
    return out


def test_resuming_to_a_step_the_run_is_past_is_refused(trained, tmp_path, capsys):
    out = shutil.copytree(trained, tmp_path / "run")
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    capsys.readouterr()
    code = train.main(["vqvae", *TINY_RUN, "--out", str(out), "--resume", "--max-steps", "1"])
    refused(code, capsys, "the run is at step 2, past --max-steps 1, so nothing would be trained",
            "give --max-steps above 2")
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before


def test_resuming_at_the_runs_own_step_says_that_nothing_is_trained(trained, tmp_path, capsys):
    out = shutil.copytree(trained, tmp_path / "run")
    capsys.readouterr()
    assert train.main(["vqvae", *TINY_RUN, "--out", str(out), "--resume"]) == 0
    printed = capsys.readouterr().out
    assert (f"note: --resume {out / 'checkpoints' / 'last.ckpt'}: the run is at step 2, which is "
            "train.max_steps=2: nothing is trained") in printed


def test_a_copied_run_resumes_into_its_own_last_checkpoint(trained, tmp_path):
    from vqvid.persistence import read_checkpoint

    out = shutil.copytree(trained, tmp_path / "copy")  # Lightning recorded the original's checkpoint folder
    assert train.main(["vqvae", *TINY_RUN, "--out", str(out), "--resume", "--max-steps", "3"]) == 0
    assert sorted(path.name for path in (out / "checkpoints").iterdir()) == ["last.ckpt", "step=2.ckpt",
                                                                             "step=3.ckpt"]
    assert read_checkpoint(out / "checkpoints" / "last.ckpt", "vqvae", "last")["global_step"] == 3


def test_resuming_with_other_training_settings_is_refused_and_the_run_kept(trained, tmp_path, capsys):
    out = shutil.copytree(trained, tmp_path / "run")
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    capsys.readouterr()
    code = train.main(["vqvae", *TINY_RUN, "--out", str(out), "--resume", "--max-steps", "3", "train.lr=5e-4",
                       "train.seed=7"])
    refused(code, capsys, "--resume: train.lr=0.0005 (the run's: 0.002); train.seed=7 (the run's: 0)",
            "another --out")
    code = train.main(["vqvae", *TINY_RUN, "--out", str(out), "--resume", "--max-steps", "3", "data.size=32"])
    refused(code, capsys, "--resume: data ")
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before


def test_a_run_whose_config_no_longer_reads_resumes_from_a_config_given_in_full(trained, tmp_path, capsys):
    out = shutil.copytree(trained, tmp_path / "run")
    given = tmp_path / "given.yaml"
    shutil.copy(out / "config.yaml", given)
    with (out / "config.yaml").open("a") as file:
        file.write("retired_section: {old_field: 1}\n")  # as a config.yaml of another version might read
    capsys.readouterr()
    refused(train.main(["vqvae", *TINY_RUN, "--out", str(out), "--resume", "--max-steps", "3"]), capsys,
            "retired_section")
    with pytest.warns(UserWarning, match="does not read as this version's config; the run continues from --config"):
        code = train.main(["vqvae", *TINY_RUN, "--out", str(out), "--resume", "--max-steps", "3", "--config",
                           str(given)])
    assert code == 0


def test_ctrl_c_while_training_is_one_line_with_status_130(tmp_path, capsys, monkeypatch):
    from vqvid.training.runner import StepSeed

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(StepSeed, "on_train_batch_start", interrupted)
    handler = signal.getsignal(signal.SIGINT)
    try:
        code = cli.main(["train", "vqvae", *TINY_RUN, "--out", str(tmp_path / "run"), "--max-steps", "2"])
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores Ctrl-C from its shutdown on
    assert code == 130
    assert capsys.readouterr().err.splitlines()[-1] == "vqvid train: interrupted"
    assert not list((tmp_path / "run").rglob("*.ckpt")) and not list(tmp_path.rglob("*.partial*"))

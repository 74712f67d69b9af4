"""User errors end in one line that names the option, exit status 2, before any work is done, and nothing
already on disk is lost: bad option values, impossible hardware, a run folder that holds a run, an export over a
folder that is not a model folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.tiny import CLIP_FRAMES, SIZE
from vqvid.commands import compress, export, predict, prepare, rd, reconstruct, train
from vqvid.data.synthetic import write_synthetic_videos

pytestmark = pytest.mark.usefixtures("one_thread")
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")


def refused(code: int, capsys, option: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert option in err, err
    return err


@pytest.mark.parametrize(("flags", "option"), [
    (["--max-clips", "0"], "--max-clips 0"),
    (["--max-clips", "-1"], "--max-clips -1"),
    (["--batch-size", "0"], "--batch-size 0"),
    (["--fps", "-5"], "--fps -5"),
    (["--fps", "nan"], "--fps nan"),
    (["--device", "bogus"], "--device bogus"),
    pytest.param(["--device", "cuda"], "--device cuda", marks=NO_CUDA),
])
def test_reconstruct_refuses_bad_options(models, tmp_path, capsys, flags, option):
    out = tmp_path / "out.gif"
    code = reconstruct.main(["synthetic:2", "--vqvae", str(models["vqvae"]), "-o", str(out), *flags])
    refused(code, capsys, option)
    assert not out.exists()


def test_reconstruct_refuses_an_output_it_cannot_write_before_computing(models, tmp_path, capsys, monkeypatch):
    import vqvid.persistence

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(vqvid.persistence, "load_vqvae", no_model)
    code = reconstruct.main(["synthetic:2", "--vqvae", str(models["vqvae"]), "-o", str(tmp_path / "out.txt")])
    refused(code, capsys, "-o")
    assert not (tmp_path / "out.txt").exists()


@pytest.mark.parametrize("device", ["bogus", pytest.param("cuda", marks=NO_CUDA)])
def test_compress_refuses_a_device_it_does_not_have(models, tmp_path, capsys, device):
    code = compress.main(["synthetic:1", "--model", str(models["model"]), "-o", str(tmp_path / "a.vqv"),
                          "--device", device, "--no-progress"])
    refused(code, capsys, f"--device {device}")


def test_rd_refuses_zero_clips(models, tmp_path, capsys):
    code = rd.main(["synthetic:1", "--model", str(models["model"]), "--max-clips", "0",
                    "-o", str(tmp_path / "rd.png")])
    refused(code, capsys, "--max-clips 0")


@pytest.mark.parametrize(("fps", "shown"), [("inf", "--fps inf"), ("1e9", "--fps 1000000000.0")])
def test_prepare_refuses_impossible_frame_rates(tmp_path, capsys, fps, shown):
    code = prepare.main(["synthetic:2", "--out", str(tmp_path / "store"), "--fps", fps, "--quiet"])
    refused(code, capsys, shown)
    assert not (tmp_path / "store").exists()


def test_prepare_refuses_a_frame_folder_with_a_stray_far_number(tmp_path, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for n in [*range(16), 1_000_000_000]:
        Image.fromarray(np.full((8, 8, 3), n % 256, np.uint8)).save(folder / f"{n}.png")
    with pytest.warns(UserWarning, match=r"15.png and 1000000000.png are 999,999,985 frame numbers apart"):
        code = prepare.main([str(folder), "--out", str(tmp_path / "store"), "--fps", "10", "--frames", "4",
                             "--size", "8", "--quiet"])
    refused(code, capsys, "no usable clip")


@pytest.mark.parametrize(("override", "field"), [
    ("train.lr=[", "train.lr"),
    ("train.lr=.inf", "train.lr"),
    ("train.lr=.nan", "train.lr"),
    ("model.beta=-.inf", "model.beta"),
])
def test_train_refuses_bad_overrides_and_leaves_nothing(tmp_path, capsys, override, field):
    out = tmp_path / "run"
    code = train.main(["vqvae", "--data", "synthetic:4", "--out", str(out), "--no-progress", override])
    refused(code, capsys, field)
    assert not out.exists()


@NO_CUDA
def test_train_refuses_a_gpu_it_does_not_have_and_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    code = train.main(["vqvae", "--data", "synthetic:4", "--out", str(out), "--no-progress", "--accelerator",
                       "gpu"])
    refused(code, capsys, "--accelerator gpu")
    assert not out.exists()


def test_train_refuses_a_folder_that_holds_a_run_without_resume(tmp_path, capsys):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "config.yaml").write_text("kept: true\n")
    (out / "checkpoints" / "last.ckpt").write_bytes(b"the old run")
    code = train.main(["vqvae", "--data", "synthetic:4", "--out", str(out), "--no-progress", "--max-steps", "1"])
    err = refused(code, capsys, f"--out {out}")
    assert "--resume" in err
    assert (out / "config.yaml").read_text() == "kept: true\n"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.ckpt"]


def test_train_starts_afresh_in_a_run_that_stopped_before_its_first_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["vqvae", "--out", str(out), "--no-progress", "--max-steps", "1", "train.batch_size=2",
            "train.num_workers=0", "model.channels=8", "model.res_channels=4"]
    # One clip cannot fill a batch: the run stops with its config and logs written and no checkpoint
    assert train.main([*argv, "--data", "synthetic:1"]) != 0
    assert (out / "config.yaml").exists() and not (out / "checkpoints").exists()
    capsys.readouterr()
    argv += ["--data", "synthetic:4"]
    code = train.main([*argv, "--resume", "last"])
    err = refused(code, capsys, "--resume")
    assert "stopped before its first checkpoint: train again without --resume" in err
    assert train.main(argv) == 0
    assert "holds a run that stopped before its first checkpoint; this one starts afresh" in capsys.readouterr().out
    assert (out / "checkpoints" / "last.ckpt").exists()
    # A user's own file in the folder, or a checkpoint, keeps it refused
    (out / "checkpoints" / "last.ckpt").unlink()
    (out / "notes.txt").write_text("mine")
    refused(train.main(argv), capsys, f"--out {out}")
    assert (out / "notes.txt").read_text() == "mine"


def test_export_refuses_a_folder_that_is_not_a_model_folder(models, tmp_path, capsys):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    code = export.main(["--vqvae", str(models["vqvae"]), "--out", str(out)])
    refused(code, capsys, f"--out {out}")
    assert (out / "thesis.tex").read_text() == "years of work"
    assert export.main(["--vqvae", str(models["vqvae"]), "--out", str(out), "--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "vqvae.safetensors"]


def test_export_replaces_a_model_folder_and_writes_with_the_users_umask(models, tmp_path):
    out = tmp_path / "model"
    previous = os.umask(0o022)
    try:
        assert export.main(["--vqvae", str(models["vqvae"]), "--top", str(models["top"]), "--bottom",
                            str(models["bottom"]), "--out", str(out)]) == 0
        assert out.stat().st_mode & 0o777 == 0o755
        assert export.main(["--vqvae", str(models["vqvae"]), "--out", str(out)]) == 0  # replaced whole
    finally:
        os.umask(previous)
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "vqvae.safetensors"]
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in out.iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind
    assert "top" not in json.loads((out / "model.json").read_text())


def test_a_closed_pipe_is_not_a_traceback(models, tmp_path):
    """`vqvid info A.vqv | true`: the reader is gone before vqvid writes."""
    vqv = tmp_path / "a.vqv"
    assert compress.main(["synthetic:1", "--model", str(models["model"]), "-o", str(vqv), "--no-progress"]) == 0
    read, write = os.pipe()
    os.close(read)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-m", "vqvid", "info", str(vqv)], stdout=write,
                            stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    os.close(write)
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr, result.stderr
    assert result.returncode == 1


def test_decompress_on_a_full_disk_keeps_the_old_video(models, tmp_path, capsys, monkeypatch):
    import errno

    from vqvid import viz
    from vqvid.commands import decompress

    vqv, out = tmp_path / "a.vqv", tmp_path / "out.mp4"
    assert compress.main(["synthetic:1", "--model", str(models["model"]), "-o", str(vqv), "--no-progress"]) == 0
    argv = [str(vqv), "--model", str(models["model"]), "-o", str(out), "--no-progress"]
    assert decompress.main(argv) == 0
    before = out.read_bytes()

    def disk_full(path, *args):
        with open(path, "wb") as file:
            file.write(b"\0" * 2048)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(viz, "write_video", disk_full)
    refused(decompress.main(argv), capsys, "No space left on device")
    assert out.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _commands(models: dict[str, Path], source: Path) -> dict[str, tuple]:
    """For each command that writes files: its main, its arguments but the outputs, and its output options with
    a suffix each accepts."""
    model = ["--model", str(models["model"])]
    return {
        "reconstruct": (reconstruct.main, [str(source), "--vqvae", str(models["vqvae"])],
                        {"-o": ".gif", "--json": ".json"}),
        "predict": (predict.main, [*model, str(source), "--context", "4", "--frames", str(CLIP_FRAMES),
                                   "--samples", "1", "--no-progress"],
                    {"-o": ".gif", "--json": ".json", "--save-samples": ".pt"}),
        "compress": (compress.main, [*model, str(source), "--no-progress"], {"-o": ".vqv", "--json": ".json"}),
        "rd": (rd.main, [*model, str(source), "--codecs", "libx264", "--crf", "51"], {"-o": ".png", "--json": ".json"}),
    }


def _other_outputs(outputs: dict[str, str], option: str, folder: Path) -> list[str]:
    """Arguments giving every output option but `option` a file `folder/other<suffix>`."""
    return [arg for flag, suffix in outputs.items() if flag != option for arg in (flag, str(folder / f"other{suffix}"))]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    (video,) = write_synthetic_videos(tmp_path_factory.mktemp("source"), 1, frames=CLIP_FRAMES, size=SIZE)
    return video


@pytest.mark.parametrize("command", ["reconstruct", "predict", "compress", "rd"])
def test_no_output_may_replace_an_input(models, source, tmp_path, capsys, command):
    main, arguments, outputs = _commands(models, source)[command]
    original = source.read_bytes()
    copy = tmp_path / source.name
    copy.write_bytes(original)  # the input, under each output's suffix where the command can read one
    for option, suffix in outputs.items():
        target = copy.with_suffix(suffix)
        if target != copy:
            target.hardlink_to(copy)  # another name of the same file
        others = _other_outputs(outputs, option, tmp_path)
        code = main([*[str(copy) if a == str(source) else a for a in arguments], option, str(target), *others])
        refused(code, capsys, f"{option} {target}")
        assert copy.read_bytes() == original
        if target != copy:
            target.unlink()
    assert not list(tmp_path.glob("other*"))


@pytest.mark.parametrize("command", ["reconstruct", "predict", "compress", "rd"])
def test_no_two_outputs_may_be_one_file(models, source, tmp_path, capsys, command):
    main, arguments, outputs = _commands(models, source)[command]
    shared = tmp_path / f"out{outputs['-o']}"
    code = main([*arguments, "-o", str(shared), "--json", str(shared)])
    refused(code, capsys, f"--json {shared}: this is another output, {shared}")
    if command == "predict":
        samples = tmp_path / "s.pt"
        code = main([*arguments, "-o", str(shared), "--save-samples", str(samples), "--json", str(samples)])
        refused(code, capsys, f"--json {samples}: this is another output, {samples}")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("command", ["reconstruct", "predict", "compress", "rd"])
def test_outputs_go_into_folders_made_for_them_and_not_under_a_file(models, source, tmp_path, capsys, command):
    main, arguments, outputs = _commands(models, source)[command]
    blocker = tmp_path / "a_file"
    blocker.write_text("kept")
    for option, suffix in outputs.items():
        target = blocker / f"out{suffix}"
        refused(main([*arguments, option, str(target), *_other_outputs(outputs, option, tmp_path)]), capsys,
                f"{option} {target}")
        assert blocker.read_text() == "kept" and not list(tmp_path.glob("other*"))
    written = {option: tmp_path / f"new_{option.strip('-')}" / "deeper" / f"out{suffix}"
               for option, suffix in outputs.items()}
    assert main([*arguments, *[arg for option, path in written.items() for arg in (option, str(path))]]) == 0, \
        capsys.readouterr().err
    assert all(path.is_file() and path.stat().st_size > 0 for path in written.values())


def test_a_skipped_file_is_one_warning_line_naming_it(models, source, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / source.name).write_bytes(source.read_bytes())
    (folder / "cut.mp4").write_bytes(source.read_bytes()[:-200])  # cut short: no frame decodes
    result = subprocess.run([sys.executable, "-m", "vqvid", "reconstruct", str(folder), "--vqvae",
                             str(models["vqvae"]), "-o", str(tmp_path / "out.gif")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if "cut.mp4" in line]
    assert len(warned) == 1 and warned[0].startswith(f"vqvid reconstruct: warning: skipping {folder / 'cut.mp4'}: ")
    assert "reconstruct.py" not in result.stderr  # no source line of vqvid's


@pytest.mark.parametrize("crf", ["52", "-1"])
def test_rd_refuses_a_crf_out_of_range_by_its_flag(models, source, tmp_path, capsys, crf):
    main, arguments, _ = _commands(models, source)["rd"]
    refused(main([*arguments, "-o", str(tmp_path / "rd.png"), "--crf", "23", crf]), capsys, f"--crf {crf}")
    assert not (tmp_path / "rd.png").exists()


def test_rd_lists_the_codecs_it_knows(models, source, tmp_path, capsys):
    from vqvid.codec.baseline import CODECS

    assert tuple(rd.build_parser()._option_string_actions["--codecs"].choices) == CODECS  # kept in step
    main, arguments, _ = _commands(models, source)["rd"]
    with pytest.raises(SystemExit) as stopped:
        main([*arguments, "-o", str(tmp_path / "rd.png"), "--codecs", "x264"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err  # argparse quotes the choices in some Python versions, not in others
    assert "argument --codecs: invalid choice: 'x264' (choose from " in err and "libx264" in err and "libx265" in err

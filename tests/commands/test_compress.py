"""`vqvid compress`, `decompress` and `info` end to end through `main(argv)`, with model folders of tiny
random-weight models written by `export_model`."""

from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from einops import rearrange
from PIL import Image, ImageSequence

from tests.codec.test_video_codec import CLIP_FRAMES, NUM_CODES, SIZE, tiny_priors, tiny_vqvae
from tests.tiny import write_checkpoint
from vqvid.codec import read_vqv
from vqvid.codec.video import decompress_codes
from vqvid.commands import compress, decompress, info
from vqvid.config import to_dict
from vqvid.data import from_uint8_frames, write_synthetic_videos
from vqvid.persistence import export_model, fingerprint, load_model_folder

FRAMES = 6  # one whole clip of 4 and a partial one




pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Two model folders of the same VQ-VAE: with both priors, and without any."""
    root = tmp_path_factory.mktemp("models")
    vqvae = tiny_vqvae()
    vqvae_config = to_dict(vqvae.config)
    data = {"frames": CLIP_FRAMES, "stride": CLIP_FRAMES, "size": SIZE}
    vqvae_path = write_checkpoint(root / "vqvae.ckpt", "vqvae", vqvae, {"model": vqvae_config, "data": data})
    priors = {}
    for level, prior in zip(("top", "bottom"), tiny_priors(), strict=True):
        hyper_parameters = {"model": to_dict(prior.config), "level": level,
                            "vqvae_fingerprint": fingerprint(vqvae.config, vqvae.state_dict())}
        priors[level] = write_checkpoint(root / f"{level}.ckpt", "prior", prior, hyper_parameters)
    return {"priors": export_model(vqvae_path, root / "model", priors["top"], priors["bottom"]),
            "fixed": export_model(vqvae_path, root / "vqvae_only")}


@pytest.fixture(scope="module")
def frame_folder(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """FRAMES numbered PNG images of noise at the model's size, and the frames (FRAMES, 16, 16, 3) uint8."""
    folder = tmp_path_factory.mktemp("frames")
    frames = np.random.default_rng(0).integers(0, 256, (FRAMES, SIZE, SIZE, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"frame_{i:03d}.png")
    return folder, frames


def test_compress_info_decompress(models, frame_folder, tmp_path, capsys):
    folder, frames = frame_folder
    coded, figures_path, out = tmp_path / "clip.vqv", tmp_path / "figures.json", tmp_path / "out.gif"
    assert compress.main(["--model", str(models["priors"]), str(folder), "-o", str(coded), "--verify",
                          "--json", str(figures_path), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    size = coded.stat().st_size
    assert f"{FRAMES} frames of {SIZE}×{SIZE} at 10 fps in 2 clip(s)" in printed
    assert f"{size} bytes" in printed and "bits/pixel" in printed and "kbit/s" in printed
    assert "fixed-width 4-bit codes" in printed and "verified" in printed
    figures = json.loads(figures_path.read_text())
    assert figures["bytes"] == size
    assert figures["bits_per_pixel"] == pytest.approx(8 * size / (FRAMES * SIZE * SIZE))
    assert figures["kbit_per_second"] == pytest.approx(8 * size / (FRAMES / 10) / 1000)

    # The file holds the codes of the frames as given, the last clip held on its last frame.
    model = load_model_folder(models["priors"])
    held = np.concatenate([frames, frames[-1:].repeat(2 * CLIP_FRAMES - FRAMES, axis=0)])
    clips = rearrange(from_uint8_frames(held), "c (b t) h w -> b c t h w", t=CLIP_FRAMES)
    alone = [model.vqvae.model.encode(clip[None]) for clip in clips]  # one clip at a time, as compress does
    decoded = decompress_codes(model, coded)
    assert torch.equal(decoded.codes.top, torch.cat([codes.top for codes in alone]))
    assert torch.equal(decoded.codes.bottom, torch.cat([codes.bottom for codes in alone]))

    assert info.main([str(coded)]) == 0
    described = capsys.readouterr().out
    assert model.fingerprint in described and f"{FRAMES} frames" in described
    assert re.search(r"mode\s+prior", described)

    argv = [str(coded), "--model", str(models["priors"]), "-o", str(out), "--no-progress"]
    assert decompress.main(argv) == 0
    assert f"{FRAMES} frames" in capsys.readouterr().out
    with Image.open(out) as gif:
        assert (gif.n_frames, gif.size) == (FRAMES, (SIZE, SIZE))


def test_a_folder_without_priors_packs_codes_and_refuses_the_other_folders_files(models, tmp_path, capsys):
    coded = tmp_path / "fixed.vqv"
    assert compress.main(["--model", str(models["fixed"]), "synthetic:2", "--max-frames", "5", "-o",
                          str(coded), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "mode fixed" in printed and "has no top and no bottom prior" in printed  # says why
    header = read_vqv(coded).header
    assert (header.mode, header.frame_count, header.num_codes, header.fps) == ("fixed", 5, NUM_CODES, 10)
    assert decompress.main([str(coded), "--model", str(models["fixed"]), "-o", str(tmp_path / "a.mp4"),
                            "--no-progress"]) == 0
    capsys.readouterr()
    assert decompress.main([str(coded), "--model", str(models["priors"]), "-o", str(tmp_path / "b.mp4"),
                            "--no-progress"]) == 2
    error = capsys.readouterr().err
    fingerprints = [load_model_folder(models[name]).fingerprint for name in ("fixed", "priors")]
    assert error.startswith("vqvid decompress: ") and all(f in error for f in fingerprints)
    assert not (tmp_path / "b.mp4").exists()


def test_fixed_flag_with_priors(models, tmp_path, capsys):
    coded = tmp_path / "fixed.vqv"
    assert compress.main(["--model", str(models["priors"]), "synthetic:1", "-o", str(coded), "--fixed",
                          "--fps", "25", "--no-progress"]) == 0
    header = read_vqv(coded).header
    assert (header.mode, header.frame_count, header.fps) == ("fixed", CLIP_FRAMES, 25)
    printed = capsys.readouterr().out
    assert "this file is 100.0% of that" in printed and "fixed width because" not in printed  # asked for


def test_damaged_or_unusable_input_fails_with_a_message(models, frame_folder, tmp_path, capsys):
    coded = tmp_path / "clip.vqv"
    assert compress.main(["--model", str(models["fixed"]), "synthetic:1", "-o", str(coded),
                          "--no-progress"]) == 0
    truncated = tmp_path / "truncated.vqv"
    truncated.write_bytes(coded.read_bytes()[:-3])
    capsys.readouterr()
    assert info.main([str(truncated)]) == 2
    assert capsys.readouterr().err.startswith(f"vqvid info: {truncated}: ")
    assert decompress.main([str(truncated), "--model", str(models["fixed"]), "-o", str(tmp_path / "x.gif"),
                            "--no-progress"]) == 2
    assert "chunk" in capsys.readouterr().err
    assert decompress.main([str(coded), "--model", str(models["fixed"]), "-o", str(tmp_path / "x.avi")]) == 2
    assert "expected a file ending in .gif, .mp4, .mkv" in capsys.readouterr().err

    videos = tmp_path / "videos"
    write_synthetic_videos(videos, 2, frames=4, size=SIZE)
    assert compress.main(["--model", str(models["fixed"]), str(videos), "-o", str(tmp_path / "y.vqv")]) == 2
    assert "holds 2 videos" in capsys.readouterr().err
    assert compress.main(["--model", str(models["fixed"]), str(tmp_path / "missing.mp4"), "-o",
                          str(tmp_path / "y.vqv")]) == 2
    assert capsys.readouterr().err.startswith("vqvid compress: ")
    (tmp_path / "a_file").write_text("kept")
    assert compress.main(["--model", str(models["fixed"]), str(frame_folder[0]), "-o",
                          str(tmp_path / "a_file" / "y.vqv")]) == 2
    assert "is a file, so no folder can hold the output there" in capsys.readouterr().err
    assert compress.main(["--model", str(models["fixed"]), str(frame_folder[0]), "-o", str(tmp_path / "y.mp4")]) == 2
    assert "compress writes a .vqv file, not a video; name it .vqv" in capsys.readouterr().err
    assert not (tmp_path / "y.mp4").exists()


def test_an_output_that_is_an_input_is_refused_and_the_input_survives(models, frame_folder, tmp_path, capsys):
    videos = write_synthetic_videos(tmp_path / "videos", 1, frames=4, size=SIZE)
    source = videos[0]
    original = source.read_bytes()
    link = tmp_path / "link.mp4"
    link.hardlink_to(source)
    for output in (source, tmp_path / "videos" / ".." / "videos" / source.name, link):
        assert compress.main(["--model", str(models["fixed"]), str(source), "-o", str(output),
                              "--no-progress"]) == 2
        assert "this is the input" in capsys.readouterr().err
    folder, _ = frame_folder
    assert compress.main(["--model", str(models["fixed"]), str(folder), "-o", str(folder / "clip.vqv")]) == 2
    assert "inside the input folder" in capsys.readouterr().err
    assert not (folder / "clip.vqv").exists() and source.read_bytes() == original
    coded = tmp_path / "clip.vqv"
    assert compress.main(["--model", str(models["fixed"]), str(source), "-o", str(coded), "--no-progress"]) == 0
    renamed = coded.rename(tmp_path / "clip.mp4")  # a .vqv under a video's name: decompress must not replace it
    assert decompress.main([str(renamed), "--model", str(models["fixed"]), "-o", str(renamed)]) == 2
    assert "this is the input" in capsys.readouterr().err and read_vqv(renamed).header.mode == "fixed"


def test_the_top_level_alone_from_the_command_line(models, frame_folder, tmp_path, capsys):
    folder, _ = frame_folder
    model = ["--model", str(models["priors"])]
    full, top_only, cut = tmp_path / "full.vqv", tmp_path / "top.vqv", tmp_path / "cut.vqv"
    assert compress.main([*model, str(folder), "-o", str(full), "--no-progress"]) == 0
    assert "top layer: " in capsys.readouterr().out
    assert compress.main([*model, str(folder), "-o", str(top_only), "--levels", "top", "--no-progress"]) == 0
    assert "top codes only" in capsys.readouterr().out
    file = read_vqv(full)
    top_layer_size = full.stat().st_size - sum(map(len, file.chunks[2:]))  # 2 clips: chunks 2, 3 are bottom
    cut.write_bytes(full.read_bytes()[:top_layer_size])
    assert top_only.stat().st_size < top_layer_size + 8 < full.stat().st_size

    assert info.main([str(full)]) == 0
    levels = re.search(r"levels\s+top \((\d+) bytes of codes; (\d+) with the header\), bottom \((\d+) bytes of codes\)",
                       capsys.readouterr().out)
    assert levels and int(levels[2]) == top_layer_size  # what compress printed as the top layer
    assert int(levels[1]) + int(levels[3]) == sum(map(len, file.chunks))
    assert info.main([str(top_only)]) == 0
    described = capsys.readouterr().out
    assert re.search(r"levels\s+top \(\d+ bytes of codes; \d+ with the header\)\n", described)
    assert info.main([str(cut)]) == 0
    assert "the bottom layer is missing" in capsys.readouterr().out

    # The coarse video: the same frames from the full file with --levels top, the top-only file and the cut one.
    decoded = {}
    for name, source, levels in (("full", full, ["--levels", "top"]), ("top", top_only, []), ("cut", cut, [])):
        out = tmp_path / f"{name}.gif"
        assert decompress.main([str(source), *model, "-o", str(out), *levels, "--no-progress"]) == 0
        assert "top codes only: the coarse video" in capsys.readouterr().out
        with Image.open(out) as gif:
            decoded[name] = [np.array(frame.convert("RGB")) for frame in ImageSequence.Iterator(gif)]
    assert len(decoded["full"]) == FRAMES
    assert all(np.array_equal(a, b) for a, b in zip(decoded["full"], decoded["top"], strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(decoded["full"], decoded["cut"], strict=True))
    both = tmp_path / "both.gif"
    assert decompress.main([str(full), *model, "-o", str(both), "--no-progress"]) == 0
    assert "both levels" in capsys.readouterr().out
    assert decompress.main([str(cut), *model, "-o", str(tmp_path / "x.gif"), "--levels", "both"]) == 2
    assert ("holds only top codes (the file ends after its top layer), so only its top level can be decoded; "
            "decode it with --levels top\n") in capsys.readouterr().err  # the command's option

    # Cut inside the bottom layer (a download stopped there): refused as it is, the coarse video with --levels top.
    stopped = tmp_path / "stopped.vqv"
    stopped.write_bytes(full.read_bytes()[:(top_layer_size + full.stat().st_size) // 2])
    assert decompress.main([str(stopped), *model, "-o", str(tmp_path / "x.gif"), "--no-progress"]) == 2
    assert capsys.readouterr().err.endswith("; its top layer is whole and can be read alone; decode its coarse "
                                            "video with --levels top\n")
    assert decompress.main([str(stopped), *model, "-o", str(tmp_path / "x.gif"), "--batch-size", "0"]) == 2
    assert capsys.readouterr().err == "vqvid decompress: --batch-size 0: expected at least 1\n"  # not about the file
    assert info.main([str(stopped)]) == 2  # info has no --levels: it names the command that decodes the layer
    assert capsys.readouterr().err.endswith("; its top layer is whole and can be read alone; `vqvid decompress "
                                            "--levels top` decodes its coarse video\n")
    out = tmp_path / "stopped.gif"
    assert decompress.main([str(stopped), *model, "-o", str(out), "--levels", "top", "--no-progress"]) == 0
    with Image.open(out) as gif:
        assert all(np.array_equal(np.array(frame.convert("RGB")), expected)
                   for frame, expected in zip(ImageSequence.Iterator(gif), decoded["full"], strict=True))


def test_coding_batch_from_the_command_line(models, frame_folder, tmp_path, capsys):
    folder, _ = frame_folder
    model = ["--model", str(models["priors"])]
    files = {name: tmp_path / f"{name}.vqv" for name in ("default", "one", "threads")}
    assert compress.main([*model, str(folder), "-o", str(files["default"]), "--no-progress", "--json",
                          str(tmp_path / "figures.json")]) == 0
    assert "mode prior (2 clip(s) at a time)" in capsys.readouterr().out  # the default, cut to the 2 clips
    assert json.loads((tmp_path / "figures.json").read_text())["coding_batch"] == 2
    assert compress.main([*model, str(folder), "-o", str(files["one"]), "--coding-batch", "1",
                          "--no-progress"]) == 0
    assert "mode prior (1 clip(s) at a time)" in capsys.readouterr().out
    # The bytes do not depend on --batch-size or the caller's threads.
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert compress.main([*model, str(folder), "-o", str(files["threads"]), "--batch-size", "3",
                              "--no-progress"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert files["threads"].read_bytes() == files["default"].read_bytes()
    headers = {name: read_vqv(path).header for name, path in files.items()}
    assert (headers["default"].coding_batch, headers["one"].coding_batch) == (2, 1)
    assert info.main([str(files["default"])]) == 0
    assert "entropy-coded under the priors, 2 clip(s) at a time" in capsys.readouterr().out
    outputs = []
    for name in ("default", "one"):
        outputs.append(tmp_path / f"{name}.gif")
        assert decompress.main([str(files[name]), *model, "-o", str(outputs[-1]), "--no-progress"]) == 0
    assert outputs[0].read_bytes() == outputs[1].read_bytes()  # the same codes, whatever the coding batch

    for bad in ("0", "65", "-2"):
        assert compress.main([*model, str(folder), "-o", str(tmp_path / "bad.vqv"), "--coding-batch", bad]) == 2
        assert capsys.readouterr().err == (f"vqvid compress: --coding-batch {bad}: expected a whole number of "
                                           "clips from 1 to 64\n")
    assert not (tmp_path / "bad.vqv").exists()


def test_info_describes_a_model_folder_and_refuses_a_damaged_one(models, tmp_path, capsys):
    import shutil

    assert info.main([str(models["priors"])]) == 0
    described = capsys.readouterr().out
    folder = load_model_folder(models["priors"])
    assert f"fingerprint  {folder.fingerprint}\n" in described
    top, bottom = (CLIP_FRAMES // 4, SIZE // 8, SIZE // 8), (CLIP_FRAMES // 2, SIZE // 4, SIZE // 4)
    assert (f"code grids   top {'x'.join(map(str, top))}, bottom {'x'.join(map(str, bottom))} per clip, "
            f"{NUM_CODES} codes per level") in described
    for name, loaded in (("vqvae", folder.vqvae), ("top prior", folder.top), ("bottom prior", folder.bottom)):
        parameters = sum(p.numel() for p in loaded.model.parameters()) / 1e6
        assert re.search(rf"^{name}\s+{loaded.fingerprint}: {parameters:.2f} M parameters; ", described, re.M)

    assert info.main([str(models["fixed"])]) == 0
    assert re.search(r"^top prior\s+none ", capsys.readouterr().out, re.M)

    damaged = shutil.copytree(models["priors"], tmp_path / "damaged")
    weights = damaged / "top.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # one weight's last byte flipped
    assert info.main([str(damaged)]) == 2
    assert capsys.readouterr().err.startswith(f"vqvid info: model folder {damaged}: top.safetensors ")


@pytest.mark.parametrize(("fps", "expected"), [
    ("1e-9", "--fps 1e-09: expected a frame rate of at least 1e-06, the least that a .vqv header records"),
    ("1e9", "--fps 1000000000.0: expected a frame rate above 0 and at most 1000"),
])
def test_a_frame_rate_the_file_cannot_record_is_refused_before_encoding(models, tmp_path, capsys, monkeypatch, fps,
                                                                       expected):
    import vqvid.persistence

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before --fps was checked")

    monkeypatch.setattr(vqvid.persistence, "load_model_folder", no_model)
    out = tmp_path / "a.vqv"
    assert compress.main(["--model", str(models["fixed"]), "synthetic:1", "-o", str(out), "--fps", fps]) == 2
    assert capsys.readouterr().err == f"vqvid compress: {expected}\n"
    assert not out.exists()


def test_the_least_frame_rate_accepted_is_recorded(models, tmp_path):
    out = tmp_path / "a.vqv"
    assert compress.main(["--model", str(models["fixed"]), "synthetic:1", "-o", str(out), "--fps", "1e-6",
                          "--no-progress"]) == 0
    assert read_vqv(out).header.fps == Fraction(1, 1_000_000)


def unwritable(monkeypatch, refused: str) -> None:
    """Outputs whose names end in `refused` cannot be created (as in /proc, or in a folder without write
    permission, which root ignores): the temporary file that they are written to first is refused, naming
    itself, as the system does."""
    import errno
    import os
    import tempfile

    create = tempfile.mkstemp

    def mkstemp(suffix=None, prefix=None, dir=None, text=False):
        if suffix and suffix.endswith(refused):
            raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, f"{prefix}x{suffix}"))
        return create(suffix, prefix, dir, text)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


@pytest.mark.parametrize(("option", "suffix"), [("-o", ".vqv"), ("--json", ".json")])
def test_an_output_that_cannot_be_written_is_named_as_given(models, tmp_path, capsys, monkeypatch, option, suffix):
    outputs = {"-o": tmp_path / "a.vqv", "--json": tmp_path / "a.json"}
    unwritable(monkeypatch, suffix)
    assert compress.main(["--model", str(models["fixed"]), "synthetic:1", "--no-progress",
                          *[arg for flag, path in outputs.items() for arg in (flag, str(path))]]) == 2
    err = capsys.readouterr().err
    assert err == f"vqvid compress: {option} {outputs[option]}: cannot be written (Permission denied)\n"
    assert not outputs[option].exists() and not [p for p in tmp_path.iterdir() if ".partial" in p.name]

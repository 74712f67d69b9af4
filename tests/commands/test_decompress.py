"""`vqvid decompress` through `main(argv)` and the `vqvid` entry point: outputs it cannot write and Ctrl-C name
what the user gave and leave no file behind."""

from __future__ import annotations

import pytest

from tests.commands.test_compress import models, unwritable  # noqa: F401  (the tiny model folders fixture)
from vqvid import cli
from vqvid.commands import compress, decompress

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def coded(models, tmp_path):  # noqa: F811
    path = tmp_path / "a.vqv"
    assert compress.main(["--model", str(models["fixed"]), "synthetic:1", "-o", str(path), "--no-progress"]) == 0
    return path


def test_an_output_that_cannot_be_written_is_named_as_given(models, coded, tmp_path, capsys,  # noqa: F811
                                                            monkeypatch):
    out = tmp_path / "out.gif"
    unwritable(monkeypatch, ".gif")
    capsys.readouterr()
    assert decompress.main([str(coded), "--model", str(models["fixed"]), "-o", str(out), "--no-progress"]) == 2
    assert capsys.readouterr().err == f"vqvid decompress: -o {out}: cannot be written (Permission denied)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.vqv"]


def test_ctrl_c_while_writing_is_one_line_and_leaves_no_file(models, coded, tmp_path, capsys,  # noqa: F811
                                                             monkeypatch):
    from vqvid import viz

    def interrupted(path, *args):
        with open(path, "wb") as file:
            file.write(b"\0" * 2048)  # half a video
        raise KeyboardInterrupt

    monkeypatch.setattr(viz, "write_video", interrupted)
    capsys.readouterr()
    try:
        code = cli.main(["decompress", str(coded), "--model", str(models["fixed"]), "-o",
                         str(tmp_path / "out.mp4"), "--no-progress"])
    except KeyboardInterrupt:  # which would stop the whole test session
        pytest.fail("the interruption went past the entry point")
    assert (code, capsys.readouterr().err) == (130, "vqvid decompress: interrupted\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.vqv"]

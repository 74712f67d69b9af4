"""`vqvid info` through `main(argv)`: what it says of an input that is neither a .vqv file nor a model folder, and
of a reader that goes away."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.commands.test_compress import models  # noqa: F401  (the tiny model folders fixture)
from vqvid.commands import info

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_folder_without_model_json_is_neither_kind_of_input(tmp_path, capsys):
    assert info.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"vqvid info: {tmp_path}: a folder, but neither a vqvid model folder (no "
                                       "model.json) nor a .vqv file\n")


def test_a_model_folder_into_a_closed_pipe_is_not_an_error(models):  # noqa: F811
    """`vqvid info MODEL_DIR | true`: the reader is gone before vqvid writes."""
    read, write = os.pipe()
    os.close(read)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-m", "vqvid", "info", str(models["priors"])], stdout=write,
                            stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    os.close(write)
    assert (result.returncode, result.stderr) == (1, "")

"""The `vqvid` entry point's own behaviour: how warnings read, a reader that goes away, Ctrl-C."""

import os
import subprocess
import sys
import warnings

import pytest
import torch

from vqvid import cli
from vqvid.cli import _show_own_warnings_as_one_line
from vqvid.data import DataWarning


def test_vqvids_warnings_are_one_line_wherever_raised_and_others_keep_pythons_format(monkeypatch):
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # restored after the test
    _show_own_warnings_as_one_line("train")
    ours = warnings.formatwarning("skipping a.mp4: truncated", DataWarning, "/site-packages/torch/fetch.py", 52)
    assert ours == "vqvid train: warning: skipping a.mp4: truncated\n"
    theirs = warnings.formatwarning("torch says", UserWarning, "/src/vqvid/commands/train.py", 7, "line")
    assert theirs.startswith("/src/vqvid/commands/train.py:7: UserWarning: torch says")


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_its_own_output_into_a_closed_pipe_is_not_a_traceback(flag):
    """`vqvid --help | head -1`: the reader is gone before vqvid writes."""
    read, write = os.pipe()
    os.close(read)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-m", "vqvid", flag], stdout=write, stderr=subprocess.PIPE, text=True,
                            env=env, timeout=60)
    os.close(write)
    assert (result.returncode, result.stderr) == (1, "")


def test_ctrl_c_in_a_command_is_one_line_and_status_130(monkeypatch, capsys):
    from vqvid.commands import info

    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(info, "main", interrupted)
    try:
        code = cli.main(["info", "clip.vqv"])
    except KeyboardInterrupt:  # which would stop the whole test session
        pytest.fail("the interruption went past the entry point")
    assert code == 130
    assert capsys.readouterr().err == "vqvid info: interrupted\n"


def test_a_system_error_that_a_command_leaves_is_one_line(monkeypatch, capsys):
    from vqvid.commands import info

    def refused(argv):
        raise OSError("out.gif: cannot be written (Read-only file system)")

    monkeypatch.setattr(info, "main", refused)
    assert cli.main(["info", "clip.vqv"]) == 1
    assert capsys.readouterr().err == "vqvid info: out.gif: cannot be written (Read-only file system)\n"


CPU_ALLOCATOR = ("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate memory: you tried "
                 "to allocate 9007199254740992 bytes.")  # what torch 2.13 says


@pytest.mark.parametrize(("error", "reason"), [
    (MemoryError(), "no memory left"),
    (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
     "CUDA out of memory. Tried to allocate 2.00 GiB"),
    (RuntimeError(CPU_ALLOCATOR), CPU_ALLOCATOR)])
def test_running_out_of_memory_is_one_line(monkeypatch, capsys, error, reason):
    from vqvid.commands import info

    def exhausted(argv):
        raise error

    monkeypatch.setattr(info, "main", exhausted)
    assert cli.main(["info", "clip.vqv"]) == 1
    assert capsys.readouterr().err == (f"vqvid info: out of memory ({reason}); smaller batches, clips, --frames or "
                                       "--samples need less\n")


def test_torchs_own_cpu_allocation_failure_is_recognised():
    try:
        torch.empty(2**50)
    except RuntimeError as error:  # what torch raises where the host has no such memory
        assert cli._out_of_memory(error)
    else:  # a machine with a petabyte of memory
        pytest.skip("torch allocated 4 PiB")


def test_another_runtime_error_keeps_its_traceback(monkeypatch):
    from vqvid.commands import info

    def broken(argv):
        raise RuntimeError("a defect")

    monkeypatch.setattr(info, "main", broken)
    with pytest.raises(RuntimeError, match="a defect"):
        cli.main(["info", "clip.vqv"])

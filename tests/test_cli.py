"""The `vqvid` entry point's own behaviour: how warnings read."""

import warnings

from vqvid.cli import _show_own_warnings_as_one_line
from vqvid.data import DataWarning


def test_vqvids_warnings_are_one_line_wherever_raised_and_others_keep_pythons_format(monkeypatch):
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # restored after the test
    _show_own_warnings_as_one_line("train")
    ours = warnings.formatwarning("skipping a.mp4: truncated", DataWarning, "/site-packages/torch/fetch.py", 52)
    assert ours == "vqvid train: warning: skipping a.mp4: truncated\n"
    theirs = warnings.formatwarning("torch says", UserWarning, "/src/vqvid/commands/train.py", 7, "line")
    assert theirs.startswith("/src/vqvid/commands/train.py:7: UserWarning: torch says")
